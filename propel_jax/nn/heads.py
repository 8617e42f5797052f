"""Output heads: the layer after the backbone's features, its loss and its decoders.

Every head implements the same protocol, so that the training loop and the
evaluation do not depend on which head they run:

  head(features)             -> outputs: a `mixtures.Mixture` for the mixture
                                heads, an array for the others
  head.loss(outputs, batch)  -> [B] per-example loss; labels in [0, 1]
  head.decode(outputs)       -> {decoder name: [B, n] point estimate in [0, 1]}
  head.mixture(outputs)      -> the predicted `mixtures.Mixture` in [0, 1]
                                units, or None for heads without a density

`batch` is the input pipeline's dict: 'label' [B, n] and
'equivalent_labels' [B, K, n], both normalised to [0, 1].

Heads:
  PropelHead   I Gaussians (means, scales or full covariances, optionally
               weights) trained with PROPEL, as in Asad et al. (ICPR 2020).
  MDNHead      the same mixture output trained by negative log-likelihood.
  DirectHead   one point per example trained with MSE or L1 (the paper's MSE
               baseline on the same backbone).
  HeatmapHead  the paper's HEATMAP-MSE baseline: a discretised target grid
               regressed onto a Gaussian bump around the label.
"""

import math

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from propel_jax import losses
from propel_jax import mixtures

_SCALE_ACTIVATIONS = {'softplus': jax.nn.softplus, 'sigmoid': jax.nn.sigmoid}
COVARIANCES = ('diagonal', 'full')


class MixtureHead(nnx.Module):
  """A mixture of I Gaussians over [0, 1]^n; subclasses pick the loss.

  One dense layer gives, per component, n means (through a sigmoid, since the
  labels are normalised to [0, 1] as in the paper), n scales (softplus or the
  paper's sigmoid, plus `min_scale` so that the density never degenerates)
  and, with `learn_weights`, one mixture logit. Without learned weights every
  component weighs 1/I, as in the paper.

  With `covariance='full'` the n scales become the positive diagonal of each
  component's lower-triangular Cholesky factor L (Σ = L Lᵀ) and n(n-1)/2 more
  outputs, unconstrained, fill its strict lower triangle: the mixture's
  scales are then [B, I, n, n] (see `propel_jax.mixtures`). The layer has
  (F + 1)·I·(2n + n(n-1)/2·full + learn_weights) parameters.
  """

  def __init__(self, in_features: int, num_targets: int, num_components: int, *,
               scale_activation: str = 'softplus', min_scale: float = 1e-3,
               learn_weights: bool = False, covariance: str = 'diagonal',
               rngs: nnx.Rngs):
    if scale_activation not in _SCALE_ACTIVATIONS:
      raise ValueError(f'scale_activation must be one of {sorted(_SCALE_ACTIVATIONS)}; '
                       f'got {scale_activation!r}.')
    if covariance not in COVARIANCES:
      raise ValueError(f'covariance must be one of {COVARIANCES}; got {covariance!r}.')
    if num_components < 1 or num_targets < 1:
      raise ValueError(f'num_components ({num_components}) and num_targets '
                       f'({num_targets}) must be >= 1.')
    if min_scale < 0:
      raise ValueError(f'min_scale must be >= 0; got {min_scale}.')
    self.num_targets = num_targets
    self.num_components = num_components
    self.scale_activation = scale_activation
    self.min_scale = min_scale
    self.learn_weights = learn_weights
    self.covariance = covariance
    per_component = 2 * num_targets + (
        num_targets * (num_targets - 1) // 2 if covariance == 'full' else 0) + (
            1 if learn_weights else 0)
    self.dense = nnx.Linear(in_features, num_components * per_component, rngs=rngs)

  def __call__(self, features: jax.Array) -> mixtures.Mixture:
    """features [B, F] -> means [B, I, n], scales [B, I, n] or [B, I, n, n], log weights."""
    raw = self.dense(features)
    i, n = self.num_components, self.num_targets
    shape = raw.shape[:-1] + (i, n)
    means = jax.nn.sigmoid(raw[..., :i * n].reshape(shape))
    scales = _SCALE_ACTIVATIONS[self.scale_activation](
        raw[..., i * n:2 * i * n].reshape(shape)) + self.min_scale
    end = 2 * i * n
    if self.covariance == 'full':
      num_below = n * (n - 1) // 2
      below = raw[..., end:end + i * num_below].reshape(raw.shape[:-1] + (i, num_below))
      scales = _cholesky_factor(scales, below)
      end += i * num_below
    if self.learn_weights:
      log_weights = jax.nn.log_softmax(raw[..., end:], axis=-1)
      return mixtures.Mixture(means, scales, log_weights)
    return mixtures.Mixture.uniform(means, scales)

  def _loss_log_weights(self, mixture):
    # None selects the losses' uniform-weight path; the weights are then
    # constants anyway, so nothing is lost.
    return mixture.log_weights if self.learn_weights else None

  def loss(self, outputs, batch):
    raise NotImplementedError

  def decode(self, outputs: mixtures.Mixture) -> dict[str, jax.Array]:
    """-> {'mode': the most likely mode, 'mean': the mixture mean}, each [B, n]."""
    return {'mode': outputs.most_likely_mode(), 'mean': outputs.mean()}

  def mixture(self, outputs: mixtures.Mixture) -> mixtures.Mixture:
    return outputs


def _cholesky_factor(diagonal, below):
  """[..., n] diagonal and [..., n(n-1)/2] strict lower triangle -> [..., n, n] L."""
  n = diagonal.shape[-1]
  rows, cols = np.tril_indices(n, k=-1)
  factor = diagonal[..., None] * jnp.eye(n, dtype=diagonal.dtype)
  return factor.at[..., rows, cols].set(below)


class PropelHead(MixtureHead):
  """The mixture trained with PROPEL against N(label, target_scale²).

  With `target='equivalents'` the ground truth is instead the equally
  weighted mixture of Gaussians at every row of 'equivalent_labels' (the
  general mixture form of the distance), which states an ambiguous label's
  symmetry in the loss itself; duplicate rows count with their multiplicity.
  """

  def __init__(self, in_features: int, num_targets: int, num_components: int, *,
               target_scale, target: str = 'label', rngs: nnx.Rngs, **kwargs):
    super().__init__(in_features, num_targets, num_components, rngs=rngs, **kwargs)
    if target not in ('label', 'equivalents'):
      raise ValueError(f"target must be 'label' or 'equivalents'; got {target!r}.")
    # NumPy, not jnp: the head may be built under a trace (nnx.eval_shape, jit).
    scale = tuple(float(s) for s in np.ravel(np.asarray(target_scale, np.float64)))
    if len(scale) not in (1, num_targets) or min(scale) <= 0:
      raise ValueError(f'target_scale must be one positive number or {num_targets} '
                       f'(one per target); got {target_scale!r}.')
    self.target_scale = scale[0] if len(scale) == 1 else scale
    self.target = target

  def loss(self, outputs, batch):
    """-> [B] PROPEL (natural log) in normalised label units."""
    log_weights = self._loss_log_weights(outputs)
    # [1, n] (or a scalar): per target dimension, whatever the batch size.
    target_scale = jnp.reshape(jnp.asarray(self.target_scale), (1, -1))
    if self.target == 'label':
      return losses.propel_loss(outputs.means, outputs.scales, batch['label'],
                                target_scale=target_scale, log_weights=log_weights)
    targets = batch['equivalent_labels']
    target_scales = jnp.broadcast_to(target_scale.astype(targets.dtype), targets.shape)
    return losses.mixture_distance(targets, target_scales, outputs.means,
                                   outputs.scales, q_log_weights=log_weights)


class MDNHead(MixtureHead):
  """A mixture density network: learned weights, negative log-likelihood loss."""

  def __init__(self, in_features: int, num_targets: int, num_components: int, *,
               rngs: nnx.Rngs, **kwargs):
    kwargs['learn_weights'] = True
    super().__init__(in_features, num_targets, num_components, rngs=rngs, **kwargs)

  def loss(self, outputs, batch):
    """-> [B] -log p(label) in normalised label units."""
    return losses.mixture_nll(outputs.means, outputs.scales, batch['label'],
                              log_weights=outputs.log_weights)


class DirectHead(nnx.Module):
  """Direct regression: n outputs through a sigmoid, trained with MSE or L1."""

  _LOSSES = {'mse': losses.mse_loss, 'l1': losses.l1_loss}

  def __init__(self, in_features: int, num_targets: int, *, loss: str = 'mse',
               rngs: nnx.Rngs):
    if loss not in self._LOSSES:
      raise ValueError(f'loss must be one of {sorted(self._LOSSES)}; got {loss!r}.')
    self.num_targets = num_targets
    self.loss_name = loss
    self.dense = nnx.Linear(in_features, num_targets, rngs=rngs)

  def __call__(self, features: jax.Array) -> jax.Array:
    """features [B, F] -> [B, n] predictions in (0, 1)."""
    return jax.nn.sigmoid(self.dense(features))

  def loss(self, outputs, batch):
    return self._LOSSES[self.loss_name](outputs, batch['label'])

  def decode(self, outputs):
    return {'direct': outputs}

  def mixture(self, outputs):
    del outputs  # A point estimate has no density.
    return None


class HeatmapHead(nnx.Module):
  """The HEATMAP-MSE baseline: scores on a grid of bin centres over [0, 1]^n.

  Layouts:
    'joint'     one score per cell of the bins^n grid (the paper's 2-D
                heatmap for n = 2; 100×100 bins is 10⁴ outputs, which is where
                the baseline's extra parameters come from).
    'marginal'  n independent 1-D heatmaps of `bins` scores each. The joint
                grid grows as bins^n (10⁶ outputs for n = 3 at 100 bins), so
                'auto' uses this layout for n >= 3 and 'joint' below.
  The target is exp(-|c − y|² / 2σ²) at each bin centre c (peak 1 at the
  label, σ = `sigma` in normalised units); the loss is the mean squared error
  over cells, on linear (unbounded) scores.

  The output kernel starts at zero and σ defaults to 0.05 (5 bins of 100):
  with random initial scores on 10⁴ mostly-background cells, Adam shrinks the
  backbone's ReLU features to zero within ~100 steps and the head predicts one
  cell for every image; a zero kernel and a bump a few bins wide keep the
  localising signal (measurements: docs/benchmarks.md).

  Decoders: 'argmax' (the centre of the best cell, so quantised to
  the bin width) and 'soft_argmax' (the centroid of the positive scores
  within `window` = 3σ of the argmax on every axis: not quantised, and, unlike
  a softmax over the whole grid, not pulled towards the middle by the many
  background cells).

  `mixture` returns None: the scores are a regression target, not a
  normalised density, so NLL, CRPS and interval coverage are reported only
  for the mixture heads.
  """

  def __init__(self, in_features: int, num_targets: int, *, bins: int = 100,
               layout: str = 'auto', sigma: float = 0.05, rngs: nnx.Rngs):
    if layout == 'auto':
      layout = 'joint' if num_targets <= 2 else 'marginal'
    if layout not in ('joint', 'marginal'):
      raise ValueError(f"heatmap layout must be 'auto', 'joint' or 'marginal'; got {layout!r}.")
    if bins < 2 or sigma <= 0:
      raise ValueError(f'heatmap needs bins >= 2 and sigma > 0; got bins={bins}, '
                       f'sigma={sigma}.')
    self.num_targets = num_targets
    self.bins = bins
    self.layout = layout
    self.sigma = sigma
    self.window = 3.0 * sigma
    self.dense = nnx.Linear(in_features, math.prod(self.grid_shape),
                            kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

  @property
  def grid_shape(self):
    """(bins,) * n for 'joint', (n, bins) for 'marginal'."""
    if self.layout == 'joint':
      return (self.bins,) * self.num_targets
    return (self.num_targets, self.bins)

  def bin_centres(self):
    """[bins] centres of the equal bins that tile [0, 1]."""
    return (jnp.arange(self.bins, dtype=jnp.float32) + 0.5) / self.bins

  def __call__(self, features: jax.Array) -> jax.Array:
    """features [B, F] -> [B, *grid_shape] raw scores."""
    scores = self.dense(features)
    return scores.reshape(scores.shape[:-1] + self.grid_shape)

  def target_heatmap(self, labels):
    """labels [B, n] in [0, 1] -> [B, *grid_shape] Gaussian bumps, peak 1."""
    # [B, n, bins]: the Gaussian is separable, so the joint target is the
    # outer product of the per-axis bumps.
    per_axis = jnp.exp(-0.5 * jnp.square(
        (self.bin_centres() - labels[..., None]) / self.sigma))
    if self.layout == 'marginal':
      return per_axis
    joint = per_axis[..., 0, :]
    for axis in range(1, self.num_targets):
      bump = per_axis[..., axis, :]
      joint = joint[..., None] * bump.reshape(
          bump.shape[:-1] + (1,) * axis + (self.bins,))
    return joint

  def loss(self, outputs, batch):
    """-> [B] mean squared error between scores and the target heatmap."""
    scores = outputs
    batch_shape = scores.shape[:-len(self.grid_shape)]
    target = self.target_heatmap(batch['label'])
    return losses.mse_loss(scores.reshape(batch_shape + (-1,)),
                           target.reshape(batch_shape + (-1,)))

  def decode(self, outputs):
    """-> {'argmax', 'soft_argmax'}, each [B, n] in [0, 1]."""
    scores = outputs
    centres = self.bin_centres()
    n = self.num_targets
    if self.layout == 'joint':
      batch_shape = scores.shape[:-n]
      flat = scores.reshape(batch_shape + (-1,))
      cells = jnp.unravel_index(jnp.argmax(flat, axis=-1), self.grid_shape)
      argmax = jnp.stack([centres[c] for c in cells], axis=-1)
    else:
      argmax = centres[jnp.argmax(scores, axis=-1)]
    # [B, n, bins]: which bin centres lie within the window on each axis.
    in_window = jnp.abs(centres - argmax[..., None]) <= self.window
    weights = jnp.maximum(scores, 0.0)
    if self.layout == 'joint':
      for d in range(n):
        weights = weights * in_window[..., d, :].reshape(
            batch_shape + (1,) * d + (self.bins,) + (1,) * (n - 1 - d))
      first = len(batch_shape)
      weights = jnp.stack(
          [weights.sum(axis=tuple(first + a for a in range(n) if a != d))
           for d in range(n)], axis=-2)
    else:
      weights = weights * in_window
    total = weights.sum(axis=-1)
    soft = (weights @ centres) / jnp.where(total > 0, total, 1.0)
    # A window with no positive score has no centroid: keep the argmax there.
    return {'argmax': argmax, 'soft_argmax': jnp.where(total > 0, soft, argmax)}

  def mixture(self, outputs):
    del outputs  # Scores on a grid, not a density: see the class docstring.
    return None
