"""The speed ideas behind propel_jax.propel_loss, each measured against the others.

Each variant computes the same PROPEL value + gradient (checked against the
library before timing); they differ only in how the I×I self term is built:

  naive     vmap over component pairs of the n-D log-overlap, full I×I
            log-sum-exp, autodiff (the first version of the library)
  slabs     the same maths one dimension at a time ([I, I] slabs, unrolled),
            autodiff: XLA:CPU reduces short last axes slowly
  rho       slabs + normalised overlap ρ (one rsqrt and one exp per pair
            instead of a log per pair and dimension), autodiff
  triangle  rho on the I(I+1)/2 pairs i ≤ j only (symmetry), autodiff
  library   propel_jax.propel_loss: rho + closed-form custom JVP

`rho` and `triangle` pick their pairs by indexing (a gather, whose gradient
is a scatter-add); that, not the maths, is what makes them slow on XLA:CPU,
and why the library builds pairs with vmap instead.

Timed interleaved in one process (order rotating), median CPU time per call
(robust to other processes on a shared machine) and wall time:

    python benchmarks/loss_variants.py
"""

import argparse
import math
import time

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from propel_jax import propel_loss

TARGET_SCALE = 0.2
_LOG_2PI = math.log(2 * math.pi)
_LOG_4PI = math.log(4 * math.pi)


def _pairs(fn):
  return jax.vmap(jax.vmap(fn, (None, None, 0, 0)), (0, 0, None, None))


def _log_overlap(mean_a, var_a, mean_b, var_b):
  var = var_a + var_b
  return -0.5 * jnp.sum(_LOG_2PI + jnp.log(var) + (mean_a - mean_b) ** 2 / var)


def _cross(means, variances, targets):
  """log 2∫P_gt P_m, [B]: cheap (I × 1), the same in every variant."""
  num = means.shape[1]
  log_g = jax.vmap(jax.vmap(_log_overlap, (0, 0, None, None)))(
      means, variances, targets, jnp.full(targets.shape, TARGET_SCALE ** 2))
  return math.log(2) + jax.nn.logsumexp(log_g - math.log(num), axis=-1)


def _loss(log_self, means, scales, targets):
  """Mean PROPEL given a batched log ∫P_m² function."""
  num, dim = means.shape[1:]
  variances = jnp.square(scales)
  log_h_gt = -0.5 * dim * _LOG_4PI - dim * math.log(TARGET_SCALE)
  log_pp = log_self(means, variances) - 2 * math.log(num)
  return jnp.mean(jnp.logaddexp(log_pp, log_h_gt) - _cross(means, variances, targets))


def naive_self(means, variances):
  log_g = jax.vmap(_pairs(_log_overlap))(means, variances, means, variances)
  return jax.nn.logsumexp(log_g, axis=(-2, -1))


def slabs_self(means, variances):
  total = 0.0
  for d in range(means.shape[-1]):
    m, v = means[..., d, None], variances[..., d, None]
    var = v + jnp.swapaxes(v, -1, -2)
    total += jnp.log(var) + (m - jnp.swapaxes(m, -1, -2)) ** 2 / var
  return jax.nn.logsumexp(-0.5 * (means.shape[-1] * _LOG_2PI + total), axis=(-2, -1))


def _rho_terms(means, variances, rows, cols):
  """Normalised self-overlap terms c_i c_j ρ_ij on the given pairs, [B, P]."""
  num_dims = means.shape[-1]
  log_c = -0.25 * num_dims * _LOG_4PI - 0.25 * jnp.sum(jnp.log(variances), -1)
  shift = lax.stop_gradient(jnp.max(log_c, -1, keepdims=True))
  c = jnp.exp(log_c - shift)
  spread, sq_dist = 1.0, 0.0
  for d in range(num_dims):
    m, v = means[..., d], variances[..., d]
    var = v[:, rows] + v[:, cols]
    spread *= var * lax.rsqrt(4 * v[:, rows] * v[:, cols])
    sq_dist += (m[:, rows] - m[:, cols]) ** 2 / var
  return c[:, rows] * c[:, cols] * lax.rsqrt(spread) * jnp.exp(-0.5 * sq_dist), shift[:, 0]


def rho_self(means, variances):
  num = means.shape[1]
  rows, cols = np.divmod(np.arange(num * num), num)
  terms, shift = _rho_terms(means, variances, rows, cols)
  return 2 * shift + jnp.log(jnp.sum(terms, -1))


def triangle_self(means, variances):
  rows, cols = np.triu_indices(means.shape[1])
  terms, shift = _rho_terms(means, variances, rows, cols)
  weights = np.where(rows == cols, 1.0, 2.0)  # off-diagonal pairs count twice
  return 2 * shift + jnp.log(jnp.sum(terms * weights, -1))


VARIANTS = {
    'naive': lambda m, s, y: _loss(naive_self, m, s, y),
    'slabs': lambda m, s, y: _loss(slabs_self, m, s, y),
    'rho': lambda m, s, y: _loss(rho_self, m, s, y),
    'triangle': lambda m, s, y: _loss(triangle_self, m, s, y),
    'library': lambda m, s, y: propel_loss(m, s, y, target_scale=TARGET_SCALE).mean(),
}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--reps', type=int, default=30)
  args = parser.parse_args()
  print(f'jax {jax.__version__}, {jax.devices()[0].platform}; value + gradient, '
        'float32, median CPU ms (wall ms)')
  print('    B    I   n | ' + ' | '.join(f'{name:>17}' for name in VARIANTS))
  for batch, num, dim in [(256, 8, 3), (1024, 16, 3), (256, 32, 16), (4096, 64, 3)]:
    rng = np.random.default_rng(0)
    data = [jnp.asarray(a, jnp.float32) for a in (
        rng.normal(size=(batch, num, dim)), rng.uniform(0.1, 1, (batch, num, dim)),
        rng.normal(size=(batch, dim)))]
    steps = {name: jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))
             for name, fn in VARIANTS.items()}
    reference = steps['library'](*data)
    for name, step in steps.items():
      value, grads = step(*data)
      np.testing.assert_allclose(value, reference[0], rtol=1e-4, err_msg=name)
      for g, r in zip(grads, reference[1]):
        np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-6 * np.abs(r).max(),
                                   err_msg=name)
    cpu = {name: [] for name in steps}
    wall = {name: [] for name in steps}
    names = list(steps)
    reps = args.reps if batch * num * num * dim < 5e6 else max(3, args.reps // 10)
    for rep in range(reps):
      for name in names[rep % len(names):] + names[:rep % len(names)]:
        start, start_cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(steps[name](*data))
        cpu[name].append(time.process_time() - start_cpu)
        wall[name].append(time.perf_counter() - start)
    print(f'{batch:5d} {num:4d} {dim:3d} | ' + ' | '.join(
        f'{np.median(cpu[n]) * 1e3:8.2f} ({np.median(wall[n]) * 1e3:6.2f})'
        for n in names), flush=True)


if __name__ == '__main__':
  main()
