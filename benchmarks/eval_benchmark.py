"""Evaluation cost of a PROPEL I = 8 model against an MSE model on the same split.

Both models are the synthetic-hands config's network (`synthetic.py`, or its
`:small` variant with --small), trained for --train_steps steps first so that
the mixtures are trained ones (the mode search's cost depends on them). Then,
interleaved (order alternating), medians of wall and CPU time of

  evaluation.run       the whole evaluation `experiments.train` runs on a
                       split: input pipeline, jitted predict step (forward,
                       loss, decoders: the mixture's mode search for PROPEL),
                       metrics
  compute_metrics      the metrics alone, on that run's outputs (NLL, CRPS,
                       coverage and mode recall for the mixture; errors only
                       for MSE)
  mixtures.modes       PROPEL only: the mode search alone on the split's
                       trained mixtures, in the predict step's (full)
                       batches and all at once

and the ratio PROPEL / MSE of the first two (the goal: at most 1.3 for the
whole evaluation; measurements in docs/benchmarks.md#evaluation). The
dataset is built into --data_dir on first use.

  python benchmarks/eval_benchmark.py [--reps 5] [--train_steps 300]
  python benchmarks/eval_benchmark.py --small --train_steps 50   # CPU-sized
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from loss_benchmark import time_interleaved  # pylint: disable=g-import-not-at-top

METHODS = {'propel_i8': dict(head='propel', num_components=8), 'mse': dict(head='mse')}


def trained_model(config, train_steps):
  """(predict step, state, mesh, info) of `config`'s model after `train_steps` steps."""
  import jax
  from propel_jax.data import input_pipeline
  from propel_jax.training import config as config_lib
  from propel_jax.training import parallel
  from propel_jax.training import train
  config_lib.validate(config)
  mesh = parallel.create_mesh()
  info = input_pipeline.get_dataset_info(config.dataset, data_dir=config.data_dir,
                                         image_size=config.image_size)
  tx = train.create_optimizer(config)
  model, state = train.create_model_and_state(config, info, tx, mesh)
  step = train.jit_train_step(model, tx, train.learning_rate_schedule(config), mesh)
  batches = input_pipeline.create_iterator(
      config.dataset, config.train_split, global_batch_size=config.batch_size,
      seed=config.seed, train=True, data_dir=config.data_dir, image_size=config.image_size,
      augment=config.augment, worker_count=config.worker_count)
  for _ in range(train_steps):
    state, _ = step(state, parallel.shard_batch(next(batches), mesh))
  jax.block_until_ready(state)
  return train.jit_predict_step(model, mesh), state, mesh, info


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--small', action='store_true',
                      help="synthetic.py:small (32×32, 256 test images) instead of the full "
                           "config (64×64, 3,000 test images)")
  parser.add_argument('--train_steps', type=int, default=300)
  parser.add_argument('--reps', type=int, default=5)
  parser.add_argument('--data_dir', default=None, help='TFDS data directory (default: TFDS\'s)')
  args = parser.parse_args()

  import jax
  from experiments.configs import synthetic
  from propel_jax import mixtures
  from propel_jax.training import evaluation
  runs, results = {}, {}
  for name, overrides in METHODS.items():
    config = synthetic.get_config('small' if args.small else 'full')
    config.data_dir = args.data_dir
    config.num_train_steps = max(args.train_steps, 1)
    config.update(overrides)
    predict, state, mesh, info = trained_model(config, args.train_steps)
    runs[name] = (predict, state, mesh, info, config)

  def evaluate(name):
    predict, state, mesh, info, config = runs[name]
    results[name] = evaluation.run(predict, state=state, mesh=mesh, info=info, config=config,
                                   split=config.test_split)

  def metrics(name):
    evaluation.compute_metrics(results[name].outputs, runs[name][3])

  find_modes = jax.jit(mixtures.modes)

  def modes(batch_size):
    mixture = results['propel_i8'].outputs.mixture
    for start in range(0, len(mixture.means) - batch_size + 1, batch_size):  # full batches
      jax.block_until_ready(find_modes(*(a[start:start + batch_size] for a in mixture)))

  steps = {}
  for name in METHODS:
    steps[f'evaluation.run {name}'] = lambda n=name: evaluate(n)
  for name in METHODS:
    steps[f'compute_metrics {name}'] = lambda n=name: metrics(n)
  evaluate('mse')  # compute_metrics times need outputs before the warm-up calls.
  evaluate('propel_i8')
  num_examples = results['mse'].metrics['num_examples']
  batch_size = runs['mse'][4].batch_size
  steps['modes batched'] = lambda: modes(batch_size)
  steps['modes all'] = lambda: modes(num_examples)
  times = time_interleaved(steps, args.reps)

  config = runs['mse'][4]
  print(f'\nEvaluation: {config.dataset} split {config.test_split!r} ({num_examples} examples, '
        f'batch {config.batch_size}), models trained {args.train_steps} steps; jax '
        f'{jax.__version__} on {jax.devices()[0].device_kind}, {len(os.sched_getaffinity(0))} of '
        f'{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; medians of '
        f'{args.reps}, interleaved.')
  print('Ratio = PROPEL I = 8 time / MSE time (goal: <= 1.3 for the whole evaluation).\n')
  print('| measured            | MSE wall ms | PROPEL I=8 wall ms | ratio (wall) | '
        'ratio (CPU) |')
  print('|---------------------|------------:|-------------------:|-------------:|'
        '------------:|')
  for what in ('evaluation.run', 'compute_metrics'):
    mse, propel = times[f'{what} mse'], times[f'{what} propel_i8']
    print(f'| {what:<19} | {1e3 * mse[0]:11.1f} | {1e3 * propel[0]:18.1f} | '
          f'{propel[0] / mse[0]:11.2f}× | {propel[1] / mse[1]:10.2f}× |')
  for what, label in (('batched', f'in batches of {batch_size}'), ('all', 'all at once')):
    wall, cpu = times[f'modes {what}']
    print(f'mixtures.modes on the PROPEL mixtures, {label}: {1e3 * wall:.1f} ms wall, '
          f'{1e3 * cpu:.1f} ms CPU')
  for name in METHODS:
    print(f'{name}: {evaluation.summarize(results[name].metrics)}')


if __name__ == '__main__':
  main()
