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
instead of one `log` per pair and dimension. Its gradient is written by hand
from the closed-form partial derivatives (`_log_self_overlap`), which is what
makes the I×I term cheap; see benchmarks/loss_benchmark.py.

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


def _log_overlap(mean_a, var_a, mean_b, var_b):
  """log G(a, b) = log ∫ N(x; mean_a, diag var_a) N(x; mean_b, diag var_b) dx.

  The sum over dimensions is unrolled (n is static): vmapped over component
  pairs, it then accumulates [I, J] slabs instead of reducing a short last
  axis, which XLA:CPU does an order of magnitude slower.

  Args:
    mean_a, var_a, mean_b, var_b: [n] arrays.

  Returns:
    A scalar.
  """
  total = 0.0
  for d in range(mean_a.shape[-1]):
    var = var_a[d] + var_b[d]
    total += jnp.log(var) + jnp.square(mean_a[d] - mean_b[d]) / var
  return -0.5 * (mean_a.shape[-1] * _LOG_2PI + total)


def _normalized_overlap(mean_a, var_a, mean_b, var_b):
  """ρ(a, b) = G(a, b) / √(G(a, a) G(b, b)) ∈ (0, 1], the L² cosine of a and b.

  Per dimension, ρ is (v_a + v_b) / (2√(v_a v_b)))^(-1/2) times a Gaussian
  factor. The first factor's inverse is ≥ 1 (AM-GM), so its product over
  dimensions can only overflow, to inf, giving ρ = 0: the correct limit, and
  harmless because the self terms are dominated by their diagonal.

  Args:
    mean_a, var_a, mean_b, var_b: [n] arrays.

  Returns:
    A scalar.
  """
  spread = 1.0
  sq_dist = 0.0
  for d in range(mean_a.shape[-1]):
    var = var_a[d] + var_b[d]
    spread *= var * lax.rsqrt(4.0 * var_a[d] * var_b[d])
    sq_dist += jnp.square(mean_a[d] - mean_b[d]) / var
  return lax.rsqrt(spread) * jnp.exp(-0.5 * sq_dist)


def _overlap_gradients(mean_a, var_a, mean_b, var_b):
  """Partial derivatives of log G(a, b) with respect to mean_a and var_a.

  ∂ log G / ∂μ_a = -(μ_a - μ_b) / (v_a + v_b) and
  ∂ log G / ∂v_a = ½ [(μ_a - μ_b)² / (v_a + v_b)² - 1 / (v_a + v_b)];
  by symmetry ∂/∂μ_b = -∂/∂μ_a and ∂/∂v_b = ∂/∂v_a.

  Args:
    mean_a, var_a, mean_b, var_b: scalars (one dimension).

  Returns:
    (∂ log G / ∂μ_a, 2 ∂ log G / ∂v_a), scalars.
  """
  inv_var = 1.0 / (var_a + var_b)
  scaled_diff = (mean_a - mean_b) * inv_var
  return -scaled_diff, scaled_diff * scaled_diff - inv_var


# Every component against every component: [I] x [J] -> [I, J].
def _all_pairs(fn):
  return jax.vmap(jax.vmap(fn, in_axes=(None, None, 0, 0)),
                  in_axes=(0, 0, None, None))


def _self_overlap_terms(means, variances, log_weights):
  """Shift and normalised terms of log ∫p² for one mixture.

  Args:
    means, variances: [I, n].
    log_weights: [I].

  Returns:
    (log ∫p² [], terms [I, I]) with terms = w_i w_j G(i, j) / ∫p².
  """
  num_dims = means.shape[-1]
  # log(w_i √H_i), H_i = (4π)^(-n/2) Π_d v_id^(-1/2).
  log_c = (log_weights - 0.25 * num_dims * _LOG_4PI
           - 0.25 * jnp.sum(jnp.log(variances), axis=-1))
  shift = jnp.max(log_c)
  c = jnp.exp(log_c - shift)
  rho = _all_pairs(_normalized_overlap)(means, variances, means, variances)
  terms = c[:, None] * c[None, :] * rho
  total = jnp.sum(terms)  # in [1, I²]: the largest term is diagonal and 1.
  return 2.0 * shift + jnp.log(total), terms / total


@jax.custom_vjp
def _log_self_overlap(means, variances, log_weights):
  """log ∫p² = log Σ_ij w_i w_j G(i, j) for one mixture ([I, n], [I, n], [I])."""
  return _self_overlap_terms(means, variances, log_weights)[0]


def _log_self_overlap_fwd(means, variances, log_weights):
  value, terms = _self_overlap_terms(means, variances, log_weights)
  return value, (means, variances, terms)


def _log_self_overlap_bwd(residuals, cotangent):
  """Closed-form VJP: with P_ij = w_i w_j G(i, j) / ∫p² (symmetric),

  ∂/∂μ_id = 2 Σ_j P_ij ∂ log G(i, j)/∂μ_id, ∂/∂v_id = 2 Σ_j P_ij ∂ log G/∂v_id,
  ∂/∂ log w_i = 2 Σ_j P_ij (the factor 2: μ_i appears in row i and column i).
  """
  means, variances, terms = residuals
  weights = 2.0 * cotangent * terms
  grad_means, grad_vars = [], []
  for d in range(means.shape[-1]):
    # One [I, I] slab per dimension, reduced over j right away.
    d_mean, d_var = _all_pairs(_overlap_gradients)(
        means[:, d], variances[:, d], means[:, d], variances[:, d])
    grad_means.append(jnp.sum(weights * d_mean, axis=-1))
    grad_vars.append(0.5 * jnp.sum(weights * d_var, axis=-1))
  return (jnp.stack(grad_means, axis=-1), jnp.stack(grad_vars, axis=-1),
          jnp.sum(weights, axis=-1))


_log_self_overlap.defvjp(_log_self_overlap_fwd, _log_self_overlap_bwd)


def _log_cross_overlap(p_means, p_vars, p_log_weights, q_means, q_vars,
                       q_log_weights):
  """log ∫pq for one pair of mixtures ([I, n], [I, n], [I]; [J, n], [J, n], [J])."""
  log_g = _all_pairs(_log_overlap)(p_means, p_vars, q_means, q_vars)
  return jax.nn.logsumexp(p_log_weights[:, None] + q_log_weights[None, :]
                          + log_g)


def _distance(p_means, p_vars, p_log_weights, q_means, q_vars, q_log_weights):
  """D(p, q) for one pair of mixtures, everything in the compute dtype."""
  log_pp = _log_self_overlap(p_means, p_vars, p_log_weights)
  log_qq = _log_self_overlap(q_means, q_vars, q_log_weights)
  log_pq = _log_cross_overlap(p_means, p_vars, p_log_weights,
                              q_means, q_vars, q_log_weights)
  return jnp.logaddexp(log_pp, log_qq) - math.log(2.0) - log_pq


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
    """[..., I, n] -> [B, I, n] means and variances, [B, I] log weights."""
    shape = batch + means.shape[-2:]
    if log_weights is None:
      log_weights = jnp.full(shape[:-1], -math.log(shape[-2]), dtype)
    means = jnp.broadcast_to(means.astype(dtype), shape)
    variances = jnp.broadcast_to(jnp.square(scales.astype(dtype)), shape)
    log_weights = jnp.broadcast_to(jnp.asarray(log_weights, dtype), shape[:-1])
    return (means.reshape(-1, *shape[-2:]), variances.reshape(-1, *shape[-2:]),
            log_weights.reshape(-1, shape[-2]))

  distance = jax.vmap(_distance)(*flatten(p_means, p_scales, p_log_weights),
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
