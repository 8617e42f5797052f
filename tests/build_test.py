"""The build command prepares a dataset; `show` draws its examples."""

import subprocess
import sys

import pytest


def _run(*args):
  return subprocess.run([sys.executable, '-m', 'experiments.build_dataset', *args],
                        capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_build_command(tmp_path):
  done = _run('--dataset=synthetic_hands/unambiguous_small', f'--data_dir={tmp_path}')
  assert done.returncode == 0, done.stderr[-2000:]
  assert "{'train': 512, 'test': 256}" in done.stdout
  assert (tmp_path / 'synthetic_hands' / 'unambiguous_small' / '1.0.0').is_dir()
  # (Missing manual downloads: tests/biwi_test.py, tests/threeddfa_test.py.)


@pytest.mark.slow
def test_show_writes_a_grid(tmp_path):
  from experiments import show_dataset as show  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  show.save_grid('synthetic_hands/ambiguous_small', 'test', tmp_path / 'grid.png',
                 data_dir=tmp_path, num=6)
  with Image.open(tmp_path / 'grid.png') as image:
    assert image.size[0] > 200 and image.size[1] > 200
