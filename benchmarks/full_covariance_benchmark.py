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

On XLA:CPU with two or more cores (jax 0.10.2), the naive version's jitted
step hangs on its second or third call (`jnp.linalg.cholesky` and triangular
solves of vmapped pairs; the worker pool idles while the caller waits), so
time it pinned to one core or leave it out with `--no-naive`.

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
  gradient equal the naive version's; without `with_naive` only the first
  pair is timed.
  """
  means, scales, factors, targets = make_data(*point)
  library = lambda m, s, y: propel_loss(m, s, y, target_scale=TARGET_SCALE)
  naive = lambda m, s, y: naive_propel(m, s, y, TARGET_SCALE)
  steps = {'diagonal': step(library, means, scales, targets),
           'full': step(library, means, factors, targets),
           'naive': step(naive, means, factors, targets)}
  (full, full_grads), (ref, ref_grads) = steps['full'](), steps['naive']()
  np.testing.assert_allclose(full, ref, rtol=1e-4)
  for got, want in zip(full_grads, ref_grads):
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)
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
