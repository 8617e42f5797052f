"""Speed of full-covariance PROPEL: against the diagonal path and a naive version.

Times value + gradient (with respect to means and scales) of the batch-mean
loss, `jax.jit(jax.value_and_grad(...))`, three ways on the same float32
data, and prints medians of wall and CPU time and the ratios, each ratio
from its own pair of calls interleaved in one process (alternating the
order): diagonal with full, then full with naive. (Interleaving all three
would time the full loss right after the naive one has flushed the caches,
which inflates it by a quarter.)

  diagonal  `propel_loss` with scales [B, I, n] (standard deviations);
  full      `propel_loss` with scales [B, I, n, n] (Cholesky factors: the
            same diagonal plus a random strict lower triangle);
  naive     the same full-covariance loss written plainly in jnp below:
            every pair's log N(μ_a; μ_b, Σ_a + Σ_b) from `jnp.linalg.cholesky`
            and a triangular solve, log-sum-exp, autodiff.

    python benchmarks/full_covariance_benchmark.py --no-naive [--reps 30]
    taskset -c 0 python benchmarks/full_covariance_benchmark.py   # one core

The loss and its gradient are first checked against a NumPy float64
evaluation of the same definition (the value, and the gradient along random
directions by central differences), which runs anywhere. The naive version
runs `jnp.linalg.cholesky` and triangular solves of vmapped pairs, which hang
on XLA:CPU with two or more cores (see docs/benchmarks.md#full-covariance),
so time it pinned to one core or leave it out with `--no-naive`.

The goal: full covariance at n = 3 costs at most 3× the diagonal path.
"""

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np

from loss_benchmark import describe_machine  # pylint: disable=g-bad-import-order
from loss_benchmark import time_interleaved  # pylint: disable=g-bad-import-order
from propel_jax import propel_loss

TARGET_SCALE = 0.2
POINTS = [(1024, 16, 3), (256, 8, 8)]


def make_data(batch, num, dim, seed=0):
  """Means, standard deviations, Cholesky factors with those diagonals, targets."""
  rng = np.random.default_rng(seed)
  means = rng.normal(size=(batch, num, dim)).astype(np.float32)
  scales = rng.uniform(0.1, 1.0, size=(batch, num, dim)).astype(np.float32)
  factors = (np.tril(rng.normal(size=(batch, num, dim, dim)) * 0.3, k=-1)
             + scales[..., None] * np.eye(dim)).astype(np.float32)
  targets = rng.normal(size=(batch, dim)).astype(np.float32)
  return means, scales, factors, targets


def naive_propel(means, factors, targets, target_scale):
  """PROPEL with full covariances, one Cholesky per pair: [B, I, n], [B, I, n, n], [B, n]."""
  num, dim = means.shape[-2:]
  lower = jnp.tril(factors)
  covariances = lower @ jnp.swapaxes(lower, -1, -2)
  gt_covariance = target_scale ** 2 * jnp.eye(dim)
  log_w = -math.log(num)

  def log_overlap(mean_a, cov_a, mean_b, cov_b):
    cholesky = jnp.linalg.cholesky(cov_a + cov_b)
    z = jax.scipy.linalg.solve_triangular(cholesky, mean_a - mean_b, lower=True)
    return (-0.5 * (dim * math.log(2 * math.pi) + jnp.sum(jnp.square(z)))
            - jnp.sum(jnp.log(jnp.diagonal(cholesky))))

  all_pairs = jax.vmap(jax.vmap(log_overlap, (None, None, 0, 0)), (0, 0, None, None))

  def one(m, c, y):
    log_gt = log_overlap(y, gt_covariance, y, gt_covariance)
    log_model = jax.nn.logsumexp(2 * log_w + all_pairs(m, c, m, c))
    log_cross = jax.nn.logsumexp(log_w + all_pairs(y[None], gt_covariance[None], m, c))
    return jnp.logaddexp(log_gt, log_model) - math.log(2.0) - log_cross

  return jax.vmap(one)(means, covariances, targets)


def _log_overlaps(mean_a, cov_a, mean_b, cov_b):
  """log N(mean_a; mean_b, cov_a + cov_b) in float64 NumPy, broadcasting over leading axes."""
  cov = cov_a + cov_b
  diff = mean_a - mean_b
  _, log_det = np.linalg.slogdet(cov)
  quad = np.sum(diff * np.linalg.solve(cov, diff[..., None])[..., 0], axis=-1)
  return -0.5 * (diff.shape[-1] * math.log(2 * math.pi) + log_det + quad)


def _logsumexp(x, axes):
  top = np.max(x, axis=axes, keepdims=True)
  return np.log(np.sum(np.exp(x - top), axis=axes)) + np.squeeze(top, axis=axes)


def reference_mean_loss(means, factors, targets, target_scale):
  """The batch-mean PROPEL loss with full covariances, from its definition in float64 NumPy.

  D = log(∫p² + ∫q²) − log 2 − log ∫pq for p = N(y, s²·1) and q the
  equal-weight mixture of N(μ_i, L_i L_iᵀ); every integral is a sum of
  Gaussian overlaps ∫N(x; a, A) N(x; b, B) dx = N(a; b, A + B).
  """
  means, targets = np.float64(means), np.float64(targets)
  lower = np.tril(np.float64(factors))
  covs = lower @ np.swapaxes(lower, -1, -2)  # [B, I, n, n]
  num, dim = means.shape[-2:]
  gt_cov = target_scale ** 2 * np.eye(dim)
  log_w = -math.log(num)
  log_model = _logsumexp(2 * log_w + _log_overlaps(
      means[:, :, None], covs[:, :, None], means[:, None], covs[:, None]), axes=(1, 2))
  log_gt = _log_overlaps(targets, gt_cov, targets, gt_cov)
  log_cross = _logsumexp(log_w + _log_overlaps(targets[:, None], gt_cov, means, covs), axes=1)
  return np.mean(np.logaddexp(log_gt, log_model) - math.log(2.0) - log_cross)


def check_against_reference(value, grads, means, factors, targets, name, directions=3):
  """Asserts a jitted (mean loss, (∂means, ∂factors)) equals the float64 reference.

  The gradient is checked along random directions (lower-triangular for the
  factors, the only part the loss reads) against central differences of the
  reference.
  """
  reference = lambda m, f: reference_mean_loss(m, f, targets, TARGET_SCALE)
  np.testing.assert_allclose(value, reference(means, factors), rtol=1e-4,
                             err_msg=f'{name}: loss value')
  rng = np.random.default_rng(1)
  step_size = 1e-5
  for _ in range(directions):
    d_means = rng.normal(size=means.shape)
    d_factors = np.tril(rng.normal(size=factors.shape))
    along = (np.sum(np.float64(grads[0]) * d_means) +
             np.sum(np.float64(grads[1]) * d_factors))
    m64, f64 = np.float64(means), np.float64(factors)
    differences = (reference(m64 + step_size * d_means, f64 + step_size * d_factors) -
                   reference(m64 - step_size * d_means, f64 - step_size * d_factors))
    np.testing.assert_allclose(along, differences / (2 * step_size), rtol=1e-3,
                               err_msg=f'{name}: gradient along a random direction')


def step(loss, means, scales, targets):
  """A closure running one jitted value-and-gradient of the mean loss, blocking until done."""
  fn = jax.jit(jax.value_and_grad(lambda m, s: loss(m, s, targets).mean(), argnums=(0, 1)))
  args = [jax.device_put(a) for a in (means, scales)]

  def run():
    return jax.block_until_ready(fn(*args))
  return run


def measure(point, reps, with_naive):
  """Interleaved timings, {'diagonal', 'full'} and {'full', 'naive'}: (wall s, CPU s).

  Checks first (one call each) that the full-covariance loss and its
  gradient, and the naive version's where it is timed, equal the float64
  reference; without `with_naive` only the first pair is timed and the naive
  version never runs.
  """
  means, scales, factors, targets = make_data(*point)
  library = lambda m, s, y: propel_loss(m, s, y, target_scale=TARGET_SCALE)
  naive = lambda m, s, y: naive_propel(m, s, y, TARGET_SCALE)
  steps = {'diagonal': step(library, means, scales, targets),
           'full': step(library, means, factors, targets),
           'naive': step(naive, means, factors, targets)}
  for name in ['full'] + (['naive'] if with_naive else []):
    check_against_reference(*steps[name](), means, factors, targets, name)
  pairs = [('diagonal', 'full')] + ([('full', 'naive')] if with_naive else [])
  return tuple(time_interleaved({k: steps[k] for k in pair}, reps) for pair in pairs)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--reps', type=int, default=30)
  parser.add_argument('--naive', action=argparse.BooleanOptionalAction, default=True,
                      help='also time the naive version (see above: one core only)')
  args = parser.parse_args()
  print(describe_machine())
  print('value + gradient of the mean loss w.r.t. means and scales, float32, '
        'median ms of wall | CPU time')
  print('    B    I   n |   diagonal    |     full      | full/diagonal' +
        (' ||     full      |     naive     | naive/full' if args.naive else ''))
  for point in POINTS:
    cells = [f'{point[0]:5d} {point[1]:4d} {point[2]:3d}']
    for (slow, fast), result in zip((('full', 'diagonal'), ('naive', 'full')),
                                    measure(point, args.reps, args.naive)):
      cells += [f'{result[k][0] * 1e3:6.2f} {result[k][1] * 1e3:6.2f}' for k in (fast, slow)]
      cells.append(f'{result[slow][0] / result[fast][0]:5.2f} '
                   f'{result[slow][1] / result[fast][1]:5.2f}x')
    print(' | '.join(cells), flush=True)


if __name__ == '__main__':
  main()
