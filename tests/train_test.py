"""The training system end to end, on the small synthetic dataset with a tiny network.

* train_and_evaluate writes everything a user looks at, and evaluate
  reproduces its final metrics from the checkpoint;
* bad data settings fail before any work, without writing config.json;
* a non-finite loss stops the run with a clear message and keeps the
  checkpoints saved before it;
* a run that trains without learning, or a resume that changes the schedule,
  is warned about.

Killing and resuming runs (and damaged checkpoints) are tested in
checkpoint_test.py, two runs in one workdir in workdir_lock_test.py.
"""

import glob
import json
import logging
import math
import os

import numpy as np
import pytest

from propel_jax.training import config as config_lib
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
  again = train.evaluate(config_lib.load(workdir), workdir)
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
                     match=r'Non-finite .* at step (\d+); training stopped and the latest '
                           r'checkpoint, step (\d+) in .*, was saved before it') as error:
    train.train_and_evaluate(config, workdir)
  bad_step = int(error.value.args[0].split(' at step ')[1].split(';')[0])
  step, state = runs.final_state(workdir)
  assert step == bad_step - 1
  assert all(np.all(np.isfinite(v)) for v in state.values())
  assert not os.path.exists(os.path.join(workdir, 'eval_metrics.json'))


# Each bad setting and what its message says. Every one is found before the
# first step (num_train_steps is small so that, were it not, the test still ends).
BAD_SETTINGS = {
    'test_split': (["--config.test_split=tset"], r"config.test_split='tset': .*: Unknown split 'tset'"),
    'eval_split': (["--config.eval_split=test[:foo]"], r"config.eval_split='test\[:foo\]'"),
    'train_split': (["--config.train_split=train[:4]"],
                    r"config.train_split='train\[:4\]' of .* has 4 examples; it needs at least 8"),
    'test_dataset': (["--config.test_dataset=no_such/dataset"],
                     r"config.test_dataset='no_such/dataset': Unknown dataset"),
    'empty test split': (["--config.test_split=test[:0]"], r'has 0 examples'),
}


@pytest.mark.parametrize('setting', BAD_SETTINGS)
def test_bad_data_settings_fail_before_any_work_and_write_no_config(tmp_path, data_dir, setting):
  overrides, message = BAD_SETTINGS[setting]
  workdir = tmp_path / 'run'
  config = runs.config(data_dir, '--config.num_train_steps=2', *overrides)
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(workdir))
  # So that the corrected command is not refused as another configuration.
  assert not os.path.exists(workdir / 'config.json')
  assert not os.path.exists(workdir / 'checkpoints')


def test_an_unusable_data_dir_names_the_config_key(tmp_path):
  (tmp_path / 'a_file').write_text('')
  config = runs.config(str(tmp_path / 'a_file'), '--config.num_train_steps=2')
  with pytest.raises(NotADirectoryError, match=r'set --config.data_dir'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run' / 'config.json')


def test_evaluate_without_checkpoints_says_so_and_writes_nothing(tmp_path, data_dir):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  with pytest.raises(FileNotFoundError, match=r'No checkpoint in .*: train first'):
    train.evaluate(runs.config(data_dir), str(workdir))
  assert os.listdir(workdir) == []


@pytest.mark.slow
def test_a_run_that_stops_learning_is_warned_about(tmp_path, data_dir, caplog):
  # A learning rate of 1e6 saturates the sigmoid outputs at once: the loss
  # stays finite (hundreds), the gradients vanish.
  config = runs.config(data_dir, '--config.num_train_steps=12', '--config.learning_rate=1e6',
                       '--config.log_every_steps=2', '--config.eval_every_steps=6',
                       '--config.checkpoint_every_steps=12')
  caplog.set_level(logging.INFO)
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert math.isfinite(results['loss']) and results['saturated'] == 1.0
  progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith('step 12/12')]
  assert 'warning: the gradient norm is 0' in progress[0]
  summary = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith('The run ended with warnings')]
  assert len(summary) == 1
  assert 'the gradient norm is 0' in summary[0]
  assert '100% of the predictions are at an end of the label range' in summary[0]


@pytest.mark.slow
def test_a_resume_that_changes_the_cosine_schedule_is_warned_about(tmp_path, data_dir, caplog):
  workdir = str(tmp_path / 'run')
  steps = ['--config.log_every_steps=2', '--config.eval_every_steps=100',
           '--config.checkpoint_every_steps=2']
  train.train_and_evaluate(runs.config(data_dir, '--config.num_train_steps=4', *steps), workdir)
  assert 'schedule' not in caplog.text
  train.train_and_evaluate(runs.config(data_dir, '--config.num_train_steps=6', *steps), workdir)
  assert ('config.num_train_steps changed from 4 to 6 on resuming at step 4: the cosine '
          'schedule now decays over the new length') in caplog.text


@pytest.mark.slow
def test_a_workdir_saved_under_the_old_key_names_resumes(tmp_path, data_dir, caplog):
  """A config.json written with loss / num_gaussians resumes, with old or new spellings."""
  workdir = str(tmp_path / 'run')
  steps = ['--config.log_every_steps=2', '--config.eval_every_steps=100',
           '--config.checkpoint_every_steps=2']
  train.train_and_evaluate(runs.config(data_dir, '--config.num_train_steps=2',
                                       '--config.head=mdn', '--config.num_components=3',
                                       *steps), workdir)
  path = os.path.join(workdir, config_lib.CONFIG_FILE)
  with open(path) as f:
    saved = json.load(f)
  saved['loss'], saved['num_gaussians'] = saved.pop('head'), saved.pop('num_components')
  del saved['target_concentration']
  with open(path, 'w') as f:
    json.dump(saved, f)
  caplog.set_level(logging.INFO)
  train.train_and_evaluate(runs.config(data_dir, '--config.num_train_steps=4',
                                       '--config.loss=mdn', '--config.num_gaussians=3',
                                       *steps), workdir)
  assert 'Resumed from the checkpoint at step 2' in caplog.text
  assert 'config.loss is deprecated: it is config.head now' in caplog.text
  with pytest.raises(ValueError, match=r"head: 'mdn' -> 'mse'"):
    train.train_and_evaluate(runs.config(data_dir, '--config.num_train_steps=4',
                                         '--config.loss=mse', '--config.num_gaussians=3',
                                         *steps), workdir)
  train.train_and_evaluate(runs.config(data_dir, '--config.num_train_steps=6',
                                       '--config.head=mdn', '--config.num_components=3',
                                       *steps), workdir)
  assert 'Resumed from the checkpoint at step 4' in caplog.text
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4', '6']


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
