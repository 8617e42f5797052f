"""Trains the same backbone with each head over several seeds and reports the comparison.

    python -m experiments.compare \
        --config=experiments/configs/compare_synthetic.py:ambiguous_small --workdir=DIR \
        [--config.compare.methods=propel_i2,mse --config.compare.seeds="(0, 1)" \
         --config.num_train_steps=2000 --config.data_dir=...]

Writes DIR/results.md, DIR/results.json and DIR/plots/; every run lives in
DIR/runs/<method>/seed_<k>/. Rerunning the same command skips finished runs
and resumes unfinished ones, then rewrites the report.
"""

import os
import shlex
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments.comparison import report
from experiments.comparison import runner
from propel_jax.training import config as config_lib
from propel_jax.training import reporting

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Comparison config (experiments/configs/compare_*.py[:variant]).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of the comparison.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  reporting.quiet_library_logs()
  command = 'python -m experiments.compare ' + ' '.join(shlex.quote(a) for a in sys.argv[1:])
  config, workdir = config_lib.resolve_flag(flags.FLAGS[_CONFIG.name]), _WORKDIR.value
  runner.validate(config)
  os.makedirs(workdir, exist_ok=True)
  start = time.perf_counter()
  if not runner.run_all(config, workdir):
    logging.warning('Stopped by a preemption notice; rerun the same command to resume.')
  else:
    report.write_report(config, workdir, command=command,
                        wall_seconds=time.perf_counter() - start)
    logging.info('Done: %s/results.md, %s/results.json, %s/plots/.', _WORKDIR.value,
                 _WORKDIR.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
