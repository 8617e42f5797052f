"""metrics.jsonl, TensorBoard event files, the progress line and the training health warnings."""

import glob
import json

import numpy as np
import pytest

from propel_jax.training import reporting


def _read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def test_writes_jsonl_and_tensorboard(tmp_path):
  writer = reporting.MetricWriter(str(tmp_path))
  writer.write(10, 'train', {'loss': 0.5, 'steps_per_sec': 3.0})
  writer.write(20, 'eval', {'loss': 0.25, 'cmae/mode': 7.5})
  writer.close()
  assert _read_jsonl(tmp_path / 'metrics.jsonl') == [
      {'split': 'train', 'step': 10, 'loss': 0.5, 'steps_per_sec': 3.0},
      {'split': 'eval', 'step': 20, 'loss': 0.25, 'cmae/mode': 7.5}]
  assert glob.glob(str(tmp_path / 'events.out.tfevents.*'))


def test_resume_drops_lines_after_the_checkpoint(tmp_path):
  writer = reporting.MetricWriter(str(tmp_path))
  for step in (10, 20, 30):
    writer.write(step, 'train', {'loss': float(step)})
  writer.close()
  # Killed after step 30 but the last checkpoint is at 20: step 30 is redone.
  writer = reporting.MetricWriter(str(tmp_path), resume_step=20)
  writer.write(30, 'train', {'loss': 3.0})
  writer.close()
  assert [(r['step'], r['loss']) for r in _read_jsonl(tmp_path / 'metrics.jsonl')] == [
      (10, 10.0), (20, 20.0), (30, 3.0)]


@pytest.mark.parametrize('seconds, text', [(42.4, '42s'), (185, '3m05s'), (3720, '1h02m'),
                                           (float('inf'), '?')])
def test_format_duration(seconds, text):
  assert reporting.format_duration(seconds) == text


def test_progress_line():
  progress = reporting.Progress(first_step=0, num_steps=2000)
  assert progress.line(120, 0.23456, 15.2) == (
      'step 120/2000 (6%) | loss 0.2346 | 15.2 steps/s | ETA 2m04s')
  assert progress.update(10) > 0


def _health(losses, grad_norm=1.0, num_train_steps=200, log_every=10):
  """The warnings after logging `losses`, one per log interval."""
  health = reporting.TrainingHealth(num_train_steps, log_every)
  for i, loss in enumerate(losses):
    warnings = health.update_train(log_every * (i + 1), {'loss': loss, 'grad_norm': grad_norm})
  return warnings


def test_health_warns_when_the_loss_stops_falling():
  rng = np.random.default_rng(0)
  falling = 5.0 * np.exp(-np.arange(20) / 5) + 0.05 * rng.random(20)
  assert _health(falling) == []
  # Noise around a constant: after the first running median, new lows stop
  # for a quarter of the run (50 steps) and more.
  flat = 500.0 + 50.0 * rng.standard_normal(20)
  warnings = _health(flat)
  assert len(warnings) == 1 and warnings[0].startswith('the loss has not fallen for ')
  # Falling again clears it.
  assert _health(np.concatenate([flat, np.linspace(400, 100, 10)])) == []


def test_health_warns_about_zero_gradients_and_saturated_outputs():
  assert _health([1.0], grad_norm=0.0)[0].startswith('the gradient norm is 0')
  health = reporting.TrainingHealth(100, 10)
  assert health.update_eval({'saturated': 0.5}) == []
  assert health.update_eval({'saturated': 0.75})[0].startswith(
      '75% of the predictions are at an end of the label range')
  health.update_train(10, {'loss': 1.0, 'grad_norm': 0.0})
  assert len(health.summary()) == 2
  health.update_eval({'saturated': 0.0})
  health.update_train(20, {'loss': 0.5, 'grad_norm': 0.1})
  assert health.summary() == []  # Only what still holds.


def test_warnings_are_appended_to_the_line(caplog):
  reporting.Progress(0, 100).log(10, 0.5, 2.0, ['the gradient norm is 0'])
  assert caplog.records[-1].levelname == 'WARNING'
  assert caplog.records[-1].getMessage().endswith('| warning: the gradient norm is 0')
