"""Heads for orientation labels that are unit vectors (circle; unit quaternions).

They follow the protocol of `heads` (call, loss, decode, mixture), with labels
as unit vectors ([B, d]; 'equivalent_labels' [B, K, d]) instead of [0, 1]
units, and decoders that return vectors ([B, d], not necessarily unit: the
metrics read their direction). `mixture` returns the predicted density:
a `directional.VonMisesFisherMixture` on the sphere, or for the Euclidean
baseline a Gaussian `mixtures.Mixture` in R^d whose restriction to the circle
the metrics normalise.

Heads:
  DirectionalPropelHead  I von Mises-Fisher components trained with PROPEL
                         (`directional.propel_loss`) against vMF(label, κ_gt).
  VonMisesFisherMDNHead  the same mixture, learned weights, trained by NLL.
  EuclideanPropelHead    the Gaussian PropelHead on the vector's components in
                         [-1, 1] (blind to the wrap-around of the angle).
  UnitVectorHead         one vector trained with MSE (sign-invariant where
                         antipodal: min(‖r − y‖², ‖r + y‖²)).
  AngleClassifierHead    softmax over a fixed grid of angles (the heatmap
                         analogue), trained with cross-entropy on the bin of
                         the label; its density spreads each bin's probability
                         with a von Mises kernel of the bin's width.
  RotationClassifierHead softmax over the cells of an equivolumetric grid on
                         SO(3) (`rotation_grid`), trained with cross-entropy
                         on the label's nearest cell; its density is each
                         cell's probability over the cell's volume.
"""

import math

from flax import nnx
import jax
import jax.numpy as jnp

from propel_jax import _common
from propel_jax import directional
from propel_jax import mixtures
from propel_jax import rotation_grid
from propel_jax.nn import heads


class VonMisesFisherHead(nnx.Module):
  """A mixture of I von Mises-Fisher densities on S^{d-1}; subclasses pick the loss.

  One dense layer gives, per component, a raw d-vector (normalised to the
  mean direction), a concentration κ = min_concentration +
  concentration_scale · softplus(raw) and, with `learn_weights`, a logit.
  The scale puts the initial κ (≈ 0.7 · scale; 70, σ ≈ 7°, for the default)
  at a useful width and lets Adam reach κ of thousands (σ ≈ 1°) within a few
  hundred steps, which a bare softplus would take thousands of steps to do.
  """

  def __init__(self, in_features: int, dim: int, num_components: int, *,
               min_concentration: float = 1.0, concentration_scale: float = 100.0,
               learn_weights: bool = False, antipodal: bool = False, rngs: nnx.Rngs):
    if dim not in (2, 3, 4):
      raise ValueError(f'dim must be 2, 3 or 4 (circle, sphere, quaternions); got {dim}.')
    if num_components < 1:
      raise ValueError(f'num_components must be >= 1; got {num_components}.')
    if min_concentration < 0 or concentration_scale <= 0:
      raise ValueError(f'need min_concentration >= 0 and concentration_scale > 0; got '
                       f'{min_concentration}, {concentration_scale}.')
    self.dim = dim
    self.num_components = num_components
    self.min_concentration = min_concentration
    self.concentration_scale = concentration_scale
    self.learn_weights = learn_weights
    self.antipodal = antipodal
    num_outputs = (dim + 1 + (1 if learn_weights else 0)) * num_components
    self.dense = nnx.Linear(in_features, num_outputs, rngs=rngs)

  def __call__(self, features: jax.Array) -> directional.VonMisesFisherMixture:
    """features [B, F] -> mean directions [B, I, d], concentrations and log weights [B, I]."""
    raw = self.dense(features)
    i, d = self.num_components, self.dim
    means = _common.normalize(raw[..., :i * d].reshape(raw.shape[:-1] + (i, d)))
    concentrations = (self.min_concentration + self.concentration_scale
                      * jax.nn.softplus(raw[..., i * d:i * (d + 1)]))
    if not self.learn_weights:
      return directional.VonMisesFisherMixture.uniform(means, concentrations)
    return directional.VonMisesFisherMixture(
        means, concentrations, jax.nn.log_softmax(raw[..., i * (d + 1):], axis=-1))

  def _loss_log_weights(self, mixture):
    # None selects the uniform-weight path of the losses.
    return mixture.log_weights if self.learn_weights else None

  def loss(self, outputs, batch):
    raise NotImplementedError

  def decode(self, outputs: directional.VonMisesFisherMixture) -> dict[str, jax.Array]:
    """-> {'mode': the most likely mode [B, d]}."""
    return {'mode': outputs.most_likely_mode(antipodal=self.antipodal)}

  def mixture(self, outputs: directional.VonMisesFisherMixture):
    return outputs


class DirectionalPropelHead(VonMisesFisherHead):
  """The vMF mixture trained with PROPEL against vMF(label, target_concentration).

  With `target='equivalents'` the ground truth is the equally weighted vMF
  mixture at every row of 'equivalent_labels' (`directional.mixture_distance`).
  """

  def __init__(self, in_features: int, dim: int, num_components: int, *,
               target_concentration: float, target: str = 'label', rngs: nnx.Rngs,
               **kwargs):
    super().__init__(in_features, dim, num_components, rngs=rngs, **kwargs)
    if not target_concentration > 0:
      raise ValueError(f'target_concentration must be > 0; got {target_concentration}.')
    if target not in ('label', 'equivalents'):
      raise ValueError(f"target must be 'label' or 'equivalents'; got {target!r}.")
    self.target_concentration = float(target_concentration)
    self.target = target

  def loss(self, outputs, batch):
    """-> [B] PROPEL (natural log) on the sphere."""
    log_weights = self._loss_log_weights(outputs)
    if self.target == 'label':
      return directional.propel_loss(
          outputs.mean_directions, outputs.concentrations, batch['label'],
          target_concentration=self.target_concentration, log_weights=log_weights,
          antipodal=self.antipodal)
    targets = batch['equivalent_labels']
    return directional.mixture_distance(
        targets, jnp.full(targets.shape[:-1], self.target_concentration, targets.dtype),
        outputs.mean_directions, outputs.concentrations, q_log_weights=log_weights,
        antipodal=self.antipodal)


class VonMisesFisherMDNHead(VonMisesFisherHead):
  """A von Mises-Fisher mixture density network: learned weights, NLL loss."""

  def __init__(self, in_features: int, dim: int, num_components: int, *,
               rngs: nnx.Rngs, **kwargs):
    kwargs['learn_weights'] = True
    super().__init__(in_features, dim, num_components, rngs=rngs, **kwargs)

  def loss(self, outputs, batch):
    """-> [B] −log p(label), density w.r.t. the surface measure of the sphere."""
    return -outputs.log_prob(batch['label'], antipodal=self.antipodal)


class EuclideanPropelHead(heads.PropelHead):
  """The Gaussian PropelHead on the label vector's components, means in (-1, 1).

  The parent's sigmoid means over [0, 1] are mapped to (-1, 1) (the range of
  a unit vector's components); `target_scale` is σ of the ground truth in
  those units (≈ radians for small angles). The loss sees (cos θ, sin θ) as
  a point in the plane, so equivalent angles far apart on the circle are far
  apart for it too, and nothing keeps the density on the circle.
  """

  def __call__(self, features: jax.Array) -> mixtures.Mixture:
    return super().__call__(features).affine(-1.0, 2.0)


class UnitVectorHead(nnx.Module):
  """d linear outputs trained with the squared error to the label vector.

  With `antipodal` (unit quaternions) the error is min(‖r − y‖², ‖r + y‖²).
  The decoder normalises the output.
  """

  def __init__(self, in_features: int, dim: int, *, antipodal: bool = False,
               rngs: nnx.Rngs):
    self.dim = dim
    self.antipodal = antipodal
    self.dense = nnx.Linear(in_features, dim, rngs=rngs)

  def __call__(self, features: jax.Array) -> jax.Array:
    """features [B, F] -> [B, d] raw vectors."""
    return self.dense(features)

  def loss(self, outputs, batch):
    """-> [B] squared Euclidean distance (mean over the d components)."""
    label = batch['label']
    error = jnp.mean(jnp.square(outputs - label), axis=-1)
    if self.antipodal:
      error = jnp.minimum(error, jnp.mean(jnp.square(outputs + label), axis=-1))
    return error

  def decode(self, outputs):
    return {'direct': _common.normalize(outputs)}

  def mixture(self, outputs):
    del outputs  # A point estimate has no density.
    return None


class AngleClassifierHead(nnx.Module):
  """Softmax over `bins` equal bins of the circle, trained with cross-entropy.

  Bin j covers [2πj/N, 2π(j+1)/N). The predicted density places each bin's
  probability in a von Mises kernel at its centre with σ = half a bin width
  (κ = 1/σ²): a smooth density on the circle whose modes, likelihood and
  spread are scored like the other heads'. The output kernel starts at zero
  (a uniform prediction), as the heatmap head's does.
  """

  def __init__(self, in_features: int, *, bins: int = 72, rngs: nnx.Rngs):
    if bins < 2:
      raise ValueError(f'bins must be >= 2; got {bins}.')
    self.bins = bins
    self.kernel_concentration = 1.0 / (math.pi / bins) ** 2
    self.dense = nnx.Linear(in_features, bins, kernel_init=nnx.initializers.zeros_init(),
                            rngs=rngs)

  def bin_centres(self) -> jax.Array:
    """[bins, 2] unit vectors at the bin centres."""
    return directional.angle_to_vector(
        (jnp.arange(self.bins, dtype=jnp.float32) + 0.5) * (2.0 * math.pi / self.bins))

  def __call__(self, features: jax.Array) -> jax.Array:
    """features [B, F] -> [B, bins] logits."""
    return self.dense(features)

  def label_bins(self, labels: jax.Array) -> jax.Array:
    """[B, 2] unit vectors -> [B] index of the bin holding each angle."""
    angle = jnp.mod(directional.vector_to_angle(labels), 2.0 * math.pi)
    return jnp.clip(jnp.floor(angle * (self.bins / (2.0 * math.pi))).astype(jnp.int32),
                    0, self.bins - 1)

  def loss(self, outputs, batch):
    """-> [B] cross-entropy of the label's bin."""
    log_p = jax.nn.log_softmax(outputs, axis=-1)
    return -jnp.take_along_axis(log_p, self.label_bins(batch['label'])[..., None],
                                axis=-1)[..., 0]

  def decode(self, outputs):
    """-> {'argmax': the centre of the most probable bin [B, 2]}."""
    return {'argmax': self.bin_centres()[jnp.argmax(outputs, axis=-1)]}

  def mixture(self, outputs) -> directional.VonMisesFisherMixture:
    shape = outputs.shape
    return directional.VonMisesFisherMixture(
        jnp.broadcast_to(self.bin_centres(), shape + (2,)),
        jnp.full(shape, self.kernel_concentration, outputs.dtype),
        jax.nn.log_softmax(outputs, axis=-1))


class RotationClassifierHead(nnx.Module):
  """Softmax over the 72·8^level cells of `rotation_grid.grid(level)`, cross-entropy.

  The rotation analogue of `AngleClassifierHead` (Implicit-PDF's equivolumetric
  grid, here as the classes of a classifier): the class of a label is its
  nearest grid rotation (q and −q alike), and the predicted density is a
  `rotation_grid.GridDistribution`, p_g · G w.r.t. the normalised Haar
  measure on cell g. The output kernel starts at zero: a uniform prediction.
  """

  def __init__(self, in_features: int, *, level: int = 2, rngs: nnx.Rngs):
    if level < 0:
      raise ValueError(f'level must be >= 0; got {level}.')
    self.level = level
    self.dense = nnx.Linear(in_features, rotation_grid.num_cells(level),
                            kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

  def __call__(self, features: jax.Array) -> jax.Array:
    """features [B, F] -> [B, G] logits."""
    return self.dense(features)

  def loss(self, outputs, batch):
    """-> [B] cross-entropy of the label's nearest cell."""
    cell = rotation_grid.nearest_cell(batch['label'], jnp.asarray(rotation_grid.grid(self.level)))
    log_p = jax.nn.log_softmax(outputs, axis=-1)
    return -jnp.take_along_axis(log_p, cell[..., None], axis=-1)[..., 0]

  def decode(self, outputs):
    """-> {'argmax': the centre quaternion of the most probable cell [B, 4]}."""
    return {'argmax': self.mixture(outputs).most_likely_cell()}

  def mixture(self, outputs) -> rotation_grid.GridDistribution:
    return rotation_grid.GridDistribution(outputs)
