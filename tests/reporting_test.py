"""metrics.jsonl, TensorBoard event files and the progress line."""

import glob
import json

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
