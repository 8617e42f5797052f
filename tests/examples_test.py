"""The gallery in examples/: each script runs to its success line and saves its plot.

The scripts train small networks for a few seconds and check their own
result (both answers of an ambiguous problem found), exiting non-zero when
they miss it; here each runs as a user runs it, in a subprocess.
"""

import pathlib
import subprocess
import sys

import pytest

import training_runs  # tests/ is on sys.path under pytest.

REPO = pathlib.Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


# Each script and the line it prints when it met its success criterion.
SUCCESS = {
    'bimodal_regression.py': 'OK: both branches found within 0.1',
    'circle_regression.py': 'OK: both answers found within 3°',
}


@pytest.mark.parametrize('script', sorted(SUCCESS))
def test_example_reaches_its_success_line_and_saves_its_plot(script, tmp_path):
  plot = tmp_path / 'plot.png'
  result = subprocess.run([sys.executable, str(REPO / 'examples' / script), f'--plot={plot}'],
                          cwd=tmp_path, env=training_runs.subprocess_env(PYTHONIOENCODING='utf-8'),
                          capture_output=True, encoding='utf-8', timeout=300)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  assert SUCCESS[script] in result.stdout, result.stdout
  assert plot.read_bytes().startswith(PNG_SIGNATURE)
