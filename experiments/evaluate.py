"""Evaluates the latest checkpoint of a training run, with the config saved in its workdir.

    python -m experiments.evaluate --workdir=DIR [--split=test]

Writes DIR/eval_metrics.json (DIR/eval_metrics_<split>.json for a split other
than the config's test_split) and plots to DIR/plots/.
"""

from absl import app
from absl import flags
from absl import logging

from experiments import distributed
from experiments import plots
from propel_jax.data import input_pipeline
from propel_jax.training import config as config_lib
from propel_jax.training import parallel
from propel_jax.training import reporting
from propel_jax.training import train

_WORKDIR = flags.DEFINE_string('workdir', None, 'The --workdir of a training run.')
_SPLIT = flags.DEFINE_string('split', None, "Split to evaluate (default: the config's "
                             'test_split).')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'Override the data_dir of the saved config '
                                '(e.g. the data moved).')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  reporting.quiet_library_logs()
  config = config_lib.load(_WORKDIR.value)
  if _DATA_DIR.value:
    config.data_dir = _DATA_DIR.value
  with distributed.joined():
    # Logs the summary and where the files went.
    metrics = train.evaluate(config, _WORKDIR.value, _SPLIT.value)
    if parallel.is_main_process():
      info = input_pipeline.get_dataset_info(config.dataset, data_dir=config.data_dir,
                                             image_size=config.image_size)
      plot_dir = plots.write_for_run(_WORKDIR.value, config, info, _SPLIT.value,
                                     step=metrics['checkpoint_step'])
      logging.info('Plots: %s/', plot_dir)


if __name__ == '__main__':
  app.run(main)
