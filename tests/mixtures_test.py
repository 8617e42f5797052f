"""Tests of propel_jax.mixtures against SciPy and numerical integration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy import special
from scipy import stats

from propel_jax import mixtures

enable_x64 = jax.enable_x64 if hasattr(jax, 'enable_x64') else (
    jax.experimental.enable_x64)


def random_mixture(rng, batch, num, dim):
  means = rng.normal(size=batch + (num, dim)) * 2
  scales = rng.uniform(0.3, 1.0, size=batch + (num, dim))
  logits = rng.normal(size=batch + (num,))
  return means, scales, logits - special.logsumexp(logits, axis=-1, keepdims=True)


def scipy_pdf(x, means, scales, log_weights):
  """Mixture density at x [..., n] for one mixture, from scipy.stats."""
  return sum(np.exp(lw) * stats.multivariate_normal.pdf(x, m, np.diag(s ** 2))
             for m, s, lw in zip(means, scales, log_weights))


def test_log_prob_matches_scipy():
  rng = np.random.default_rng(0)
  means, scales, log_w = random_mixture(rng, (3,), 4, 2)
  x = rng.normal(size=(3, 2))
  expected = [np.log(scipy_pdf(x[b], means[b], scales[b], log_w[b])) for b in range(3)]
  with enable_x64():
    np.testing.assert_allclose(mixtures.log_prob(x, means, scales, log_w), expected,
                               rtol=1e-12)
    # Default weights are 1/I.
    uniform = np.full(4, -np.log(4))
    np.testing.assert_allclose(
        mixtures.log_prob(x[0], means[0], scales[0]),
        np.log(scipy_pdf(x[0], means[0], scales[0], uniform)), rtol=1e-12)


def test_log_prob_far_away_is_finite():
  means, scales = np.zeros((2, 1)), np.full((2, 1), 0.1)
  value = mixtures.log_prob(np.array([1e3], np.float32), means, scales)
  np.testing.assert_allclose(value, -0.5 * (1e4) ** 2 - np.log(0.1 * np.sqrt(2 * np.pi)),
                             rtol=1e-6)


def _grid_2d(means, scales, log_w, half_width=12.0, points=801):
  axis = np.linspace(-half_width, half_width, points)
  x, y = np.meshgrid(axis, axis, indexing='ij')
  pdf = scipy_pdf(np.stack([x, y], -1), means, scales, log_w)
  integral = lambda f: integrate.trapezoid(integrate.trapezoid(f, axis, axis=1), axis)
  return x, y, pdf, integral


def test_mean_and_covariance_match_numerical_integration():
  rng = np.random.default_rng(1)
  means, scales, log_w = random_mixture(rng, (), 3, 2)
  x, y, pdf, integral = _grid_2d(means, scales, log_w)
  assert abs(integral(pdf) - 1) < 1e-8
  mean = np.array([integral(x * pdf), integral(y * pdf)])
  dx, dy = x - mean[0], y - mean[1]
  cov = np.array([[integral(dx * dx * pdf), integral(dx * dy * pdf)],
                  [integral(dy * dx * pdf), integral(dy * dy * pdf)]])
  with enable_x64():
    np.testing.assert_allclose(mixtures.mean(means, scales, log_w), mean, atol=1e-8)
    np.testing.assert_allclose(mixtures.covariance(means, scales, log_w), cov, atol=1e-8)


def test_marginal_cdf_matches_scipy_and_integration():
  rng = np.random.default_rng(2)
  means, scales, log_w = random_mixture(rng, (2,), 3, 2)
  x = rng.normal(size=(2, 2))
  with enable_x64():
    got = mixtures.marginal_cdf(x, means, scales, log_w)
  for b in range(2):
    for d in range(2):
      marginal_pdf = lambda t: sum(np.exp(log_w[b, i]) * stats.norm.pdf(
          t, means[b, i, d], scales[b, i, d]) for i in range(3))
      expected = integrate.quad(marginal_pdf, -np.inf, x[b, d], epsabs=1e-13)[0]
      np.testing.assert_allclose(got[b, d], expected, rtol=1e-9)


def _grid_modes_1d(means, scales, log_w):
  """Local maxima of a 1-D mixture density on a fine grid."""
  t = np.linspace(means.min() - 3, means.max() + 3, 200001)
  pdf = sum(np.exp(lw) * stats.norm.pdf(t, m, s)
            for m, s, lw in zip(means[:, 0], scales[:, 0], log_w))
  peak = (pdf[1:-1] > pdf[:-2]) & (pdf[1:-1] > pdf[2:])
  order = np.argsort(-pdf[1:-1][peak])
  return t[1:-1][peak][order], np.log(pdf[1:-1][peak][order])


@pytest.mark.parametrize('means,scales,weights', [
    ([-2.0, 2.0], [0.5, 0.5], [0.3, 0.7]),           # two separate modes
    ([-0.4, 0.4], [1.0, 1.0], [0.5, 0.5]),           # merged into one
    ([-3.0, -2.8, 0.0, 3.0], [0.3, 0.3, 0.4, 0.6], [0.2, 0.2, 0.3, 0.3]),
])
def test_modes_1d_match_grid_search(means, scales, weights):
  means = np.array(means)[:, None]
  scales = np.array(scales)[:, None]
  log_w = np.log(np.array(weights))
  expected_x, expected_log_p = _grid_modes_1d(means, scales, log_w)
  with enable_x64():
    x, log_p, valid = mixtures.modes(means, scales, log_w)
  assert int(np.sum(valid)) == len(expected_x)
  assert np.all(valid[:len(expected_x)])  # valid ones first
  np.testing.assert_allclose(x[:len(expected_x), 0], expected_x, atol=1e-4)
  np.testing.assert_allclose(log_p[:len(expected_x)], expected_log_p, atol=1e-8)
  with enable_x64():
    np.testing.assert_allclose(mixtures.most_likely_mode(means, scales, log_w),
                               expected_x[:1], atol=1e-4)


def test_modes_2d_batched_and_jitted():
  """Two well separated 2-D clusters of two components each, in a batch."""
  means = np.array([[[0.0, 0.0], [0.1, -0.1], [5.0, 5.0], [5.1, 4.9]]] * 3)
  means[1] *= -1
  scales = np.full_like(means, 0.5)
  log_w = np.log(np.array([[0.1, 0.1, 0.4, 0.4]] * 3))
  x, log_p, valid = jax.jit(mixtures.modes)(means, scales, log_w)
  assert x.shape == (3, 4, 2) and log_p.shape == (3, 4) and valid.shape == (3, 4)
  np.testing.assert_array_equal(valid, [[True, True, False, False]] * 3)
  np.testing.assert_allclose(x[0, 0], [5.05, 4.95], atol=1e-3)
  np.testing.assert_allclose(x[1, 0], [-5.05, -4.95], atol=1e-3)
  np.testing.assert_allclose(x[0, 1], [0.05, -0.05], atol=1e-3)
  # The reported density is the mixture's density at the mode.
  np.testing.assert_allclose(log_p[0, :2], np.log(scipy_pdf(
      np.asarray(x[0, :2]), means[0], scales[0], log_w[0])), rtol=1e-5)
  assert log_p[0, 0] > log_p[0, 1]


def test_single_component_mode_is_its_mean():
  means = np.array([[[1.0, -2.0, 3.0]]])
  x, _, valid = mixtures.modes(means, np.full((1, 1, 3), 0.3))
  np.testing.assert_allclose(x[0, 0], means[0, 0], atol=1e-6)
  assert bool(valid[0, 0])


def test_sample_shape_and_moments():
  rng = np.random.default_rng(3)
  means, scales, log_w = random_mixture(rng, (2,), 3, 2)
  samples = mixtures.sample(jax.random.key(0), means, scales, log_w,
                            sample_shape=(100000,))
  assert samples.shape == (100000, 2, 2)
  for b in range(2):
    mean = np.asarray(mixtures.mean(means[b], scales[b], log_w[b]))
    cov = np.asarray(mixtures.covariance(means[b], scales[b], log_w[b]))
    # Five standard errors.
    np.testing.assert_allclose(np.mean(samples[:, b], 0), mean,
                               atol=5 * np.sqrt(np.max(np.diag(cov)) / 1e5))
    np.testing.assert_allclose(np.cov(np.asarray(samples[:, b]).T), cov, rtol=0.05,
                               atol=0.05)
  # The marginal CDF of the samples matches marginal_cdf (Kolmogorov-Smirnov).
  cdf = lambda t: np.asarray(mixtures.marginal_cdf(
      np.stack([t, np.zeros_like(t)], -1), means[0], scales[0], log_w[0]))[..., 0]
  assert stats.kstest(np.asarray(samples[:5000, 0, 0]), cdf).pvalue > 1e-3


def test_shape_errors():
  means, scales = np.zeros((4, 2, 3)), np.ones((4, 2, 3))
  with pytest.raises(ValueError, match=r'x shape \(4, 2\).*n = 3'):
    mixtures.log_prob(np.zeros((4, 2)), means, scales)
  with pytest.raises(ValueError, match=r'scales shape \(4, 3\)'):
    mixtures.mean(means, np.ones((4, 3)))
  with pytest.raises(ValueError, match=r'log_weights shape \(4,\) must be \(4, 2\)'):
    mixtures.covariance(means, scales, np.zeros(4))
  with pytest.raises(ValueError, match=r'means must be \[..., I, n\]; got shape \(3,\)'):
    mixtures.modes(np.zeros(3), np.ones(3))


def test_functions_vmap_and_differentiate():
  rng = np.random.default_rng(4)
  means, scales, log_w = random_mixture(rng, (5,), 3, 2)
  x = rng.normal(size=(5, 2))
  batched = mixtures.log_prob(x, means, scales, log_w)
  np.testing.assert_allclose(jax.vmap(mixtures.log_prob)(x, means, scales, log_w),
                             batched, rtol=1e-6)
  grad = jax.grad(lambda m: mixtures.log_prob(x, m, scales, log_w).sum())(means)
  assert np.all(np.isfinite(grad))
