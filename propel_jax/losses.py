"""PROPEL, the Gaussian-mixture distance it is built on, and baseline losses.

PROPEL (Asad et al., ICPR 2020) is the distance of Sfikas et al. (ICANN 2005),

    D(p, q) = -log[ 2 ∫ p q dx / ∫ (p² + q²) dx ],

between p = N(y, diag(s²)) centred on the label y and the mixture q that a
network predicts. For mixtures of diagonal Gaussians every integral is a sum
of Gaussian overlaps, in closed form. The losses are per example (no
reduction), like optax's, and take mixture weights as logits.

Every term is computed in log space, so the loss and its gradient stay finite
for labels thousands of standard deviations away; the I×I self term has a
hand-written derivative. Shapes are checked at trace time, values are not (a
zero scale gives inf/NaN, a negative one a wrong but finite value, NaN
propagates): `check_inputs` under `jax.experimental.checkify` catches those.
bfloat16/float16 inputs are computed in float32. For speed, see
docs/benchmarks.md.
"""

import math

import jax
from jax import lax
from jax.experimental import checkify
import jax.numpy as jnp
from jax.typing import ArrayLike

from propel_jax import mixtures

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_4PI = math.log(4.0 * math.pi)


# Most dimensions a scan step handles unrolled (see `_over_dims`).
_MAX_UNROLL = 8


# Every term is built from one-dimensional single-pair functions
# (`_log_overlap_1d`, `_normalized_overlap_1d`, `_overlap_gradients_1d`),
# vmapped over all component pairs (`_all_pairs`), accumulated over the
# dimensions by `_over_dims` and vmapped over the batch; the gradient's sums
# over pairs are one multi-operand reduction per dimension (`_row_sums`).


def _over_dims(body, init, *per_dim):
  """`lax.scan` over the target dimensions, the leading axis of per_dim.

  Diagonal Gaussians factorise over dimensions, so every quantity here is
  built one dimension at a time from [I, J] slabs of component pairs. That is
  an order of magnitude faster on XLA:CPU than materialising [I, J, n] and
  reducing its short last axis, and unrolling keeps small n loop-free while
  large n (64) still compiles quickly.

  Args:
    body: scan body (carry, per-dimension slices) -> (carry, output).
    init: initial carry.
    *per_dim: [n, ...] arrays.

  Returns:
    (final carry, stacked outputs [n, ...]).
  """
  num_dims = per_dim[0].shape[0]
  return lax.scan(body, init, per_dim, unroll=min(num_dims, _MAX_UNROLL))


def _row_sums(*arrays):
  """Σ_j of each [I, J] array, as one variadic reduction ([I] each).

  One reduction over several operands is one loop on XLA:CPU, and unlike
  single-operand sums it is not handed to the YNNPACK library, which is
  slower on these short rows.
  """
  zeros = tuple(jnp.zeros((), a.dtype) for a in arrays)
  return lax.reduce(arrays, zeros,
                    lambda x, y: tuple(a + b for a, b in zip(x, y)), (1,))


# Every component against every component: [I] x [J] -> [I, J].
def _all_pairs(fn):
  return jax.vmap(jax.vmap(fn, in_axes=(None, None, 0, 0)),
                  in_axes=(0, 0, None, None))


def _log_overlap_1d(mean_a, var_a, mean_b, var_b):
  """One dimension's term of log G(a, b), without its constant -½ log 2π.

  log G(a, b) = Σ_d [-½ log 2π - ½ log(v_ad + v_bd) - ½ (μ_ad - μ_bd)² / (v_ad + v_bd)].

  Args:
    mean_a, var_a, mean_b, var_b: scalars.

  Returns:
    A scalar.
  """
  var = var_a + var_b
  return -0.5 * (jnp.log(var) + jnp.square(mean_a - mean_b) / var)


def _normalized_overlap_1d(mean_a, var_a, mean_b, var_b):
  """One dimension's factors of ρ(a, b) = G(a, b) / √(G(a, a) G(b, b)).

  ρ ∈ (0, 1], the L² cosine of the two densities, is
  Π_d spread_d^(-1/2) · exp(-½ Σ_d sq_dist_d) with
  spread = (v_a + v_b) / (2√(v_a v_b)) ≥ 1 (AM-GM) and
  sq_dist = (μ_a - μ_b)² / (v_a + v_b). The product of spreads can only
  overflow, to inf, giving ρ = 0: the correct limit, and harmless because the
  self terms are dominated by their diagonal (ρ = 1).

  Args:
    mean_a, var_a, mean_b, var_b: scalars.

  Returns:
    (spread, sq_dist), scalars.
  """
  var = var_a + var_b
  return (var * lax.rsqrt(4.0 * var_a * var_b),
          jnp.square(mean_a - mean_b) / var)


def _overlap_gradients_1d(mean_a, var_a, mean_b, var_b):
  """Partial derivatives of log G(a, b) in one dimension, for the a side.

  ∂ log G / ∂μ_a = -(μ_a - μ_b) / (v_a + v_b) and
  ∂ log G / ∂v_a = ½ [(μ_a - μ_b)² / (v_a + v_b)² - 1 / (v_a + v_b)];
  by symmetry ∂/∂μ_b = -∂/∂μ_a and ∂/∂v_b = ∂/∂v_a.

  Args:
    mean_a, var_a, mean_b, var_b: scalars.

  Returns:
    (∂ log G / ∂μ_a, 2 ∂ log G / ∂v_a), scalars.
  """
  inv_var = 1.0 / (var_a + var_b)
  scaled_diff = (mean_a - mean_b) * inv_var
  return -scaled_diff, scaled_diff * scaled_diff - inv_var


def _self_overlap_terms(means_t, vars_t, log_weights):
  """log ∫p² and its normalised terms for one mixture.

  ∫p² is bounded below by its diagonal, which lets it skip the per-dimension
  logarithms: with c_i = w_i √H_i (H_i = G(i, i)),

      ∫p² = Σ_ij c_i c_j ρ_ij,   ρ_ij = G(i, j) / √(H_i H_j) ∈ (0, 1],

  ρ the cosine of the two densities in L². The largest c_i² term is a
  diagonal one with ρ = 1, so after dividing by max_i c_i² the sum lies in
  [1, I²] and needs no log-sum-exp; ρ costs one `rsqrt` and one `exp` per
  pair instead of one `log` per pair and dimension.

  Args:
    means_t, vars_t: [n, I] (dimension-major, see `_over_dims`).
    log_weights: [I].

  Returns:
    (log ∫p² [], terms [I, I], their row sums [I]) with
    terms = w_i w_j G(i, j) / ∫p².
  """
  num_dims, num = means_t.shape
  # log(w_i √H_i), H_i = (4π)^(-n/2) Π_d v_id^(-1/2).
  log_c = (log_weights - 0.25 * num_dims * _LOG_4PI
           - 0.25 * jnp.sum(jnp.log(vars_t), axis=0))
  shift = jnp.max(log_c)
  c = jnp.exp(log_c - shift)

  def accumulate(carry, dim):
    spread, sq_dist = _all_pairs(_normalized_overlap_1d)(*dim, *dim)
    return (carry[0] * spread, carry[1] + sq_dist), None

  pairs = (jnp.ones((num, num), means_t.dtype), jnp.zeros((num, num), means_t.dtype))
  (spread, sq_dist), _ = _over_dims(accumulate, pairs, means_t, vars_t)
  rho = lax.rsqrt(spread) * jnp.exp(-0.5 * sq_dist)
  terms = c[:, None] * c[None, :] * rho
  rows, = _row_sums(terms)
  total = jnp.sum(rows)  # in [1, I²]: the largest term is diagonal and 1.
  return 2.0 * shift + jnp.log(total), terms / total, rows / total


def _self_overlap_gradients(means_t, vars_t, terms, row_terms):
  """Closed-form gradient of log ∫p² from its normalised terms.

  With P_ij = w_i w_j G(i, j) / ∫p² (symmetric, so μ_i's appearances in row i
  and column i contribute equally):
  ∂/∂μ_id = 2 Σ_j P_ij ∂ log G(i, j)/∂μ_id, ∂/∂v_id = 2 Σ_j P_ij ∂ log G/∂v_id,
  ∂/∂ log w_i = 2 Σ_j P_ij.

  Args:
    means_t, vars_t: [n, I].
    terms: [I, I], P above.
    row_terms: [I], Σ_j P_ij.

  Returns:
    Gradients with respect to means_t [n, I], vars_t [n, I], log weights [I].
  """
  weights = 2.0 * terms

  def per_dim(carry, dim):
    # One [I, I] slab per dimension, reduced over j right away.
    d_mean, d_var = _all_pairs(_overlap_gradients_1d)(*dim, *dim)
    sum_mean, sum_var = _row_sums(weights * d_mean, weights * d_var)
    return carry, (sum_mean, 0.5 * sum_var)

  _, (grad_means, grad_vars) = _over_dims(per_dim, None, means_t, vars_t)
  return grad_means, grad_vars, 2.0 * row_terms


# A custom JVP (rather than VJP) so that forward mode and higher derivatives
# work too; reverse mode transposes the linear map below.
@jax.custom_jvp
def _log_self_overlap(means_t, vars_t, log_weights):
  """log ∫p² = log Σ_ij w_i w_j G(i, j) for one mixture ([n, I], [n, I], [I])."""
  return _self_overlap_terms(means_t, vars_t, log_weights)[0]


@_log_self_overlap.defjvp
def _log_self_overlap_jvp(primals, tangents):
  value, terms, row_terms = _self_overlap_terms(*primals)
  grads = _self_overlap_gradients(primals[0], primals[1], terms, row_terms)
  return value, sum(jnp.sum(g * t) for g, t in zip(grads, tangents))


def _log_cross_overlap(p_means_t, p_vars_t, p_log_weights, q_means_t, q_vars_t,
                       q_log_weights):
  """log ∫pq for one pair of mixtures ([n, I], [n, I], [I]; [n, J], [n, J], [J])."""
  num_dims = p_means_t.shape[0]

  def accumulate(log_g, dim):
    return log_g + _all_pairs(_log_overlap_1d)(*dim), None

  init = jnp.full((p_means_t.shape[1], q_means_t.shape[1]),
                  -0.5 * num_dims * _LOG_2PI, p_means_t.dtype)
  log_g, _ = _over_dims(accumulate, init, p_means_t, p_vars_t, q_means_t, q_vars_t)
  return jax.nn.logsumexp(p_log_weights[:, None] + q_log_weights[None, :]
                          + log_g)


def _distance(p_means, p_vars, p_log_weights, q_means, q_vars, q_log_weights):
  """D(p, q) for one pair of mixtures: [n, I] / [n, J] means and variances."""
  log_pp = _log_self_overlap(p_means, p_vars, p_log_weights)
  log_qq = _log_self_overlap(q_means, q_vars, q_log_weights)
  log_pq = _log_cross_overlap(p_means, p_vars, p_log_weights,
                              q_means, q_vars, q_log_weights)
  return jnp.logaddexp(log_pp, log_qq) - math.log(2.0) - log_pq


# Jitted so that eager calls compile once per shape instead of dispatching the
# unrolled per-dimension loops op by op; inside an outer jit it is inlined.
_batched_distance = jax.jit(jax.vmap(_distance))


def _compute_dtype(*arrays):
  """float32, or float64 if an input is float64 (under jax_enable_x64)."""
  return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _batch_shape(**shapes):
  """Broadcasts leading (batch) shapes, naming the arguments if they clash.

  Args:
    **shapes: argument name -> (its full shape, its batch shape).

  Returns:
    The broadcast batch shape.
  """
  try:
    return jnp.broadcast_shapes(*(batch for _, batch in shapes.values()))
  except ValueError:
    described = ', '.join(f'{name} {shape} (batch {batch})'
                          for name, (shape, batch) in shapes.items())
    raise ValueError('The leading (batch) axes do not broadcast: '
                     f'{described}.') from None


def _broadcasts(*shapes):
  try:
    jnp.broadcast_shapes(*shapes)
    return True
  except ValueError:
    return False


def _prefixed(prefix):
  return {role: prefix + role for role in ('means', 'scales', 'log_weights')}


def _flatten(means, scales, log_weights, batch, dtype):
  """[..., I, n] -> [B, n, I] means, variances; [B, I] normalised log weights."""
  shape = batch + means.shape[-2:]
  means = means.astype(dtype)
  if log_weights is not None:
    log_weights = jnp.asarray(log_weights, dtype)
  log_weights = mixtures.normalized_log_weights(means, log_weights)
  means = jnp.broadcast_to(means, shape)
  variances = jnp.broadcast_to(jnp.square(scales.astype(dtype)), shape)
  log_weights = jnp.broadcast_to(log_weights, shape[:-1])
  flat = lambda a: jnp.swapaxes(a.reshape(-1, *shape[-2:]), -1, -2)
  return flat(means), flat(variances), log_weights.reshape(-1, shape[-2])


def _checked_distance(p, q, batch, dtype):
  """D(p, q) for validated (means, scales, log_weights) triples -> [*batch]."""
  distance = _batched_distance(*_flatten(*p, batch, dtype),
                               *_flatten(*q, batch, dtype))
  return distance.reshape(batch)


def mixture_distance(p_means: ArrayLike, p_scales: ArrayLike,
                     q_means: ArrayLike, q_scales: ArrayLike, *,
                     p_log_weights: ArrayLike | None = None,
                     q_log_weights: ArrayLike | None = None) -> jax.Array:
  """Closed-form distance -log[2∫pq / ∫(p² + q²)] between Gaussian mixtures.

  Both p and q are mixtures of diagonal Gaussians, each with its own number
  of components and weights; `propel_loss` is the case where p is one
  Gaussian. The general form serves ambiguous labels (p a mixture over the
  equally valid answers) and learned mixture weights. p and q must have the
  same number of axes; their leading (batch) axes broadcast, size 1 included.

  Args:
    p_means: [..., I, n] component means of p.
    p_scales: [..., I, n] component standard deviations of p (> 0).
    q_means: [..., J, n] component means of q.
    q_scales: [..., J, n] component standard deviations of q (> 0).
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
  """
  p_means, p_scales, q_means, q_scales = map(
      jnp.asarray, (p_means, p_scales, q_means, q_scales))
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
  batch = _batch_shape(p_means=(p_means.shape, p_means.shape[:-2]),
                       q_means=(q_means.shape, q_means.shape[:-2]))
  dtype = _compute_dtype(p_means, p_scales, q_means, q_scales)
  return _checked_distance((p_means, p_scales, p_log_weights),
                           (q_means, q_scales, q_log_weights), batch, dtype)


def _target_scale_per_dim(target_scale, targets):
  """target_scale as an array that broadcasts against targets [..., n].

  Per the rule of `propel_loss`: a shape that broadcasts against targets is
  used as it is; else one that broadcasts against the batch shape
  targets.shape[:-1] is one scale per example (a trailing axis is added).
  """
  scale_shape, targets_shape = target_scale.shape, targets.shape
  num_dims = targets_shape[-1]
  if jnp.iscomplexobj(target_scale):
    raise ValueError(f'target_scale must be real; got dtype '
                     f'{target_scale.dtype}.')
  if (len(scale_shape) == 1 and scale_shape[0] == num_dims > 1
      and len(targets_shape) >= 2 and targets_shape[-2] == num_dims):
    raise ValueError(
        f'target_scale shape {scale_shape} is ambiguous for targets shape '
        f'{targets_shape}: it could be one scale per example or one per '
        'dimension. Pass target_scale[:, None] for one per example or '
        'target_scale[None, :] for one per dimension.')
  if _broadcasts(scale_shape, targets_shape):
    return target_scale
  if _broadcasts(scale_shape, targets_shape[:-1]):
    return target_scale[..., None]
  raise ValueError(
      f'target_scale shape {scale_shape} does not fit targets shape '
      f'{targets_shape}: pass a scalar, [n] = [{num_dims}] (one per '
      f'dimension), the batch shape {targets_shape[:-1]} (one per example) or '
      f'{targets_shape} (per example and dimension); leading axes broadcast.')


def propel_loss(means: ArrayLike, scales: ArrayLike, targets: ArrayLike, *,
                target_scale: ArrayLike,
                log_weights: ArrayLike | None = None) -> jax.Array:
  """PROPEL: the mixture distance between N(targets, target_scale²) and a mixture.

  L = -log[2∫P_gt P_m / ∫(P_gt² + P_m²)] with P_gt = N(y, diag(s²)) and P_m
  the mixture; exactly the paper's definition for any I ≥ 1 and n ≥ 1, in
  natural log.

  means and scales have exactly one more axis (I) than targets; the leading
  (batch) axes broadcast, size 1 included. target_scale is used as it is if
  its shape broadcasts against targets' (so [n] is per dimension, [B, n] and
  [B, 1] per example); otherwise, if it broadcasts against the batch shape
  targets.shape[:-1], it is one scale per example (so [B] works). A 1-D
  target_scale of length n is ambiguous when the batch's last axis is also n,
  and raises.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations (> 0).
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
  """
  means, scales, targets, target_scale = map(
      jnp.asarray, (means, scales, targets, target_scale))
  mixtures.check_shapes(means, scales, log_weights, targets,
                        names={'x': 'targets'})
  gt_scale = _target_scale_per_dim(target_scale, targets)
  targets_and_scale = jnp.broadcast_shapes(targets.shape, gt_scale.shape)
  batch = _batch_shape(targets=(targets.shape, targets.shape[:-1]),
                       target_scale=(target_scale.shape,
                                     targets_and_scale[:-1]),
                       means=(means.shape, means.shape[:-2]))
  dtype = _compute_dtype(means, scales, targets)
  shape = batch + targets.shape[-1:]
  targets = jnp.broadcast_to(targets.astype(dtype), shape)
  gt_scale = jnp.broadcast_to(gt_scale.astype(dtype), shape)
  return _checked_distance(
      (targets[..., None, :], gt_scale[..., None, :], None),
      (means, scales, log_weights), batch, dtype)


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
  _check_same_shape(predictions, targets)
  return jnp.mean(jnp.square(jnp.asarray(predictions) - targets), axis=-1)


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
  _check_same_shape(predictions, targets)
  return jnp.mean(jnp.abs(jnp.asarray(predictions) - targets), axis=-1)


def _check_same_shape(predictions, targets):
  for name, value in (('predictions', predictions), ('targets', targets)):
    if jnp.iscomplexobj(value):
      raise ValueError(f'{name} must be real; got dtype '
                       f'{jnp.result_type(value)}.')
  shape = jnp.shape(predictions)
  if shape != jnp.shape(targets):
    raise ValueError(f'predictions shape {shape} must equal '
                     f'targets shape {jnp.shape(targets)} ([..., n]).')
  if not shape or shape[-1] == 0:
    raise ValueError(f'predictions and targets must be [..., n] with n >= 1; '
                     f'got shape {shape}.')


def mixture_nll(means: ArrayLike, scales: ArrayLike, targets: ArrayLike, *,
                log_weights: ArrayLike | None = None) -> jax.Array:
  """Negative log-likelihood of the targets under the mixture (the MDN loss).

  means and scales have exactly one more axis (I) than targets; the leading
  axes broadcast, size 1 included.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations (> 0).
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
  means, scales, targets = map(jnp.asarray, (means, scales, targets))
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
    scales: [..., I, n], must be finite and > 0.
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
  mixtures.check_shapes(means, scales, log_weights, targets,
                        names={'x': 'targets'})
  if targets is not None and target_scale is not None:
    _target_scale_per_dim(jnp.asarray(target_scale), jnp.asarray(targets))
  checkify.check(jnp.all(jnp.isfinite(means)), 'means contain NaN or inf.')
  checkify.check(jnp.all(jnp.isfinite(scales) & (scales > 0)),
                 'scales must be finite and > 0; smallest is {m}.',
                 m=jnp.min(scales))
  if targets is not None:
    checkify.check(jnp.all(jnp.isfinite(targets)), 'targets contain NaN or inf.')
  if target_scale is not None:
    checkify.check(jnp.all(jnp.isfinite(target_scale) & (target_scale > 0)),
                   'target_scale must be finite and > 0; got {s}.',
                   s=jnp.min(target_scale))
  if log_weights is not None:
    log_weights = jnp.asarray(log_weights)
    checkify.check(jnp.all(~jnp.isnan(log_weights) & (log_weights < jnp.inf)),
                   'log_weights contain NaN or +inf.')
    checkify.check(jnp.all(jnp.max(log_weights, axis=-1) > -jnp.inf),
                   'log_weights must have a finite entry in every mixture; '
                   'all -inf gives NaN.')
