"""Experiment configs: every file loads and validates; bad values fail naming the key."""

import glob
import os
import subprocess
import sys

from absl import flags
from ml_collections import config_flags
from PIL import Image
import pytest

from propel_jax.data import input_pipeline
from propel_jax.training import train
import training_runs as runs  # tests/ is on sys.path under pytest.

REPO = runs.REPO
CONFIG_FILES = sorted(p for p in glob.glob(os.path.join(REPO, 'experiments/configs/*.py'))
                      if not p.endswith('__init__.py'))
# The argument after ':' each config file needs, or each variant it has.
CONFIG_ARGS = {'synthetic.py': ('full', 'small', 'demo'),
               'synthetic_unambiguous.py': ('full', 'small', 'demo'),
               'head_pose.py': ('biwi', 'aflw2000', 'biwi_all'),
               'image_folder.py': ('/data/hands/labels.csv',),
               'compare_orientation.py': ('mixed_small', 'k6', 'cube_small', 'solids_mixed')}
CONFIGS = [f'{path}:{arg}' if arg else path for path in CONFIG_FILES
           for arg in CONFIG_ARGS.get(os.path.basename(path), ('',))]


def _parse(argv):
  """Parses command-line flags the way experiments/train.py does."""
  argv = ['prog'] + argv
  flag_values = flags.FlagValues()
  # sys_argv: config_flags finds the --config.KEY overrides there.
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=flag_values,
                                  lock_config=True, sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def _small_config(**overrides):
  config = _parse([f'--config={REPO}/experiments/configs/synthetic.py:small'])
  with config.unlocked():
    for key, value in overrides.items():
      config[key] = value
  return config


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_every_config_loads_and_validates(path):
  config = _parse([f'--config={path}'])
  train.validate_config(config)


def test_image_folder_config_registers_the_folder(tmp_path):
  lines = ['filename,azimuth,elevation']
  for i in range(6):
    Image.new('L', (40, 30), color=40 * i).save(tmp_path / f'{i}.png')
    lines.append(f'{i}.png,{10 * i - 20},{5 * i}')
  (tmp_path / 'labels.csv').write_text('\n'.join(lines) + '\n')
  config = _parse([f'--config={REPO}/experiments/configs/image_folder.py:{tmp_path}/labels.csv',
                   f'--config.data_dir={tmp_path}/data', '--config.image_folder.image_size=16'])
  train.register_image_folder(config)
  info = input_pipeline.get_dataset_info(config.dataset, data_dir=config.data_dir)
  assert info.labels.names == ('azimuth', 'elevation')
  assert (info.labels.low, info.labels.high) == ((-20.0, 0.0), (30.0, 25.0))
  assert info.image_shape == (16, 16, 3)
  with config.unlocked():
    config.image_folder.name = 'other'
  with pytest.raises(ValueError, match='config.image_folder.name'):
    train.register_image_folder(config)


def test_image_folder_config_needs_the_csv():
  with pytest.raises(Exception, match='Name the CSV'):
    _parse([f'--config={REPO}/experiments/configs/image_folder.py'])


def test_command_line_overrides():
  config = _parse([f'--config={REPO}/experiments/configs/synthetic.py:small',
                   '--config.loss=mse', '--config.num_train_steps=2000',
                   '--config.model.hidden_units=20', '--config.data_dir=/tmp/data',
                   '--config.grad_clip_norm=0.5'])
  assert (config.loss, config.num_train_steps, config.model.hidden_units) == ('mse', 2000, 20)
  assert config.data_dir == '/tmp/data'
  assert config.grad_clip_norm == 0.5
  assert config.dataset == 'synthetic_hands/ambiguous_small'
  train.validate_config(config)


def test_unknown_override_key_fails():
  with pytest.raises(Exception, match='no_such_key'):
    _parse([f'--config={REPO}/experiments/configs/synthetic.py', '--config.no_such_key=1'])


def test_unknown_variant_fails():
  with pytest.raises(Exception, match="Unknown variant 'huge'"):
    _parse([f'--config={REPO}/experiments/configs/synthetic.py:huge'])


@pytest.mark.parametrize('key, value', [
    ('loss', 'nonsense'), ('batch_size', 0), ('num_train_steps', -1),
    ('eval_every_steps', 0), ('checkpoint_every_steps', 0), ('log_every_steps', 0),
    ('learning_rate', 0.0), ('lr_schedule', 'linear'), ('warmup_steps', 600),
    ('optimizer', 'rmsprop'), ('grad_clip_norm', -1.0), ('num_gaussians', 0),
    ('target_scale', -0.1), ('dataset', ''), ('max_checkpoints_to_keep', 0),
    ('weight_decay', -1.0), ('num_plot_examples', -1)])
def test_invalid_value_names_the_key(key, value):
  config = _small_config(**{key: value})
  with pytest.raises(ValueError, match=f'config.{key}='):
    train.validate_config(config)


def test_values_keep_their_types():
  # ConfigDict itself refuses a float where the config has an int.
  with pytest.raises(TypeError):
    _small_config(seed=0.5)


def test_batch_size_must_split_over_devices():
  # Eight fake CPU devices (CPU also where there is an accelerator), in a
  # subprocess so that this process keeps one.
  code = ('import sys; sys.argv = ["x"]; sys.path.insert(0, "tests"); '
          'from configs_test import _small_config; from propel_jax.training import train; '
          'train.validate_config(_small_config(batch_size=12))')
  env = runs.subprocess_env(XLA_FLAGS='--xla_force_host_platform_device_count=8',
                            JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
  assert result.returncode != 0
  assert 'config.batch_size=12 must be divisible by the number of devices (8' in result.stderr


def test_resume_with_a_different_config_fails(tmp_path):
  train.save_or_check_config(_small_config(), str(tmp_path))
  # Training longer is a resume; a different loss is another experiment.
  train.save_or_check_config(_small_config(num_train_steps=1000), str(tmp_path))
  with pytest.raises(ValueError, match=r"loss: 'propel' -> 'mse'"):
    train.save_or_check_config(_small_config(loss='mse'), str(tmp_path))
  assert train.load_config(str(tmp_path)).num_train_steps == 1000


def test_load_config_says_what_is_missing(tmp_path):
  with pytest.raises(FileNotFoundError, match='experiments.train'):
    train.load_config(str(tmp_path))
