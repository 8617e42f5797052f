"""Input pipeline speed: build times and batches/s against the training step.

Measures, on this machine:
  1. the time to build the default synthetic datasets (64×64, 10k / 3k);
  2. the batches/s of `create_iterator` (training mode, flips on) for batch
     sizes 64 and 128: from the in-memory cache (the default for this size),
     streamed from the array_record files, and streamed by Grain worker
     processes;
  3. if `propel_jax.nn.models` is available, the batches/s that a training step
     of the paper's CNN (forward, backward, SGD update; jitted) consumes at the
     same batch size, and the ratio pipeline / step (goal: >= 5).

Variants are timed in interleaved rounds (each round times every variant
once) and the median over rounds is reported, so that drift of a shared
machine hits all variants alike.

  python benchmarks/input_pipeline_benchmark.py [--data_dir=DIR] [--rounds=5]
"""

import statistics
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

from propel_jax.data import input_pipeline
from propel_jax.data.builders import synthetic_hands

_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'TFDS data dir; default: a fresh temporary directory '
    '(so that the build is timed).')
_DATASET = flags.DEFINE_string('dataset', 'synthetic_hands/ambiguous',
                               'Dataset whose pipeline is timed.')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Interleaved timing rounds.')
_BATCHES = flags.DEFINE_integer('batches', 100, 'Batches per round.')
_WORKERS = flags.DEFINE_integer('workers', 2, 'Grain workers of the worker '
                                'variant (0 to skip it).')


def _time_build(data_dir, config_name):
  start = time.perf_counter()
  synthetic_hands.build(data_dir, config_name)
  return time.perf_counter() - start


def _pipeline_runner(data_dir, batch_size, cache, worker_count):
  it = input_pipeline.create_iterator(
      _DATASET.value, 'train', global_batch_size=batch_size, seed=0, train=True,
      data_dir=data_dir, cache=cache, worker_count=worker_count, shard_index=0,
      shard_count=1)
  for _ in range(3):  # Start the workers, fill buffers.
    next(it)

  def run(num_batches):
    for _ in range(num_batches):
      next(it)
  run.close = it.close
  return run


def _train_step_runner(info, batch_size):
  """A jitted SGD step of the paper's CNN on a fixed batch, or None."""
  try:
    from flax import nnx  # pylint: disable=g-import-not-at-top
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from propel_jax.nn import models  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    print(f'(no training-step comparison: {e})')
    return None
  model = models.PaperCNN(info.image_shape, rngs=nnx.Rngs(0))
  images = jnp.asarray(np.random.default_rng(0).uniform(
      size=(batch_size,) + info.image_shape).astype(np.float32))

  @nnx.jit
  def step(model, images):
    # The heads are tiny next to the backbone: a squared-feature loss costs
    # what the real step costs to within a few percent.
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(images) ** 2))(model)
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads))
    return loss

  step(model, images).block_until_ready()

  def run(num_batches):
    for _ in range(num_batches):
      loss = step(model, images)
    loss.block_until_ready()
  # A step takes far longer than a batch of input: time fewer of them.
  run.num_batches = max(2, _BATCHES.value // 20)
  return run


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = _DATA_DIR.value or tmp
    for config_name in ('ambiguous', 'unambiguous'):
      seconds = _time_build(data_dir, config_name)
      print(f'build synthetic_hands/{config_name}: {seconds:.1f} s')
    info = input_pipeline.get_dataset_info(_DATASET.value, data_dir=data_dir)
    print(f'{_DATASET.value}: image {info.image_shape}, splits {info.split_sizes}')
    for batch_size in (64, 128):
      runners = {
          'pipeline, cached': _pipeline_runner(data_dir, batch_size, True, 0),
          'pipeline, streamed': _pipeline_runner(data_dir, batch_size, False,
                                                 0)}
      if _WORKERS.value:
        runners[f'pipeline, streamed, {_WORKERS.value} workers'] = (
            _pipeline_runner(data_dir, batch_size, False, _WORKERS.value))
      step = _train_step_runner(info, batch_size)
      if step is not None:
        runners['training step (consumer)'] = step
      rates = {name: [] for name in runners}
      for _ in range(_ROUNDS.value):
        for name, run in runners.items():
          num_batches = getattr(run, 'num_batches', _BATCHES.value)
          start = time.perf_counter()
          run(num_batches)
          rates[name].append(num_batches / (time.perf_counter() - start))
      print(f'\nbatch {batch_size} (median of {_ROUNDS.value} rounds):')
      medians = {name: statistics.median(r) for name, r in rates.items()}
      for name, rate in medians.items():
        print(f'  {name:34s} {rate:8.1f} batches/s {rate * batch_size:10.0f} images/s')
      for run in runners.values():
        if hasattr(run, 'close'):
          run.close()  # Stops worker processes.
      if 'training step (consumer)' in medians:
        consumer = medians['training step (consumer)']
        for name, rate in medians.items():
          if name.startswith('pipeline'):
            print(f'  ratio {name} / training step: {rate / consumer:.1f}x')


if __name__ == '__main__':
  app.run(main)
