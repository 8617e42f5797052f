"""The workdir lock: one holder at a time, stale locks taken over, released on exit.

End to end, a second training run in a busy workdir refuses at once and the
first one loses nothing.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from propel_jax.training import workdir_lock
import training_runs as runs

# Takes the lock of the workdir in argv[1], says so, and holds it until killed.
_HOLDER = ('import sys, time\n'
           'from propel_jax.training import workdir_lock\n'
           'with workdir_lock.hold(sys.argv[1]):\n'
           '  print("holding", flush=True)\n'
           '  time.sleep(600)\n')


def _start_holder(workdir):
  process = subprocess.Popen([sys.executable, '-c', _HOLDER, str(workdir)],
                             env=runs.subprocess_env(JAX_PLATFORMS='cpu'),
                             stdout=subprocess.PIPE, text=True)
  assert process.stdout.readline() == 'holding\n'
  return process


def test_a_second_holder_is_refused_naming_the_file_and_the_holder(tmp_path):
  holder = _start_holder(tmp_path)
  try:
    with pytest.raises(workdir_lock.WorkdirBusyError) as error:
      with workdir_lock.hold(tmp_path):
        pass
    message = str(error.value)
    assert str(tmp_path / 'lock') in message and f'pid {holder.pid} on ' in message
    assert '--workdir' in message
  finally:
    holder.kill()
    holder.wait()
  # The kernel dropped the dead holder's lock: the next one takes it over.
  with workdir_lock.hold(tmp_path):
    record = json.loads((tmp_path / 'lock').read_text())
    assert record['pid'] == os.getpid()
  assert not (tmp_path / 'lock').exists()


def test_a_stale_lock_file_is_taken_over_and_named(tmp_path, caplog):
  # What a run killed with SIGKILL leaves: its record, and no flock on it.
  process = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                           capture_output=True, text=True, check=True)
  dead = int(process.stdout)
  (tmp_path / 'lock').write_text(json.dumps({'pid': dead, 'host': 'here', 'started': 'then',
                                             'command': 'train'}))
  with workdir_lock.hold(tmp_path):
    assert json.loads((tmp_path / 'lock').read_text())['pid'] == os.getpid()
  assert f'from pid {dead} on here since then (train), which ended without releasing it' in (
      caplog.text)
  assert not (tmp_path / 'lock').exists()


def test_the_holder_may_take_its_own_lock_again(tmp_path):
  with workdir_lock.hold(tmp_path):
    with workdir_lock.hold(tmp_path):
      pass
    assert (tmp_path / 'lock').exists()  # Still held by the outer block.
  assert not (tmp_path / 'lock').exists()


def test_released_when_the_block_raises(tmp_path):
  with pytest.raises(KeyError):
    with workdir_lock.hold(tmp_path):
      raise KeyError('boom')
  with workdir_lock.hold(tmp_path):
    pass


@pytest.mark.slow
def test_a_second_run_in_a_busy_workdir_refuses_at_once_and_the_first_loses_nothing(
    tmp_path, data_dir, jax_cache):
  workdir = str(tmp_path / 'run')
  # A first run that lasts until it is told to stop (SIGTERM: checkpoint, exit 0).
  command = runs.train_command(workdir, data_dir, '--config.num_train_steps=100000',
                               '--config.checkpoint_every_steps=10',
                               '--config.log_every_steps=10', '--config.eval_every_steps=100000')
  first = subprocess.Popen(command, cwd=runs.REPO, env=runs.env(jax_cache),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    # Once its first checkpoint is there it is well into training.
    deadline = time.monotonic() + 300
    while not os.path.isdir(os.path.join(workdir, 'checkpoints', '10')):
      assert first.poll() is None and time.monotonic() < deadline
      time.sleep(0.05)
    started = time.monotonic()
    second = subprocess.run(command, cwd=runs.REPO, env=runs.env(jax_cache),
                            capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    assert first.poll() is None, 'the first run ended before the second was refused'
  finally:
    first.send_signal(signal.SIGTERM)
    output, _ = first.communicate(timeout=300)
  assert second.returncode != 0
  assert f'{workdir}/lock is held by pid {first.pid} on ' in second.stderr, second.stderr[-3000:]
  # Refused before any work: no dataset, model or compilation, only the
  # interpreter and its imports (7 s on the loaded 2-core development machine).
  assert 'from scratch' not in second.stderr and 'Resumed' not in second.stderr
  assert took < 120, took
  assert first.returncode == 0, output[-3000:]
  step, _ = runs.final_state(workdir)
  logged = [r['step'] for r in runs.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))]
  assert logged == sorted(set(range(10, step + 1, 10)) | {step})
  assert not os.path.exists(os.path.join(workdir, 'lock'))
