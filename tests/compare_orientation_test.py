"""The orientation comparison on symmetric_shapes: its report tables and an end-to-end run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.comparison import report
from experiments.comparison import results as results_lib
from experiments.comparison import runner
import training_runs as runs  # tests/ is on sys.path under pytest.

CONFIG = f'{runs.REPO}/experiments/configs/compare_orientation.py:k2_small'


def test_vmf_methods_parse():
  assert runner.parse_method('vmfpropel_i6_s0.1') == runner.Method(
      'vmfpropel_i6_s0.1', 'vmfpropel', 6, 0.1)
  assert runner.parse_method('vmfmdn_i4').spec.mixture
  with pytest.raises(ValueError, match='needs a head with a target width'):
    runner.parse_method('vmfmdn_i4_s0.1')
  with pytest.raises(ValueError, match='mixture head'):
    runner.parse_method('classifier_i4')


def test_circle_report_tables():
  stat = lambda m: {'mean': m, 'std': 0.5, 'values': [m - 0.5, m + 0.5]}
  results = {
      'dataset': 'symmetric_shapes/k2_small', 'label_names': ['cos', 'sin'],
      'label_kind': 'circle', 'split_sizes': {'test': 1}, 'seeds': [0, 1],
      'missing_runs': [], 'runs': {}, 'methods': ['vmfpropel_i2', 'mse'], 'sweep': [],
      'config': {'image_size': None, 'num_train_steps': 4, 'batch_size': 8,
                 'optimizer': 'adam', 'learning_rate': 1e-3, 'lr_schedule': 'cosine',
                 'model': {'channels': (4,), 'hidden_units': 8}},
      'summary': {'vmfpropel_i2': {'angular_error/mode': stat(3.0),
                                   'log_likelihood': stat(1.25),
                                   'log_likelihood_all_equivalents': stat(-0.5)},
                  'mse': {'angular_error/direct': stat(40.0)}},
      'by_symmetry_order': {'vmfpropel_i2': {'1': {'mode_recall_all': stat(1.0),
                                                   'angular_error/mode': stat(2.0)},
                                             '2': {'mode_recall_all': stat(0.75),
                                                   'angular_error/mode': stat(4.0)}},
                            'mse': {'1': {'angular_error/direct': stat(5.0)},
                                    '2': {'angular_error/direct': stat(60.0)}}}}
  text = report.markdown(results, command='cmd')
  assert '| vmfpropel_i2 | mode | 3.00 ± 0.50 | – | – | – |' in text
  assert '| mse | direct | 40.00 ± 0.50 |' in text
  assert '| vmfpropel_i2 | 1.250 ± 0.500 | -0.500 ± 0.500 | – |' in text
  assert 'w.r.t. arc length in radians (uniform: −log 2π' in text
  assert 'CMAE' not in text
  assert '| vmfpropel_i2 | 1.00 / 2.0 | 0.75 / 4.0 |' in text
  assert '| mse | – / 5.0 | – / 60.0 |' in text


def test_symmetry_orders_count_distinct_equivalents():
  angles = np.array([0.1, 0.5, 1.0])[:, None] + 2 * np.pi * (
      np.arange(6) % np.array([1, 2, 3])[:, None]) / np.array([1, 2, 3])[:, None]
  vectors = np.stack([np.cos(angles), np.sin(angles)], -1).astype(np.float32)
  np.testing.assert_array_equal(results_lib.symmetry_orders(vectors), [1, 2, 3])


def test_rotation_config_names_the_solids_dataset():
  from experiments.configs import compare_orientation  # pylint: disable=g-import-not-at-top
  config = compare_orientation.get_config('cube_small')
  assert config.dataset == 'symmetric_solids/cube_small'
  assert config.compare.methods == 'vmfpropel_i24,vmfpropel_i24_lw,vmfmdn_i24,mse,classifier'
  assert config.model.rotation_grid_level == 1
  assert compare_orientation.get_config('solids_mixed').dataset == 'symmetric_solids/mixed'
  assert compare_orientation.get_config('solids_mixed_medium').dataset == (
      'symmetric_solids/mixed_medium')


@pytest.mark.parametrize('kind', ['k1', 'mixed', 'cube', 'cone'])
def test_medium_configs_train_longer_on_more_images(kind):
  from experiments.configs import compare_orientation  # pylint: disable=g-import-not-at-top
  from propel_jax.data.builders import symmetric_shapes  # pylint: disable=g-import-not-at-top
  from propel_jax.data.builders import symmetric_solids  # pylint: disable=g-import-not-at-top
  small = compare_orientation.get_config(f'{kind}_small')
  medium = compare_orientation.get_config(f'{kind}_medium')
  assert medium.dataset == small.dataset.replace('_small', '_medium')
  builders = {'symmetric_shapes': symmetric_shapes.SymmetricShapes,
              'symmetric_solids': symmetric_solids.SymmetricSolids}
  builder, name = medium.dataset.split('/')
  sizes = {c.name: c.num_train for c in builders[builder].BUILDER_CONFIGS}
  assert sizes[name] > sizes[name.replace('_medium', '_small')]
  assert medium.num_train_steps > small.num_train_steps
  # Learning curves: several evaluations, the medium ones on part of the test split.
  for config in (small, medium):
    assert config.num_train_steps // config.eval_every_steps >= 4
  assert medium.eval_split.startswith('test[') and medium.test_split == 'test'
  assert any(m.endswith('_lw') for m in medium.compare.methods.split(','))
  runner.validate(medium)


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['k2_small', 'cube_small'])
def test_compare_orientation_end_to_end(tmp_path, kind):
  workdir = str(tmp_path / 'compare')
  config = CONFIG.replace('k2_small', kind)
  command = [sys.executable, '-m', 'experiments.compare', f'--config={config}',
             f'--workdir={workdir}', f'--config.data_dir={tmp_path / "data"}',
             '--config.model.channels=(4, 8)', '--config.model.hidden_units=8',
             '--config.batch_size=8', '--config.num_train_steps=4',
             '--config.log_every_steps=2', '--config.eval_every_steps=2',
             '--config.checkpoint_every_steps=4', '--config.num_plot_examples=2',
             '--config.eval_split=test[:32]', '--config.test_split=test[:32]',
             '--config.num_gaussians=2', '--config.compare.methods=vmfpropel_i2,classifier,mse',
             '--config.compare.seeds=(0,)', '--config.model.rotation_grid_level=0']
  process = subprocess.run(command, cwd=runs.REPO, env=runs.env(str(tmp_path / 'cache')),
                           capture_output=True, text=True, timeout=600)
  assert process.returncode == 0, process.stderr[-5000:]
  with open(os.path.join(workdir, 'results.json')) as f:
    results = json.load(f)
  assert results['label_kind'] == ('rotation' if kind == 'cube_small' else 'circle')
  assert ('volume π²' if kind == 'cube_small' else 'arc length') in results['log_likelihood_measure']
  assert results['missing_runs'] == []
  for name in ('angular_error/mode', 'acc15/mode', 'log_likelihood',
               'log_likelihood_all_equivalents', 'spread', 'mode_recall_all'):
    assert name in results['summary']['vmfpropel_i2'], name
  assert 'angular_error/argmax' in results['summary']['classifier']
  assert sorted(os.listdir(os.path.join(workdir, 'plots'))) == [
      'densities.png', 'error_distributions.png', 'learning_curves.png']
  # Learning curves: every method, every seed, the evaluations at steps 2 and 4.
  curves = results['learning_curves']
  assert sorted(curves) == ['classifier', 'mse', 'vmfpropel_i2']
  decoders = {'vmfpropel_i2': 'mode', 'classifier': 'argmax', 'mse': 'direct'}
  for name, decoder in decoders.items():
    assert curves[name]['seeds']['0']['step'] == [2, 4]
    assert curves[name]['mean'][f'angular_error/{decoder}']['step'] == [2, 4]
  for name in ('vmfpropel_i2', 'classifier'):
    assert sorted(curves[name]['mean']) == sorted(
        [f'angular_error/{decoders[name]}', 'log_likelihood', 'mode_recall', 'mode_recall_all'])
  assert list(curves['mse']['mean']) == ['angular_error/direct']
  with open(os.path.join(workdir, 'results.md')) as f:
    text = f.read()
  assert '## Learning curves' in text and '(plots/learning_curves.png)' in text
  assert '| metric | step 2 | step 4 |' in text
  for name, decoder in decoders.items():
    assert f'| {name} | error (°), {decoder} |' in text
  assert sorted(os.listdir(os.path.join(workdir, 'runs', 'vmfpropel_i2', 'seed_0', 'plots'))) == [
      'density_0.png', 'density_1.png', 'predicted_vs_true.png']


def test_learning_curves_from_metrics_jsonl(tmp_path):
  def write(directory, records):
    os.makedirs(directory)
    with open(os.path.join(directory, 'metrics.jsonl'), 'w') as f:
      f.writelines(json.dumps(r) + '\n' for r in records)

  eval_ = lambda step, error, **more: dict(split='eval', step=step, loss=1.0,
                                          **{'angular_error/mode': error}, **more)
  # Seed 0 resumed after step 2: its second evaluation at step 2 replaces the first.
  write(tmp_path / 's0', [{'split': 'train', 'step': 1, 'loss': 3.0},
                          eval_(2, 90.0, log_likelihood=-1.0), eval_(2, 30.0, log_likelihood=0.0),
                          eval_(4, 10.0, log_likelihood=1.0)])
  write(tmp_path / 's1', [eval_(2, 50.0, log_likelihood=2.0), eval_(4, 20.0),
                          eval_(6, 5.0, log_likelihood=3.0)])
  curves = {seed: results_lib.learning_curve(str(tmp_path / seed)) for seed in ('s0', 's1')}
  assert curves['s0'] == {'step': [2, 4], 'angular_error/mode': [30.0, 10.0],
                          'log_likelihood': [0.0, 1.0]}
  assert curves['s1']['log_likelihood'] == [2.0, None, 3.0]
  method = results_lib.learning_curves(curves)
  # Means over the seeds at the steps both evaluated (the metric present).
  assert method['mean']['angular_error/mode'] == {'step': [2, 4], 'value': [40.0, 15.0]}
  assert method['mean']['log_likelihood'] == {'step': [2], 'value': [1.0]}
  assert list(method['mean']) == ['log_likelihood', 'angular_error/mode']
  assert results_lib.learning_curve(str(tmp_path)) is None  # No metrics.jsonl.

  results = {'label_kind': 'circle', 'methods': ['vmfpropel_i2', 'mse'],
             'learning_curves': {'vmfpropel_i2': method}, 'eval_split': 'test[:8]',
             'config': {'eval_every_steps': 2}}
  text = '\n'.join(report._learning_curve_table(results, ['plots/learning_curves.png']))
  assert 'evaluations on `test[:8]` every 2 steps' in text
  assert '[the plot](plots/learning_curves.png)' in text
  assert '| method | metric | step 2 | step 4 | step 6 |' in text
  assert '| vmfpropel_i2 | log-likelihood | 1.000 | – | – |' in text
  assert '| vmfpropel_i2 | error (°), mode | 40.0 | 15.0 | – |' in text
  assert '| mse | no evaluation logged |' in text
