"""What the labels of an orientation dataset mean, declared once per builder.

Every builder in `propel_jax.data.builders` exposes a `label_spec` (a `LabelSpec`):
the kind of label, the names of the label dimensions, the range in degrees that
the input pipeline maps to [0, 1] (the network's sigmoid outputs), and which
dimensions change sign when the image is mirrored left-right (so that a flip
augmentation keeps the labels right).

Kinds:
  'interval'  angles in degrees within [low, high] per dimension (hands, head
              pose); the pipeline maps them to [0, 1].
  'circle'    an in-plane angle as the unit vector (cos θ, sin θ): passed
              through unchanged (directional heads and metrics).
  'rotation'  a 3-D rotation as a unit quaternion (w, x, y, z), q and -q one
              rotation: passed through unchanged. Datasets that are compared with each other (train on
300W-LP, test on AFLW2000 or Biwi) share one spec, so that a normalised output
means the same angle on all of them.
"""

import dataclasses
from typing import Any

import numpy as np

from propel_jax import mixtures


KINDS = ('interval', 'circle', 'rotation')
# Components of the unit-vector kinds' labels.
_UNIT_VECTOR_DIMS = {'circle': 2, 'rotation': 4}


@dataclasses.dataclass(frozen=True)
class LabelSpec:
  """Meaning of the label vector of a dataset.

  Attributes:
    names: one name per label dimension, e.g. ('yaw', 'pitch', 'roll').
    low: per-dimension value in degrees that maps to 0.
    high: per-dimension value in degrees that maps to 1.
    flip_negates: per dimension, whether a horizontal mirror of the image
      negates it; None when mirroring does not map the label to a known label
      (then the pipeline never flips).
    kind: one of KINDS (see the module docstring). For 'circle' and
      'rotation', low and high are the components' range (-1, 1), used for
      plotting only.
  """
  names: tuple[str, ...]
  low: tuple[float, ...]
  high: tuple[float, ...]
  flip_negates: tuple[bool, ...] | None = None
  kind: str = 'interval'

  def __post_init__(self):
    n = len(self.names)
    if len(self.low) != n or len(self.high) != n:
      raise ValueError(f'LabelSpec: {n} names {self.names} but low={self.low}, '
                       f'high={self.high}.')
    if any(h <= l for l, h in zip(self.low, self.high)):
      raise ValueError(f'LabelSpec: need low < high, got low={self.low}, '
                       f'high={self.high}.')
    if self.flip_negates is not None and len(self.flip_negates) != n:
      raise ValueError(f'LabelSpec: flip_negates={self.flip_negates} needs '
                       f'{n} entries.')
    if self.kind not in KINDS:
      raise ValueError(f'LabelSpec: kind={self.kind!r} must be one of {KINDS}.')
    if self.kind != 'interval' and n != _UNIT_VECTOR_DIMS[self.kind]:
      raise ValueError(f'LabelSpec: a {self.kind!r} label has '
                       f'{_UNIT_VECTOR_DIMS[self.kind]} components; got names {self.names}.')

  @property
  def is_directional(self) -> bool:
    """Whether labels are unit vectors (circle, rotation), not degree intervals."""
    return self.kind != 'interval'

  # The one place that maps labels between degrees and the networks' [0, 1]
  # units. NumPy constants, so the same code serves NumPy arrays on the host
  # and traced JAX arrays inside jit.

  def _low_span(self):
    low = np.asarray(self.low, np.float32)
    return low, np.asarray(self.high, np.float32) - low

  def to_unit(self, degrees: Any) -> Any:
    """[..., n] labels in degrees -> [0, 1] (low -> 0, high -> 1).

    Unit-vector labels (kind 'circle', 'rotation') are returned unchanged.
    """
    if self.is_directional:
      return degrees
    low, span = self._low_span()
    return (degrees - low) / span

  def to_degrees(self, unit: Any) -> Any:
    """[..., n] values in [0, 1] units -> degrees (the inverse of `to_unit`)."""
    if self.is_directional:
      return unit
    low, span = self._low_span()
    return low + span * unit

  def mixture_to_degrees(self, mixture: mixtures.Mixture) -> mixtures.Mixture:
    """A mixture over [0, 1] units as the same distribution over degrees.

    Unit-vector labels: returned unchanged (like `to_degrees`).
    """
    if self.is_directional:
      return mixture
    low, span = self._low_span()
    return mixture.affine(low, span)


# Yaw, pitch, roll of a head. One range for every head-pose dataset: the
# standard protocol keeps examples with all angles within ±99° (it drops the
# few 300W-LP / AFLW2000 fits beyond). Mirroring a face negates yaw and roll.
HEAD_POSE = LabelSpec(
    names=('yaw', 'pitch', 'roll'),
    low=(-99.0, -99.0, -99.0),
    high=(99.0, 99.0, 99.0),
    flip_negates=(True, False, True))
