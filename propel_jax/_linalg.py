"""A symmetric positive-definite solve for small matrices, S = U D Uᵀ.

Private: the full-covariance losses (`propel_jax._full_covariance`, through
`solve`) and the modes' Newton steps of both mixture families
(`propel_jax.mixtures`, `propel_jax.directional`, through
`positive_definite_solve`) factorise many small matrices with it. Written as elementwise scalar code rather than batched
LAPACK calls, which XLA:CPU runs one small matrix at a time (see
docs/benchmarks.md).
"""

import functools

from jax import lax
import jax.numpy as jnp
import numpy as np

# Most dimensions factorised by unrolled scalar code (see `solve`).
MAX_UNROLLED_DIMS = 8


def tril_positions(num_dims):
  """{(r, c): k} for the lower-triangle entries r ≥ c in `np.tril_indices` order."""
  rows, cols = np.tril_indices(num_dims)
  return {(int(r), int(c)): k for k, (r, c) in enumerate(zip(rows, cols))}


def solve(cov, diff):
  """Factorises one symmetric positive-definite S and solves with it.

  Up to `MAX_UNROLLED_DIMS` dimensions, a square-root-free Cholesky
  S = U D Uᵀ (U unit lower triangular) written as unrolled scalar code, which
  vmapping over the pairs turns into elementwise [I, J] slabs, where a
  batched `jnp.linalg.cholesky` of [I, J, n, n] pays a per-matrix cost that
  dominates for small n (docs/benchmarks.md). Its size grows like n³ though,
  and so does its compile time, so above that the same factorisation runs as
  loops over k on whole [n, n] arrays.

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
  if diff.shape[0] <= MAX_UNROLLED_DIMS:
    return solve_unrolled(cov, diff)
  return _solve_looped(cov, diff)


def solve_unrolled(cov, diff):
  """`solve` by S = U D Uᵀ in unrolled scalar code.

  With y = U⁻¹ d (forward substitution, alongside the factorisation),
  dᵀ S⁻¹ d = Σ_k y_k² / D_k; u = U⁻ᵀ D⁻¹ y by back substitution; S⁻¹ by
  the backward recurrence X_rc = δ_rc / D_r - Σ_{k>r} U_kr X_kc (r ≤ c,
  X symmetric), which solves Uᵀ X = D⁻¹ U⁻¹ without forming U⁻¹.

  Every operation is elementwise, so cov and diff may also be lists of
  equally shaped arrays (one per entry): the results then have that shape.
  """
  num_dims = len(diff)
  entry = {rc: cov[k] for rc, k in tril_positions(num_dims).items()}
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
  """`solve` by the same S = U D Uᵀ, as loops over k on whole [n, n] arrays.

  The unrolled code's algorithm with a `fori_loop` per stage, so that its
  size stays O(n²) whatever n. Plain jnp rather than `jnp.linalg.cholesky`
  and triangular solves: XLA:CPU (jax 0.10) can deadlock calling those
  LAPACK routines from vmapped pair code on a 2-core machine
  (docs/benchmarks.md).
  """
  num_dims = diff.shape[0]
  positions = tril_positions(num_dims)
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


def positive_definite_solve(matrix, rhs):
  """M⁻¹ b for symmetric M [..., n, n] and b [..., n]; NaN unless M is positive definite.

  `solve_unrolled` on the matrices' entries: elementwise ops that
  XLA fuses, where batched LAPACK calls run one small system at a time
  (docs/benchmarks.md). M is positive definite exactly when every pivot of
  its S = U D Uᵀ factorisation is positive; otherwise the result is NaN,
  which is how callers tell.

  Args:
    matrix: [..., n, n] symmetric (only the lower triangle is read).
    rhs: [..., n].

  Returns:
    [..., n].
  """
  n = matrix.shape[-1]
  rows, cols = np.tril_indices(n)
  pivots, _, solution, _ = solve_unrolled(
      [matrix[..., r, c] for r, c in zip(rows, cols)],
      [rhs[..., i] for i in range(n)])
  definite = functools.reduce(jnp.logical_and, [p > 0 for p in pivots])
  return jnp.where(definite[..., None], jnp.stack(solution, axis=-1), jnp.nan)
