"""A real 2-process run on 127.0.0.1 reaches the result of a 1-process run.

Both runs use the same global batch: a 16-example slice of the training set,
whole in every step (each of the two processes reads its 8), without
augmentation, so the only difference is the order of the sums.
"""

import json
import os
import socket
import subprocess

import numpy as np
import pytest

import training_runs as runs

OVERRIDES = ['--config.batch_size=16', '--config.train_split=train[:16]',
             '--config.augment=False', '--config.num_train_steps=8',
             '--config.checkpoint_every_steps=4', '--config.log_every_steps=4',
             '--config.eval_every_steps=8']


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path, data_dir):
  jax_cache = str(tmp_path / 'jax_cache')
  single = str(tmp_path / 'single')
  # CPU processes with gloo, also where an accelerator would be the default backend.
  runs.run(runs.train_command(single, data_dir, *OVERRIDES), jax_cache, JAX_PLATFORMS='cpu')

  multi = str(tmp_path / 'multi')
  port = _free_port()
  processes = [subprocess.Popen(
      runs.train_command(multi, data_dir, *OVERRIDES) + [
          f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
          f'--process_id={i}'],
      cwd=runs.REPO, env=runs.env(jax_cache, JAX_PLATFORMS='cpu'), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in processes]
  for process, output in zip(processes, outputs):
    assert process.returncode == 0, output[-5000:]
  assert 'process 0 of 2' in outputs[0] and 'process 1 of 2' in outputs[1]
  # Each process saved its own input position.
  data_files = os.listdir(os.path.join(multi, 'checkpoints', '8', 'data'))
  assert sorted(f for f in data_files if f.startswith('process_')) == [
      'process_0-of-2.json', 'process_1-of-2.json']
  # Only process 0 writes logs, metrics and plots.
  assert len([f for f in os.listdir(multi) if f.startswith('events.out.tfevents')]) == 1

  step, state = runs.final_state(multi)
  single_step, single_state = runs.final_state(single)
  assert step == single_step == 8
  assert state.keys() == single_state.keys()
  # Leaf by leaf, at the leaf's own scale. Each process's batch of 8 (not 16) runs through
  # other CPU kernels, and after 8 Adam steps the rounding has grown to 8e-7 of a leaf's largest
  # value on a 2-core host (with SGD and conv biases: 6.5e-6 there, 1.7e-3 on a 16-core one); a
  # missing or wrong cross-process reduction changes the optimiser's trace by O(1).
  relative = {key: float(np.max(np.abs(state[key] - single_state[key]), initial=0.0))
              / max(float(np.max(np.abs(single_state[key]), initial=0.0)), 1e-30)
              for key in state}
  print('largest relative differences:', sorted(relative.items(), key=lambda kv: -kv[1])[:8])
  for key in state:
    scale = float(np.max(np.abs(single_state[key]), initial=0.0))
    np.testing.assert_allclose(state[key], single_state[key], rtol=0, atol=1e-2 * scale,
                               err_msg=key)
  multi_log = runs.without_timing(runs.read_jsonl(os.path.join(multi, 'metrics.jsonl')))
  single_log = runs.without_timing(runs.read_jsonl(os.path.join(single, 'metrics.jsonl')))
  assert [(r['split'], r['step']) for r in multi_log] == [
      (r['split'], r['step']) for r in single_log]
  for a, b in zip(multi_log, single_log):
    assert a['loss'] == pytest.approx(b['loss'], rel=1e-4)
  with open(os.path.join(multi, 'eval_metrics.json')) as f, \
      open(os.path.join(single, 'eval_metrics.json')) as g:
    multi_metrics, single_metrics = json.load(f), json.load(g)
  assert multi_metrics['num_examples'] == single_metrics['num_examples'] == 64
  for key, value in single_metrics.items():
    if isinstance(value, float):
      # abs: coverage and mode recall count examples (1/64 each).
      assert multi_metrics[key] == pytest.approx(value, rel=1e-3, abs=2e-2), key
