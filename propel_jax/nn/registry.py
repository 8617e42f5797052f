"""The output heads by name: what each builds, for which labels, and what it supports.

Every program that names a head reads this registry: `models.create_model`
builds the head `config.head` names, config validation checks the name and
the head's keys, and the comparison (`experiments.comparison`) parses method
names and writes its methods table from the entries. Adding a head is one
`Head` entry here (or a `register` call) and its class.

Label kinds (`propel_jax.data.labels.KINDS`):
  'interval'  degrees in a range, normalised to [0, 1] per dimension.
  'circle'    an in-plane angle as the unit vector (cos θ, sin θ).
  'rotation'  a 3-D rotation as a unit quaternion (w, x, y, z), q ≡ −q.

A head's target width is the width of the ground-truth density PROPEL
compares the prediction with, in the config key the entry names:
`target_scale` (σ of a Gaussian) or `target_concentration` (κ of a von
Mises-Fisher density, which is close to a Gaussian with angular σ = 1/√κ
radians for large κ).
"""

import dataclasses
import re
from typing import Any, Callable, Mapping

from flax import nnx

from propel_jax.nn import directional_heads
from propel_jax.nn import heads

LABEL_KINDS = ('interval', 'circle', 'rotation')
# Lower-case letters and digits: a head's name starts a comparison method's
# name, whose suffixes begin with '_'.
_NAME = re.compile(r'^[a-z][a-z0-9]*$')


@dataclasses.dataclass(frozen=True)
class BuildArgs:
  """What a head's constructor reads.

  Attributes:
    in_features: F, the backbone's output features.
    label_kind: one of LABEL_KINDS.
    num_targets: n, the label's dimensions (components for unit vectors).
    config: the run's config: `num_components`, the head's target width key.
    model: the merged `config.model` (keys in `models.default_model_config`).
    rngs: parameter initialisation keys.
  """
  in_features: int
  label_kind: str
  num_targets: int
  config: Any
  model: Any
  rngs: nnx.Rngs


@dataclasses.dataclass(frozen=True)
class TargetWidth:
  """The config key of a head's ground-truth width, and what it measures.

  Attributes:
    key: the config key ('target_scale' or 'target_concentration').
    meaning: what the value is, with its unit (for messages and reports).
    from_sigma: maps a standard deviation σ (a comparison method's `_s<σ>`)
      to the key's value.
  """
  key: str
  meaning: str
  from_sigma: Callable[[float], float]


TARGET_SCALE = TargetWidth(
    'target_scale',
    'σ of the ground-truth Gaussian in normalised label units (1 = the label range); for '
    'unit-vector labels in the vector\'s units (≈ radians)',
    lambda sigma: sigma)
TARGET_CONCENTRATION = TargetWidth(
    'target_concentration',
    'κ of the ground-truth von Mises-Fisher density (≈ 1/σ² for an angular σ in radians: '
    '400 ≈ 2.9°)',
    # To 12 digits: σ = 0.05 gives 400, not 399.99999999999994 (the loss is
    # float32, so nothing else changes).
    lambda sigma: float(f'{1.0 / sigma**2:.12g}'))


@dataclasses.dataclass(frozen=True)
class Head:
  """One head.

  Attributes:
    name: the value of `config.head` (lower-case letters and digits).
    build: label kind -> constructor (BuildArgs -> an nnx.Module following
      the protocol in `heads`); the kinds it accepts are the keys.
    summary: one line: what the head predicts and its loss.
    mixture: whether it predicts a mixture of `config.num_components`
      components (else one point, or scores over a grid).
    learned_weights: 'never', 'optional' (`config.model.learn_weights`) or
      'always' (the MDNs: their weights are part of the likelihood).
    full_covariance: the label kinds on which its components may have full
      covariances (`config.model.covariance='full'`).
    target_width: the key of its ground-truth width, None if it has none.
  """
  name: str
  build: Mapping[str, Callable[[BuildArgs], nnx.Module]]
  summary: str
  mixture: bool = False
  learned_weights: str = 'never'
  full_covariance: tuple[str, ...] = ()
  target_width: TargetWidth | None = None

  def __post_init__(self):
    if not _NAME.match(self.name):
      raise ValueError(f'Head name {self.name!r} must be lower-case letters and digits, '
                       'starting with a letter (comparison methods append _-suffixes).')
    unknown = sorted(set(self.build) - set(LABEL_KINDS))
    if unknown or not self.build:
      raise ValueError(f'Head {self.name!r}: build needs one constructor per label kind it '
                       f'accepts, kinds from {LABEL_KINDS}; got {sorted(self.build)}.')
    if self.learned_weights not in ('never', 'optional', 'always'):
      raise ValueError(f"Head {self.name!r}: learned_weights must be 'never', 'optional' or "
                       f"'always'; got {self.learned_weights!r}.")
    if self.learned_weights != 'never' and not self.mixture:
      raise ValueError(f'Head {self.name!r}: only a mixture has weights to learn.')
    if not set(self.full_covariance) <= set(self.build) or (
        self.full_covariance and not self.mixture):
      raise ValueError(f'Head {self.name!r}: full_covariance {self.full_covariance} must be '
                       f'label kinds of a mixture head among {tuple(self.build)}.')

  @property
  def label_kinds(self) -> tuple[str, ...]:
    """The label kinds it accepts, in LABEL_KINDS order."""
    return tuple(kind for kind in LABEL_KINDS if kind in self.build)

  def learns_weights(self, model_config: Any) -> bool:
    """Whether its mixture weights are learned under `config.model`."""
    return self.learned_weights == 'always' or (
        self.learned_weights == 'optional' and bool(model_config.learn_weights))


# ----------------------------------------------------------------------------
# Constructors.


def _mixture_args(args: BuildArgs) -> dict[str, Any]:
  """The Gaussian mixture heads' shared keyword arguments."""
  return dict(scale_activation=args.model.scale_activation, min_scale=args.model.min_scale,
              covariance=args.model.covariance, rngs=args.rngs)


def _vmf_args(args: BuildArgs) -> dict[str, Any]:
  """The von Mises-Fisher heads' shared keyword arguments."""
  return dict(min_concentration=args.model.min_concentration,
              concentration_scale=args.model.concentration_scale,
              antipodal=args.label_kind == 'rotation', rngs=args.rngs)


def _propel(args):
  return heads.PropelHead(args.in_features, args.num_targets, args.config.num_components,
                          target_scale=args.config.target_scale, target=args.model.propel_target,
                          learn_weights=args.model.learn_weights, **_mixture_args(args))


def _euclidean_propel(args):
  return directional_heads.EuclideanPropelHead(
      args.in_features, args.num_targets, args.config.num_components,
      target_scale=args.config.target_scale, target=args.model.propel_target,
      learn_weights=args.model.learn_weights, scale_activation=args.model.scale_activation,
      min_scale=args.model.min_scale, rngs=args.rngs)


def _mdn(args):
  return heads.MDNHead(args.in_features, args.num_targets, args.config.num_components,
                       **_mixture_args(args))


def _direct(loss):
  return lambda args: heads.DirectHead(args.in_features, args.num_targets, loss=loss,
                                       rngs=args.rngs)


def _unit_vector(args):
  return directional_heads.UnitVectorHead(args.in_features, args.num_targets,
                                          antipodal=args.label_kind == 'rotation',
                                          rngs=args.rngs)


def _heatmap(args):
  return heads.HeatmapHead(args.in_features, args.num_targets, bins=args.model.heatmap_bins,
                           layout=args.model.heatmap_layout, sigma=args.model.heatmap_sigma,
                           rngs=args.rngs)


def _vmf_propel(args):
  concentration = args.config.get('target_concentration')
  if concentration is None:
    raise ValueError('config.target_concentration is None: the vmfpropel head needs κ of '
                     'the ground truth (e.g. 400 ≈ 2.9°).')
  return directional_heads.DirectionalPropelHead(
      args.in_features, args.num_targets, args.config.num_components,
      target_concentration=concentration, target=args.model.propel_target,
      learn_weights=args.model.learn_weights, **_vmf_args(args))


def _vmf_mdn(args):
  return directional_heads.VonMisesFisherMDNHead(
      args.in_features, args.num_targets, args.config.num_components, **_vmf_args(args))


def _angle_classifier(args):
  return directional_heads.AngleClassifierHead(args.in_features,
                                               bins=args.model.classifier_bins, rngs=args.rngs)


def _rotation_classifier(args):
  return directional_heads.RotationClassifierHead(
      args.in_features, level=args.model.rotation_grid_level, rngs=args.rngs)


_BUILTIN = (
    Head('propel', {'interval': _propel, 'circle': _euclidean_propel},
         'I Gaussians trained with PROPEL (on a unit vector: on its components, in the plane)',
         mixture=True, learned_weights='optional', full_covariance=('interval',),
         target_width=TARGET_SCALE),
    Head('mse', {'interval': _direct('mse'), 'circle': _unit_vector, 'rotation': _unit_vector},
         'one point trained with the squared error (a quaternion: sign-invariant)'),
    Head('l1', {'interval': _direct('l1')}, 'one point trained with the absolute error'),
    Head('heatmap', {'interval': _heatmap},
         'scores on a grid regressed onto a Gaussian bump at the label (HEATMAP-MSE)'),
    Head('mdn', {'interval': _mdn}, 'I Gaussians trained by negative log-likelihood',
         mixture=True, learned_weights='always', full_covariance=('interval',)),
    Head('vmfpropel', {'circle': _vmf_propel, 'rotation': _vmf_propel},
         'I von Mises-Fisher components trained with PROPEL on the sphere', mixture=True,
         learned_weights='optional', target_width=TARGET_CONCENTRATION),
    Head('vmfmdn', {'circle': _vmf_mdn, 'rotation': _vmf_mdn},
         'I von Mises-Fisher components trained by negative log-likelihood', mixture=True,
         learned_weights='always'),
    Head('classifier', {'circle': _angle_classifier, 'rotation': _rotation_classifier},
         'a softmax over angle bins or SO(3) grid cells trained with cross-entropy'),
)
HEADS: dict[str, Head] = {head.name: head for head in _BUILTIN}


def register(head: Head) -> None:
  """Adds a head, so that `config.head` and comparison methods can name it.

  Raises:
    ValueError: if a head of that name is registered already.

  Examples:
    >>> from propel_jax.nn import heads, registry
    >>> def build(args):
    ...   return heads.DirectHead(args.in_features, args.num_targets, loss='l1',
    ...                           rngs=args.rngs)
    >>> registry.register(registry.Head('median', {'interval': build}, 'one point, L1'))
    >>> registry.get('median').label_kinds
    ('interval',)
    >>> registry.unregister('median')
  """
  if head.name in HEADS:
    raise ValueError(f'A head named {head.name!r} is registered already.')
  HEADS[head.name] = head


def unregister(name: str) -> None:
  """Removes the head `register` added under `name`."""
  get(name)
  del HEADS[name]


def names(label_kind: str | None = None) -> tuple[str, ...]:
  """The registered heads' names, all or those that accept `label_kind`.

  Examples:
    >>> from propel_jax.nn import registry
    >>> registry.names('rotation')
    ('mse', 'vmfpropel', 'vmfmdn', 'classifier')
  """
  return tuple(name for name, head in HEADS.items()
               if label_kind is None or label_kind in head.build)


def target_widths() -> tuple[TargetWidth, ...]:
  """The distinct target widths of the registered heads."""
  return tuple(dict.fromkeys(h.target_width for h in HEADS.values() if h.target_width))


def get(name: str) -> Head:
  """The head registered as `name`.

  Raises:
    ValueError: naming the registered heads.
  """
  if name not in HEADS:
    raise ValueError(f'Unknown head {name!r}; registered: {names()}.')
  return HEADS[name]


def build(name: str, args: BuildArgs) -> nnx.Module:
  """The head `name` for `args.label_kind` labels.

  Raises:
    ValueError: for an unknown head, a label kind it does not accept, or a
      setting it does not support (naming the config key).
  """
  head = get(name)
  if args.label_kind not in head.build:
    raise ValueError(f'config.head={name!r} does not fit {args.label_kind!r} labels (it '
                     f'takes {head.label_kinds}); use one of {names(args.label_kind)}.')
  # Point heads on intervals have no covariance to shape: they ignore the key.
  if (args.model.covariance != 'diagonal' and args.label_kind not in head.full_covariance
      and (head.mixture or args.label_kind != 'interval')):
    raise ValueError(f'config.model.covariance={args.model.covariance!r}: the {name} head '
                     f'on {args.label_kind!r} labels has diagonal (isotropic) components '
                     'only; set it to diagonal.')
  if head.mixture and not (isinstance(args.config.num_components, int)
                           and args.config.num_components >= 1):
    raise ValueError(f'config.num_components must be >= 1; got '
                     f'{args.config.num_components!r}.')
  return head.build[args.label_kind](args)
