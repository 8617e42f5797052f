"""Evaluation metrics in degrees against NumPy/SciPy references; saved outputs round-trip."""

import numpy as np
import pytest
from scipy import stats

from propel_jax import mixtures
from propel_jax import scoring
from propel_jax.data import input_pipeline
from propel_jax.data import labels as labels_lib
from propel_jax.training import evaluation


def make_info(n):
  """A DatasetInfo with n of three label axes (shared with plots_test)."""
  return input_pipeline.DatasetInfo(
      name='test',
      labels=labels_lib.LabelSpec(names=('yaw', 'pitch', 'roll')[:n],
                                  low=(-90.0, -45.0, -30.0)[:n], high=(90.0, 45.0, 60.0)[:n]),
      image_shape=(8, 8, 1), num_equivalents=2, split_sizes={'test': 5})


def make_outputs(n, *, mixture, full=False, seed=0):
  """Random per-example outputs of 5 examples in [0, 1] units (shared with plots_test).

  With `full`, the mixture's scales are Cholesky factors [5, 2, n, n] with the
  same diagonal and correlated (tilted) components.
  """
  rng = np.random.default_rng(seed)
  b, i, k = 5, 2, 2
  label = rng.random((b, n)).astype(np.float32)
  equivalents = np.stack([label, 1 - label], axis=1).astype(np.float32)
  assert equivalents.shape == (b, k, n)
  predicted = None
  if mixture:
    scales = 0.05 + 0.2 * rng.random((b, i, n))
    if full:
      scales = scales[..., None] * np.eye(n) + np.tril(0.1 * rng.normal(size=(b, i, n, n)), k=-1)
    predicted = mixtures.Mixture(
        means=rng.random((b, i, n)).astype(np.float32),
        scales=scales.astype(np.float32),
        log_weights=rng.normal(size=(b, i)).astype(np.float32))
  return evaluation.Outputs(
      loss=rng.random(b).astype(np.float32),
      predictions={'a': rng.random((b, n)).astype(np.float32),
                   'b': rng.random((b, n)).astype(np.float32)},
      mixture=predicted, label=label, equivalent_labels=equivalents,
      images=rng.random((2, 8, 8, 1)).astype(np.float32))


def test_point_metrics_are_symmetry_aware_degrees():
  info = make_info(3)
  outputs = make_outputs(3, mixture=False)
  metrics = evaluation.compute_metrics(outputs, info)
  low, high = np.array(info.labels.low), np.array(info.labels.high)
  to_deg = lambda u: low + (high - low) * u.astype(np.float64)
  for decoder in ('a', 'b'):
    prediction = to_deg(outputs.predictions[decoder])
    equivalents = to_deg(outputs.equivalent_labels)
    errors = np.abs(prediction[:, None, :] - equivalents)  # [B, K, n]
    nearest = errors[np.arange(5), errors.mean(-1).argmin(-1)]  # [B, n]
    for axis, name in enumerate(info.labels.names):
      assert metrics[f'mae/{decoder}/{name}'] == pytest.approx(nearest[:, axis].mean(),
                                                               rel=1e-5)
    assert metrics[f'cmae/{decoder}'] == pytest.approx(nearest.mean(), rel=1e-5)
  assert metrics['loss'] == pytest.approx(outputs.loss.mean())
  assert metrics['num_examples'] == 5
  assert 'nll' not in metrics


def test_saturated_is_the_largest_share_of_predictions_at_the_ends_of_the_range():
  outputs = make_outputs(2, mixture=False)
  outputs.predictions['a'][:] = 0.5
  outputs.predictions['b'][:] = [[0.0, 0.5], [1.0, 0.5], [0.9995, 0.0002], [0.3, 0.5],
                                 [0.998, 0.5]]
  metrics = evaluation.compute_metrics(outputs, make_info(2))
  assert metrics['saturated'] == pytest.approx(4 / 10)


def test_nll_is_the_density_in_degrees():
  info = make_info(2)
  outputs = make_outputs(2, mixture=True)
  # Only the label itself as equivalent: then the NLL is of the label.
  outputs.equivalent_labels = outputs.label[:, None, :]
  means01, scales01, logits = outputs.mixture
  metrics = evaluation.compute_metrics(outputs, info)
  low, high = np.array(info.labels.low), np.array(info.labels.high)
  means = low + (high - low) * means01.astype(np.float64)
  scales = (high - low) * scales01.astype(np.float64)
  labels = low + (high - low) * outputs.label.astype(np.float64)
  # The weights are logits: normalised here.
  weights = np.exp(logits.astype(np.float64))
  weights /= weights.sum(-1, keepdims=True)
  density = sum(weights[:, c] *
                stats.norm.pdf(labels, means[:, c], scales[:, c]).prod(-1) for c in range(2))
  assert metrics['nll'] == pytest.approx(-np.log(density).mean(), rel=1e-4)


def test_full_covariance_nll_is_the_density_in_degrees():
  """Σ maps to D Σ D (D = diag of the degree spans): the NLL of the label in degrees."""
  info = make_info(2)
  outputs = make_outputs(2, mixture=True, full=True)
  outputs.equivalent_labels = outputs.label[:, None, :]
  means01, factors01, logits = outputs.mixture
  metrics = evaluation.compute_metrics(outputs, info)
  low, high = np.array(info.labels.low), np.array(info.labels.high)
  span = high - low
  factors = span[:, None] * factors01.astype(np.float64)
  cov = factors @ np.swapaxes(factors, -1, -2)
  means = low + span * means01.astype(np.float64)
  labels = low + span * outputs.label.astype(np.float64)
  weights = np.exp(logits.astype(np.float64))
  weights /= weights.sum(-1, keepdims=True)
  density = [sum(weights[r, c] * stats.multivariate_normal.pdf(labels[r], means[r, c],
                                                               cov[r, c]) for c in range(2))
             for r in range(5)]
  assert metrics['nll'] == pytest.approx(-np.log(density).mean(), rel=1e-4)
  assert all(np.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize('mixture,full', [(False, False), (True, False), (True, True)])
def test_outputs_save_and_load_round_trip(tmp_path, mixture, full):
  outputs = make_outputs(2, mixture=mixture, full=full)
  outputs.save(tmp_path / 'out.npz')
  loaded = evaluation.Outputs.load(tmp_path / 'out.npz')
  assert sorted(loaded.predictions) == ['a', 'b']
  for field in ('loss', 'label', 'equivalent_labels', 'images'):
    np.testing.assert_array_equal(getattr(loaded, field), getattr(outputs, field))
  if mixture:
    assert isinstance(loaded.mixture, mixtures.Mixture)
    for got, want in zip(loaded.mixture, outputs.mixture):
      np.testing.assert_array_equal(got, want)
  else:
    assert loaded.mixture is None
  assert loaded.modes is None
  if mixture:
    locations, _, valid = map(np.asarray, outputs.mixture.modes())
    outputs.modes = {'locations': locations, 'valid': valid}
    outputs.save(tmp_path / 'modes.npz')
    loaded = evaluation.Outputs.load(tmp_path / 'modes.npz')
    np.testing.assert_array_equal(loaded.modes['locations'], locations)
    np.testing.assert_array_equal(loaded.modes['valid'], valid)


@pytest.mark.parametrize('full', [False, True])
def test_modes_from_the_predict_step_are_used_in_degrees(full):
  """Modes the outputs carry (in [0, 1] units) score as the ones searched here."""
  info = make_info(2)
  outputs = make_outputs(2, mixture=True, full=full)
  searched = evaluation.compute_metrics(outputs, info)
  locations, _, valid = map(np.asarray, outputs.mixture.modes())
  outputs.modes = {'locations': locations, 'valid': valid}
  assert evaluation.compute_metrics(outputs, info) == searched
  outputs.modes = {'locations': locations, 'valid': np.zeros_like(valid)}
  assert evaluation.compute_metrics(outputs, info)['mode_recall'] == 0.0


def test_mode_recall_all_counts_examples_with_every_mode_found():
  info = make_info(2)
  outputs = make_outputs(2, mixture=True)
  # Narrow components exactly on the two equivalents of examples 0-2 only.
  means = np.array(outputs.mixture.means)
  means[:3] = outputs.equivalent_labels[:3]
  means[3:] = 0.5
  outputs.mixture = mixtures.Mixture(means, np.full_like(means, 0.01),
                                     np.zeros(means.shape[:-1], np.float32))
  metrics = evaluation.compute_metrics(outputs, info)
  assert metrics['mode_recall_all'] == pytest.approx(3 / 5)
  assert 'coverage_90' in metrics and 'coverage_10' in metrics


def test_coverage_at_every_level_against_scipy():
  # One Gaussian per example (σ = 4.5° on an axis 180° wide), labels z = 0, 1, 2 σ
  # away on both axes: the central interval of probability p covers z iff p ≥ 2Φ(z) − 1.
  info = make_info(2)
  outputs = make_outputs(2, mixture=True)
  span = np.array([180.0, 90.0])
  sigma, z = 4.5, np.array([0.0, 1.0, 2.0, 0.0, 0.0])
  means = np.full((5, 1, 2), 0.5, np.float32)
  outputs.mixture = mixtures.Mixture(means, (sigma / span * np.ones((5, 1, 2))).astype(np.float32),
                                     np.zeros((5, 1), np.float32))
  outputs.equivalent_labels = (0.5 + z[:, None, None] * sigma / span).astype(np.float32)
  metrics = evaluation.compute_metrics(outputs, info)
  needed = 2.0 * stats.norm.cdf(z) - 1.0  # 0, 0.683, 0.954, 0, 0
  for level in scoring.COVERAGE_LEVELS:
    want = np.mean(level >= needed)
    assert metrics[scoring.coverage_name(level)] == pytest.approx(want, abs=1e-6), level
    assert metrics[f'{scoring.coverage_name(level)}/pitch'] == pytest.approx(want, abs=1e-6)
  assert metrics['coverage_60'] == pytest.approx(3 / 5)
  assert metrics['coverage_99'] == pytest.approx(1.0)
