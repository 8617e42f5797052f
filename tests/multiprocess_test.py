"""Real 2-process runs on 127.0.0.1: the results of 1 process, and elastic resumes.

The global batches are a function of the seed and the step alone, so a run on
2 processes × 1 CPU device trains on the batches (flips included) of a run on
1 process × 2 fake CPU devices; with the same devices in total each device
also computes on the same rows, and only the cross-device sums take another
path (gloo). One test, four launches of the binary:

* reference: 1 process × 2 devices, 48 steps of Adam (6 epochs of 128 examples);
* 2 processes, killed (SIGKILL) after their checkpoint at step 32 (4 epochs):
  their checkpoint and metrics so far match the reference's;
* a resume on 3 devices, which cannot split the batch of 16: a clear error;
* a resume as 1 process × 2 devices: it ends with the reference's metrics.
"""

import json
import os
import signal

import numpy as np
import pytest

import training_runs as runs

COMMON = ['--config.batch_size=16', '--config.train_split=train[:128]',
          '--config.lr_schedule=constant', '--config.log_every_steps=8',
          '--config.eval_every_steps=16']
# The reference and the resumed run.
TO_THE_END = ['--config.num_train_steps=48', '--config.checkpoint_every_steps=16']
# The run that is killed: the next checkpoint after step 32 would be at 64, and the
# end far away (constant learning rate: the steps do not depend on num_train_steps).
KILLED = ['--config.num_train_steps=100000', '--config.checkpoint_every_steps=32']
RTOL = 1e-3


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


@pytest.mark.slow
def test_two_processes_match_one_and_resume_on_one(tmp_path, data_dir, jax_cache):
  reference = str(tmp_path / 'reference')
  runs.run(runs.train_command(reference, data_dir, *COMMON, *TO_THE_END), jax_cache,
           **_devices(2))
  reference_log = runs.without_timing(runs.read_jsonl(os.path.join(reference, 'metrics.jsonl')))

  workdir = str(tmp_path / 'elastic')
  processes = runs.start(
      runs.multiprocess_commands(runs.train_command(workdir, data_dir, *COMMON, *KILLED), 2),
      jax_cache, **_devices(1))
  results = runs.signal_after_checkpoint(processes, workdir, 32, signal.SIGKILL)
  for returncode, output in results:
    assert returncode == -signal.SIGKILL, output[-5000:]
  assert 'process 0 of 2' in results[0][1] and 'process 1 of 2' in results[1][1]
  assert runs.checkpoint_steps(workdir) == [32]
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
  command = runs.train_command(workdir, data_dir, *COMMON, *TO_THE_END)
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
  with open(os.path.join(workdir, 'eval_metrics.json')) as f, \
      open(os.path.join(reference, 'eval_metrics.json')) as g:
    metrics, reference_metrics = json.load(f), json.load(g)
  assert metrics.keys() == reference_metrics.keys()
  print('final metrics bitwise equal:', metrics == reference_metrics)
  assert metrics['num_examples'] == reference_metrics['num_examples'] == 64
  for key, value in reference_metrics.items():
    if isinstance(value, str):
      assert metrics[key] == value, key
    else:
      assert metrics[key] == pytest.approx(value, rel=RTOL), key
