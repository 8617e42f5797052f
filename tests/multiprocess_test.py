"""Real 2-process runs on 127.0.0.1 of the full-size default model, from an empty data_dir.

Each process of a run on 2 processes × 1 CPU device computes on the rows one
device of a 1-process run computes on; only the cross-device sums take
another path (gloo), so the results agree to rounding. Every run here starts
from an empty data_dir, so its processes also race to build the dataset.

* each conv weight-gradient option: 2 processes end with the metrics of 1;
* a run killed (SIGKILL) on one process after its checkpoint at step 32: the
  other stops at once and names it; the checkpoint matches the reference's;
  a resume on 3 devices, which cannot split the batch of 16, is refused
  clearly; a resume as 1 process × 2 devices ends with the reference's
  metrics;
* an error in one process: both stop within seconds, the other naming it.
"""

import json
import os
import signal
import sys
import time

import numpy as np
import pytest

import training_runs as runs

# The default model (64×64 images, four conv blocks) of the paper-sized synthetic config,
# on a slice of the data: the tests are about the processes, not about learning.
FULL_SIZE = [f'--config={runs.REPO}/experiments/configs/synthetic.py',
             '--config.batch_size=16', '--config.train_split=train[:128]',
             '--config.eval_split=test[:64]', '--config.test_split=test[:64]',
             '--config.num_plot_examples=2', '--config.lr_schedule=constant',
             '--config.log_every_steps=8', '--config.eval_every_steps=16']
# The reference and the resumed run.
TO_THE_END = ['--config.num_train_steps=48', '--config.checkpoint_every_steps=16']
# The run that is killed: the next checkpoint after step 32 would be at 64, and the
# end far away (constant learning rate: the steps do not depend on num_train_steps).
KILLED = ['--config.num_train_steps=100000', '--config.checkpoint_every_steps=32']
RTOL = 1e-3


def _command(workdir, data_dir, *overrides):
  return [sys.executable, '-m', 'experiments.train', f'--workdir={workdir}', *FULL_SIZE,
          f'--config.data_dir={data_dir}', *overrides]


def _devices(count):
  # CPU processes (gloo), also where an accelerator would be the default backend.
  return dict(JAX_PLATFORMS='cpu', XLA_FLAGS=f'--xla_force_host_platform_device_count={count}')


def _assert_logs_close(log, reference):
  assert [(r['split'], r['step']) for r in log] == [(r['split'], r['step']) for r in reference]
  print('logged metrics bitwise equal:', log == reference)
  for record, expected in zip(log, reference):
    assert record.keys() == expected.keys()
    for key, value in expected.items():
      if isinstance(value, float):
        assert record[key] == pytest.approx(value, rel=RTOL), (record['step'], key)


def _assert_states_close(state, reference):
  assert state.keys() == reference.keys()
  relative = {key: float(np.max(np.abs(state[key] - reference[key]), initial=0.0))
              / max(float(np.max(np.abs(reference[key]), initial=0.0)), 1e-30) for key in state}
  print('largest relative differences:', sorted(relative.items(), key=lambda kv: -kv[1])[:4])
  # Leaf by leaf, at the leaf's own scale: a missing or wrong cross-process reduction, or
  # other batches, change the optimiser's trace by O(1).
  for key in state:
    scale = float(np.max(np.abs(reference[key]), initial=0.0))
    np.testing.assert_allclose(state[key], reference[key], rtol=0, atol=RTOL * scale,
                               err_msg=key)


def _assert_metrics_close(workdir, reference):
  with open(os.path.join(workdir, 'eval_metrics.json')) as f, \
      open(os.path.join(reference, 'eval_metrics.json')) as g:
    metrics, reference_metrics = json.load(f), json.load(g)
  assert metrics.keys() == reference_metrics.keys()
  print('final metrics bitwise equal:', metrics == reference_metrics)
  for key, value in reference_metrics.items():
    if isinstance(value, str):
      assert metrics[key] == value, key
    else:
      assert metrics[key] == pytest.approx(value, rel=RTOL), key
  return metrics


@pytest.mark.slow
def test_two_processes_from_an_empty_data_dir_match_one(tmp_path, jax_cache):
  # The default weight gradient, 'row_blocks' on CPU (tests/layers_test.py): the one with a loop
  # over row blocks. 'xla' has none; tests/parallel_test.py checks both programs for collectives
  # inside loops, the cause of the mismatch this test guards against.
  steps = ['--config.num_train_steps=8', '--config.checkpoint_every_steps=8',
           '--config.eval_every_steps=8']
  data_dir = str(tmp_path / 'data')
  workdir = str(tmp_path / 'two')
  results = runs.finish(runs.start(
      runs.multiprocess_commands(_command(workdir, data_dir, *steps), 2), jax_cache,
      **_devices(1)))
  for returncode, output in results:
    assert returncode == 0, output[-5000:]
  # One complete build, no half-written one beside it (tests/locked_build_test.py: one waits).
  built = os.path.join(data_dir, 'synthetic_hands', 'ambiguous')
  assert sorted(os.listdir(built)) == ['1.0.0', '1.0.0.lock'], os.listdir(built)
  reference = str(tmp_path / 'one')
  runs.run(_command(reference, data_dir, *steps), jax_cache, **_devices(1))
  assert _assert_metrics_close(workdir, reference)['num_examples'] == 64


@pytest.mark.slow
def test_two_processes_match_one_and_resume_on_one(tmp_path, data_dir, jax_cache):
  # The killed run starts first, from the module's empty data_dir.
  workdir = str(tmp_path / 'elastic')
  processes = runs.start(
      runs.multiprocess_commands(_command(workdir, data_dir, *KILLED), 2),
      jax_cache, **_devices(1))
  killed = time.monotonic()
  results = runs.signal_after_checkpoint(processes, workdir, 32, signal.SIGKILL, which={1})
  stopped_after = time.monotonic() - killed
  (survivor_code, survivor), (killed_code, killed_output) = results
  assert killed_code == -signal.SIGKILL, killed_output[-5000:]
  # Process 0 stops on its own and names the process that is gone: ours, where a
  # collective with it failed; jax.distributed's, where process 0 was elsewhere (e.g.
  # finishing the checkpoint) when the heartbeats stopped.
  assert survivor_code != 0, survivor[-5000:]
  assert ('Process(es) [1] did not answer' in survivor
          or 'stopped sending heartbeats):\n1\n' in survivor), survivor[-5000:]
  # About 10 s on an idle machine; 70 s was seen with the 2 cores 5× oversubscribed.
  assert stopped_after < 150, stopped_after
  assert 'process 0 of 2' in survivor and 'process 1 of 2' in killed_output
  assert runs.checkpoint_steps(workdir) == [32]
  reference = str(tmp_path / 'reference')
  runs.run(_command(reference, data_dir, *TO_THE_END), jax_cache, **_devices(2))
  reference_log = runs.without_timing(runs.read_jsonl(os.path.join(reference, 'metrics.jsonl')))
  # One input position for both processes; logs and metrics from process 0 only.
  assert [f for f in os.listdir(os.path.join(workdir, 'checkpoints', '32', 'data'))
          if f.endswith('.json')] == ['position.json']
  assert len([f for f in os.listdir(workdir) if f.startswith('events.out.tfevents')]) == 1
  # 4 epochs on 2 processes: the state, training losses and evaluations of 1 process.
  state, reference_state = runs.final_state(workdir), runs.final_state(reference, 32)
  assert state[0] == reference_state[0] == 32
  _assert_states_close(state[1], reference_state[1])
  log = runs.without_timing(runs.read_jsonl(os.path.join(workdir, 'metrics.jsonl')))
  _assert_logs_close([r for r in log if r['step'] <= 32],
                     [r for r in reference_log if r['step'] <= 32])

  # Resuming on 3 devices would change the batch each device computes on: refused.
  command = _command(workdir, data_dir, *TO_THE_END)
  with open(os.path.join(workdir, 'config.json')) as f:
    saved_config = f.read()
  refused = runs.start([command], jax_cache, **_devices(3))
  [(returncode, output)] = runs.finish(refused)
  assert returncode != 0
  assert ('config.batch_size=16 must be divisible by the number of devices (3: 1 process(es) '
          'x 3 local device(s)). A resumed run keeps its batch size') in output, output[-3000:]
  assert runs.checkpoint_steps(workdir) == [32]
  with open(os.path.join(workdir, 'config.json')) as f:
    assert f.read() == saved_config

  # Resumed as 1 process: the end of the uninterrupted run.
  resumed = runs.run(command, jax_cache, **_devices(2))
  assert 'Resumed from the checkpoint at step 32' in resumed.stderr
  step, state = runs.final_state(workdir)
  reference_step, reference_state = runs.final_state(reference)
  assert step == reference_step == 48
  _assert_states_close(state, reference_state)
  _assert_logs_close(runs.without_timing(runs.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))),
                     reference_log)
  assert _assert_metrics_close(workdir, reference)['num_examples'] == 64


@pytest.mark.slow
def test_an_error_in_one_process_stops_both_naming_it(tmp_path, data_dir, jax_cache):
  # Process 1 alone is given a split that does not exist: it fails after joining the run,
  # while process 0 goes on to wait for it.
  commands = runs.multiprocess_commands(
      runs.train_command(str(tmp_path / 'run'), data_dir, '--config.num_train_steps=8'), 2)
  commands[1].append('--config.train_split=nonexistent')
  started = time.monotonic()
  (code_0, output_0), (code_1, output_1) = runs.finish(runs.start(commands, jax_cache,
                                                                  **_devices(1)))
  assert time.monotonic() - started < 200
  assert code_1 == 1, output_1[-5000:]
  assert code_0 == 1, output_0[-5000:]
  assert 'Process 1 failed; stopping every process of the run' in output_1
  assert 'Process 1 of the run failed, so process 0 stops too' in output_0, output_0[-5000:]
  assert "Unknown split 'nonexistent'" in output_0
  for output in (output_0, output_1):
    assert 'Aborted' not in output and 'Check failure' not in output, output[-5000:]
