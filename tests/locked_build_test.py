"""A dataset is built once however many processes ask for it at the same time.

The test holds the build's lock itself, starts two processes that each need
the dataset (as the processes of one multi-process run, or two runs sharing a
data_dir, do), lets both reach the lock, then releases it: one builds, the
other waits and then reads that build. Without the lock the second rename of
TFDS's `incomplete.*` folder fails (FileExistsError).
"""

import fcntl
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
from PIL import Image
import pytest

import training_runs as runs

_PREPARE = textwrap.dedent('''
    import sys
    from absl import logging
    from propel_jax.data import input_pipeline
    from propel_jax.data.builders import image_folder
    dataset, data_dir, csv_path = sys.argv[1:]
    logging.set_verbosity(logging.INFO)
    if dataset.startswith('image_folder/'):
      image_folder.register(dataset.split('/')[1], csv_path=csv_path, image_size=8)
    builder = input_pipeline.prepare_builder(dataset, data_dir)
    print('splits', {k: v.num_examples for k, v in sorted(builder.info.splits.items())})
''')


def _image_folder(root):
  (root / 'imgs').mkdir(parents=True)
  lines = ['filename,a']
  for i in range(10):
    Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(root / 'imgs' / f'{i}.png')
    lines.append(f'imgs/{i}.png,{i}')
  (root / 'targets.csv').write_text('\n'.join(lines) + '\n')
  return root / 'targets.csv'


@pytest.mark.slow
@pytest.mark.parametrize('dataset', ['synthetic_hands/ambiguous_small', 'image_folder/tiny'])
def test_concurrent_builds_build_once(tmp_path, dataset):
  data_dir = tmp_path / 'data'
  csv_path = _image_folder(tmp_path / 'src')
  # The version folder the build will have: <data_dir>/<name>/<config>/<version>.
  check = subprocess.run(
      [sys.executable, '-c', textwrap.dedent('''
          import sys
          import tensorflow_datasets as tfds
          from propel_jax.data import builders
          from propel_jax.data.builders import image_folder
          dataset, data_dir, csv_path = sys.argv[1:]
          if dataset.startswith('image_folder/'):
            image_folder.register(dataset.split('/')[1], csv_path=csv_path, image_size=8)
          print(tfds.builder(dataset, data_dir=data_dir).data_dir)'''),
       dataset, str(data_dir), str(csv_path)],
      capture_output=True, text=True, timeout=120, env=runs.subprocess_env())
  assert check.returncode == 0, check.stderr[-3000:]
  version_dir = check.stdout.strip().splitlines()[-1]
  os.makedirs(os.path.dirname(version_dir))
  lock = os.open(version_dir + '.lock', os.O_RDWR | os.O_CREAT)
  fcntl.flock(lock, fcntl.LOCK_EX)
  logs = [tmp_path / f'process_{i}.log' for i in range(2)]
  processes = [subprocess.Popen([sys.executable, '-c', _PREPARE, dataset, str(data_dir),
                                 str(csv_path)], env=runs.subprocess_env(),
                                stdout=log.open('w'), stderr=subprocess.STDOUT, text=True)
               for log in logs]
  # Both start up and reach the lock (however slowly a loaded machine starts them).
  deadline = time.monotonic() + 240
  while (not all('Waiting for' in log.read_text() for log in logs)
         and all(p.poll() is None for p in processes) and time.monotonic() < deadline):
    time.sleep(0.2)
  os.close(lock)
  for process in processes:
    process.wait(timeout=300)
  outputs = [log.read_text() for log in logs]
  for process, output in zip(processes, outputs):
    assert process.returncode == 0, output[-5000:]
    assert 'splits' in output.splitlines()[-1]
  assert outputs[0].splitlines()[-1] == outputs[1].splitlines()[-1]
  assert sum('Waiting for' in output for output in outputs) == 2
  assert os.path.isdir(version_dir)
  assert not [f for f in os.listdir(os.path.dirname(version_dir)) if f.startswith('incomplete')]
