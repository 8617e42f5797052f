"""Your own rotated photographs: an angle CSV trains a directional head with no code of yours."""

import json
import os
import sys

import numpy as np
from PIL import Image
import pytest

from propel_jax.data.builders import symmetric_shapes
import training_runs as runs  # tests/ is on sys.path under pytest.


@pytest.mark.slow
def test_image_folder_angles_train_vmf_propel(tmp_path):
  rng = np.random.default_rng(0)
  folder = tmp_path / 'photos'
  folder.mkdir()
  lines = ['filename,angle']
  for i, angle in enumerate(rng.uniform(-180.0, 180.0, 40)):
    image = symmetric_shapes.render_shape('arrow', angle, image_size=16)[..., 0]
    Image.fromarray(np.uint8(255 * image)).save(folder / f'{i}.png')
    lines.append(f'{i}.png,{angle:.3f}')
  (folder / 'labels.csv').write_text('\n'.join(lines) + '\n')
  workdir = str(tmp_path / 'run')
  command = [sys.executable, '-m', 'experiments.train',
             f'--config={runs.REPO}/experiments/configs/image_folder.py:{folder}/labels.csv',
             f'--workdir={workdir}', f'--config.data_dir={tmp_path / "data"}',
             '--config.image_folder.targets=angle', '--config.image_folder.image_size=16',
             '--config.image_folder.channels=1', '--config.loss=vmfpropel',
             '--config.target_scale=0.1', '--config.model.channels=(4, 8)',
             '--config.model.hidden_units=8', '--config.batch_size=8',
             '--config.num_train_steps=4', '--config.log_every_steps=2',
             '--config.eval_every_steps=4', '--config.checkpoint_every_steps=4',
             '--config.num_plot_examples=1']
  runs.run(command, str(tmp_path / 'cache'))
  with open(os.path.join(workdir, 'eval_metrics.json')) as f:
    metrics = json.load(f)
  for name in ('angular_error/mode', 'acc15/mode', 'log_likelihood', 'spread',
               'mode_recall_all'):
    assert np.isfinite(metrics[name]), name
  assert sorted(os.listdir(os.path.join(workdir, 'plots'))) == [
      'density_0.png', 'predicted_vs_true.png']
