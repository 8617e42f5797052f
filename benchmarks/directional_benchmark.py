"""Speed of the vMF PROPEL loss against the diagonal Gaussian one.

Times the jitted value and gradient of the batch-mean loss with respect to
the component parameters (mean directions and concentrations; means and
scales for the Gaussian) at the same batch size B, number of components I
and dimension (d on the sphere, n = d for the Gaussian), both at their
defaults, interleaved in one process (alternating which goes first), and
prints the median milliseconds and their ratio directional / Gaussian.

    python benchmarks/directional_benchmark.py
    python benchmarks/directional_benchmark.py --reps 200 --antipodal

On a shared machine the medians are still noisy: re-run when it is quiet.
"""

import argparse

import jax
import numpy as np

from loss_benchmark import describe_machine  # pylint: disable=g-bad-import-order
from loss_benchmark import time_interleaved  # pylint: disable=g-bad-import-order
from propel_jax import directional
from propel_jax import losses

POINTS = [(b, i, d) for d in (2, 3, 4) for b, i in ((1024, 16), (256, 8))]


def directional_step(batch, num, dim, antipodal, seed=0):
  """A closure running one jitted value-and-gradient of the vMF loss."""
  rng = np.random.default_rng(seed)
  args = [jax.device_put(a.astype(np.float32)) for a in (
      rng.normal(size=(batch, num, dim)),              # raw mean directions
      rng.uniform(1.0, 50.0, size=(batch, num)),       # concentrations
      rng.normal(size=(batch, dim)))]                  # raw targets
  fn = jax.jit(jax.value_and_grad(
      lambda m, k, y: directional.propel_loss(
          m, k, y, target_concentration=20.0, antipodal=antipodal).mean(),
      argnums=(0, 1)))
  return lambda: jax.block_until_ready(fn(*args))


def gaussian_step(batch, num, dim, seed=0):
  """The same for propel_jax.losses.propel_loss (diagonal Gaussians, n = d)."""
  rng = np.random.default_rng(seed)
  args = [jax.device_put(a.astype(np.float32)) for a in (
      rng.normal(size=(batch, num, dim)),
      rng.uniform(0.1, 1.0, size=(batch, num, dim)),
      rng.normal(size=(batch, dim)))]
  fn = jax.jit(jax.value_and_grad(
      lambda m, s, y: losses.propel_loss(m, s, y, target_scale=0.2).mean(),
      argnums=(0, 1)))
  return lambda: jax.block_until_ready(fn(*args))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--reps', type=int, default=100)
  parser.add_argument('--antipodal', action='store_true',
                      help='time the symmetrised (antipodal=True) vMF loss')
  args = parser.parse_args()
  print(f'{describe_machine()}; antipodal={args.antipodal}')
  print('value + gradient of the mean loss, float32, median ms of wall and CPU time')
  print('    B    I   d | vMF wall      cpu | Gauss wall      cpu | ratio wall    cpu')
  for point in POINTS:
    result = time_interleaved({'vmf': directional_step(*point, args.antipodal),
                               'gauss': gaussian_step(*point)}, args.reps)
    (vw, vc), (gw, gc) = result['vmf'], result['gauss']
    print(f'{point[0]:5d} {point[1]:4d} {point[2]:3d} | {vw * 1e3:8.3f} {vc * 1e3:8.3f} | '
          f'{gw * 1e3:10.3f} {gc * 1e3:8.3f} | {vw / gw:9.2f}x {vc / gc:5.2f}x',
          flush=True)


if __name__ == '__main__':
  main()
