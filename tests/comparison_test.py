"""The comparison: method names, aggregation maths, per-run analysis, and the binary end to end.

The statistics are checked against numbers computed by hand (and with SciPy
from the definitions), the end-to-end run (the real binary, 2 methods × 2
seeds, a tiny network on the small synthetic dataset) against the runs' own
files.
"""

import json
import math
import os
import subprocess
import sys

from absl import flags
import jax
from ml_collections import config_flags
import numpy as np
import pytest
from scipy import stats

from experiments.comparison import report
from experiments.comparison import results as results_lib
from experiments.comparison import runner
from propel_jax.data import input_pipeline
from propel_jax.training import evaluation
import fake_datasets  # tests/ is on sys.path under pytest.
import training_runs as runs

REPO = runs.REPO
CONFIG = f'{REPO}/experiments/configs/compare_synthetic.py:ambiguous_small'
TINY = ['--config.model.channels=(4, 8)', '--config.model.hidden_units=8',
        '--config.batch_size=8', '--config.num_train_steps=4', '--config.log_every_steps=2',
        '--config.eval_every_steps=4', '--config.checkpoint_every_steps=4',
        '--config.num_plot_examples=2', '--config.compare.methods=propel_i2,mse',
        '--config.compare.sweep=', '--config.compare.seeds=(0, 1)']
def _parse(*argv):
  argv = ['prog', f'--config={CONFIG}', *argv]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=flag_values,
                                  lock_config=True, sys_argv=argv)
  flag_values(argv)
  return flag_values.config


@pytest.mark.parametrize('name, expected', [
    ('mse', ('mse', None, None, None, None)),
    ('heatmap', ('heatmap', None, None, None, None)),
    ('propel_i2', ('propel', 2, None, None, None)),
    ('mdn_i8', ('mdn', 8, None, None, None)),
    ('propel_i4_s0.05', ('propel', 4, 0.05, None, None)),
    ('propel_s1e-3', ('propel', None, 0.001, None, None)),
    ('propel_i4_lw', ('propel', 4, None, True, None)),
    ('propel_i4_full', ('propel', 4, None, None, 'full')),
    ('propel_i2_s0.05_lw_full', ('propel', 2, 0.05, True, 'full')),
    ('mdn_i2_full', ('mdn', 2, None, None, 'full')),
])
def test_parse_method(name, expected):
  method = runner.parse_method(name)
  assert (method.name, method.head, method.num_components, method.target_sigma,
          method.learn_weights, method.covariance) == (name, *expected)


def test_method_suffixes_set_the_model_config():
  config = _parse()
  for name, learn_weights, covariance in (('propel_i4', False, 'diagonal'),
                                          ('propel_i4_lw', True, 'diagonal'),
                                          ('propel_i4_full', False, 'full'),
                                          ('mdn_i2_full', False, 'full')):
    run = runner.run_config(config, runner.parse_method(name), 0)
    assert (run.num_components, run.model.learn_weights, run.model.covariance) == (
        int(name.split('_i')[1][0]), learn_weights, covariance), name
  assert {'propel_i4_lw', 'propel_i4_full'} <= set(config.compare.methods.split(','))


def test_a_method_sigma_sets_the_head_target_width():
  """_s<σ> is σ for the Gaussian heads and κ = 1/σ² for vmfpropel, as it always was."""
  config = _parse()
  assert runner.run_config(config, runner.parse_method('propel_i2_s0.05'), 0).target_scale == 0.05
  vmf = runner.run_config(config, runner.parse_method('vmfpropel_i2_s0.05'), 0)
  assert vmf.target_concentration == 400.0
  # Without _s, a base config with no target_concentration reads 1/target_scale².
  assert runner.run_config(config, runner.parse_method('vmfpropel_i2'), 0
                           ).target_concentration == 2500.0


def test_method_settings_come_from_the_registry():
  config = _parse()
  settings = {name: results_lib.method_settings(config, runner.parse_method(name))
              for name in ('propel_i4_lw', 'mdn_i2', 'vmfmdn_i3', 'vmfpropel_i2_s0.05', 'mse')}
  assert settings == {
      'propel_i4_lw': {'head': 'propel', 'num_components': 4, 'learn_weights': True,
                       'covariance': 'diagonal', 'target_scale': 0.02},
      'mdn_i2': {'head': 'mdn', 'num_components': 2, 'learn_weights': True,
                 'covariance': 'diagonal'},
      'vmfmdn_i3': {'head': 'vmfmdn', 'num_components': 3, 'learn_weights': True},
      'vmfpropel_i2_s0.05': {'head': 'vmfpropel', 'num_components': 2, 'learn_weights': False,
                             'target_concentration': 400.0},
      'mse': {'head': 'mse'}}


@pytest.mark.parametrize('name, message', [
    ('svm', 'Unknown method'), ('mse_i2', 'needs a mixture head'),
    ('propel_i0', 'I >= 1'), ('mdn_i2_s0.1', r"needs a head with a target width \('propel', "
                                            r"'vmfpropel'\)"),
    ('propel_x', 'Unknown'),
    ('mdn_i2_lw', r"_lw \(learned weights\) needs a head of \('propel', 'vmfpropel'\)"),
    ('heatmap_full', r"_full \(full covariance\) needs a Gaussian mixture head \('propel', "
                     r"'mdn'\)"),
    ('vmfpropel_i2_full', 'needs a Gaussian mixture head'),
    ('propel_full_lw', r'Unknown method.*\[_lw\]\[_full\]'),
])
def test_parse_method_rejects_bad_names(name, message):
  with pytest.raises(ValueError, match=message):
    runner.parse_method(name)


def test_parse_methods_refuses_duplicates():
  assert [m.name for m in runner.parse_methods(' mse, propel_i2 ,')] == ['mse', 'propel_i2']
  with pytest.raises(ValueError, match=r"\['mse'\] are listed more than once"):
    runner.parse_methods('mse,l1,mse')


def test_mean_and_std_by_hand():
  # mean 7/3; squared deviations 16/9 + 1/9 + 25/9 = 42/9, over n − 1 = 2: 7/3.
  result = results_lib.mean_and_std([1.0, 2.0, 4.0])
  assert result['mean'] == pytest.approx(7 / 3)
  assert result['std'] == pytest.approx(math.sqrt(7 / 3))
  assert result['values'] == [1.0, 2.0, 4.0]
  assert results_lib.mean_and_std([5.0]) == {'mean': 5.0, 'std': None, 'values': [5.0]}


def test_aggregate_by_hand():
  seed_0 = {'cmae/mode': 1.0, 'num_params': 10, 'dataset': 'd', 'coverage_curve': [0.1, 0.5],
            'only_here': 3.0}
  seed_1 = {'cmae/mode': 3.0, 'num_params': 10, 'dataset': 'd', 'coverage_curve': [0.3, 0.5]}
  result = results_lib.aggregate([seed_0, seed_1])
  assert set(result) == {'cmae/mode', 'num_params', 'coverage_curve'}
  # Two values a, b: std (ddof 1) = |a − b| / √2.
  assert result['cmae/mode']['mean'] == 2.0
  assert result['cmae/mode']['std'] == pytest.approx(2 / math.sqrt(2))
  assert result['num_params']['std'] == 0.0
  np.testing.assert_allclose(result['coverage_curve']['mean'], [0.2, 0.5])
  np.testing.assert_allclose(result['coverage_curve']['std'], [0.2 / math.sqrt(2), 0.0],
                             atol=1e-12)


def test_validate_names_the_bad_key():
  with pytest.raises(ValueError, match='seeds'):
    runner.validate(_parse('--config.compare.seeds=(1, 1)'))
  with pytest.raises(ValueError, match='Unknown method'):
    runner.validate(_parse('--config.compare.methods=mse,svm'))
  with pytest.raises(ValueError, match='batch_size'):
    runner.validate(_parse('--config.batch_size=0'))
  config = _parse()
  with config.unlocked():
    del config['compare']
  with pytest.raises(ValueError, match='no `compare` section'):
    runner.validate(config)


def test_sensitivity_table_lists_every_propel_setting():
  propel = {'head': 'propel', 'num_components': 2, 'target_scale': 0.02,
            'learn_weights': False, 'covariance': 'diagonal'}
  settings = {'propel_i2': propel, 'propel_i2_s0.1': dict(propel, target_scale=0.1),
              'propel_i2_lw_full': dict(propel, learn_weights=True, covariance='full'),
              'mse': {'head': 'mse'}}
  cmae = {'mean': 3.0, 'std': 0.5, 'values': [2.5, 3.5]}
  results = {'dataset': 'd', 'label_names': ['a'], 'split_sizes': {'test': 1},
             'config': _parse().to_dict(), 'seeds': [0, 1], 'missing_runs': [], 'runs': {},
             'methods': ['propel_i2', 'propel_i2_lw_full', 'mse'], 'sweep': ['propel_i2_s0.1'],
             'method_settings': settings,
             'summary': {'propel_i2': {'cmae/mode': cmae}, 'mse': {'cmae/direct': cmae},
                         'propel_i2_s0.1': {}, 'propel_i2_lw_full': {}}}
  text = report.markdown(results, command='cmd')
  assert '| mse | direct | 3.00 ± 0.50 | – |' in text
  methods = text.split('## Methods')[1].split('##')[0]
  assert '| propel_i2 | propel | 2 | target_scale=0.02 | equal | diagonal |' in methods
  assert '| propel_i2_lw_full | propel | 2 | target_scale=0.02 | learned | full |' in methods
  assert '| mse | mse | – | – | – | – |' in methods
  assert 'target_scale: σ of the ground-truth Gaussian' in methods
  sensitivity = text.split('## Sensitivity')[1]
  assert '| propel_i2 | 2 | 0.02 | equal | diagonal | 3.00 ± 0.50 | – |' in sensitivity
  assert '| propel_i2_lw_full | 2 | 0.02 | learned | full | – |' in sensitivity
  assert '| propel_i2_s0.1 | 2 | 0.1 | equal | diagonal | – |' in sensitivity
  assert 'mse' not in sensitivity


def _run_compare_binary(config, workdir, argv, cache_dir):
  """Runs `python -m experiments.compare` as a user would; fails the test with its stderr.

  Returns:
    The content of the results.json it wrote.
  """
  command = [sys.executable, '-m', 'experiments.compare', f'--config={config}',
             f'--workdir={workdir}', *argv]
  process = subprocess.run(command, cwd=REPO, env=runs.env(cache_dir), capture_output=True,
                           text=True, timeout=600)
  assert process.returncode == 0, process.stderr[-5000:]
  with open(os.path.join(workdir, 'results.json')) as f:
    return json.load(f)


@pytest.mark.slow
def test_compare_binary_end_to_end(tmp_path):
  workdir, data_dir = str(tmp_path / 'compare'), str(tmp_path / 'data')
  cache = str(tmp_path / 'jax_cache')  # Seeds share compilations.
  results = _run_compare_binary(CONFIG, workdir, [f'--config.data_dir={data_dir}', *TINY], cache)
  assert results['methods'] == ['propel_i2', 'mse'] and results['missing_runs'] == []
  assert sorted(os.listdir(os.path.join(workdir, 'plots'))) == [
      'coverage.png', 'densities.png', 'error_distributions.png']
  markdown = open(os.path.join(workdir, 'results.md')).read()
  assert '--config.compare.methods=propel_i2,mse' in markdown  # The exact command.
  # What trained the runs: this process's backend, whatever it is.
  hardware = f'{jax.devices()[0].platform}: {jax.devices()[0].device_kind} ×{jax.device_count()}'
  assert results['runs']['mse']['0']['hardware'] == hardware
  assert f'Hardware: {hardware}.' in markdown

  for method, metric_names in (('propel_i2', ('cmae/mode', 'cmae/mean', 'nll', 'mode_recall')),
                               ('mse', ('cmae/direct', 'mae/direct/azimuth'))):
    saved = []
    for seed in (0, 1):
      directory = os.path.join(workdir, 'runs', method, f'seed_{seed}')
      with open(os.path.join(directory, 'eval_metrics.json')) as f:
        saved.append(json.load(f))
      with open(os.path.join(directory, 'config.json')) as f:
        assert json.load(f)['seed'] == seed
      # Every run's own evaluation plots, drawn from its saved outputs.
      assert sorted(os.listdir(os.path.join(directory, 'plots'))) == [
          'density_0.png', 'density_1.png', 'predicted_vs_true.png']
      # The saved outputs are the final model's: they reproduce its metrics.
      outputs = evaluation.Outputs.load(os.path.join(directory, evaluation.OUTPUTS_FILE))
      assert outputs.images.shape == (2, 32, 32, 1) and outputs.loss.shape == (256,)
      info = input_pipeline.get_dataset_info('synthetic_hands/ambiguous_small',
                                             data_dir=data_dir)
      again = evaluation.compute_metrics(outputs, info)
      for name in metric_names:
        assert again[name] == pytest.approx(saved[-1][name], rel=1e-5), name
    for name in metric_names:
      a, b = saved[0][name], saved[1][name]
      stat = results['summary'][method][name]
      assert stat['mean'] == pytest.approx((a + b) / 2)
      assert stat['std'] == pytest.approx(abs(a - b) / math.sqrt(2))
    cmae = results['summary'][method][metric_names[0]]
    assert f'{cmae["mean"]:.2f} ± {cmae["std"]:.2f}' in markdown
  assert 'mode_recall_all' in results['summary']['propel_i2']
  assert 'nll' not in results['summary']['mse']

  # Rerunning skips the finished runs and rewrites the same report.
  config = _parse(f'--config.data_dir={data_dir}', *TINY)
  timing = os.path.join(workdir, 'runs', 'mse', 'seed_1', runner.TIMING_FILE)
  before = open(timing).read()
  assert runner.run_all(config, workdir)
  again = report.write_report(config, workdir, command='again')
  assert open(timing).read() == before
  assert again['summary'] == results['summary']


@pytest.mark.slow
def test_head_pose_recipe_smoke(tmp_path):
  """A real-data recipe runs end to end on tiny fakes in the original formats.

  Every protocol of compare_head_pose.py is head_pose.py's training config
  plus the same `compare` section, so one protocol covers the code path:
  aflw2000, which trains on one dataset (300W-LP) and tests on another. The
  builders of each dataset are tested in biwi_test.py and threeddfa_test.py.
  """
  data_dir = tmp_path / 'data'
  manual = data_dir / 'downloads' / 'manual'  # Where the pipeline's build looks.
  for i, (angles, centre) in enumerate(fake_datasets.FACES):
    fake_datasets.write_3ddfa_face(manual / '300W_LP' / 'AFW', f'AFW_{i}_0', angles, centre,
                                   'pt2d')
    fake_datasets.write_3ddfa_face(manual / 'AFLW2000', f'image{i:05d}', angles, centre,
                                   'pt3d_68')
  argv = [f'--config.data_dir={data_dir}', '--config.image_size=32',
          '--config.model.channels=(4, 8)', '--config.model.hidden_units=4',
          '--config.batch_size=2', '--config.num_train_steps=2', '--config.log_every_steps=1',
          '--config.eval_every_steps=2', '--config.checkpoint_every_steps=2',
          '--config.num_plot_examples=2', '--config.compare.methods=mse',
          '--config.compare.seeds=(0,)']
  workdir = str(tmp_path / 'compare')
  results = _run_compare_binary(f'{REPO}/experiments/configs/compare_head_pose.py:aflw2000',
                                workdir, argv, str(tmp_path / 'jax_cache'))
  assert results['label_names'] == ['yaw', 'pitch', 'roll'] and not results['missing_runs']
  assert results['runs']['mse']['0']['dataset'] == 'aflw2000'
  assert math.isfinite(results['summary']['mse']['cmae/direct']['mean'])
  assert os.path.exists(os.path.join(workdir, 'plots', 'densities.png'))
