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

import math
from typing import NamedTuple

import jax
from jax import lax
from jax.custom_derivatives import SymbolicZero
from jax.experimental import checkify
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from propel_jax import _shapes
from propel_jax import mixtures

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_4PI = math.log(4.0 * math.pi)


# Most dimensions a scan step handles unrolled (see `_over_dims`).
_MAX_UNROLL = 8


# Each mixture is dimension-major ([n, I] per example, vmapped over the
# batch). The self overlap's pair terms are built one dimension at a time
# (`_normalized_overlap_1d` over all pairs, `_all_pairs`, accumulated by
# `_over_dims`); the cross overlap and the gradients use every pair's
# per-dimension differences and summed variances at once (`_pair_planes`,
# [n, I, J]), and the gradients' sums over pairs are one multi-operand
# reduction (`_row_sums`). The layout is what XLA:CPU vectorises: see
# `_contiguous` and docs/benchmarks.md.


def _over_dims(body, init, *per_dim):
  """`lax.scan` over the target dimensions, the leading axis of per_dim.

  Diagonal Gaussians factorise over dimensions, so every quantity here is
  built one dimension at a time from [I, J] slabs of component pairs. That is
  an order of magnitude faster on XLA:CPU than materialising [I, J, n] and
  reducing its short last axis, and unrolling keeps small n loop-free while
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


def _row_sums(*arrays, axis=1):
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


def _all_pairs(fn, axis=0):
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


def _self_overlap_terms(means_t, vars_t, roots_t, log_weights):
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
  log_c = (log_weights - 0.25 * num_dims * _LOG_4PI
           - 0.25 * _sum_over_dims(jnp.log, vars_t))
  shift = jnp.max(log_c)
  c = jnp.exp(log_c - shift)

  def accumulate(carry, dim):
    spread, sq_dist = _all_pairs(_normalized_overlap_1d)(*dim, *dim)
    return (carry[0] * spread, carry[1] + sq_dist), None

  pairs = (jnp.ones((num, num), means_t.dtype), jnp.zeros((num, num), means_t.dtype))
  (spread, sq_dist), _ = _over_dims(accumulate, pairs, means_t, vars_t, roots_t)
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
  d_mean, d_var = _overlap_gradients(*_pair_planes(means_t, vars_t, means_t, vars_t))
  grad_means, grad_vars = _row_sums(weights * d_mean, weights * d_var, axis=2)
  return grad_means, 0.5 * grad_vars, 2.0 * row_terms


# A custom JVP (rather than VJP) so that forward mode and higher derivatives
# work too; reverse mode transposes the linear map below.
@jax.custom_jvp
def _log_self_overlap(means_t, vars_t, roots_t, log_weights):
  """log ∫p² = log Σ_ij w_i w_j G(i, j) for one mixture ([n, I], [n, I], [n, I], [I])."""
  return _self_overlap_terms(means_t, vars_t, roots_t, log_weights)[0]


def _perturbed(tangents):
  """Whether any of a custom JVP's tangents is not a symbolic zero."""
  return any(not isinstance(t, SymbolicZero) for t in tangents)


def _tangent(value, grads, tangents):
  """Σ ⟨gradient, tangent⟩ over the perturbed inputs (0 if there are none)."""
  return sum((jnp.sum(g * t) for g, t in zip(grads, tangents)
              if g is not None and not isinstance(t, SymbolicZero)),
             start=jnp.zeros_like(value))


def _log_self_overlap_jvp(primals, tangents):
  value, terms, row_terms = _self_overlap_terms(*primals)
  if not _perturbed(tangents):  # e.g. the label's Gaussian in PROPEL
    return value, jnp.zeros_like(value)
  grad_means, grad_vars, grad_log_weights = _self_overlap_gradients(
      primals[0], primals[1], terms, row_terms)
  # roots_t = 1/√(2 vars_t) is a function of vars_t, whose gradient is total.
  grads = (grad_means, grad_vars, None, grad_log_weights)
  return value, _tangent(value, grads, tangents)


# Symbolic zeros tell which inputs are differentiated, so that the gradients
# of the others (the label and the label's scale, in PROPEL) are not built.
_log_self_overlap.defjvp(_log_self_overlap_jvp, symbolic_zeros=True)


def _log_sum_and_shares(logits):
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
  log_g = -0.5 * (num_dims * _LOG_2PI
                  + _sum_over_dims(lambda d, v, inv: jnp.log(v) + d * d * inv,
                                   diff, var, inv_var))
  return _log_sum_and_shares(p_log_weights[:, None] + q_log_weights[None, :]
                             + log_g)


@jax.custom_jvp
def _log_cross_overlap(p_means_t, p_vars_t, p_log_weights, q_means_t, q_vars_t,
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
  if _perturbed(tangents[:3]):
    sums = _row_sums(terms * d_mean, terms * d_var, axis=2)
    grads = (sums[0], 0.5 * sums[1], jnp.sum(terms, axis=1)) + grads[3:]
  if _perturbed(tangents[3:]):
    # The b side's partials are -∂/∂μ_a and the same ∂/∂v_a.
    sums = _row_sums(terms * d_mean, terms * d_var, axis=1)
    grads = grads[:3] + (-sums[0], 0.5 * sums[1], jnp.sum(terms, axis=0))
  return value, _tangent(value, grads, tangents)


_log_cross_overlap.defjvp(_log_cross_overlap_jvp, symbolic_zeros=True)


# ----------------------------------------------------------------------------
# Full covariance. A component is N(μ, Σ) with Σ = L Lᵀ; inside, Σ is kept as
# its m = n(n+1)/2 lower-triangle entries ([m, I], `np.tril_indices` order).
# Every pair's S = Σ_a + Σ_b is factorised by `_solve`, vmapped over all
# pairs (`_all_pairs`); the terms and their closed-form gradients are built
# from its results as the diagonal path builds them from its 1-D factors.

# Most dimensions factorised by unrolled scalar code (see `_solve`).
_MAX_UNROLLED_DIMS = 8


def _tril_positions(num_dims):
  """{(r, c): k} for the lower-triangle entries r ≥ c in `np.tril_indices` order."""
  rows, cols = np.tril_indices(num_dims)
  return {(int(r), int(c)): k for k, (r, c) in enumerate(zip(rows, cols))}


def _solve(cov, diff):
  """Factorises one symmetric positive-definite S and solves with it.

  Up to `_MAX_UNROLLED_DIMS` dimensions, a square-root-free Cholesky
  S = U D Uᵀ (U unit lower triangular) written as unrolled scalar code, which
  vmapping over the pairs turns into elementwise [I, J] slabs: an order of
  magnitude faster on XLA:CPU than a batched `jnp.linalg.cholesky` of
  [I, J, n, n], whose per-matrix cost dominates for small n. Its size grows
  like n³ though (compiling n = 16 takes minutes), so above that the same
  factorisation runs as loops over k on whole [n, n] arrays.

  Either way log det S = Σ_k log D_k and the Mahalanobis term dᵀ S⁻¹ d comes
  from a triangular solve, with no inverse and no determinant. S⁻¹, which
  only the gradient needs (it is the derivative of log det S), is computed
  from the factor; under jit it is dropped where unused.

  Args:
    cov: [m] the lower-triangle entries of S.
    diff: [n] the vector d.

  Returns:
    (pivots D_k, a list of n scalars; dᵀ S⁻¹ d; u = S⁻¹ d, a list of n
    scalars; S⁻¹ as {(r, c): scalar} for r ≥ c).
  """
  if diff.shape[0] <= _MAX_UNROLLED_DIMS:
    return _solve_unrolled(cov, diff)
  return _solve_looped(cov, diff)


def _solve_unrolled(cov, diff):
  """`_solve` by S = U D Uᵀ in unrolled scalar code.

  With y = U⁻¹ d (forward substitution, alongside the factorisation),
  dᵀ S⁻¹ d = Σ_k y_k² / D_k; u = U⁻ᵀ D⁻¹ y by back substitution; S⁻¹ by
  the backward recurrence X_rc = δ_rc / D_r - Σ_{k>r} U_kr X_kc (r ≤ c,
  X symmetric), which solves Uᵀ X = D⁻¹ U⁻¹ without forming U⁻¹.
  """
  num_dims = diff.shape[0]
  entry = {rc: cov[k] for rc, k in _tril_positions(num_dims).items()}
  y = [diff[k] for k in range(num_dims)]
  pivots, inverses, multipliers = [], [], {}
  for k in range(num_dims):
    pivots.append(entry[k, k])
    inverses.append(1.0 / entry[k, k])
    for r in range(k + 1, num_dims):
      multipliers[r, k] = entry[r, k] * inverses[k]
      y[r] = y[r] - multipliers[r, k] * y[k]
      for c in range(k + 1, r + 1):
        entry[r, c] = entry[r, c] - multipliers[r, k] * entry[c, k]
  mahalanobis = sum(y_k * y_k * inv for y_k, inv in zip(y, inverses))
  u = [y_k * inv for y_k, inv in zip(y, inverses)]
  inverse = {}
  for r in reversed(range(num_dims)):
    for k in range(r + 1, num_dims):
      u[r] = u[r] - multipliers[k, r] * u[k]
    for c in reversed(range(r, num_dims)):
      value = inverses[r] if r == c else 0.0
      for k in range(r + 1, num_dims):
        value = value - multipliers[k, r] * inverse[max(k, c), min(k, c)]
      inverse[c, r] = value
  return pivots, mahalanobis, u, inverse


def _solve_looped(cov, diff):
  """`_solve` by the same S = U D Uᵀ, as loops over k on whole [n, n] arrays.

  The unrolled code's algorithm with a `fori_loop` per stage, so that its
  size stays O(n²) whatever n. Plain jnp rather than `jnp.linalg.cholesky`
  and triangular solves: on XLA:CPU (jax 0.10), jitted functions calling
  those LAPACK routines from vmapped pair code hung on their second call on
  a 2-core machine (the worker pool idle, the caller waiting forever).
  """
  num_dims = diff.shape[0]
  positions = _tril_positions(num_dims)
  index = np.array([[positions[max(r, c), min(r, c)] for c in range(num_dims)]
                    for r in range(num_dims)])
  dims = jnp.arange(num_dims)

  def eliminate(k, carry):
    # Right-looking elimination: pivot D_k, column k of U, Schur complement.
    remaining, unit, pivots = carry
    pivot = remaining[k, k]
    column = jnp.where(dims > k, remaining[:, k] / pivot, 0.0)
    remaining = remaining - pivot * jnp.outer(column, column)
    return (remaining, unit.at[:, k].set(column), pivots.at[k].set(pivot))

  # The loops' initial values are made like cov (and diff), so that they
  # vary under shard_map wherever the inputs do, as the loops' outputs do.
  zeros = jnp.zeros_like(cov, shape=(num_dims, num_dims))
  _, below, pivots = lax.fori_loop(
      0, num_dims, eliminate, (cov[index], zeros, zeros[0]))

  def forward(k, rhs):
    # U⁻¹ applied to every column of rhs: subtract row k's multiple below it.
    return rhs - jnp.outer(below[:, k], rhs[k])

  # U⁻¹ [d | I]: y = U⁻¹ d and U⁻¹ itself, in one pass.
  identity = zeros + jnp.eye(num_dims, dtype=cov.dtype)
  solved = lax.fori_loop(0, num_dims, forward,
                         jnp.concatenate([diff[:, None], identity], 1))
  y, unit_inverse = solved[:, 0], solved[:, 1:]
  scaled = unit_inverse / pivots[:, None]  # D⁻¹ U⁻¹
  inverse = unit_inverse.T @ scaled  # S⁻¹ = U⁻ᵀ D⁻¹ U⁻¹
  u = inverse @ diff
  return ([pivots[k] for k in range(num_dims)], jnp.sum(y * y / pivots),
          [u[k] for k in range(num_dims)],
          {rc: inverse[rc] for rc in positions})


def _log_overlap_full(mean_a, cov_a, mean_b, cov_b):
  """log G(a, b) = log N(μ_a; μ_b, Σ_a + Σ_b) without its constant -½ n log 2π.

  Args:
    mean_a, mean_b: [n].
    cov_a, cov_b: [m] lower-triangle entries of Σ_a and Σ_b.

  Returns:
    A scalar.
  """
  pivots, mahalanobis, _, _ = _solve(cov_a + cov_b, mean_a - mean_b)
  return -0.5 * (sum(jnp.log(p) for p in pivots) + mahalanobis)


def _normalized_overlap_full(mean_a, cov_a, rsqrt_pivots_a, mean_b, cov_b,
                             rsqrt_pivots_b):
  """ρ(a, b) = G(a, b) / √(G(a, a) G(b, b)) ∈ (0, 1] for one pair.

  ρ = spread^(-1/2) exp(-½ dᵀ S⁻¹ d), spread = Π_k D_k(S) / (2√(D_k(Σ_a) D_k(Σ_b)))
  with D_k the pivots of each matrix. Each factor is ≥ 1: the pivot D_k is
  the Schur complement of the leading k×k block, which is superadditive over
  positive-definite matrices, so D_k(S) ≥ D_k(Σ_a) + D_k(Σ_b). The product
  then only grows and can only overflow, to inf, where ρ = 0 is the correct
  limit: the diagonal path's argument, factor by factor.

  Args:
    mean_a, mean_b: [n].
    cov_a, cov_b: [m] lower-triangle entries of Σ_a and Σ_b.
    rsqrt_pivots_a, rsqrt_pivots_b: [n] D_k(Σ)^(-1/2) of each.

  Returns:
    A scalar.
  """
  pivots, mahalanobis, _, _ = _solve(cov_a + cov_b, mean_a - mean_b)
  spread = 1.0
  for k, pivot in enumerate(pivots):
    spread = spread * (0.5 * pivot * rsqrt_pivots_a[k] * rsqrt_pivots_b[k])
  return lax.rsqrt(spread) * jnp.exp(-0.5 * mahalanobis)


def _overlap_gradients_full(mean_a, cov_a, mean_b, cov_b):
  """Partial derivatives of log G(a, b) for the a side.

  ∂ log G / ∂μ_a = -u and ∂ log G / ∂Σ_a = ½ (u uᵀ - S⁻¹) with u = S⁻¹ d,
  d = μ_a - μ_b; by symmetry the b side's are -∂/∂μ_a and ∂/∂Σ_a. An
  off-diagonal entry of the lower triangle stands for Σ_rc and Σ_cr, so its
  partial is twice the matrix's.

  Args:
    mean_a, mean_b: [n].
    cov_a, cov_b: [m] lower-triangle entries of Σ_a and Σ_b.

  Returns:
    (∂ log G / ∂μ_a, a list of n scalars; ∂ log G / ∂ each lower-triangle
    entry of Σ_a, a list of m scalars).
  """
  _, _, u, inverse = _solve(cov_a + cov_b, mean_a - mean_b)
  d_cov = [(0.5 if r == c else 1.0) * (u[r] * u[c] - inverse[r, c])
           for r, c in _tril_positions(mean_a.shape[0])]
  return [-u_k for u_k in u], d_cov


def _rsqrt_pivots(covs_t, num_dims):
  """[m, I] covariance entries -> [n, I] D_k(Σ_i)^(-1/2), each from its own factor."""

  def one(cov):
    pivots, *_ = _solve(cov, jnp.zeros(num_dims, cov.dtype))
    return jnp.stack([lax.rsqrt(p) for p in pivots])

  return jax.vmap(one, in_axes=1, out_axes=1)(covs_t)


def _self_overlap_terms_full(means_t, covs_t, log_weights):
  """`_self_overlap_terms` for full covariances ([n, I], [m, I], [I])."""
  num_dims = means_t.shape[0]
  rsqrt_pivots = _rsqrt_pivots(covs_t, num_dims)
  # log(w_i √H_i), H_i = (4π)^(-n/2) det(Σ_i)^(-1/2).
  log_c = (log_weights - 0.25 * num_dims * _LOG_4PI
           + 0.5 * jnp.sum(jnp.log(rsqrt_pivots), axis=0))
  shift = jnp.max(log_c)
  c = jnp.exp(log_c - shift)
  rho = _all_pairs(_normalized_overlap_full, axis=1)(
      means_t, covs_t, rsqrt_pivots, means_t, covs_t, rsqrt_pivots)
  terms = c[:, None] * c[None, :] * rho
  rows, = _row_sums(terms)
  total = jnp.sum(rows)  # In [1, I²]: the largest term is diagonal and 1.
  return 2.0 * shift + jnp.log(total), terms / total, rows / total


def _self_overlap_gradients_full(means_t, covs_t, terms, row_terms):
  """`_self_overlap_gradients` for full covariances.

  Args:
    means_t, covs_t: [n, I], [m, I].
    terms: [I, I], P.
    row_terms: [I], Σ_j P_ij.

  Returns:
    Gradients with respect to means_t [n, I], covs_t [m, I], log weights [I].
  """
  num_dims = means_t.shape[0]
  d_mean, d_cov = _all_pairs(_overlap_gradients_full, axis=1)(
      means_t, covs_t, means_t, covs_t)
  weights = 2.0 * terms
  sums = _row_sums(*(weights * g for g in d_mean + d_cov))
  return (jnp.stack(sums[:num_dims]), jnp.stack(sums[num_dims:]),
          2.0 * row_terms)


@jax.custom_jvp
def _log_self_overlap_full(means_t, covs_t, log_weights):
  """log ∫p² for one full-covariance mixture ([n, I], [m, I], [I])."""
  return _self_overlap_terms_full(means_t, covs_t, log_weights)[0]


def _log_self_overlap_full_jvp(primals, tangents):
  value, terms, row_terms = _self_overlap_terms_full(*primals)
  if not _perturbed(tangents):
    return value, jnp.zeros_like(value)
  grads = _self_overlap_gradients_full(primals[0], primals[1], terms, row_terms)
  return value, _tangent(value, grads, tangents)


_log_self_overlap_full.defjvp(_log_self_overlap_full_jvp, symbolic_zeros=True)


def _cross_overlap_terms_full(p_means_t, p_covs_t, p_log_weights, q_means_t,
                              q_covs_t, q_log_weights):
  """log ∫pq and its normalised terms for full-covariance mixtures.

  Args:
    p_means_t, p_covs_t, p_log_weights: [n, I], [m, I], [I].
    q_means_t, q_covs_t, q_log_weights: [n, J], [m, J], [J].

  Returns:
    (log ∫pq [], Q [I, J]) with Q_ij = a_i b_j G(i, j) / ∫pq.
  """
  num_dims = p_means_t.shape[0]
  log_g = _all_pairs(_log_overlap_full, axis=1)(p_means_t, p_covs_t, q_means_t,
                                                q_covs_t)
  log_total, terms = _log_sum_and_shares(
      p_log_weights[:, None] + q_log_weights[None, :] + log_g)
  return log_total - 0.5 * num_dims * _LOG_2PI, terms


@jax.custom_jvp
def _log_cross_overlap_full(p_means_t, p_covs_t, p_log_weights, q_means_t,
                            q_covs_t, q_log_weights):
  """log ∫pq for full-covariance mixtures ([n, I], [m, I], [I]; [n, J], [m, J], [J])."""
  return _cross_overlap_terms_full(p_means_t, p_covs_t, p_log_weights,
                                   q_means_t, q_covs_t, q_log_weights)[0]


def _log_cross_overlap_full_jvp(primals, tangents):
  """Closed form: ∂/∂θ_i = Σ_j Q_ij ∂ log G(i, j)/∂θ_i, and Σ_i for q's side.

  Autodiff through the unrolled factorisation is ten times slower at n = 8.
  """
  p_means_t, p_covs_t, _, q_means_t, q_covs_t, _ = primals
  num_dims = p_means_t.shape[0]
  value, terms = _cross_overlap_terms_full(*primals)
  d_mean, d_cov = _all_pairs(_overlap_gradients_full, axis=1)(
      p_means_t, p_covs_t, q_means_t, q_covs_t)
  weighted = [terms * g for g in d_mean + d_cov] + [terms]
  grads = (None,) * 6
  if _perturbed(tangents[:3]):
    sums = _row_sums(*weighted)
    grads = (jnp.stack(sums[:num_dims]), jnp.stack(sums[num_dims:-1]),
             sums[-1]) + grads[3:]
  if _perturbed(tangents[3:]):
    # The b side's partials: -∂/∂μ_a and the same ∂/∂Σ_a.
    sums = _row_sums(*weighted, axis=0)
    grads = grads[:3] + (-jnp.stack(sums[:num_dims]),
                         jnp.stack(sums[num_dims:-1]), sums[-1])
  return value, _tangent(value, grads, tangents)


_log_cross_overlap_full.defjvp(_log_cross_overlap_full_jvp, symbolic_zeros=True)


# ----------------------------------------------------------------------------
# The distance, for either kind of mixture on either side.


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
             for r, c in _tril_positions(mixture.means.shape[0])]
  return _Full(mixture.means, jnp.stack(entries), mixture.log_weights)


def _log_self_integral(mixture):
  """log ∫p² for one mixture of either kind."""
  if isinstance(mixture, _Full):
    return _log_self_overlap_full(*mixture)
  return _log_self_overlap(*mixture)


def _log_cross_integral(p, q):
  """log ∫pq; by the full-covariance path if either side has full covariances."""
  if isinstance(p, _Diagonal) and isinstance(q, _Diagonal):
    return _log_cross_overlap(p.means, p.variances, p.log_weights, q.means,
                              q.variances, q.log_weights)
  return _log_cross_overlap_full(*_as_full(p), *_as_full(q))


def _distance(p, q):
  """D(p, q) for one pair of mixtures, each a `_Diagonal` or a `_Full`."""
  return (jnp.logaddexp(_log_self_integral(p), _log_self_integral(q))
          - math.log(2.0) - _log_cross_integral(p, q))


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


def _prefixed(prefix):
  return {role: prefix + role for role in ('means', 'scales', 'log_weights')}


@jax.custom_jvp
def _contiguous(array):
  """array [B, k, I], copied out by a product with the identity.

  XLA:CPU fuses the transpose that makes the dimension-major [B, n, I]
  layout into every kernel that reads it, so the pair kernels would read the
  [B, I, n] input with a stride of n, which defeats vectorisation: 8x slower
  at I = 8. A dot is never fused into its consumers, so its result is written
  out contiguously once. Exact for finite inputs (each output is one input
  times 1 plus zeros); an infinite entry turns its component's other
  dimensions into NaN, and `check_inputs` rejects it anyway.
  """
  eye = jnp.eye(array.shape[1], dtype=array.dtype)
  return jnp.einsum('bki,kl->bli', array, eye, precision=lax.Precision.HIGHEST)


@_contiguous.defjvp
def _contiguous_jvp(primals, tangents):
  # The identity's derivative: the backward pass stays a plain, fusible copy.
  return _contiguous(*primals), tangents[0]


def _contiguous_on_cpu(array):
  """`_contiguous` where XLA:CPU compiles it; elsewhere array itself."""
  return lax.platform_dependent(array, cpu=_contiguous, default=lambda a: a)


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
    arrays = tuple(map(_contiguous_on_cpu, arrays))
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
  batch = _batch_shape(p_means=(p_means.shape, p_means.shape[:-2]),
                       q_means=(q_means.shape, q_means.shape[:-2]))
  dtype = _compute_dtype(p_means, p_scales, q_means, q_scales)
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
  batch = _batch_shape(targets=(targets.shape, targets.shape[:-1]),
                       target_scale=(target_scale.shape, gt_scale.shape[:-1]),
                       means=(means.shape, means.shape[:-2]))
  dtype = _compute_dtype(means, scales, targets)
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
  for name, value in (('predictions', predictions), ('targets', targets)):
    if jnp.iscomplexobj(value):
      raise ValueError(f'{name} must be real; got dtype '
                       f'{value.dtype}.')
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
