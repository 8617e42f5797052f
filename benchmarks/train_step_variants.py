"""The speed ideas behind the training step, each measured by taking it out.

Every variant is `train.jit_train_step` of the same model, config and batch
as `train_step_benchmark.py`'s pure_jit (the step `experiments.train` runs),
compiled while one building block of `propel_jax.nn.layers` is swapped for
the simpler form it replaced:

  library             everything as shipped
  composed_bn         nnx.BatchNorm, ReLU and max_pool_2x2 composed and
                      differentiated by autodiff, instead of the fused
                      batch_norm_relu_max_pool
  reduce_window_pool  composed_bn with nnx.max_pool (reduce_window) as well
  xla_conv_forward    XLA's convolution for the first layer's forward pass
                      (1 input channel) instead of tap multiply-adds
  nhwc_patches        row-block weight gradient with patches concatenated
                      on the channel axis, [B, r, W, 9C] (the first version)
  xla_conv            XLA's convolution and its gradients throughout
                      (`conv_weight_gradient='xla'`)

Each variant's loss and gradient norm after one step are checked against the
library's before timing; then all run interleaved (order rotating), and the
table gives medians of wall and CPU time per step and the ratio to the
library (> 1: the idea pays):

    python benchmarks/train_step_variants.py [--reps 10] [--variants a,b]
    taskset -c 0 python benchmarks/train_step_variants.py   # one core
"""

import argparse
import contextlib
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from flax import nnx

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from loss_benchmark import time_interleaved  # pylint: disable=g-import-not-at-top
import train_step_benchmark as bench  # pylint: disable=g-import-not-at-top
from propel_jax.nn import layers  # pylint: disable=g-import-not-at-top
from propel_jax.training import parallel  # pylint: disable=g-import-not-at-top
from propel_jax.training import train  # pylint: disable=g-import-not-at-top


def _composed(pool):
  def batch_norm_relu_max_pool(norm, images):
    return pool(nnx.relu(norm(images)))
  return batch_norm_relu_max_pool


def _nhwc_weight_gradient(images, cotangent):
  """The first row-block weight gradient: patches [B, r, W, 9C], channel axis last."""
  _, height, width, channels = images.shape
  rows = layers._rows_per_block(images)  # pylint: disable=protected-access
  padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))

  def accumulate(total, block):
    window = jax.lax.dynamic_slice_in_dim(padded, block * rows, rows + 2, axis=1)
    grad_rows = jax.lax.dynamic_slice_in_dim(cotangent, block * rows, rows, axis=1)
    patches = jnp.concatenate([window[:, i:i + rows, j:j + width]
                               for i in range(3) for j in range(3)], axis=-1)
    return total + jnp.einsum('bhwk,bhwo->ko', patches, grad_rows), None

  zeros = jnp.zeros((9 * channels, cotangent.shape[-1]), jnp.result_type(images, cotangent))
  total, _ = jax.lax.scan(accumulate, zeros, jnp.arange(height // rows))
  return total.reshape(3, 3, channels, cotangent.shape[-1])


def _max_pool_reduce_window(images):
  return nnx.max_pool(images, (2, 2), strides=(2, 2))


# Variant: (layers attributes to swap while tracing, config.model overrides).
VARIANTS = {
    'library': ({}, {}),
    'composed_bn': ({'batch_norm_relu_max_pool': _composed(layers.max_pool_2x2)}, {}),
    'reduce_window_pool': ({'batch_norm_relu_max_pool': _composed(_max_pool_reduce_window)},
                           {}),
    'xla_conv_forward': ({'_MAX_TAP_CHANNELS': 0}, {}),
    'nhwc_patches': ({'_weight_gradient_row_blocks': _nhwc_weight_gradient}, {}),
    'xla_conv': ({}, {'conv_weight_gradient': 'xla'}),
}


@contextlib.contextmanager
def _swapped(attributes):
  saved = {name: getattr(layers, name) for name in attributes}
  try:
    for name, value in attributes.items():
      setattr(layers, name, value)
    yield
  finally:
    for name, value in saved.items():
      setattr(layers, name, value)


def compiled_step(batch, attributes, model_config):
  """A step() closure over the variant's compiled train step and its own state."""
  config = bench._config(**model_config)  # pylint: disable=protected-access
  mesh = parallel.create_mesh()
  tx = train.create_optimizer(config)
  model, state = train.create_model_and_state(
      config, bench._info(batch['image'].shape[1]), tx, mesh)  # pylint: disable=protected-access
  batch = parallel.shard_batch(batch, mesh)
  with _swapped(attributes):
    step = train.jit_train_step(model, tx, train.learning_rate_schedule(config), mesh)
    step = step.lower(state, batch).compile()
  holder = [state]

  def run():
    holder[0], metrics = step(holder[0], batch)
    return metrics
  return run


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--image_size', type=int, default=128)
  parser.add_argument('--reps', type=int, default=10)
  parser.add_argument('--variants', default=','.join(VARIANTS),
                      help=f'comma-separated, from {",".join(VARIANTS)}')
  args = parser.parse_args()
  names = args.variants.split(',')
  if 'library' not in names:
    names.insert(0, 'library')
  batch = bench.make_batch(args.batch, args.image_size)
  steps = {name: compiled_step(batch, *VARIANTS[name]) for name in names}
  first = {name: jax.device_get(step()) for name, step in steps.items()}
  for name in names:  # The same step: loss and gradient norm to float32 rounding.
    for key in ('loss', 'grad_norm'):
      np.testing.assert_allclose(first[name][key], first['library'][key], rtol=1e-3,
                                 err_msg=f'{name}: {key}')
  times = time_interleaved({name: lambda s=step: jax.block_until_ready(s())
                            for name, step in steps.items()}, args.reps)
  print(f'\nTraining step variants: batch {args.batch}, {args.image_size}×{args.image_size}×1, '
        f'jax {jax.__version__} on {jax.devices()[0].device_kind}, '
        f'{len(os.sched_getaffinity(0))} of {os.cpu_count()} CPU cores, load average '
        f'{os.getloadavg()[0]:.1f}; medians of {args.reps}, interleaved.')
  print('Ratio = variant time / library time (> 1: the library is faster).\n')
  print('| variant            | wall ms | CPU ms | ratio (wall) | ratio (CPU) |')
  print('|--------------------|--------:|-------:|-------------:|------------:|')
  wall0, cpu0 = times['library']
  for name in names:
    wall, cpu = times[name]
    print(f'| {name:<18} | {1e3 * wall:7.1f} | {1e3 * cpu:6.1f} | {wall / wall0:11.2f}× '
          f'| {cpu / cpu0:10.2f}× |')


if __name__ == '__main__':
  main()
