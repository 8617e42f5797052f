"""The diagonal-covariance Gaussian overlaps behind `propel_jax.losses` (private).

log ∫p², log ∫pq and their closed-form derivatives for mixtures of diagonal
Gaussians, one dimension at a time, and the layout copy that lets XLA:CPU
vectorise them. Inputs are dimension-major: means, variances and
1/√(2 variances) [n, I] per mixture, normalised log weights [I].
"""


import jax
from jax import lax
from jax.custom_derivatives import SymbolicZero
import jax.numpy as jnp

from propel_jax import _common


# Most dimensions a scan step handles unrolled (see `_over_dims`).
_MAX_UNROLL = 8


# Each mixture is dimension-major ([n, I] per example, vmapped over the
# batch). The self overlap's pair terms are built one dimension at a time
# (`_normalized_overlap_1d` over all pairs, `all_pairs`, accumulated by
# `_over_dims`); the cross overlap and the gradients use every pair's
# per-dimension differences and summed variances at once (`_pair_planes`,
# [n, I, J]), and the gradients' sums over pairs are one multi-operand
# reduction (`row_sums`). The layout is what XLA:CPU vectorises: see
# `contiguous` and docs/benchmarks.md.


def _over_dims(body, init, *per_dim):
  """`lax.scan` over the target dimensions, the leading axis of per_dim.

  Diagonal Gaussians factorise over dimensions, so every quantity here is
  built one dimension at a time from [I, J] slabs of component pairs: XLA:CPU
  vectorises those along the pairs, where materialising [I, J, n] leaves it
  reducing a short last axis (docs/benchmarks.md). Unrolling keeps small n loop-free while
  large n (64) still compiles quickly.

  The initial carry (constants) is typed like the inputs by adding a zero
  made with `zeros_like` from each: under `jax.shard_map` the body's output
  varies over the mesh axes wherever the inputs do, and a loop's carry must
  keep its type. Elsewhere the zeros are constants that XLA folds away.

  Args:
    body: scan body (carry, per-dimension slices) -> (carry, output).
    init: initial carry.
    *per_dim: [n, ...] arrays.

  Returns:
    (final carry, stacked outputs [n, ...]).
  """
  num_dims = per_dim[0].shape[0]
  zero = sum(jnp.zeros_like(a, shape=()) for a in per_dim)
  init = jax.tree.map(lambda c: c + zero.astype(c.dtype), init)
  return lax.scan(body, init, per_dim, unroll=min(num_dims, _MAX_UNROLL))


def row_sums(*arrays, axis=1):
  """Σ over `axis` of each array, as one variadic reduction.

  For [I, J] arrays axis=1 gives the row sums Σ_j ([I] each) and axis=0 the
  column sums Σ_i ([J] each); for [n, I, J], axis=2 and axis=1.

  One reduction over several operands is one loop on XLA:CPU, and unlike
  single-operand sums it is not handed to the YNNPACK library, which is
  slower on these short rows.
  """
  zeros = tuple(jnp.zeros((), a.dtype) for a in arrays)
  return lax.reduce(arrays, zeros,
                    lambda x, y: tuple(a + b for a, b in zip(x, y)), (axis,))


def _sum_over_dims(fn, *arrays):
  """Σ_d fn(*per-dimension slices) over the leading (dimension) axis of [n, ...].

  For few dimensions an unrolled sum that fuses into its consumer; a
  short-axis reduction is a kernel of its own on XLA:CPU. fn is applied to
  each slice rather than to the whole stack: an expensive elementwise op
  (log) on the stack would be written out once for its n slices to read.
  """
  if arrays[0].shape[0] <= _MAX_UNROLL:
    return sum((fn(*dim) for dim in zip(*arrays)))
  return jnp.sum(fn(*arrays), axis=0)


def all_pairs(fn, axis=0):
  """fn(*a_args, *b_args) for every component of a against every one of b.

  The first half of the arguments describe a's components, the second half
  b's, each with the component axis at `axis`: [I] x [J] -> [I, J].
  """
  def pairs(*args):
    half = len(args) // 2
    per_b = jax.vmap(fn, in_axes=(None,) * half + (axis,) * half)
    return jax.vmap(per_b, in_axes=(axis,) * half + (None,) * half)(*args)
  return pairs


def _normalized_overlap_1d(mean_a, var_a, root_a, mean_b, var_b, root_b):
  """One dimension's factors of ρ(a, b) = G(a, b) / √(G(a, a) G(b, b)).

  ρ ∈ (0, 1], the L² cosine of the two densities, is
  Π_d spread_d^(-1/2) · exp(-½ Σ_d sq_dist_d) with
  spread = (v_a + v_b) / (2√(v_a v_b)) ≥ 1 (AM-GM) and
  sq_dist = (μ_a - μ_b)² / (v_a + v_b). The product of spreads can only
  overflow, to inf, giving ρ = 0: the correct limit, and harmless because the
  self terms are dominated by their diagonal (ρ = 1).

  Args:
    mean_a, var_a, root_a, mean_b, var_b, root_b: scalars; root = 1/√(2v),
      computed once per component so that a pair costs no square root per
      dimension (spread = (v_a + v_b) · root_a · root_b).

  Returns:
    (spread, sq_dist), scalars.
  """
  var = var_a + var_b
  return var * root_a * root_b, jnp.square(mean_a - mean_b) / var


def _pair_planes(means_a, vars_a, means_b, vars_b):
  """Every pair's per-dimension difference of means and sum of variances.

  Args:
    means_a, vars_a: [n, I].
    means_b, vars_b: [n, J].

  Returns:
    (μ_a - μ_b, v_a + v_b), each [n, I, J]: all dimensions at once, so that a
    quantity that both a value and its gradient use is one kernel on
    XLA:CPU, not one per dimension.
  """
  return (means_a[:, :, None] - means_b[:, None, :],
          vars_a[:, :, None] + vars_b[:, None, :])


def _overlap_gradients(diff, var):
  """Partial derivatives of log G(a, b) per dimension, for the a side.

  ∂ log G / ∂μ_a = -(μ_a - μ_b) / (v_a + v_b) and
  ∂ log G / ∂v_a = ½ [(μ_a - μ_b)² / (v_a + v_b)² - 1 / (v_a + v_b)];
  by symmetry ∂/∂μ_b = -∂/∂μ_a and ∂/∂v_b = ∂/∂v_a.

  Args:
    diff, var: μ_a - μ_b and v_a + v_b (see `_pair_planes`).

  Returns:
    (∂ log G / ∂μ_a, 2 ∂ log G / ∂v_a), shaped like diff.
  """
  inv_var = 1.0 / var
  scaled_diff = diff * inv_var
  return -scaled_diff, scaled_diff * scaled_diff - inv_var


def self_overlap_terms(means_t, vars_t, roots_t, log_weights):
  """log ∫p² and its normalised terms for one mixture.

  ∫p² is bounded below by its diagonal, which lets it skip the per-dimension
  logarithms: with c_i = w_i √H_i (H_i = G(i, i)),

      ∫p² = Σ_ij c_i c_j ρ_ij,   ρ_ij = G(i, j) / √(H_i H_j) ∈ (0, 1],

  ρ the cosine of the two densities in L². The largest c_i² term is a
  diagonal one with ρ = 1, so after dividing by max_i c_i² the sum lies in
  [1, I²] and needs no log-sum-exp; ρ costs one `rsqrt` and one `exp` per
  pair instead of one `log` per pair and dimension.

  Args:
    means_t, vars_t, roots_t: [n, I] (dimension-major, see `_over_dims`),
      roots_t = 1/√(2 vars_t).
    log_weights: [I].

  Returns:
    (log ∫p² [], terms [I, I], their row sums [I]) with
    terms = w_i w_j G(i, j) / ∫p².
  """
  num_dims, num = means_t.shape
  # log(w_i √H_i), H_i = (4π)^(-n/2) Π_d v_id^(-1/2).
  log_c = (log_weights - 0.25 * num_dims * _common.LOG_4PI
           - 0.25 * _sum_over_dims(jnp.log, vars_t))
  shift = jnp.max(log_c)
  c = jnp.exp(log_c - shift)

  def accumulate(carry, dim):
    spread, sq_dist = all_pairs(_normalized_overlap_1d)(*dim, *dim)
    return (carry[0] * spread, carry[1] + sq_dist), None

  pairs = (jnp.ones((num, num), means_t.dtype), jnp.zeros((num, num), means_t.dtype))
  (spread, sq_dist), _ = _over_dims(accumulate, pairs, means_t, vars_t, roots_t)
  rho = lax.rsqrt(spread) * jnp.exp(-0.5 * sq_dist)
  terms = c[:, None] * c[None, :] * rho
  rows, = row_sums(terms)
  total = jnp.sum(rows)  # in [1, I²]: the largest term is diagonal and 1.
  return 2.0 * shift + jnp.log(total), terms / total, rows / total


def self_overlap_gradients(means_t, vars_t, terms, row_terms):
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
  d_mean, d_var = _overlap_gradients(*_pair_planes(means_t, vars_t, means_t, vars_t))
  grad_means, grad_vars = row_sums(weights * d_mean, weights * d_var, axis=2)
  return grad_means, 0.5 * grad_vars, 2.0 * row_terms


# A custom JVP (rather than VJP) so that forward mode and higher derivatives
# work too; reverse mode transposes the linear map below.
@jax.custom_jvp
def log_self_overlap(means_t, vars_t, roots_t, log_weights):
  """log ∫p² = log Σ_ij w_i w_j G(i, j) for one mixture ([n, I], [n, I], [n, I], [I])."""
  return self_overlap_terms(means_t, vars_t, roots_t, log_weights)[0]


def perturbed(tangents):
  """Whether any of a custom JVP's tangents is not a symbolic zero."""
  return any(not isinstance(t, SymbolicZero) for t in tangents)


def tangent(value, grads, tangents):
  """Σ ⟨gradient, tangent⟩ over the perturbed inputs (0 if there are none)."""
  return sum((jnp.sum(g * t) for g, t in zip(grads, tangents)
              if g is not None and not isinstance(t, SymbolicZero)),
             start=jnp.zeros_like(value))


def _log_self_overlap_jvp(primals, tangents):
  value, terms, row_terms = self_overlap_terms(*primals)
  if not perturbed(tangents):  # e.g. the label's Gaussian in PROPEL
    return value, jnp.zeros_like(value)
  grad_means, grad_vars, grad_log_weights = self_overlap_gradients(
      primals[0], primals[1], terms, row_terms)
  # roots_t = 1/√(2 vars_t) is a function of vars_t, whose gradient is total.
  grads = (grad_means, grad_vars, None, grad_log_weights)
  return value, tangent(value, grads, tangents)


# Symbolic zeros tell which inputs are differentiated, so that the gradients
# of the others (the label and the label's scale, in PROPEL) are not built.
log_self_overlap.defjvp(_log_self_overlap_jvp, symbolic_zeros=True)


def log_sum_and_shares(logits):
  """log Σ exp(logits) and the shares exp(logits) / Σ exp(logits).

  The shares are exp(logits - max) / Σ, not exp(logits - log Σ): for a label
  far from every component the logits are large, and log Σ carries their
  rounding error (ulp(700) ≈ 6e-5) into every share and gradient.
  """
  top = jnp.max(logits)
  top = lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))
  shifted = jnp.exp(logits - top)
  total = jnp.sum(shifted)
  return top + jnp.log(total), shifted / total


def _cross_overlap_terms(p_means_t, p_vars_t, p_log_weights, q_means_t,
                         q_vars_t, q_log_weights):
  """log ∫pq and its normalised terms for one pair of diagonal mixtures.

  Args:
    p_means_t, p_vars_t, p_log_weights: [n, I], [n, I], [I].
    q_means_t, q_vars_t, q_log_weights: [n, J], [n, J], [J].

  Returns:
    (log ∫pq [], Q [I, J]) with Q_ij = a_i b_j G(i, j) / ∫pq.
  """
  num_dims = p_means_t.shape[0]
  diff, var = _pair_planes(p_means_t, p_vars_t, q_means_t, q_vars_t)
  # 1/var as the gradient computes it: XLA:CPU then writes it out once,
  # rather than one division kernel per dimension here.
  inv_var = 1.0 / var
  log_g = -0.5 * (num_dims * _common.LOG_2PI
                  + _sum_over_dims(lambda d, v, inv: jnp.log(v) + d * d * inv,
                                   diff, var, inv_var))
  return log_sum_and_shares(p_log_weights[:, None] + q_log_weights[None, :]
                             + log_g)


@jax.custom_jvp
def log_cross_overlap(p_means_t, p_vars_t, p_log_weights, q_means_t, q_vars_t,
                       q_log_weights):
  """log ∫pq for one pair of mixtures ([n, I], [n, I], [I]; [n, J], [n, J], [J])."""
  return _cross_overlap_terms(p_means_t, p_vars_t, p_log_weights, q_means_t,
                              q_vars_t, q_log_weights)[0]


def _log_cross_overlap_jvp(primals, tangents):
  """Closed form: ∂/∂θ_i = Σ_j Q_ij ∂ log G(i, j)/∂θ_i, and Σ_i for q's side.

  Autodiff would store every dimension's [I, J] pieces for the backward
  pass; here each side's sums are one reduction over [n, I, J], and a side
  whose inputs are not differentiated (the label's, in PROPEL) is skipped.
  """
  p_means_t, p_vars_t, _, q_means_t, q_vars_t, _ = primals
  value, terms = _cross_overlap_terms(*primals)
  d_mean, d_var = _overlap_gradients(*_pair_planes(p_means_t, p_vars_t,
                                                   q_means_t, q_vars_t))
  grads = (None,) * 6
  if perturbed(tangents[:3]):
    sums = row_sums(terms * d_mean, terms * d_var, axis=2)
    grads = (sums[0], 0.5 * sums[1], jnp.sum(terms, axis=1)) + grads[3:]
  if perturbed(tangents[3:]):
    # The b side's partials are -∂/∂μ_a and the same ∂/∂v_a.
    sums = row_sums(terms * d_mean, terms * d_var, axis=1)
    grads = grads[:3] + (-sums[0], 0.5 * sums[1], jnp.sum(terms, axis=0))
  return value, tangent(value, grads, tangents)


log_cross_overlap.defjvp(_log_cross_overlap_jvp, symbolic_zeros=True)


@jax.custom_jvp
def contiguous(array):
  """array [B, k, I], copied out by a product with the identity.

  XLA:CPU fuses the transpose that makes the dimension-major [B, n, I]
  layout into every kernel that reads it, so the pair kernels would read the
  [B, I, n] input with a stride of n, which defeats vectorisation (see
  docs/benchmarks.md). A dot is never fused into its consumers, so its result is written
  out contiguously once. Exact for finite inputs (each output is one input
  times 1 plus zeros); an infinite entry turns its component's other
  dimensions into NaN, and `check_inputs` rejects it anyway.
  """
  eye = jnp.eye(array.shape[1], dtype=array.dtype)
  return jnp.einsum('bki,kl->bli', array, eye, precision=lax.Precision.HIGHEST)


@contiguous.defjvp
def _contiguous_jvp(primals, tangents):
  # The identity's derivative: the backward pass stays a plain, fusible copy.
  return contiguous(*primals), tangents[0]


def contiguous_on_cpu(array):
  """`contiguous` where XLA:CPU compiles it; elsewhere array itself."""
  return lax.platform_dependent(array, cpu=contiguous, default=lambda a: a)
