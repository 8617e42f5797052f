"""PROPEL, the Gaussian-mixture distance it is built on, and baseline losses.

The distance between two densities p and q of Sfikas et al. (ICANN 2005),

    D(p, q) = -log[ 2 ∫ p q dx / ∫ (p² + q²) dx ],

has a closed form when p and q are mixtures of diagonal Gaussians, since every
integral is a sum of Gaussian overlaps

    G(a, b) = ∫ N(x; μ_a, V_a) N(x; μ_b, V_b) dx = N(μ_a; μ_b, V_a + V_b).

PROPEL (Asad et al., ICPR 2020) is D with p = N(y, diag(s²)) centred on the
label y and q the mixture a network predicts. All losses here are per example
(no reduction), like optax's.

Numerics. The cross term log ∫pq is a log-sum-exp of exact log-overlaps, so
the loss and its gradient stay finite when the label is thousands of standard
deviations away (the loss then grows like a squared error). The self terms
∫p², ∫q² are bounded below by their diagonal, which lets them skip the
per-dimension logarithms: with c_i = w_i √H_i (H_i = G(i, i)),

    ∫p² = Σ_ij c_i c_j ρ_ij,   ρ_ij = G(i, j) / √(H_i H_j) ∈ (0, 1],

ρ is the cosine of the two densities in L², and the largest c_i² term is a
diagonal one with ρ = 1; so after dividing by max_i c_i² the sum lies in
[1, I²] and needs no log-sum-exp. ρ itself is a product over dimensions of
factors ≤ 1 and an exponential, one `rsqrt` and one `exp` per component pair
instead of one `log` per pair and dimension. Its derivatives are written by
hand from the closed-form partials (`_self_overlap_gradients`), which is what
makes the I×I term cheap.

Structure. Every term is built from one-dimensional single-pair functions
(`_log_overlap_1d`, `_normalized_overlap_1d`, `_overlap_gradients_1d`),
vmapped over all component pairs (`_all_pairs`), accumulated over the
dimensions by `_over_dims` and vmapped over the batch; the gradient's sums
over pairs are one multi-operand reduction per dimension (`_row_sums`).
The measured effect of
each of these choices is in README.md (Benchmarks) and
benchmarks/loss_variants.py.

Inputs in bfloat16/float16 are computed in float32 (float64 stays float64);
the loss is returned in that compute dtype.

Non-positive scales or NaN inputs are not checked on the default path (that
would cost time and cannot raise inside `jit`): a zero scale gives inf/NaN,
a negative one a wrong but finite value, NaN propagates. Use `check_inputs`
under `jax.experimental.checkify` to catch them.
"""

import math

import jax
from jax import lax
from jax.experimental import checkify
import jax.numpy as jnp

from propel_jax import mixtures

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_4PI = math.log(4.0 * math.pi)


# Most dimensions a scan step handles unrolled (see `_over_dims`).
_MAX_UNROLL = 8


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
  slower on these short rows (README.md, Benchmarks).
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
  """Broadcast leading (batch) shapes, naming the arguments if they clash."""
  try:
    return jnp.broadcast_shapes(*shapes.values())
  except ValueError:
    described = ', '.join(f'{k} {v}' for k, v in shapes.items())
    raise ValueError(f'Batch shapes do not broadcast: {described}.') from None


def mixture_distance(p_means, p_scales, q_means, q_scales, *,
                     p_log_weights=None, q_log_weights=None):
  """Closed-form distance -log[2∫pq / ∫(p² + q²)] between two Gaussian mixtures.

  Both p and q are mixtures of diagonal Gaussians, each with its own number of
  components and weights; `propel_loss` is the case where p is one Gaussian.
  The general form serves ambiguous labels (p a mixture over the equally valid
  answers) and learned mixture weights.

  Args:
    p_means: [..., I, n] component means of p.
    p_scales: [..., I, n] component standard deviations of p (> 0).
    q_means: [..., J, n] component means of q.
    q_scales: [..., J, n] component standard deviations of q (> 0).
    p_log_weights: optional [..., I] normalised log weights (default 1/I each).
    q_log_weights: optional [..., J] normalised log weights (default 1/J each).

  Returns:
    [...] the distance (leading shapes broadcast), ≥ 0 and 0 iff p = q, in
    natural log, float32 (float64 for float64 inputs).

  Raises:
    ValueError: if the shapes do not fit together, naming them.
  """
  p_means, p_scales, q_means, q_scales = map(
      jnp.asarray, (p_means, p_scales, q_means, q_scales))
  mixtures.check_shapes(p_means, p_scales, p_log_weights, name='p_')
  mixtures.check_shapes(q_means, q_scales, q_log_weights, name='q_')
  if p_means.shape[-1] != q_means.shape[-1]:
    raise ValueError(f'p_means {p_means.shape} and q_means {q_means.shape} '
                     'must have the same target dimension n (last axis).')
  dtype = _compute_dtype(p_means, p_scales, q_means, q_scales)
  batch = _batch_shape(p_means=p_means.shape[:-2], q_means=q_means.shape[:-2])

  def flatten(means, scales, log_weights):
    """[..., I, n] -> [B, n, I] means and variances, [B, I] log weights."""
    shape = batch + means.shape[-2:]
    if log_weights is None:
      log_weights = jnp.full(shape[:-1], -math.log(shape[-2]), dtype)
    means = jnp.broadcast_to(means.astype(dtype), shape)
    variances = jnp.broadcast_to(jnp.square(scales.astype(dtype)), shape)
    log_weights = jnp.broadcast_to(jnp.asarray(log_weights, dtype), shape[:-1])
    flat = lambda a: jnp.swapaxes(a.reshape(-1, *shape[-2:]), -1, -2)
    return flat(means), flat(variances), log_weights.reshape(-1, shape[-2])

  distance = _batched_distance(*flatten(p_means, p_scales, p_log_weights),
                               *flatten(q_means, q_scales, q_log_weights))
  return distance.reshape(batch)


def propel_loss(means, scales, targets, *, target_scale, log_weights=None):
  """PROPEL: the mixture distance between N(targets, target_scale²) and a mixture.

  L = -log[2∫P_gt P_m / ∫(P_gt² + P_m²)], exactly the paper's definition for
  any I ≥ 1 and n ≥ 1, in natural log.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations (> 0).
    targets: [..., n] labels (leading shape broadcasts with means').
    target_scale: standard deviation of the ground-truth Gaussian, a scalar or
      [n] (one per target dimension).
    log_weights: optional [..., I] normalised log mixture weights (default 1/I,
      the paper's choice).

  Returns:
    [...] per-example loss ≥ 0, float32 (float64 for float64 inputs).

  Raises:
    ValueError: if the shapes do not fit together, naming them.
  """
  means, scales, targets = map(jnp.asarray, (means, scales, targets))
  target_scale = jnp.asarray(target_scale)
  if means.ndim < 2 or targets.ndim < 1 or targets.shape[-1] != means.shape[-1]:
    raise ValueError(f'targets shape {targets.shape} must be [..., n] and means '
                     f'shape {means.shape} [..., I, n] with the same n.')
  if target_scale.ndim > 1 or target_scale.size not in (1, targets.shape[-1]):
    raise ValueError(f'target_scale shape {target_scale.shape} must be () or '
                     f'[n] = [{targets.shape[-1]}].')
  _batch_shape(targets=targets.shape[:-1], means=means.shape[:-2])
  gt_scale = jnp.broadcast_to(target_scale.astype(_compute_dtype(targets)),
                              targets.shape)
  return mixture_distance(targets[..., None, :], gt_scale[..., None, :],
                          means, scales, q_log_weights=log_weights)


def mse_loss(predictions, targets):
  """Mean squared error over the target dimensions.

  Args:
    predictions: [..., n].
    targets: [..., n].

  Returns:
    [...] per-example loss.
  """
  _check_same_shape(predictions, targets)
  return jnp.mean(jnp.square(predictions - targets), axis=-1)


def l1_loss(predictions, targets):
  """Mean absolute error over the target dimensions.

  Args:
    predictions: [..., n].
    targets: [..., n].

  Returns:
    [...] per-example loss.
  """
  _check_same_shape(predictions, targets)
  return jnp.mean(jnp.abs(predictions - targets), axis=-1)


def _check_same_shape(predictions, targets):
  if jnp.shape(predictions) != jnp.shape(targets):
    raise ValueError(f'predictions shape {jnp.shape(predictions)} must equal '
                     f'targets shape {jnp.shape(targets)} ([..., n]).')


def mixture_nll(means, scales, targets, *, log_weights=None):
  """Negative log-likelihood of the targets under the mixture (the MDN loss).

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations (> 0).
    targets: [..., n].
    log_weights: optional [..., I] normalised log weights (default 1/I).

  Returns:
    [...] per-example -log p(targets).
  """
  return -mixtures.log_prob(targets, means, scales, log_weights)


def check_inputs(means, scales, targets=None, *, target_scale=None,
                 log_weights=None, weights_atol=1e-3):
  """Value checks for the loss inputs, for use under `jax.experimental.checkify`.

  The losses do not check values on their default path (see the module
  docstring). Call this inside a function wrapped with `checkify.checkify`
  to get an error naming the problem instead of a silent NaN:

      def checked(means, scales, targets):
        check_inputs(means, scales, targets, target_scale=0.1)
        return propel_loss(means, scales, targets, target_scale=0.1)
      err, loss = jax.jit(checkify.checkify(checked))(means, scales, targets)
      err.throw()

  Outside jit (eagerly) a failed check raises right away.

  Args:
    means: [..., I, n].
    scales: [..., I, n], must be finite and > 0.
    targets: optional [..., n], must be finite.
    target_scale: optional scalar or [n], must be finite and > 0.
    log_weights: optional [..., I], must not be NaN or +inf and must be
      normalised (logsumexp over I within weights_atol of 0).
    weights_atol: tolerance of the normalisation check.
  """
  mixtures.check_shapes(means, scales, log_weights)
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
    total = jax.nn.logsumexp(log_weights, axis=-1)
    checkify.check(jnp.all(jnp.abs(total) <= weights_atol),
                   'log_weights must be normalised (logsumexp over I = 0); '
                   'largest |logsumexp| is {t}.', t=jnp.max(jnp.abs(total)))
