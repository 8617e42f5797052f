"""Experiment configs: every file loads and validates; bad values fail naming the key."""

import glob
import json
import os
import subprocess
import sys

from absl import flags
from ml_collections import config_flags
from PIL import Image
import pytest

from propel_jax.data import input_pipeline
from propel_jax.training import config as config_lib
from propel_jax.training import data_checks
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


def _parse_flag(argv):
  """Parses command-line flags the way experiments/train.py does; returns the config flag."""
  argv = ['prog'] + argv
  flag_values = flags.FlagValues()
  # sys_argv: config_flags finds the --config.KEY overrides there.
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=flag_values,
                                  lock_config=True, sys_argv=argv)
  flag_values(argv)
  return flag_values['config']


def _parse(argv):
  """The config of `_parse_flag`, as parsed (old key names not yet resolved)."""
  return _parse_flag(argv).value


def _small_config(**overrides):
  config = _parse([f'--config={REPO}/experiments/configs/synthetic.py:small'])
  with config.unlocked():
    for key, value in overrides.items():
      config[key] = value
  return config


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_every_config_loads_and_validates(path):
  config = _parse([f'--config={path}'])
  config_lib.validate(config)
  assert not [key for key in config_lib.deprecated_keys() if config[key] is not None]


def test_image_folder_config_registers_the_folder(tmp_path):
  lines = ['filename,azimuth,elevation']
  for i in range(6):
    Image.new('L', (40, 30), color=40 * i).save(tmp_path / f'{i}.png')
    lines.append(f'{i}.png,{10 * i - 20},{5 * i}')
  (tmp_path / 'labels.csv').write_text('\n'.join(lines) + '\n')
  config = _parse([f'--config={REPO}/experiments/configs/image_folder.py:{tmp_path}/labels.csv',
                   f'--config.data_dir={tmp_path}/data', '--config.image_folder.image_size=16'])
  data_checks.register_image_folder(config)
  info = input_pipeline.get_dataset_info(config.dataset, data_dir=config.data_dir)
  assert info.labels.names == ('azimuth', 'elevation')
  assert (info.labels.low, info.labels.high) == ((-20.0, 0.0), (30.0, 25.0))
  assert info.image_shape == (16, 16, 3)
  with config.unlocked():
    config.image_folder.name = 'other'
  with pytest.raises(ValueError, match='config.image_folder.name'):
    data_checks.register_image_folder(config)


def test_image_folder_config_needs_the_csv():
  with pytest.raises(Exception, match='Name the CSV'):
    _parse([f'--config={REPO}/experiments/configs/image_folder.py'])


def test_command_line_overrides():
  config = _parse([f'--config={REPO}/experiments/configs/synthetic.py:small',
                   '--config.head=mse', '--config.num_train_steps=2000',
                   '--config.model.hidden_units=20', '--config.data_dir=/tmp/data',
                   '--config.grad_clip_norm=0.5'])
  assert (config.head, config.num_train_steps, config.model.hidden_units) == ('mse', 2000, 20)
  assert config.data_dir == '/tmp/data'
  assert config.grad_clip_norm == 0.5
  assert config.dataset == 'synthetic_hands/ambiguous_small'
  config_lib.validate(config)


def test_unknown_override_key_fails():
  with pytest.raises(Exception, match='no_such_key'):
    _parse([f'--config={REPO}/experiments/configs/synthetic.py', '--config.no_such_key=1'])


def test_unknown_variant_fails():
  with pytest.raises(Exception, match="Unknown variant 'huge'"):
    _parse([f'--config={REPO}/experiments/configs/synthetic.py:huge'])


@pytest.mark.parametrize('key, value', [
    ('head', 'nonsense'), ('batch_size', 0), ('num_train_steps', -1),
    ('eval_every_steps', 0), ('checkpoint_every_steps', 0), ('log_every_steps', 0),
    ('learning_rate', 0.0), ('lr_schedule', 'linear'), ('warmup_steps', 600),
    ('optimizer', 'rmsprop'), ('grad_clip_norm', -1.0), ('num_components', 0),
    ('target_scale', -0.1), ('target_concentration', -1.0), ('dataset', ''),
    ('max_checkpoints_to_keep', 0),
    ('weight_decay', -1.0), ('num_plot_examples', -1)])
def test_invalid_value_names_the_key(key, value):
  config = _small_config(**{key: value})
  with pytest.raises(ValueError, match=f'config.{key}='):
    config_lib.validate(config)


def test_values_keep_their_types():
  # ConfigDict itself refuses a float where the config has an int.
  with pytest.raises(TypeError):
    _small_config(seed=0.5)


def test_batch_size_must_split_over_devices():
  # Eight fake CPU devices (CPU also where there is an accelerator), in a
  # subprocess so that this process keeps one.
  code = ('import sys; sys.argv = ["x"]; sys.path.insert(0, "tests"); '
          'from configs_test import _small_config; '
          'from propel_jax.training import config as config_lib; '
          'config_lib.validate(_small_config(batch_size=12))')
  env = runs.subprocess_env(XLA_FLAGS='--xla_force_host_platform_device_count=8',
                            JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
  assert result.returncode != 0
  assert 'config.batch_size=12 must be divisible by the number of devices (8' in result.stderr


def test_resume_with_a_different_config_fails(tmp_path):
  config_lib.save_or_check(_small_config(), str(tmp_path))
  # Training longer is a resume; a different head is another experiment.
  config_lib.save_or_check(_small_config(num_train_steps=1000), str(tmp_path))
  with pytest.raises(ValueError, match=r"head: 'propel' -> 'mse'"):
    config_lib.save_or_check(_small_config(head='mse'), str(tmp_path))
  assert config_lib.load(str(tmp_path)).num_train_steps == 1000


def test_load_config_says_what_is_missing(tmp_path):
  with pytest.raises(FileNotFoundError, match='experiments.train'):
    config_lib.load(str(tmp_path))


# Deprecated key names: the old spelling reads as the new one, with one warning.

SMALL = f'--config={REPO}/experiments/configs/synthetic.py:small'
ORIENTATION = f'--config={REPO}/experiments/configs/compare_orientation.py:mixed_small'


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']


@pytest.mark.parametrize('old, new, expected', [
    (['--config.loss=mdn'], ['--config.head=mdn'], {'head': 'mdn'}),
    (['--config.num_gaussians=5'], ['--config.num_components=5'], {'num_components': 5}),
    (['--config.loss=mse', '--config.num_gaussians=3'],
     ['--config.head=mse', '--config.num_components=3'], {'head': 'mse', 'num_components': 3}),
    # vmfpropel once read κ = 1/target_scale² from target_scale.
    (['--config.loss=vmfpropel', '--config.target_scale=0.1'],
     ['--config.head=vmfpropel', '--config.target_concentration=100'],
     {'head': 'vmfpropel', 'target_concentration': pytest.approx(100.0)}),
])
def test_old_and_new_names_on_the_command_line_give_one_config(old, new, expected, caplog):
  resolved_old = config_lib.resolve_flag(_parse_flag([SMALL, *old]))
  messages = _warnings(caplog)
  caplog.clear()
  resolved_new = config_lib.resolve_flag(_parse_flag([SMALL, *new]))
  assert not _warnings(caplog)
  for config in (resolved_old, resolved_new):
    assert {key: config[key] for key in expected} == expected
    assert not set(config_lib.deprecated_keys()) & set(config.keys())
    config_lib.validate(config)
  assert not config_lib.differences(json.loads(resolved_old.to_json_best_effort()),
                                    resolved_new)
  # One line per deprecated key, naming the new key.
  assert len(messages) == len(old), messages
  for message in messages:
    assert '\n' not in message and 'deprecated' in message
  for key in expected:
    assert any(f'config.{key}' in m for m in messages), (key, messages)


def test_validate_reads_old_names_with_a_warning(caplog):
  config = _parse([SMALL, '--config.loss=heatmap'])
  config_lib.validate(config)
  assert _warnings(caplog) == [
      "config.loss is deprecated: it is config.head now (read as head='heatmap')."]
  with pytest.raises(ValueError, match=r"config.head='hinge' is invalid"):
    config_lib.validate(_parse([SMALL, '--config.loss=hinge']))


def test_old_and_new_names_that_disagree_are_an_error():
  both = _parse_flag([SMALL, '--config.head=mdn', '--config.loss=mse'])
  with pytest.raises(ValueError, match=r"config.loss='mse' \(the deprecated name of "
                                       r"config.head\) and config.head='mdn' disagree"):
    config_lib.resolve_flag(both)
  with pytest.raises(ValueError, match='disagree'):
    config_lib.resolve(both.value)  # Without the command line: head is not its default.
  with pytest.raises(ValueError, match='config.num_gaussians=3'):
    config_lib.resolve_flag(_parse_flag([SMALL, '--config.num_components=4',
                                         '--config.num_gaussians=3']))
  # Agreeing values are only deprecated.
  agree = config_lib.resolve_flag(_parse_flag([SMALL, '--config.head=mse',
                                               '--config.loss=mse']))
  assert agree.head == 'mse'


def test_an_old_name_on_the_command_line_overrides_the_config_file():
  # compare_orientation.py sets num_components = 6, as it once set num_gaussians.
  config = config_lib.resolve_flag(_parse_flag([ORIENTATION, '--config.num_gaussians=2']))
  assert config.num_components == 2
  assert config_lib.resolve_flag(_parse_flag([ORIENTATION])).num_components == 6


def _write_config_file(tmp_path, name, body):
  path = tmp_path / f'{name}.py'
  path.write_text('from experiments.configs import synthetic\n\n\n'
                  'def get_config():\n'
                  "  config = synthetic.get_config('small')\n" + body + '  return config\n')
  return f'--config={path}'


def test_old_names_in_a_config_file(tmp_path, caplog):
  old = _write_config_file(tmp_path, 'old', "  config.loss = 'mdn'\n  config.num_gaussians = 3\n")
  new = _write_config_file(tmp_path, 'new', "  config.head = 'mdn'\n  config.num_components = 3\n")
  resolved = config_lib.resolve_flag(_parse_flag([old]))
  assert (resolved.head, resolved.num_components) == ('mdn', 3)
  assert len(_warnings(caplog)) == 2
  assert not config_lib.differences(json.loads(resolved.to_json_best_effort()),
                                    config_lib.resolve_flag(_parse_flag([new])))
  # A command-line new name overrides an old one in the file only if they agree.
  assert config_lib.resolve_flag(_parse_flag([old, '--config.head=mdn'])).head == 'mdn'
  with pytest.raises(ValueError, match='disagree'):
    config_lib.resolve_flag(_parse_flag([old, '--config.head=mse']))
  both = _write_config_file(tmp_path, 'both', "  config.head = 'mse'\n  config.loss = 'mdn'\n")
  with pytest.raises(ValueError, match='disagree'):
    config_lib.resolve_flag(_parse_flag([both]))


def _old_config_json(config):
  """What config.json held before the renames: loss, num_gaussians, no target_concentration."""
  saved = json.loads(config_lib.resolve(config, warn=False).to_json_best_effort())
  saved['loss'] = saved.pop('head')
  saved['num_gaussians'] = saved.pop('num_components')
  del saved['target_concentration']
  return saved


@pytest.mark.parametrize('old_argv, new_argv, other_argv', [
    ([], [], ['--config.head=mse']),
    (['--config.loss=vmfpropel', '--config.target_scale=0.05'],
     ['--config.head=vmfpropel', '--config.target_concentration=400'],
     ['--config.head=vmfpropel', '--config.target_concentration=100']),
])
def test_a_workdir_saved_under_the_old_names_resumes(tmp_path, old_argv, new_argv, other_argv):
  saved = _old_config_json(_parse([SMALL, *old_argv]))
  with open(tmp_path / config_lib.CONFIG_FILE, 'w') as f:
    json.dump(saved, f)
  loaded = config_lib.load(str(tmp_path))
  assert loaded.head == config_lib.resolve(_parse([SMALL, *new_argv]), warn=False).head
  # The old command and the new one resume it; another head or width does not.
  for argv in (old_argv, new_argv):
    config_lib.save_or_check(_parse([SMALL, *argv]), str(tmp_path))
  with pytest.raises(ValueError, match='different configuration'):
    config_lib.save_or_check(_parse([SMALL, *other_argv]), str(tmp_path))
  # The rewritten config.json uses the present names.
  with open(tmp_path / config_lib.CONFIG_FILE) as f:
    rewritten = json.load(f)
  assert 'loss' not in rewritten and 'num_gaussians' not in rewritten
  assert rewritten['head'] == loaded.head
