"""The training system end to end, on the small synthetic dataset with a tiny network.

* train_and_evaluate writes everything a user looks at, and evaluate
  reproduces its final metrics from the checkpoint;
* a run killed with SIGKILL and rerun with the same command ends bitwise
  equal (parameters, optimiser state, logged metrics) to an uninterrupted
  run; a SIGTERM saves a checkpoint and exits cleanly;
* a non-finite loss stops the run with a clear message and leaves the last
  good checkpoint intact.

The binaries run as real subprocesses; they share a JAX compilation cache so
that only the first one pays for compiling.
"""

import glob
import json
import math
import os
import signal
import subprocess
import sys
import time

from absl import flags
from ml_collections import config_flags
import numpy as np
import orbax.checkpoint as ocp
import pytest

from propel_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = f'{REPO}/experiments/configs/synthetic.py:small'
# A tiny network and batch: the tests are about the system, not the model.
TINY = ['--config.model.channels=(4, 8)', '--config.model.hidden_units=8',
        '--config.batch_size=8', '--config.num_plot_examples=2']


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('data'))


@pytest.fixture(scope='module')
def jax_cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp('jax_cache'))


def _config(data_dir, *overrides):
  argv = ['prog', f'--config={CONFIG}', f'--config.data_dir={data_dir}', *TINY, *overrides]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=flag_values,
                                  sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def _train_command(workdir, data_dir, *overrides):
  return [sys.executable, '-m', 'experiments.train', f'--config={CONFIG}',
          f'--workdir={workdir}', f'--config.data_dir={data_dir}', *TINY, *overrides]


def _env(jax_cache):
  return dict(os.environ, PYTHONPATH=REPO, JAX_COMPILATION_CACHE_DIR=jax_cache,
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')


def _run(command, jax_cache, timeout=300):
  result = subprocess.run(command, cwd=REPO, env=_env(jax_cache), capture_output=True,
                          text=True, timeout=timeout)
  assert result.returncode == 0, result.stderr[-5000:]
  return result


def _start_and_signal_after_checkpoint(command, jax_cache, workdir, step, sig):
  """Starts a run and sends `sig` as soon as its checkpoint `step` is complete."""
  process = subprocess.Popen(command, cwd=REPO, env=_env(jax_cache),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  checkpoint = os.path.join(workdir, 'checkpoints', str(step))
  deadline = time.monotonic() + 300
  # Orbax renames a checkpoint to its final name only when it is complete.
  while not os.path.isdir(checkpoint) and process.poll() is None:
    assert time.monotonic() < deadline, 'no checkpoint appeared'
    time.sleep(0.01)
  process.send_signal(sig)
  output, _ = process.communicate(timeout=300)
  return process.returncode, output


def _read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def _without_timing(records):
  return [{k: v for k, v in r.items() if k != 'steps_per_sec'} for r in records]


def _final_state(workdir):
  """The arrays of the latest checkpoint, as a flat {path: array} dict."""
  checkpoints = os.path.join(workdir, 'checkpoints')
  step = max(int(d) for d in os.listdir(checkpoints) if d.isdigit())
  restored = ocp.StandardCheckpointer().restore(os.path.join(checkpoints, str(step), 'state'))
  return step, {'/'.join(map(str, path)): np.asarray(leaf)
                for path, leaf in _flatten(restored)}


def _flatten(tree, prefix=()):
  if isinstance(tree, dict):
    for key, value in tree.items():
      yield from _flatten(value, prefix + (key,))
  elif isinstance(tree, (list, tuple)):
    for i, value in enumerate(tree):
      yield from _flatten(value, prefix + (i,))
  else:
    yield prefix, tree


def test_train_and_evaluate_writes_what_a_user_sees(tmp_path, data_dir):
  workdir = str(tmp_path / 'run')
  config = _config(data_dir, '--config.num_train_steps=12', '--config.log_every_steps=4',
                   '--config.eval_every_steps=6', '--config.checkpoint_every_steps=6')
  results = train.train_and_evaluate(config, workdir)

  records = _read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  train_lines = [r for r in records if r['split'] == 'train']
  eval_lines = [r for r in records if r['split'] == 'eval']
  assert [r['step'] for r in train_lines] == [4, 6, 8, 12]  # Log and checkpoint steps.
  assert [r['step'] for r in eval_lines] == [6, 12]
  for r in train_lines:
    assert {'loss', 'steps_per_sec', 'grad_norm', 'learning_rate'} <= set(r)
    assert math.isfinite(r['loss']) and r['steps_per_sec'] > 0
  assert glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))

  with open(os.path.join(workdir, 'eval_metrics.json')) as f:
    saved = json.load(f)
  assert saved == results
  assert saved['num_params'] > 0 and saved['num_examples'] == 256
  for decoder in ('mode', 'mean'):
    maes = [saved[f'mae/{decoder}/{axis}'] for axis in ('azimuth', 'elevation')]
    assert saved[f'cmae/{decoder}'] == pytest.approx(np.mean(maes))
    assert all(0 <= m <= 90 for m in maes)
  for key in ('nll', 'crps/azimuth', 'coverage_90/elevation', 'mode_recall'):
    assert math.isfinite(saved[key]), key
  # The last periodic evaluation is the final one (same split, same state).
  assert eval_lines[-1]['cmae/mode'] == saved['cmae/mode']
  assert sorted(os.listdir(os.path.join(workdir, 'plots'))) == [
      'density_0.png', 'density_1.png', 'predicted_vs_true.png']
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['12', '6']

  # evaluate() restores the checkpoint and reproduces the final metrics.
  os.remove(os.path.join(workdir, 'eval_metrics.json'))
  again = train.evaluate(train.load_config(workdir), workdir)
  assert {k: v for k, v in again.items() if k != 'checkpoint_step'} == saved
  assert again['checkpoint_step'] == 12


def test_sigkill_and_rerun_is_bitwise_equal_to_an_uninterrupted_run(tmp_path, data_dir,
                                                                    jax_cache):
  overrides = ['--config.num_train_steps=160', '--config.checkpoint_every_steps=20',
               '--config.log_every_steps=10', '--config.eval_every_steps=80']
  reference = str(tmp_path / 'reference')
  _run(_train_command(reference, data_dir, *overrides), jax_cache)

  killed = str(tmp_path / 'killed')
  command = _train_command(killed, data_dir, *overrides)
  returncode, output = _start_and_signal_after_checkpoint(command, jax_cache, killed, 20,
                                                          signal.SIGKILL)
  assert returncode == -signal.SIGKILL, output[-3000:]
  assert not os.path.exists(os.path.join(killed, 'eval_metrics.json'))
  resumed = _run(command, jax_cache)
  assert 'Resumed from the checkpoint at step' in resumed.stderr

  step, state = _final_state(killed)
  reference_step, reference_state = _final_state(reference)
  assert step == reference_step == 160
  assert state.keys() == reference_state.keys()
  for key in state:
    np.testing.assert_array_equal(state[key], reference_state[key], err_msg=key)
  assert (_without_timing(_read_jsonl(os.path.join(killed, 'metrics.jsonl'))) ==
          _without_timing(_read_jsonl(os.path.join(reference, 'metrics.jsonl'))))
  with open(os.path.join(killed, 'eval_metrics.json')) as f, \
      open(os.path.join(reference, 'eval_metrics.json')) as g:
    assert json.load(f) == json.load(g)


def test_sigterm_saves_and_exits(tmp_path, data_dir, jax_cache):
  workdir = str(tmp_path / 'run')
  command = _train_command(workdir, data_dir, '--config.num_train_steps=100000',
                           '--config.checkpoint_every_steps=10',
                           '--config.eval_every_steps=100000')
  returncode, output = _start_and_signal_after_checkpoint(command, jax_cache, workdir, 10,
                                                          signal.SIGTERM)
  assert returncode == 0, output[-3000:]
  assert 'Preemption notice (SIGTERM): saved the checkpoint at step' in output
  step, _ = _final_state(workdir)
  assert 10 < step < 100000
  assert f'saved the checkpoint at step {step};' in output
  assert not os.path.exists(os.path.join(workdir, 'eval_metrics.json'))
  # The last train line is the stop step: nothing trained is unlogged.
  assert _read_jsonl(os.path.join(workdir, 'metrics.jsonl'))[-1]['step'] == step


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, data_dir):
  workdir = str(tmp_path / 'run')
  # The warmup keeps step 1 at learning rate 0 (a good checkpoint); then a
  # learning rate of 1e30 sends the weights, and soon the loss, to inf/NaN.
  config = _config(data_dir, '--config.num_train_steps=20', '--config.learning_rate=1e30',
                   '--config.warmup_steps=1', '--config.lr_schedule=constant',
                   '--config.grad_clip_norm=0', '--config.checkpoint_every_steps=1',
                   '--config.log_every_steps=1', '--config.eval_every_steps=100')
  with pytest.raises(train.NonFiniteLossError,
                     match=r'Non-finite .* at step (\d+); training stopped and the last '
                           r'good checkpoint, step (\d+), is intact') as error:
    train.train_and_evaluate(config, workdir)
  bad_step = int(error.value.args[0].split(' at step ')[1].split(';')[0])
  step, state = _final_state(workdir)
  assert step == bad_step - 1
  assert all(np.all(np.isfinite(v)) for v in state.values())
  assert not os.path.exists(os.path.join(workdir, 'eval_metrics.json'))
