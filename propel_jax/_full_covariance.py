"""The full-covariance Gaussian overlaps behind `propel_jax.losses` (private).

log ∫p², log ∫pq and their closed-form derivatives for mixtures of
full-covariance Gaussians, each pair's summed covariance factorised by
`propel_jax._linalg.solve`.
"""


import jax
from jax import lax
import jax.numpy as jnp

from propel_jax import _common
from propel_jax import _diagonal
from propel_jax import _linalg



# ----------------------------------------------------------------------------
# Full covariance. A component is N(μ, Σ) with Σ = L Lᵀ; inside, Σ is kept as
# its m = n(n+1)/2 lower-triangle entries ([m, I], `np.tril_indices` order).
# Every pair's S = Σ_a + Σ_b is factorised by `_linalg.solve`, vmapped over all
# pairs (`_diagonal.all_pairs`); the terms and their closed-form gradients are built
# from its results as the diagonal path builds them from its 1-D factors.

def _log_overlap_full(mean_a, cov_a, mean_b, cov_b):
  """log G(a, b) = log N(μ_a; μ_b, Σ_a + Σ_b) without its constant -½ n log 2π.

  Args:
    mean_a, mean_b: [n].
    cov_a, cov_b: [m] lower-triangle entries of Σ_a and Σ_b.

  Returns:
    A scalar.
  """
  pivots, mahalanobis, _, _ = _linalg.solve(cov_a + cov_b, mean_a - mean_b)
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
  pivots, mahalanobis, _, _ = _linalg.solve(cov_a + cov_b, mean_a - mean_b)
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
  _, _, u, inverse = _linalg.solve(cov_a + cov_b, mean_a - mean_b)
  d_cov = [(0.5 if r == c else 1.0) * (u[r] * u[c] - inverse[r, c])
           for r, c in _linalg.tril_positions(mean_a.shape[0])]
  return [-u_k for u_k in u], d_cov


def _rsqrt_pivots(covs_t, num_dims):
  """[m, I] covariance entries -> [n, I] D_k(Σ_i)^(-1/2), each from its own factor."""

  def one(cov):
    pivots, *_ = _linalg.solve(cov, jnp.zeros(num_dims, cov.dtype))
    return jnp.stack([lax.rsqrt(p) for p in pivots])

  return jax.vmap(one, in_axes=1, out_axes=1)(covs_t)


def _self_overlap_terms_full(means_t, covs_t, log_weights):
  """`_diagonal.self_overlap_terms` for full covariances ([n, I], [m, I], [I])."""
  num_dims = means_t.shape[0]
  rsqrt_pivots = _rsqrt_pivots(covs_t, num_dims)
  # log(w_i √H_i), H_i = (4π)^(-n/2) det(Σ_i)^(-1/2).
  log_c = (log_weights - 0.25 * num_dims * _common.LOG_4PI
           + 0.5 * jnp.sum(jnp.log(rsqrt_pivots), axis=0))
  shift = jnp.max(log_c)
  c = jnp.exp(log_c - shift)
  rho = _diagonal.all_pairs(_normalized_overlap_full, axis=1)(
      means_t, covs_t, rsqrt_pivots, means_t, covs_t, rsqrt_pivots)
  terms = c[:, None] * c[None, :] * rho
  rows, = _diagonal.row_sums(terms)
  total = jnp.sum(rows)  # In [1, I²]: the largest term is diagonal and 1.
  return 2.0 * shift + jnp.log(total), terms / total, rows / total


def _self_overlap_gradients_full(means_t, covs_t, terms, row_terms):
  """`_diagonal.self_overlap_gradients` for full covariances.

  Args:
    means_t, covs_t: [n, I], [m, I].
    terms: [I, I], P.
    row_terms: [I], Σ_j P_ij.

  Returns:
    Gradients with respect to means_t [n, I], covs_t [m, I], log weights [I].
  """
  num_dims = means_t.shape[0]
  d_mean, d_cov = _diagonal.all_pairs(_overlap_gradients_full, axis=1)(
      means_t, covs_t, means_t, covs_t)
  weights = 2.0 * terms
  sums = _diagonal.row_sums(*(weights * g for g in d_mean + d_cov))
  return (jnp.stack(sums[:num_dims]), jnp.stack(sums[num_dims:]),
          2.0 * row_terms)


@jax.custom_jvp
def log_self_overlap_full(means_t, covs_t, log_weights):
  """log ∫p² for one full-covariance mixture ([n, I], [m, I], [I])."""
  return _self_overlap_terms_full(means_t, covs_t, log_weights)[0]


def _log_self_overlap_full_jvp(primals, tangents):
  value, terms, row_terms = _self_overlap_terms_full(*primals)
  if not _diagonal.perturbed(tangents):
    return value, jnp.zeros_like(value)
  grads = _self_overlap_gradients_full(primals[0], primals[1], terms, row_terms)
  return value, _diagonal.tangent(value, grads, tangents)


log_self_overlap_full.defjvp(_log_self_overlap_full_jvp, symbolic_zeros=True)


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
  log_g = _diagonal.all_pairs(_log_overlap_full, axis=1)(p_means_t, p_covs_t, q_means_t,
                                                q_covs_t)
  log_total, terms = _diagonal.log_sum_and_shares(
      p_log_weights[:, None] + q_log_weights[None, :] + log_g)
  return log_total - 0.5 * num_dims * _common.LOG_2PI, terms


@jax.custom_jvp
def log_cross_overlap_full(p_means_t, p_covs_t, p_log_weights, q_means_t,
                            q_covs_t, q_log_weights):
  """log ∫pq for full-covariance mixtures ([n, I], [m, I], [I]; [n, J], [m, J], [J])."""
  return _cross_overlap_terms_full(p_means_t, p_covs_t, p_log_weights,
                                   q_means_t, q_covs_t, q_log_weights)[0]


def _log_cross_overlap_full_jvp(primals, tangents):
  """Closed form: ∂/∂θ_i = Σ_j Q_ij ∂ log G(i, j)/∂θ_i, and Σ_i for q's side.

  Autodiff would differentiate through every step of the unrolled
  factorisation; the closed form reuses its results (docs/benchmarks.md).
  """
  p_means_t, p_covs_t, _, q_means_t, q_covs_t, _ = primals
  num_dims = p_means_t.shape[0]
  value, terms = _cross_overlap_terms_full(*primals)
  d_mean, d_cov = _diagonal.all_pairs(_overlap_gradients_full, axis=1)(
      p_means_t, p_covs_t, q_means_t, q_covs_t)
  weighted = [terms * g for g in d_mean + d_cov] + [terms]
  grads = (None,) * 6
  if _diagonal.perturbed(tangents[:3]):
    sums = _diagonal.row_sums(*weighted)
    grads = (jnp.stack(sums[:num_dims]), jnp.stack(sums[num_dims:-1]),
             sums[-1]) + grads[3:]
  if _diagonal.perturbed(tangents[3:]):
    # The b side's partials: -∂/∂μ_a and the same ∂/∂Σ_a.
    sums = _diagonal.row_sums(*weighted, axis=0)
    grads = grads[:3] + (-jnp.stack(sums[:num_dims]),
                         jnp.stack(sums[num_dims:-1]), sums[-1])
  return value, _diagonal.tangent(value, grads, tangents)


log_cross_overlap_full.defjvp(_log_cross_overlap_full_jvp, symbolic_zeros=True)


# ----------------------------------------------------------------------------
# The distance, for either kind of mixture on either side.
