"""Metrics against hand cases and independent float64 references (SciPy quadrature, sampling)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy import stats

from propel_jax import losses
from propel_jax import mixtures
from propel_jax import scoring

RNG = np.random.default_rng(0)


def _f32(*arrays):
  return [jnp.asarray(a, jnp.float32) for a in arrays]


def _mixture(means, scales, log_weights=None):
  """A float32 `mixtures.Mixture`; equal weights where log_weights is None."""
  if log_weights is None:
    return mixtures.Mixture.uniform(*_f32(means, scales))
  return mixtures.Mixture(*_f32(means, scales, log_weights))


def test_absolute_errors_pick_the_nearest_equivalent():
  predictions = np.array([[10.0, 20.0], [0.0, 0.0], [5.0, 5.0]])
  equivalents = np.array([
      [[-10.0, -20.0], [12.0, 17.0]],  # The second is nearer: errors (2, 3).
      [[1.0, -1.0], [-1.0, 1.0]],  # A tie on mean error: the first wins.
      [[5.0, 5.0], [5.0, 5.0]],  # Duplicates (padding) change nothing.
  ])
  errors = scoring.absolute_errors(*_f32(predictions, equivalents))
  np.testing.assert_allclose(errors, [[2, 3], [1, 1], [0, 0]])
  np.testing.assert_allclose(scoring.nearest_equivalent(*_f32(predictions, equivalents)),
                             [[12, 17], [1, -1], [5, 5]])
  # Nearest by the mean over axes, not per axis independently.
  errors = scoring.absolute_errors(*_f32([[0.0, 0.0]], [[[1.0, 9.0], [4.0, 4.0]]]))
  np.testing.assert_allclose(errors, [[4, 4]])
  # By the mean absolute difference, not the squared one: (0, 6) is 3 away on
  # average (squared: 18), (3.5, 3.5) is 3.5 (squared: 12.25).
  np.testing.assert_allclose(
      scoring.nearest_equivalent(*_f32([[0.0, 0.0]], [[[3.5, 3.5], [0.0, 6.0]]])), [[0, 6]])


def test_absolute_errors_reject_mismatched_shapes():
  with pytest.raises(ValueError, match=r'\(4, 2, 3\).*\(4, 2\)'):
    scoring.absolute_errors(jnp.zeros((4, 2)), jnp.zeros((4, 2, 3)))


def _random_mixture(b, i, n, spread=30.0):
  means = RNG.uniform(-spread, spread, (b, i, n))
  scales = RNG.uniform(1.0, 10.0, (b, i, n))
  weights = RNG.dirichlet(np.ones(i), b)
  return means, scales, weights


def _mixture_pdf(x, means, scales, weights):
  """Density of one diagonal mixture at x [n], float64."""
  return sum(w * np.prod(stats.norm.pdf(x, m, s)) for w, m, s in zip(weights, means, scales))


def test_nll_in_degrees_matches_scipy_and_includes_the_jacobian():
  means01, scales01, weights = _random_mixture(4, 3, 2, spread=1.0)
  means01, scales01 = np.abs(means01), scales01 / 20
  labels01 = RNG.uniform(0, 1, (4, 2))
  low, high = np.array([-45.0, -90.0]), np.array([45.0, 60.0])
  unit = mixtures.Mixture(*_f32(means01, scales01, np.log(weights)))
  degrees = unit.affine(low, high - low)
  np.testing.assert_allclose(degrees.means, low + (high - low) * means01, rtol=1e-5)
  np.testing.assert_allclose(degrees.scales, (high - low) * scales01, rtol=1e-5)
  labels = low + (high - low) * labels01
  got = losses.mixture_nll(degrees.means, degrees.scales, *_f32(labels),
                           log_weights=degrees.log_weights)
  want = [-np.log(_mixture_pdf(labels[k], np.asarray(degrees.means[k], np.float64),
                               np.asarray(degrees.scales[k], np.float64), weights[k]))
          for k in range(4)]
  np.testing.assert_allclose(got, want, rtol=1e-4)
  in_unit = losses.mixture_nll(unit.means, unit.scales, *_f32(labels01),
                               log_weights=unit.log_weights)
  np.testing.assert_allclose(got, in_unit + np.log(high - low).sum(), rtol=1e-4)


def _crps_by_quadrature(y, means, scales, weights):
  """∫ (F(x) − 1{x ≥ y})² dx for a 1-D mixture, split at y, float64 quadrature."""
  def cdf(x):
    return np.dot(weights, stats.norm.cdf(x, means, scales))
  below, _ = integrate.quad(lambda x: cdf(x) ** 2, -np.inf, y, limit=200)
  above, _ = integrate.quad(lambda x: (1 - cdf(x)) ** 2, y, np.inf, limit=200)
  return below + above


@pytest.mark.parametrize('num_components', [1, 3])
def test_crps_matches_numerical_integration(num_components):
  means, scales, weights = _random_mixture(3, num_components, 2)
  labels = RNG.uniform(-40, 40, (3, 2))
  labels[0, 0] = 500.0  # Far outside: CRPS ≈ E|X − y|.
  got = scoring.crps(_mixture(means, scales, np.log(weights)), *_f32(labels))
  want = [[_crps_by_quadrature(labels[k, d], means[k, :, d], scales[k, :, d], weights[k])
           for d in range(2)] for k in range(3)]
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-4)
  # Uniform weights by default.
  uniform = np.full((3, num_components), 1.0 / num_components)
  np.testing.assert_allclose(scoring.crps(_mixture(means, scales), *_f32(labels)),
                             scoring.crps(_mixture(means, scales, np.log(uniform)),
                                          *_f32(labels)), rtol=1e-6)


def test_crps_of_a_gaussian_has_the_known_closed_form():
  # CRPS(N(0, 1), 0) = 2φ(0) − 1/√π = (√2 − 1)/√π.
  got = scoring.crps(_mixture([[[0.0]]], [[[1.0]]]), *_f32([[0.0]]))
  np.testing.assert_allclose(got, [[(math.sqrt(2) - 1) / math.sqrt(math.pi)]], rtol=1e-6)


def test_interval_coverage_agrees_with_sampled_quantiles():
  means, scales, weights = _random_mixture(1, 3, 2)
  samples = np.concatenate([
      RNG.normal(means[0, c], scales[0, c], (int(400_000 * weights[0, c]), 2))
      for c in range(3)])
  low, high = np.quantile(samples, [0.05, 0.95], axis=0)
  labels = RNG.uniform(samples.min(0), samples.max(0), (300, 2))
  covered = scoring.interval_coverage(
      _mixture(np.repeat(means, 300, 0), np.repeat(scales, 300, 0),
               np.log(np.repeat(weights, 300, 0))), *_f32(labels))
  expected = (labels >= low) & (labels <= high)
  # Sampled quantiles are off by ~0.1 σ at most; skip labels that close to an end.
  margin = 0.2 * scales.max()
  clear = (np.abs(labels - low) > margin) & (np.abs(labels - high) > margin)
  assert clear.sum() > 400
  np.testing.assert_array_equal(np.asarray(covered)[clear], expected[clear])


def test_interval_coverage_is_calibrated_on_its_own_samples():
  means, scales, weights = _random_mixture(1, 2, 3)
  component = RNG.choice(2, size=20_000, p=weights[0])
  labels = RNG.normal(means[0, component], scales[0, component])
  tile = lambda a: np.repeat(a, len(labels), 0)
  covered = scoring.interval_coverage(
      _mixture(tile(means), tile(scales), np.log(tile(weights))), *_f32(labels), level=0.8)
  # Binomial sd at 20k draws is 0.003 per axis.
  np.testing.assert_allclose(np.asarray(covered).mean(0), 0.8, atol=0.012)


def test_mode_recall_on_hand_cases():
  equivalents = np.array([[[0.0, 0.0], [90.0, 0.0]]] * 3)
  modes = np.array([
      [[1.0, -2.0], [88.0, 4.0], [40.0, 40.0]],  # Both found.
      [[1.0, -2.0], [88.0, 6.0], [40.0, 40.0]],  # Second 6° off on one axis: not found.
      [[1.0, -2.0], [90.0, 0.0], [40.0, 40.0]],  # Second exact but marked invalid.
  ])
  valid = np.array([[True, True, False], [True, True, True], [True, False, True]])
  got = scoring.mode_recall(*_f32(modes), jnp.asarray(valid), jnp.asarray(equivalents),
                            radius_deg=5.0)
  np.testing.assert_allclose(got, [1.0, 0.5, 0.5])
  # Exactly at the radius counts as found (float32 holds these exactly).
  at_radius = np.array([[[5.0, -5.0], [85.0, 5.0]]])
  got = scoring.mode_recall(*_f32(at_radius), jnp.ones((1, 2), bool), jnp.asarray(equivalents[:1]),
                            radius_deg=5.0)
  np.testing.assert_allclose(got, [1.0])


def test_most_likely_equivalent():
  equivalents = np.array([[[0.0, 0.0], [10.0, 10.0], [20.0, 0.0]]])
  means = np.array([[[9.0, 11.0], [30.0, 30.0]]])
  scales = np.ones((1, 2, 2))
  np.testing.assert_allclose(
      scoring.most_likely_equivalent(_mixture(means, scales), *_f32(equivalents)),
      [[10.0, 10.0]])


def test_per_example_and_summarize():
  b, k, i, n = 4, 2, 3, 2
  equivalents = RNG.uniform(-30, 30, (b, k, n))
  predictions = {'mode': RNG.uniform(-30, 30, (b, n)), 'mean': RNG.uniform(-30, 30, (b, n))}
  means, scales, weights = _random_mixture(b, i, n)
  # Example 1 has a component on each equivalent: every mode is found.
  means[1, :2], scales[1] = equivalents[1], 1.0
  # Example 2 has one on the first of its two equivalents only: half found.
  equivalents[2] = [[0.0, 0.0], [20.0, 20.0]]
  means[2], scales[2] = [[0.0, 0.0], [-50.0, 50.0], [50.0, -50.0]], 1.0
  mixture = _mixture(means, scales, np.log(weights))
  levels = (0.5, 0.9)
  per_example = jax.jit(scoring.per_example, static_argnames='levels')
  scores = per_example({k: jnp.asarray(v, jnp.float32) for k, v in predictions.items()},
                       jnp.asarray(equivalents, jnp.float32), mixture, levels=levels)
  # One row per example.
  assert {name: v.shape for name, v in scores.items()} == {
      'abs_error/mode': (b, n), 'abs_error/mean': (b, n), 'nll': (b,), 'crps': (b, n),
      'coverage': (b, len(levels), n), 'mode_recall': (b,), 'mode_recall_all': (b,)}

  summary = scoring.summarize(scores, ('yaw', 'pitch'), levels)
  errors = np.abs(predictions['mode'] -
                  np.asarray(scoring.nearest_equivalent(*_f32(predictions['mode'], equivalents))))
  np.testing.assert_allclose(scores['abs_error/mode'], errors, rtol=1e-5)
  np.testing.assert_allclose(summary['mae/mode/yaw'], errors[:, 0].mean(), rtol=1e-5)
  np.testing.assert_allclose(summary['cmae/mode'], errors.mean(), rtol=1e-5)
  label = np.asarray(scoring.most_likely_equivalent(mixture, *_f32(equivalents)))
  want_nll = [-np.log(_mixture_pdf(label[r], means[r], scales[r], weights[r])) for r in range(b)]
  np.testing.assert_allclose(scores['nll'], want_nll, rtol=1e-4)
  np.testing.assert_allclose(summary['nll'], np.mean(want_nll), rtol=1e-4)
  # Mode recall from the mixture's own modes, in [0, 1], and example 1 finds all.
  recall = np.asarray(scoring.mode_recall(*mixtures.modes(*mixture)[::2], equivalents))
  np.testing.assert_allclose(scores['mode_recall'], recall, rtol=1e-6)
  np.testing.assert_array_equal(scores['mode_recall_all'], recall == 1.0)
  np.testing.assert_allclose(summary['mode_recall'], recall.mean(), rtol=1e-5)
  np.testing.assert_allclose(summary['mode_recall_all'], np.mean(recall == 1.0), rtol=1e-5)
  assert recall[1] == 1.0 and recall[2] == 0.5
  coverage = np.stack([np.asarray(scoring.interval_coverage(mixture, label, level=level))
                       for level in levels], axis=1)
  np.testing.assert_array_equal(scores['coverage'], coverage)
  np.testing.assert_allclose(summary['coverage_50/pitch'], coverage[:, 0, 1].mean(), rtol=1e-5)
  np.testing.assert_allclose(summary['coverage_90/yaw'], coverage[:, 1, 0].mean(), rtol=1e-5)
  np.testing.assert_allclose(summary['coverage_90'], coverage[:, 1].mean(), rtol=1e-5)
  # CRPS against the most likely equivalent (not the first), a mean over the
  # examples and then over the axes.
  assert not np.allclose(label, equivalents[:, 0])
  crps = np.asarray(scoring.crps(mixture, label))
  np.testing.assert_allclose(scores['crps'], crps, rtol=1e-6)
  np.testing.assert_allclose(summary['crps/yaw'], crps[:, 0].mean(), rtol=1e-5)
  np.testing.assert_allclose(summary['crps/pitch'], crps[:, 1].mean(), rtol=1e-5)
  np.testing.assert_allclose(summary['crps'], crps.mean(), rtol=1e-5)
  assert set(summary) == {
      'mae/mode/yaw', 'mae/mode/pitch', 'cmae/mode', 'mae/mean/yaw', 'mae/mean/pitch',
      'cmae/mean', 'nll', 'crps/yaw', 'crps/pitch', 'crps', 'coverage_50/yaw',
      'coverage_50/pitch', 'coverage_50', 'coverage_90/yaw', 'coverage_90/pitch',
      'coverage_90', 'mode_recall', 'mode_recall_all'}
  # Without a distribution: the point scores only.
  assert set(scoring.per_example(predictions, equivalents)) == {'abs_error/mode',
                                                                'abs_error/mean'}
  with pytest.raises(ValueError, match='no examples'):
    scoring.summarize({'abs_error/mode': np.zeros((0, 2))}, ('yaw', 'pitch'))


def test_coverage_names():
  assert [scoring.coverage_name(level) for level in (0.1, 0.9, 0.95, 0.99)] == [
      'coverage_10', 'coverage_90', 'coverage_95', 'coverage_99']


def test_full_covariance_scores_use_the_marginals():
  """CRPS and coverage score each axis's marginal; NLL and modes the joint density."""
  b, k, i, n = 5, 2, 3, 2
  means, scales, weights = _random_mixture(b, i, n)
  correlation = RNG.uniform(-0.9, 0.9, (b, i))
  factors = np.zeros((b, i, n, n))
  factors[..., 0, 0] = scales[..., 0]
  factors[..., 1, 0] = scales[..., 1] * correlation
  factors[..., 1, 1] = scales[..., 1] * np.sqrt(1 - correlation ** 2)
  # The same marginals as the diagonal mixture: σ_d of each component.
  full = mixtures.Mixture(*_f32(means, factors, np.log(weights)))
  diagonal = mixtures.Mixture(*_f32(means, scales, np.log(weights)))
  labels = jnp.asarray(RNG.uniform(-30, 30, (b, n)), jnp.float32)
  np.testing.assert_allclose(scoring.crps(full, labels), scoring.crps(diagonal, labels),
                             rtol=1e-5)
  np.testing.assert_array_equal(scoring.interval_coverage(full, labels),
                                scoring.interval_coverage(diagonal, labels))
  equivalents = jnp.asarray(RNG.uniform(-30, 30, (b, k, n)), jnp.float32)
  scores = jax.jit(scoring.per_example)({'mode': labels}, equivalents, full)
  summary = scoring.summarize(scores, ('yaw', 'pitch'))
  label = np.asarray(scoring.most_likely_equivalent(full, equivalents))
  cov = factors @ np.swapaxes(factors, -1, -2)
  want_nll = np.mean([-np.log(sum(
      weights[r, c] * stats.multivariate_normal.pdf(label[r], means[r, c], cov[r, c])
      for c in range(i))) for r in range(b)])
  np.testing.assert_allclose(summary['nll'], want_nll, rtol=1e-4)
  assert all(math.isfinite(v) for v in summary.values())
