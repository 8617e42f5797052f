"""PROPEL, the Gaussian-mixture distance it is built on, and baseline losses.

PROPEL (Asad et al., ICPR 2020) is the distance of Sfikas et al. (ICANN 2005),

    D(p, q) = -log[ 2 ∫ p q dx / ∫ (p² + q²) dx ],

between p = N(y, diag(s²)) centred on the label y and the mixture q that a
network predicts. For Gaussian mixtures every integral is a sum of Gaussian
overlaps, in closed form. Components have diagonal covariances (scales
[..., I, n], standard deviations) or full ones (scales [..., I, n, n],
lower-triangular Cholesky factors; see `propel_jax.mixtures`). The losses are
per example (no reduction), like optax's, and take mixture weights as logits.

Every term is computed in log space, so the loss and its gradient stay finite
for labels thousands of standard deviations away; the I×I self terms (and
the cross term of full covariances) have closed-form derivatives. Shapes are
checked at trace time, values are not (a zero scale gives inf/NaN, a
negative one a wrong but finite value, NaN propagates): `check_inputs` under
`jax.experimental.checkify` catches those. bfloat16/float16 inputs are
computed in float32. For speed, see docs/benchmarks.md.
"""

from typing import NamedTuple

import jax
from jax import lax
from jax.experimental import checkify
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from propel_jax import _common
from propel_jax import _diagonal
from propel_jax import _full_covariance
from propel_jax import _linalg
from propel_jax import _shapes
from propel_jax import mixtures



class _Diagonal(NamedTuple):
  """One diagonal mixture: means, variances, 1/√(2 variances) [n, I]; log weights [I]."""
  means: jax.Array
  variances: jax.Array
  roots: jax.Array
  log_weights: jax.Array


class _Full(NamedTuple):
  """One full-covariance mixture: means [n, I], covariance entries [m, I]; log weights [I]."""
  means: jax.Array
  covariances: jax.Array
  log_weights: jax.Array


def _as_full(mixture):
  """A `_Full` for either kind (a diagonal one gets zero off-diagonal entries)."""
  if isinstance(mixture, _Full):
    return mixture
  zeros = jnp.zeros_like(mixture.variances[0])
  entries = [mixture.variances[r] if r == c else zeros
             for r, c in _linalg.tril_positions(mixture.means.shape[0])]
  return _Full(mixture.means, jnp.stack(entries), mixture.log_weights)


def _log_self_integral(mixture):
  """log ∫p² for one mixture of either kind."""
  if isinstance(mixture, _Full):
    return _full_covariance.log_self_overlap_full(*mixture)
  return _diagonal.log_self_overlap(*mixture)


def _log_cross_integral(p, q):
  """log ∫pq; by the full-covariance path if either side has full covariances."""
  if isinstance(p, _Diagonal) and isinstance(q, _Diagonal):
    return _diagonal.log_cross_overlap(p.means, p.variances, p.log_weights, q.means,
                              q.variances, q.log_weights)
  return _full_covariance.log_cross_overlap_full(*_as_full(p), *_as_full(q))


def _distance(p, q):
  """D(p, q) for one pair of mixtures, each a `_Diagonal` or a `_Full`."""
  return _common.distance(_log_self_integral(p), _log_self_integral(q),
                          _log_cross_integral(p, q))


# Jitted so that eager calls compile once per shape instead of dispatching the
# unrolled per-dimension loops op by op; inside an outer jit it is inlined.
_batched_distance = jax.jit(jax.vmap(_distance))


def _prefixed(prefix):
  return {role: prefix + role for role in ('means', 'scales', 'log_weights')}


def _flatten(means, scales, log_weights, batch, dtype):
  """A batch of mixtures [..., I, n] -> a `_Diagonal` or `_Full` of [B, ...] arrays.

  Means [B, n, I]; variances and 1/√(2 variances) [B, n, I], or the
  covariances' lower-triangle entries [B, m, I]; normalised log weights
  [B, I].
  """
  means = means.astype(dtype)
  if log_weights is not None:
    log_weights = jnp.asarray(log_weights, dtype)
  log_weights = mixtures.normalized_log_weights(means, log_weights)
  num = means.shape[-2]

  def flat(a):  # [..., I, k] -> [B, k, I]
    a = jnp.broadcast_to(a, batch + a.shape[-2:])
    return jnp.swapaxes(a.reshape(-1, *a.shape[-2:]), -1, -2)

  log_weights = jnp.broadcast_to(log_weights, batch + (num,)).reshape(-1, num)
  scales = scales.astype(dtype)
  if mixtures.is_full_covariance(means, scales):
    rows, cols = np.tril_indices(means.shape[-1])
    covariances = mixtures.component_covariances(means, scales)[..., rows, cols]
    return _Full(flat(means), flat(covariances), log_weights)
  variances = jnp.square(scales)
  arrays = (flat(means), flat(variances), flat(lax.rsqrt(2.0 * variances)))
  if num > 1:  # The pair kernels are where the layout matters.
    arrays = tuple(map(_diagonal.contiguous_on_cpu, arrays))
  return _Diagonal(*arrays, log_weights)


def _checked_distance(p, q, batch, dtype):
  """D(p, q) for validated (means, scales, log_weights) triples -> [*batch]."""
  distance = _batched_distance(_flatten(*p, batch, dtype),
                               _flatten(*q, batch, dtype))
  return distance.reshape(batch)


def mixture_distance(p_means: ArrayLike, p_scales: ArrayLike,
                     q_means: ArrayLike, q_scales: ArrayLike, *,
                     p_log_weights: ArrayLike | None = None,
                     q_log_weights: ArrayLike | None = None) -> jax.Array:
  """Closed-form distance -log[2∫pq / ∫(p² + q²)] between Gaussian mixtures.

  p and q are Gaussian mixtures, each with its own number of components and
  weights, and each with diagonal or full covariances (independently: a
  side's scales [..., I, n] are standard deviations, [..., I, n, n]
  lower-triangular Cholesky factors of the covariances, of which only the
  lower triangle is read). `propel_loss` is the case where p is one Gaussian.
  The general form serves ambiguous labels (p a mixture over the equally
  valid answers) and learned mixture weights. p_means and q_means must have
  the same number of axes; their leading (batch) axes broadcast, size 1
  included (the rule of `propel_loss`).

  For full covariances each pair's log-overlap log N(μ_a; μ_b, Σ_a + Σ_b) is
  computed from a Cholesky factorisation of Σ_a + Σ_b (a triangular solve for
  the Mahalanobis term, the sum of log-pivots for the determinant); where
  both sides are diagonal, the faster per-dimension path is used.

  Args:
    p_means: [..., I, n] component means of p.
    p_scales: [..., I, n] component standard deviations of p (> 0), or
      [..., I, n, n] Cholesky factors (nonzero diagonal).
    q_means: [..., J, n] component means of q.
    q_scales: [..., J, n] or [..., J, n, n], as p_scales.
    p_log_weights: optional [..., I] logits of p's weights (default 1/I each).
    q_log_weights: optional [..., J] logits of q's weights (default 1/J each).

  Returns:
    [...] the distance, ≥ 0 and 0 iff p = q, in natural log; float32 (float64
    for float64 inputs).

  Raises:
    ValueError: if the shapes do not fit together or an input is complex,
      naming the arguments and their shapes.

  References:
    Sfikas et al., "An analytic distance metric for Gaussian mixture models
    with application in image retrieval", ICANN 2005.

    Asad et al., "PROPEL: Probabilistic Parametric Regression Loss for
    Convolutional Neural Networks", ICPR 2020, arXiv:1807.10937.

  Examples:
    A label that is either +1 or -1 (p), against a model with a component on
    each (q) and one with both components on +1:

    >>> import jax.numpy as jnp
    >>> from propel_jax import losses
    >>> p_means = jnp.array([[[1.0], [-1.0]]])  # [B=1, I=2, n=1]
    >>> scales = jnp.full((1, 2, 1), 0.1)
    >>> both = losses.mixture_distance(p_means, scales, p_means, scales)
    >>> [round(abs(v), 4) for v in both.tolist()]
    [0.0]
    >>> one = losses.mixture_distance(p_means, scales,
    ...                               jnp.array([[[1.0], [1.0]]]), scales)
    >>> [round(v, 4) for v in one.tolist()]  # log 1.5: half the mass missing
    [0.4055]

    A diagonal p against a full-covariance q: Cholesky factors of the
    diagonal scales give the same distance.

    >>> tril = jnp.full((1, 2, 1, 1), 0.1)  # [B, J, n, n]
    >>> same = losses.mixture_distance(p_means, scales, p_means, tril)
    >>> [round(abs(v), 4) for v in same.tolist()]
    [0.0]
  """
  (p_means, p_scales, p_log_weights, q_means, q_scales,
   q_log_weights) = _shapes.as_arrays(p_means, p_scales, p_log_weights,
                                      q_means, q_scales, q_log_weights)
  mixtures.check_shapes(p_means, p_scales, p_log_weights,
                        names=_prefixed('p_'))
  mixtures.check_shapes(q_means, q_scales, q_log_weights,
                        names=_prefixed('q_'))
  if p_means.ndim != q_means.ndim:
    fewer = 'p' if p_means.ndim < q_means.ndim else 'q'
    raise ValueError(
        f'p_means {p_means.shape} and q_means {q_means.shape} must have the '
        'same number of axes ([..., I, n] and [..., J, n]; leading axes '
        f'broadcast, size 1 included). If {fewer} is one Gaussian per '
        f'example, add its component axis with {fewer}_means[..., None, :] '
        f'and {fewer}_scales[..., None, :]; to share one {fewer} across the '
        f'batch, use {fewer}_means[None] and {fewer}_scales[None].')
  if p_means.shape[-1] != q_means.shape[-1]:
    raise ValueError(f'p_means {p_means.shape} and q_means {q_means.shape} '
                     'must have the same target dimension n (last axis).')
  batch = _shapes.batch_shape(p_means=(p_means.shape, p_means.shape[:-2]),
                       q_means=(q_means.shape, q_means.shape[:-2]))
  dtype = _shapes.compute_dtype(p_means, p_scales, q_means, q_scales)
  return _checked_distance((p_means, p_scales, p_log_weights),
                           (q_means, q_scales, q_log_weights), batch, dtype)


def propel_loss(means: ArrayLike, scales: ArrayLike, targets: ArrayLike, *,
                target_scale: ArrayLike,
                log_weights: ArrayLike | None = None) -> jax.Array:
  """PROPEL: the mixture distance between N(targets, target_scale²) and a mixture.

  L = -log[2∫P_gt P_m / ∫(P_gt² + P_m²)] with P_gt = N(y, diag(s²)) and P_m
  the mixture; exactly the paper's definition for any I ≥ 1 and n ≥ 1, in
  natural log. The components may have full covariances (the paper's future
  work): scales with one axis more than means, [..., I, n, n], hold their
  lower-triangular Cholesky factors (distrax's `scale_tril`; only the lower
  triangle is read), as scipy's `multivariate_normal` tells a 2-D `cov` from
  a 1-D one; see `mixture_distance` for how it is computed.

  The shapes follow the rule of both mixture families (docs/loss.md): axes
  match by rank, sizes broadcast. means has exactly one more axis (I) than
  targets; the leading (batch) axes broadcast, size 1 included. target_scale
  stays diagonal: a scalar; one per example, [...] with the batch axes of
  targets ([B]) or [..., 1] with all of their axes ([B, 1]); one per
  dimension, [n]; or per example and dimension, [..., n]. A 1-D target_scale
  of length n is ambiguous when the batch is [n] too, and raises. Array-likes
  (lists included) are accepted everywhere.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations (> 0), or
      [..., I, n, n] lower-triangular Cholesky factors of the component
      covariances (nonzero diagonal).
    targets: [..., n] labels.
    target_scale: standard deviation of the ground-truth Gaussian (> 0): a
      scalar, [n], [...], [..., 1] or [..., n], as above.
    log_weights: optional [..., I] logits of the mixture weights (default:
      equal weights 1/I, the paper's choice).

  Returns:
    [...] per-example loss ≥ 0; float32 (float64 for float64 inputs).

  Raises:
    ValueError: if the shapes do not fit together or an input is complex,
      naming the arguments, their shapes and the likely fix.

  References:
    Asad et al., "PROPEL: Probabilistic Parametric Regression Loss for
    Convolutional Neural Networks", ICPR 2020, arXiv:1807.10937.

    Sfikas et al., "An analytic distance metric for Gaussian mixture models
    with application in image retrieval", ICANN 2005.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import losses
    >>> means = jnp.array([[[0.0, 0.0], [1.0, 1.0]]] * 3)  # [B=3, I=2, n=2]
    >>> scales = jnp.full((3, 2, 2), 0.2)
    >>> targets = jnp.zeros((3, 2))                       # [B, n]
    >>> loss = losses.propel_loss(means, scales, targets, target_scale=0.2)
    >>> [round(v, 4) for v in loss.tolist()]  # half the mass far off: log 1.5
    [0.4055, 0.4055, 0.4055]
    >>> per_example = jnp.array([0.1, 0.2, 0.4])          # [B]
    >>> loss = losses.propel_loss(means, scales, targets,
    ...                           target_scale=per_example)
    >>> loss.shape
    (3,)

    One component tilted along x_0 = x_1 (correlation 0.9) is close to a
    target on that line and far from one across it:

    >>> tril = jnp.array([[[[0.2, 0.0], [0.18, 0.087]]]])  # [B=1, I=1, n, n]
    >>> targets = jnp.array([[0.2, 0.2], [0.2, -0.2]])    # [B=2, n]
    >>> loss = losses.propel_loss(jnp.zeros((1, 1, 2)), tril, targets,
    ...                           target_scale=0.05)
    >>> [round(v, 2) for v in loss.tolist()]
    [1.46, 7.12]
  """
  means, scales, targets, target_scale, log_weights = _shapes.as_arrays(
      means, scales, targets, target_scale, log_weights)
  mixtures.check_shapes(means, scales, log_weights, targets,
                        names={'x': 'targets'})
  gt_scale = _target_scale(target_scale, targets)
  batch = _shapes.batch_shape(targets=(targets.shape, targets.shape[:-1]),
                       target_scale=(target_scale.shape, gt_scale.shape[:-1]),
                       means=(means.shape, means.shape[:-2]))
  dtype = _shapes.compute_dtype(means, scales, targets)
  shape = batch + targets.shape[-1:]
  targets = jnp.broadcast_to(targets.astype(dtype), shape)
  gt_scale = jnp.broadcast_to(gt_scale.astype(dtype), shape)
  return _checked_distance(
      (targets[..., None, :], gt_scale[..., None, :], None),
      (means, scales, log_weights), batch, dtype)


def _target_scale(target_scale, targets):
  """target_scale by the shared width rule: it broadcasts against targets [..., n]."""
  return _shapes.target_width(target_scale, targets.shape, name='target_scale',
                              per_dimension=True)


def mse_loss(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
  """Mean squared error over the target dimensions.

  Args:
    predictions: [..., n].
    targets: [..., n], the same shape.

  Returns:
    [...] per-example loss.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import losses
    >>> losses.mse_loss(jnp.array([[1.0, 3.0]]), jnp.zeros((1, 2))).tolist()
    [5.0]
  """
  predictions, targets = _shapes.as_arrays(predictions, targets)
  _check_same_shape(predictions, targets)
  return jnp.mean(jnp.square(predictions - targets), axis=-1)


def l1_loss(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
  """Mean absolute error over the target dimensions.

  Args:
    predictions: [..., n].
    targets: [..., n], the same shape.

  Returns:
    [...] per-example loss.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import losses
    >>> losses.l1_loss(jnp.array([[1.0, -3.0]]), jnp.zeros((1, 2))).tolist()
    [2.0]
  """
  predictions, targets = _shapes.as_arrays(predictions, targets)
  _check_same_shape(predictions, targets)
  return jnp.mean(jnp.abs(predictions - targets), axis=-1)


def _check_same_shape(predictions, targets):
  _shapes.reject_complex(predictions=predictions, targets=targets)
  shape = predictions.shape
  if shape != targets.shape:
    raise ValueError(f'predictions shape {shape} must equal '
                     f'targets shape {targets.shape} ([..., n]).')
  if not shape or shape[-1] == 0:
    raise ValueError(f'predictions and targets must be [..., n] with n >= 1; '
                     f'got shape {shape}.')


def mixture_nll(means: ArrayLike, scales: ArrayLike, targets: ArrayLike, *,
                log_weights: ArrayLike | None = None) -> jax.Array:
  """Negative log-likelihood of the targets under the mixture (the MDN loss).

  means has exactly one more axis (I) than targets; the leading axes
  broadcast, size 1 included (the rule of `propel_loss`).

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations (> 0), or
      [..., I, n, n] lower-triangular Cholesky factors of the covariances.
    targets: [..., n].
    log_weights: optional [..., I] logits of the weights (default 1/I each).

  Returns:
    [...] per-example -log p(targets).

  Raises:
    ValueError: if the shapes do not fit together, naming them.

  References:
    Bishop, "Mixture Density Networks", Aston University NCRG/94/004, 1994.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import losses
    >>> means = jnp.zeros((2, 1, 1))  # [B=2, I=1, n=1]
    >>> nll = losses.mixture_nll(means, jnp.ones_like(means), jnp.zeros((2, 1)))
    >>> [round(v, 4) for v in nll.tolist()]  # ½ log 2π
    [0.9189, 0.9189]
  """
  means, scales, targets, log_weights = _shapes.as_arrays(
      means, scales, targets, log_weights)
  mixtures.check_shapes(means, scales, log_weights, targets,
                        names={'x': 'targets'})
  return -mixtures.log_prob(targets, means, scales, log_weights)


def check_inputs(means: ArrayLike, scales: ArrayLike,
                 targets: ArrayLike | None = None, *,
                 target_scale: ArrayLike | None = None,
                 log_weights: ArrayLike | None = None) -> None:
  """Value checks for the loss inputs, for use under `jax.experimental.checkify`.

  The losses check shapes but not values (see the module docstring). Call
  this inside a function wrapped with `checkify.checkify` to get an error
  naming the problem instead of a silent NaN; outside jit (eagerly) a failed
  check raises right away. Shapes are checked as by `propel_loss`.

  Args:
    means: [..., I, n], must be finite.
    scales: [..., I, n], must be finite and > 0; or [..., I, n, n] Cholesky
      factors, whose lower triangle must be finite with a nonzero diagonal.
    targets: optional [..., n], must be finite.
    target_scale: optional scalar, [n], [...], [..., 1] or [..., n] (see
      `propel_loss`), must be finite and > 0.
    log_weights: optional [..., I] logits, must not be NaN or +inf, with at
      least one finite entry per mixture.

  Raises:
    ValueError: if the shapes do not fit together (at trace time).

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jax.experimental import checkify
    >>> from propel_jax import losses
    >>> def checked_loss(means, scales, targets):
    ...   losses.check_inputs(means, scales, targets, target_scale=0.1)
    ...   return losses.propel_loss(means, scales, targets, target_scale=0.1)
    >>> means = jnp.zeros((4, 2, 3))
    >>> err, loss = jax.jit(checkify.checkify(checked_loss))(
    ...     means, jnp.zeros_like(means), jnp.zeros((4, 3)))
    >>> print(err.get().split(' (')[0])
    scales must be finite and > 0; smallest is 0.0.
  """
  means, scales, targets, target_scale, log_weights = _shapes.as_arrays(
      means, scales, targets, target_scale, log_weights)
  mixtures.check_shapes(means, scales, log_weights, targets,
                        names={'x': 'targets'})
  if targets is not None and target_scale is not None:
    _target_scale(target_scale, targets)
  checkify.check(jnp.all(jnp.isfinite(means)), 'means contain NaN or inf.')
  if mixtures.is_full_covariance(means, scales):
    diagonal = jnp.abs(jnp.diagonal(scales, axis1=-2, axis2=-1))
    checkify.check(
        jnp.all(jnp.isfinite(jnp.tril(scales))) & jnp.all(diagonal > 0),
        'scales (Cholesky factors) must have a finite lower triangle and a '
        'nonzero diagonal; smallest |diagonal entry| is {m}.',
        m=jnp.min(diagonal, initial=jnp.inf))
  else:
    checkify.check(jnp.all(jnp.isfinite(scales) & (scales > 0)),
                   'scales must be finite and > 0; smallest is {m}.',
                   m=jnp.min(scales, initial=jnp.inf))
  if targets is not None:
    checkify.check(jnp.all(jnp.isfinite(targets)), 'targets contain NaN or inf.')
  if target_scale is not None:
    checkify.check(jnp.all(jnp.isfinite(target_scale) & (target_scale > 0)),
                   'target_scale must be finite and > 0; got {s}.',
                   s=jnp.min(target_scale, initial=jnp.inf))
  if log_weights is not None:
    checkify.check(jnp.all(~jnp.isnan(log_weights) & (log_weights < jnp.inf)),
                   'log_weights contain NaN or +inf.')
    checkify.check(jnp.all(jnp.max(log_weights, axis=-1) > -jnp.inf),
                   'log_weights must have a finite entry in every mixture; '
                   'all -inf gives NaN.')
