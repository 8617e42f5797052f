"""The training system end to end, on the small synthetic dataset with a tiny network.

* train_and_evaluate writes everything a user looks at, and evaluate
  reproduces its final metrics from the checkpoint;
* a non-finite loss stops the run with a clear message and leaves the last
  good checkpoint intact.

Killing and resuming runs is tested in checkpoint_test.py.
"""

import glob
import json
import math
import os

import numpy as np
import pytest

from propel_jax.training import evaluation
from propel_jax.training import train
import training_runs as runs


@pytest.mark.slow
def test_train_and_evaluate_writes_what_a_user_sees(tmp_path, data_dir):
  workdir = str(tmp_path / 'run')
  config = runs.config(data_dir, '--config.num_train_steps=12', '--config.log_every_steps=4',
                       '--config.eval_every_steps=6', '--config.checkpoint_every_steps=6')
  results = train.train_and_evaluate(config, workdir)

  records = runs.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
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
  assert saved['num_params'] > 0 and saved['num_examples'] == 64
  for decoder in ('mode', 'mean'):
    maes = [saved[f'mae/{decoder}/{axis}'] for axis in ('azimuth', 'elevation')]
    assert saved[f'cmae/{decoder}'] == pytest.approx(np.mean(maes))
    assert all(0 <= m <= 90 for m in maes)
  for key in ('nll', 'crps/azimuth', 'coverage_90/elevation', 'mode_recall',
              'mode_recall_all', 'coverage_10'):
    assert math.isfinite(saved[key]), key
  # The last periodic evaluation is the final one (same split, same state).
  assert eval_lines[-1]['cmae/mode'] == saved['cmae/mode']
  assert not os.path.exists(os.path.join(workdir, 'plots'))  # The binaries draw them.
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['12', '6']
  outputs = evaluation.Outputs.load(os.path.join(workdir, 'eval_outputs.npz'))
  assert outputs.predictions['mode'].shape == (64, 2)
  assert outputs.mixture.means.shape == (64, 2, 2)  # I = 2 components, n = 2.
  assert outputs.equivalent_labels.shape == (64, 2, 2)
  assert outputs.images.shape == (2, 32, 32, 1)

  # evaluate() restores the checkpoint and reproduces the final metrics.
  os.remove(os.path.join(workdir, 'eval_metrics.json'))
  again = train.evaluate(train.load_config(workdir), workdir)
  assert {k: v for k, v in again.items() if k != 'checkpoint_step'} == saved
  assert again['checkpoint_step'] == 12


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, data_dir):
  workdir = str(tmp_path / 'run')
  # The warmup keeps step 1 at learning rate 0 (a good checkpoint); then a
  # learning rate of 1e30 sends the weights, and soon the loss, to inf/NaN.
  config = runs.config(data_dir, '--config.num_train_steps=20', '--config.learning_rate=1e30',
                       '--config.warmup_steps=1', '--config.lr_schedule=constant',
                       '--config.grad_clip_norm=0', '--config.checkpoint_every_steps=1',
                       '--config.log_every_steps=1', '--config.eval_every_steps=100')
  with pytest.raises(train.NonFiniteLossError,
                     match=r'Non-finite .* at step (\d+); training stopped and the last '
                           r'good checkpoint, step (\d+), is intact') as error:
    train.train_and_evaluate(config, workdir)
  bad_step = int(error.value.args[0].split(' at step ')[1].split(';')[0])
  step, state = runs.final_state(workdir)
  assert step == bad_step - 1
  assert all(np.all(np.isfinite(v)) for v in state.values())
  assert not os.path.exists(os.path.join(workdir, 'eval_metrics.json'))


def test_full_covariance_and_learned_weights_train_end_to_end(tmp_path, data_dir):
  """config.model.covariance='full' with learned weights: trains, evaluates, saves factors."""
  workdir = str(tmp_path / 'run')
  config = runs.config(data_dir, '--config.num_train_steps=4', '--config.log_every_steps=2',
                       '--config.eval_every_steps=4', '--config.checkpoint_every_steps=4',
                       '--config.model.covariance=full', '--config.model.learn_weights=True')
  results = train.train_and_evaluate(config, workdir)
  for key in ('loss', 'cmae/mode', 'cmae/mean', 'nll', 'crps', 'coverage_90', 'mode_recall'):
    assert math.isfinite(results[key]), key
  outputs = evaluation.Outputs.load(os.path.join(workdir, 'eval_outputs.npz'))
  assert outputs.mixture.scales.shape == (64, 2, 2, 2)  # Cholesky factors [N, I, n, n]
  assert np.all(np.triu(outputs.mixture.scales, k=1) == 0)
  assert np.all(np.diagonal(outputs.mixture.scales, axis1=-2, axis2=-1) > 0)
  assert not np.allclose(outputs.mixture.log_weights, outputs.mixture.log_weights[:, :1])
