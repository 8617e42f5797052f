"""Trains (or resumes) a run, then evaluates it.

    python -m experiments.train --config=experiments/configs/synthetic.py --workdir=DIR \
        [--config.head=mse --config.num_train_steps=2000 ...]

Rerunning the same command resumes from the latest checkpoint in DIR. For a
multi-process run, start one process per host with the same flags plus
--coordinator_address=HOST:PORT --num_processes=N --process_id=I.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import distributed
from experiments import plots
from propel_jax.data import input_pipeline
from propel_jax.training import config as config_lib
from propel_jax.training import parallel
from propel_jax.training import reporting
from propel_jax.training import train

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file (experiments/configs/*.py[:variant]).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  reporting.quiet_library_logs()
  config, workdir = config_lib.resolve_flag(flags.FLAGS[_CONFIG.name]), _WORKDIR.value
  with distributed.joined():
    results = train.train_and_evaluate(config, workdir)
    if results is not None and parallel.is_main_process():
      info = input_pipeline.get_dataset_info(config.dataset, data_dir=config.data_dir,
                                             image_size=config.image_size)
      plot_dir = plots.write_for_run(workdir, config, info)
      logging.info('Done. Metrics: %s/eval_metrics.json, plots: %s/, '
                   'TensorBoard: tensorboard --logdir=%s', workdir, plot_dir, workdir)


if __name__ == '__main__':
  app.run(main)
