"""The build command prepares a dataset, and names the manual download it lacks."""

import subprocess
import sys


def _run(*args):
  return subprocess.run([sys.executable, '-m', 'propel_jax.datasets.build', *args],
                        capture_output=True, text=True, timeout=300)


def test_build_command(tmp_path):
  done = _run('--dataset=synthetic_hands/unambiguous_small', f'--data_dir={tmp_path}')
  assert done.returncode == 0, done.stderr[-2000:]
  assert "{'train': 512, 'test': 256}" in done.stdout
  assert (tmp_path / 'synthetic_hands' / 'unambiguous_small' / '1.0.0').is_dir()
  missing = _run('--dataset=aflw2000', f'--data_dir={tmp_path}',
                 f'--manual_dir={tmp_path / "nothing_here"}')
  assert missing.returncode != 0
  assert 'AFLW2000-3D.zip' in missing.stderr and 'nothing_here' in missing.stderr
