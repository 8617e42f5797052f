"""Evaluation metrics in degrees against NumPy/SciPy references; plots for every target count."""

import os

import numpy as np
import pytest
from scipy import stats

from propel_jax import evaluation
from propel_jax import input_pipeline
from propel_jax import plots


def _info(n):
  names = ('yaw', 'pitch', 'roll')[:n]
  return input_pipeline.DatasetInfo(
      name='test', label_names=names, label_low=(-90.0, -45.0, -30.0)[:n],
      label_high=(90.0, 45.0, 60.0)[:n], image_shape=(8, 8, 1), num_equivalents=2,
      split_sizes={'test': 5})


def _outputs(n, *, mixture, seed=0):
  rng = np.random.default_rng(seed)
  b, i, k = 5, 2, 2
  outputs = {'loss': rng.random(b).astype(np.float32),
             'label': rng.random((b, n)).astype(np.float32),
             'prediction/a': rng.random((b, n)).astype(np.float32),
             'prediction/b': rng.random((b, n)).astype(np.float32)}
  outputs['equivalent_labels'] = np.stack(
      [outputs['label'], 1 - outputs['label']], axis=1).astype(np.float32)
  assert outputs['equivalent_labels'].shape == (b, k, n)
  if mixture:
    outputs['means'] = rng.random((b, i, n)).astype(np.float32)
    outputs['scales'] = (0.05 + 0.2 * rng.random((b, i, n))).astype(np.float32)
    logits = rng.normal(size=(b, i))
    outputs['log_weights'] = (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(
        np.float32)
  return outputs


def test_point_metrics_are_symmetry_aware_degrees():
  info = _info(3)
  outputs = _outputs(3, mixture=False)
  metrics = evaluation.compute_metrics(outputs, info)
  low, high = np.array(info.label_low), np.array(info.label_high)
  to_deg = lambda u: low + (high - low) * u.astype(np.float64)
  for decoder in ('a', 'b'):
    prediction = to_deg(outputs[f'prediction/{decoder}'])
    equivalents = to_deg(outputs['equivalent_labels'])
    errors = np.abs(prediction[:, None, :] - equivalents)  # [B, K, n]
    nearest = errors[np.arange(5), errors.mean(-1).argmin(-1)]  # [B, n]
    for axis, name in enumerate(info.label_names):
      assert metrics[f'mae/{decoder}/{name}'] == pytest.approx(nearest[:, axis].mean(),
                                                               rel=1e-5)
    assert metrics[f'cmae/{decoder}'] == pytest.approx(nearest.mean(), rel=1e-5)
  assert metrics['loss'] == pytest.approx(outputs['loss'].mean())
  assert metrics['num_examples'] == 5
  assert 'nll' not in metrics


def test_nll_is_the_density_in_degrees():
  info = _info(2)
  outputs = _outputs(2, mixture=True)
  # Only the label itself as equivalent: then the NLL is of the label.
  outputs['equivalent_labels'] = outputs['label'][:, None, :]
  metrics = evaluation.compute_metrics(outputs, info)
  low, high = np.array(info.label_low), np.array(info.label_high)
  means = low + (high - low) * outputs['means'].astype(np.float64)
  scales = (high - low) * outputs['scales'].astype(np.float64)
  labels = low + (high - low) * outputs['label'].astype(np.float64)
  density = sum(np.exp(outputs['log_weights'][:, c].astype(np.float64)) *
                stats.norm.pdf(labels, means[:, c], scales[:, c]).prod(-1) for c in range(2))
  assert metrics['nll'] == pytest.approx(-np.log(density).mean(), rel=1e-4)


@pytest.mark.parametrize('n, mixture', [(1, True), (2, False), (3, True)])
def test_plots_for_any_target_count(tmp_path, n, mixture):
  info = _info(n)
  outputs = _outputs(n, mixture=mixture)
  plots.plot_predicted_vs_true(outputs, info, str(tmp_path / 'pvt.png'))
  plots.plot_density(outputs, np.zeros((8, 8, 1)), 0, info, str(tmp_path / 'density.png'))
  assert os.path.getsize(tmp_path / 'pvt.png') > 1000
  assert os.path.getsize(tmp_path / 'density.png') > 1000
