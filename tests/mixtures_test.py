"""Tests of propel_jax.mixtures against SciPy and numerical integration."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy import special
from scipy import stats

from propel_jax import mixtures



def random_mixture(rng, batch, num, dim):
  means = rng.normal(size=batch + (num, dim)) * 2
  scales = rng.uniform(0.3, 1.0, size=batch + (num, dim))
  logits = rng.normal(size=batch + (num,))
  return means, scales, logits - special.logsumexp(logits, axis=-1, keepdims=True)


def random_full_mixture(rng, batch, num, dim):
  """Means, Cholesky factors (junk above the diagonal, some negative diagonals), logits."""
  means, scales, log_w = random_mixture(rng, batch, num, dim)
  factors = rng.normal(size=batch + (num, dim, dim)) * 0.5
  factors[..., np.arange(dim), np.arange(dim)] = scales * rng.choice([-1, 1], scales.shape)
  factors += np.triu(np.full((dim, dim), 7.0), k=1)  # not read
  return means, factors, log_w


# The two kinds of covariance: scales [..., I, n] are standard deviations
# ('diagonal'), [..., I, n, n] lower-triangular Cholesky factors ('full'). A
# test parametrised over KINDS makes the same assertions about both.
KINDS = ('diagonal', 'full')


def random_kind_mixture(kind, rng, batch, num, dim):
  make = random_full_mixture if kind == 'full' else random_mixture
  return make(rng, batch, num, dim)


def as_factors(scales):
  """Standard deviations [..., n] as Cholesky factors [..., n, n] of the same Σ.

  Every other column's sign flipped and junk above the diagonal: neither is read.
  """
  dim = scales.shape[-1]
  signs = np.where(np.arange(dim) % 2, -1.0, 1.0)
  return scales[..., None] * np.eye(dim) * signs + np.triu(np.full((dim, dim), 7.0), k=1)


def covariances_of(means, scales):
  """Σ [..., I, n, n], float64 NumPy, from standard deviations or Cholesky factors."""
  if np.ndim(scales) == np.ndim(means) + 1:
    lower = np.tril(scales)
    return lower @ np.swapaxes(lower, -1, -2)
  return np.square(scales)[..., None] * np.eye(np.shape(means)[-1])


def scipy_pdf(x, means, scales, log_weights):
  """Mixture density at x [..., n] for one mixture of either kind, from scipy.stats."""
  return sum(np.exp(lw) * stats.multivariate_normal.pdf(x, m, c)
             for m, c, lw in zip(means, covariances_of(means, scales), log_weights))


@pytest.mark.parametrize('kind', KINDS)
def test_log_prob_and_components_match_scipy(kind, enable_x64):
  rng = np.random.default_rng(0)
  means, scales, log_w = random_kind_mixture(kind, rng, (3,), 4, 3)
  x = rng.normal(size=(3, 3))
  cov = covariances_of(means, scales)
  expected = [np.log(scipy_pdf(x[b], means[b], scales[b], log_w[b])) for b in range(3)]
  with enable_x64():
    np.testing.assert_allclose(mixtures.log_prob(x, means, scales, log_w), expected,
                               rtol=1e-12)
    # Default weights are 1/I.
    uniform = np.full(4, -np.log(4))
    np.testing.assert_allclose(
        mixtures.log_prob(x[0], means[0], scales[0]),
        np.log(scipy_pdf(x[0], means[0], scales[0], uniform)), rtol=1e-12)
    np.testing.assert_allclose(
        mixtures.component_log_prob(x, means, scales),
        [[stats.multivariate_normal.logpdf(x[b], means[b, i], cov[b, i]) for i in range(4)]
         for b in range(3)], rtol=1e-12)
    np.testing.assert_allclose(mixtures.component_covariances(means, scales), cov,
                               rtol=1e-12)
    np.testing.assert_allclose(mixtures.marginal_scales(means, scales),
                               np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1)), rtol=1e-12)
  assert mixtures.is_full_covariance(means, scales) == (kind == 'full')


@pytest.mark.parametrize('kind', KINDS)
def test_log_prob_far_away_is_finite(kind):
  means, scales = np.zeros((2, 1)), np.full((2, 1), 0.1)
  if kind == 'full':
    scales = -scales[..., None]  # 1×1 factors, of either sign
  value = mixtures.log_prob(np.array([1e3], np.float32), means, scales)
  np.testing.assert_allclose(value, -0.5 * (1e4) ** 2 - np.log(0.1 * np.sqrt(2 * np.pi)),
                             rtol=1e-6)


def _grid_2d(means, scales, log_w, half_width=12.0, points=801):
  axis = np.linspace(-half_width, half_width, points)
  x, y = np.meshgrid(axis, axis, indexing='ij')
  pdf = scipy_pdf(np.stack([x, y], -1), means, scales, log_w)
  integral = lambda f: integrate.trapezoid(integrate.trapezoid(f, axis, axis=1), axis)
  return x, y, pdf, integral


def _assert_moments_match_integration(means, scales, log_w, grid, cov_atol):
  """mixtures.mean and .covariance against the moments of the density on a 2-D grid.

  Call it with float64 enabled: the tolerances are float64's.
  """
  x, y, pdf, integral = grid
  assert abs(integral(pdf) - 1) < 1e-8
  mean = np.array([integral(x * pdf), integral(y * pdf)])
  dx, dy = x - mean[0], y - mean[1]
  cov = np.array([[integral(dx * dx * pdf), integral(dx * dy * pdf)],
                  [integral(dy * dx * pdf), integral(dy * dy * pdf)]])
  np.testing.assert_allclose(mixtures.mean(means, scales, log_w), mean, atol=1e-8)
  np.testing.assert_allclose(mixtures.covariance(means, scales, log_w), cov, atol=cov_atol)


@pytest.mark.parametrize('kind', KINDS)
def test_mean_and_covariance_match_numerical_integration(kind, enable_x64):
  """Cholesky factors on a wider, finer grid, for their tails."""
  full = kind == 'full'
  if full:
    rng = np.random.default_rng(41)
    means, scales, log_w = random_full_mixture(rng, (), 3, 2)
    grid = _grid_2d(means, scales, log_w, half_width=14.0, points=1001)
  else:
    rng = np.random.default_rng(1)
    means, scales, log_w = random_mixture(rng, (), 3, 2)
    grid = _grid_2d(means, scales, log_w)
  with enable_x64():
    _assert_moments_match_integration(means, scales, log_w, grid,
                                      cov_atol=1e-7 if full else 1e-8)


@pytest.mark.parametrize('kind', KINDS)
def test_marginal_cdf_matches_scipy_and_integration(kind, enable_x64):
  """Each dimension's marginal density integrated; its variance is Σ_dd."""
  rng = np.random.default_rng(2)
  means, scales, log_w = random_kind_mixture(kind, rng, (2,), 3, 3)
  x = rng.normal(size=(2, 3))
  marginal_std = np.sqrt(np.diagonal(covariances_of(means, scales), axis1=-2, axis2=-1))
  with enable_x64():
    got = mixtures.marginal_cdf(x, means, scales, log_w)
  for b in range(2):
    for d in range(3):
      marginal_pdf = lambda t: sum(np.exp(log_w[b, i]) * stats.norm.pdf(
          t, means[b, i, d], marginal_std[b, i, d]) for i in range(3))
      expected = integrate.quad(marginal_pdf, -np.inf, x[b, d], epsabs=1e-13)[0]
      np.testing.assert_allclose(got[b, d], expected, rtol=1e-9)


@pytest.mark.parametrize('kind', KINDS)
def test_marginal_is_the_covariance_block(kind, enable_x64):
  """The marginals of a Gaussian are Gaussian: dims of the means and covariance."""
  rng = np.random.default_rng(42)
  means, scales, log_w = random_kind_mixture(kind, rng, (2,), 3, 3)
  cov = covariances_of(means, scales)
  with enable_x64():
    pair = mixtures.marginal(means, scales, log_w, dims=(2, 0))
    pair_cov = mixtures.component_covariances(*pair[:2])
  assert pair.is_full_covariance == (kind == 'full')
  assert pair.scales.shape == (2, 3, 2) + ((2,) if kind == 'full' else ())
  np.testing.assert_allclose(pair.means, means[..., [2, 0]])
  np.testing.assert_allclose(pair_cov, cov[..., [2, 0], :][..., [2, 0]], rtol=1e-10)
  np.testing.assert_array_equal(pair.log_weights, log_w)
  with pytest.raises(ValueError, match=r'dims \[0, 0\] must name distinct dimensions'):
    mixtures.marginal(means, scales, dims=(0, 0))
  with pytest.raises(ValueError, match=r'dims \[3\]'):
    mixtures.marginal(means, scales, dims=(3,))


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
    ([0.0, 1.0], [0.5, 1.0], [0.5, 0.5]),            # one mode, pulled by unequal scales
])
@pytest.mark.parametrize('kind', KINDS)
def test_modes_1d_match_grid_search(kind, means, scales, weights, enable_x64):
  means = np.array(means)[:, None]
  scales = np.array(scales)[:, None]
  log_w = np.log(np.array(weights))
  expected_x, expected_log_p = _grid_modes_1d(means, scales, log_w)
  if kind == 'full':
    scales = -scales[..., None]  # 1×1 factors, of either sign
  with enable_x64():
    x, log_p, valid = mixtures.modes(means, scales, log_w)
  assert int(np.sum(valid)) == len(expected_x)
  assert np.all(valid[:len(expected_x)])  # valid ones first
  np.testing.assert_allclose(x[:len(expected_x), 0], expected_x, atol=1e-4)
  np.testing.assert_allclose(log_p[:len(expected_x)], expected_log_p, atol=1e-8)
  with enable_x64():
    np.testing.assert_allclose(mixtures.most_likely_mode(means, scales, log_w),
                               expected_x[:1], atol=1e-4)


@pytest.mark.parametrize('kind', KINDS)
def test_modes_2d_batched_and_jitted(kind):
  """Two well separated 2-D clusters of two components each, in a batch."""
  means = np.array([[[0.0, 0.0], [0.1, -0.1], [5.0, 5.0], [5.1, 4.9]]] * 3)
  means[1] *= -1
  scales = np.full_like(means, 0.5)
  if kind == 'full':
    scales = as_factors(scales)
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


@pytest.mark.parametrize('kind', KINDS)
def test_modes_of_a_nan_example_do_not_stop_the_others(kind):
  means = np.array([[[-1.1], [1.1]], [[np.nan], [0.0]]])  # Example 0 takes a few steps.
  scales = np.array([[[1.0], [1.0]], [[1.0], [1.0]]])
  expected_x, _ = _grid_modes_1d(means[0], scales[0], np.log([0.5, 0.5]))
  if kind == 'full':
    scales = scales[..., None]
  x, _, valid = mixtures.modes(means, scales, num_iters=100, tol=1e-4)
  np.testing.assert_allclose(np.sort(np.asarray(x[0, :, 0])), np.sort(expected_x), atol=1e-4)
  assert np.asarray(valid[0]).tolist() == [True, True]
  assert not np.any(valid[1])


@pytest.mark.parametrize('kind', KINDS)
def test_modes_tolerances_scale_with_the_narrowest_component(kind, enable_x64):
  # Two narrow modes 0.05 apart (50 of their σ) beside a wide component: the
  # merge and convergence tolerances are in units of the smallest scale, so
  # the wide one does not blur the narrow ones into one mode.
  means = np.array([[0.0], [0.05], [100.0]])
  scales = np.array([[0.001], [0.001], [10.0]])
  if kind == 'full':
    scales = scales[..., None]
  with enable_x64():
    x, _, valid = mixtures.modes(means, scales)
  assert np.asarray(valid).tolist() == [True, True, True]
  np.testing.assert_allclose(np.sort(np.asarray(x)[:, 0]), [0.0, 0.05, 100.0], atol=1e-6)


def test_modes_just_apart_stay_apart_by_default(enable_x64):
  # Two unit Gaussians at ±1.003 are just bimodal: modes at ±0.1334, 0.27σ
  # apart, which the default merge tolerance (1e-2 σ) keeps apart. Near the
  # split the iteration is slow, hence the many iterations.
  means, scales = np.array([[-1.003], [1.003]]), np.ones((2, 1))
  expected_x, _ = _grid_modes_1d(means, scales, np.log([0.5, 0.5]))
  with enable_x64():
    x, _, valid = mixtures.modes(means, scales, num_iters=20_000, tol=1e-12)
  assert np.asarray(valid).tolist() == [True, True]
  np.testing.assert_allclose(np.sort(np.asarray(x)[:, 0]), np.sort(expected_x), atol=1e-4)
  assert 0.26 < np.ptp(expected_x) < 0.28


@pytest.mark.parametrize('kind', KINDS)
def test_single_component_mode_is_its_mean(kind):
  means = np.array([[[1.0, -2.0, 3.0]]])
  _, scales, _ = random_kind_mixture(kind, np.random.default_rng(5), (1,), 1, 3)
  x, _, valid = mixtures.modes(means, scales)
  np.testing.assert_allclose(x[0, 0], means[0, 0], atol=1e-6)
  assert bool(valid[0, 0])


@pytest.mark.parametrize('kind', KINDS)
def test_sample_shape_and_moments(kind):
  """Moments of 100,000 samples."""
  seed = 43 if kind == 'full' else 3
  means, scales, log_w = random_kind_mixture(kind, np.random.default_rng(seed), (2,), 3, 2)
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
      np.stack([t, np.zeros_like(t)], -1), means[:1], scales[:1], log_w[:1]))[..., 0]
  assert stats.kstest(np.asarray(samples[:5000, 0, 0]), cdf).pvalue > 1e-3


def test_shape_errors():
  means, scales = np.zeros((4, 2, 3)), np.ones((4, 2, 3))
  with pytest.raises(ValueError, match=r'x shape \(4, 2\).*n = 3'):
    mixtures.log_prob(np.zeros((4, 2)), means, scales)
  with pytest.raises(ValueError, match=r'scales shape \(4, 3\)'):
    mixtures.mean(means, np.ones((4, 3)))
  with pytest.raises(ValueError, match=r'log_weights shape \(4,\) must be \(4, 2\)'):
    mixtures.covariance(means, scales, np.zeros(4))
  with pytest.raises(ValueError, match=r'means must be \[\.\.\., I, n\] .*got shape \(3,\)'):
    mixtures.modes(np.zeros(3), np.ones(3))
  with pytest.raises(ValueError, match=(r'scales shape \(4, 2, 3, 2\) must equal means '
                                        r'shape \(4, 2, 3\).*or be \(4, 2, 3, 3\)')):
    mixtures.log_prob(np.zeros((4, 3)), means, np.ones((4, 2, 3, 2)))


@pytest.mark.parametrize('kind', KINDS)
def test_functions_vmap_and_differentiate(kind):
  rng = np.random.default_rng(4)
  means, scales, log_w = random_kind_mixture(kind, rng, (5,), 3, 2)
  x = rng.normal(size=(5, 2))
  batched = mixtures.log_prob(x, means, scales, log_w)
  np.testing.assert_allclose(jax.vmap(mixtures.log_prob)(x, means, scales, log_w),
                             batched, rtol=1e-6)
  grad = jax.grad(lambda m: mixtures.log_prob(x, m, scales, log_w).sum())(means)
  assert np.all(np.isfinite(grad))


# ----------------------------------------------------------------------------
# Argument rules: the component axis, logits.


@pytest.mark.parametrize('fn', ['log_prob', 'marginal_cdf', 'component_log_prob'])
def test_forgotten_component_axis_raises(fn):
  """means [B, n] with x [B, n] is refused, not read as one B-component mixture."""
  means, scales, _ = random_mixture(np.random.default_rng(10), (4,), 1, 3)
  x = np.zeros((4, 3))
  with pytest.raises(ValueError, match=(
      r'means must have exactly one more axis than x.*x \(4, 3\) and means \(4, 3\)'
      r'.*means\[\.\.\., None, :\].*one Gaussian per example.*means\[None\]')):
    getattr(mixtures, fn)(x, means[:, 0], scales[:, 0])
  with pytest.raises(ValueError, match=r'got x \(\) .*got a scalar|got a scalar'):
    getattr(mixtures, fn)(np.float32(0.0), means, scales)
  # Size-1 leading axes broadcast; fewer axes do not.
  chex.assert_shape(getattr(mixtures, fn)(x, means[:1], scales[:1]),
                    (4,) + {'log_prob': (), 'marginal_cdf': (3,),
                            'component_log_prob': (1,)}[fn])
  with pytest.raises(ValueError, match=r'x\[None\]'):
    getattr(mixtures, fn)(x[0], means, scales)


def _shifted_logits(log_w):
  rng = np.random.default_rng(11)
  return [log_w + 5.0, log_w + rng.normal(size=log_w.shape[:-1] + (1,)) * 10]


@pytest.mark.parametrize('kind', KINDS)
def test_every_function_takes_logits(kind, enable_x64):
  """Adding a constant over I to log_weights changes nothing anywhere."""
  rng = np.random.default_rng(12)
  means, scales, log_w = random_kind_mixture(kind, rng, (3,), 4, 2)
  x = rng.normal(size=(3, 2))
  key = jax.random.key(1)
  functions = {
      'log_prob': lambda lw: mixtures.log_prob(x, means, scales, lw),
      'mean': lambda lw: mixtures.mean(means, scales, lw),
      'covariance': lambda lw: mixtures.covariance(means, scales, lw),
      'modes': lambda lw: mixtures.modes(means, scales, lw)[:2],
      'most_likely_mode': lambda lw: mixtures.most_likely_mode(means, scales, lw),
      'sample': lambda lw: mixtures.sample(key, means, scales, lw, sample_shape=(50,)),
      'marginal_cdf': lambda lw: mixtures.marginal_cdf(x, means, scales, lw),
      'affine': lambda lw: mixtures.affine(means, scales, lw, shift=1.0,
                                           scale=2.0).log_prob(x),
  }
  with enable_x64():
    for name, fn in functions.items():
      fn = jax.jit(fn)  # one compilation for the three calls
      base = fn(log_w)
      for shifted in _shifted_logits(log_w):
        chex.assert_trees_all_close(fn(shifted), base, rtol=1e-9, atol=1e-9,
                                    custom_message=name)
    grad = lambda lw: jax.grad(lambda lw: mixtures.log_prob(x, means, scales, lw).sum())(lw)
    for shifted in _shifted_logits(log_w):
      np.testing.assert_allclose(grad(shifted), grad(log_w), atol=1e-12)
    # And the value is that of the normalised weights, against SciPy.
    np.testing.assert_allclose(
        functions['log_prob'](log_w + 5.0),
        [np.log(scipy_pdf(x[b], means[b], scales[b], log_w[b])) for b in range(3)],
        rtol=1e-12)


def test_normalized_log_weights(enable_x64):
  means = np.zeros((2, 3, 4))
  with enable_x64():
    uniform = mixtures.normalized_log_weights(means)
    np.testing.assert_allclose(uniform, np.full((2, 3), -np.log(3)), rtol=1e-15)
    logits = np.random.default_rng(13).normal(size=(2, 3))
    got = mixtures.normalized_log_weights(means, logits + 5.0)
    np.testing.assert_allclose(got, logits - special.logsumexp(logits, -1, keepdims=True),
                               rtol=1e-12)
  assert mixtures.normalized_log_weights(jnp.zeros((2, 1), jnp.bfloat16)).dtype == jnp.float32
  assert mixtures.normalized_log_weights(
      means, jnp.zeros((2, 3), jnp.bfloat16)).dtype == jnp.float32


def test_complex_and_empty_inputs_raise():
  means, scales = np.zeros((4, 2, 3)), np.ones((4, 2, 3))
  with pytest.raises(ValueError, match=r'^means must be real; got dtype complex'):
    mixtures.mean(means + 0j, scales)
  with pytest.raises(ValueError, match=r'^x must be real'):
    mixtures.log_prob(np.zeros((4, 3)) + 0j, means, scales)
  with pytest.raises(ValueError, match=r'^log_weights must be real'):
    mixtures.sample(jax.random.key(0), means, scales, np.zeros((4, 2)) + 0j)
  with pytest.raises(ValueError, match=r'^shift must be real'):
    mixtures.affine(means, scales, shift=np.zeros(3) + 0j, scale=1.0)
  with pytest.raises(ValueError, match=r'has no components \(I = 0\)'):
    mixtures.covariance(np.zeros((4, 0, 3)), np.ones((4, 0, 3)))
  with pytest.raises(ValueError, match=r'has no dimensions \(n = 0\)'):
    mixtures.modes(np.zeros((4, 2, 0)), np.ones((4, 2, 0)))
  with pytest.raises(ValueError, match=r'I >= 1'):
    mixtures.normalized_log_weights(np.zeros((4, 0, 3)))


# ----------------------------------------------------------------------------
# The Mixture type and affine maps.


@pytest.mark.parametrize('kind', KINDS)
def test_mixture_methods_equal_module_functions(kind):
  rng = np.random.default_rng(14)
  means, scales, log_w = random_kind_mixture(kind, rng, (3,), 4, 2)
  log_w = log_w + 2.0  # logits
  m = mixtures.Mixture(*map(jnp.asarray, (means, scales, log_w)))
  x = jnp.asarray(rng.normal(size=(3, 2)))
  key = jax.random.key(2)
  assert (m.num_components, m.num_dims, m.batch_shape) == (4, 2, (3,))
  assert m.is_full_covariance == (kind == 'full')
  methods = (lambda m: [
      m.log_prob(x), m.mean(), m.covariance(), m.modes(num_iters=50),
      m.most_likely_mode(tol=1e-3), m.sample(key, (7,)), m.marginal_cdf(x),
      m.affine(1.0, jnp.array([2.0, -3.0])), m.marginal((1,))])
  functions = (lambda m: [
      mixtures.log_prob(x, *m), mixtures.mean(*m), mixtures.covariance(*m),
      mixtures.modes(*m, num_iters=50), mixtures.most_likely_mode(*m, tol=1e-3),
      mixtures.sample(key, *m, sample_shape=(7,)), mixtures.marginal_cdf(x, *m),
      mixtures.affine(*m, shift=1.0, scale=jnp.array([2.0, -3.0])),
      mixtures.marginal(*m, dims=(1,))])
  # One compilation for both sides.
  for method, function in zip(*jax.jit(lambda m: (methods(m), functions(m)))(m)):
    chex.assert_trees_all_equal(method, function)
  chex.assert_trees_all_equal(m.log_prob(x), mixtures.log_prob(x, *m))  # eagerly
  assert isinstance(m.affine(1.0, 2.0), mixtures.Mixture)
  # The positional form used across the package.
  means_, scales_, log_w_ = m
  chex.assert_trees_all_equal(mixtures.log_prob(x, means_, scales_, log_w_), m.log_prob(x))


@pytest.mark.parametrize('kind', KINDS)
def test_uniform_mixture(kind):
  means, scales, _ = random_kind_mixture(kind, np.random.default_rng(15), (2, 3), 4, 2)
  m = mixtures.Mixture.uniform(means, scales)
  assert isinstance(m.means, jax.Array) and m.log_weights.shape == (2, 3, 4)
  np.testing.assert_allclose(m.log_weights, -np.log(4), rtol=1e-6)
  x = np.zeros((2, 3, 2))
  np.testing.assert_allclose(m.log_prob(x), mixtures.log_prob(x, means, scales),
                             rtol=1e-6)
  with pytest.raises(ValueError, match=r'scales shape \(2, 3, 4\) must equal'):
    mixtures.Mixture.uniform(means, scales[..., 0, 0] if kind == 'full' else scales[..., 0])


@pytest.mark.parametrize('kind', KINDS)
def test_mixture_is_a_pytree_under_jit_and_vmap(kind):
  rng = np.random.default_rng(16)
  means, scales, log_w = random_kind_mixture(kind, rng, (5,), 3, 2)
  m = mixtures.Mixture(*map(jnp.asarray, (means, scales, log_w + 1.0)))
  x = jnp.asarray(rng.normal(size=(5, 2)))
  expected = m.log_prob(x)
  np.testing.assert_allclose(jax.jit(lambda m, x: m.log_prob(x))(m, x), expected,
                             rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(lambda m, x: m.log_prob(x))(m, x), expected,
                             rtol=1e-6)
  mapped = jax.jit(lambda m: m.affine(jnp.ones(2), 3.0))(m)
  assert isinstance(mapped, mixtures.Mixture)
  chex.assert_trees_all_close(mapped, m.affine(jnp.ones(2), 3.0), rtol=1e-6)
  modes = jax.jit(lambda m: m.most_likely_mode())(m)
  chex.assert_shape(modes, (5, 2))
  halves = jax.tree.map(lambda a: a * 0.5, m)
  assert isinstance(halves, mixtures.Mixture)
  grad = jax.grad(lambda m: m.log_prob(x).sum())(m)
  assert isinstance(grad, mixtures.Mixture)
  np.testing.assert_allclose(np.sum(grad.log_weights, -1), 0.0, atol=1e-6)


@pytest.mark.parametrize('shift,scale', [
    (1.5, -2.0),
    ([-90.0, 10.0], [180.0, -0.5]),
    ('per_example', 'per_example'),
])
@pytest.mark.parametrize('kind', KINDS)
def test_affine_maps_the_density_with_its_jacobian(kind, shift, scale, enable_x64):
  """log p_y(shift + scale x) = log p_x(x) - Σ_d log|scale_d|; Σ_i becomes D Σ_i D."""
  rng = np.random.default_rng(17)
  means, scales, log_w = random_kind_mixture(kind, rng, (4,), 3, 2)
  if isinstance(shift, str):
    shift = rng.normal(size=(4, 2))
    scale = rng.uniform(0.5, 2.0, size=(4, 2)) * rng.choice([-1, 1], size=(4, 2))
  shift, scale = np.asarray(shift), np.asarray(scale)
  x = rng.normal(size=(4, 2))
  with enable_x64():
    y = mixtures.affine(means, scales, log_w, shift=shift, scale=scale)
    np.testing.assert_allclose(
        y.log_prob(shift + scale * x),
        mixtures.log_prob(x, means, scales, log_w)
        - np.sum(np.log(np.abs(np.broadcast_to(scale, (4, 2)))), -1), rtol=1e-12)
    mean_x = np.asarray(mixtures.mean(means, scales, log_w))
    np.testing.assert_allclose(y.mean(), shift + scale * mean_x, rtol=1e-12, atol=1e-12)
    cov_x = np.asarray(mixtures.covariance(means, scales, log_w))
    diag = np.broadcast_to(scale, (4, 2))
    np.testing.assert_allclose(y.covariance(), diag[:, :, None] * cov_x * diag[:, None, :],
                               rtol=1e-12, atol=1e-12)
    # A negative scale flips the axis: P(Y_d <= y_d) = 1 - P(X_d <= x_d).
    cdf_x = np.asarray(mixtures.marginal_cdf(x, means, scales, log_w))
    np.testing.assert_allclose(y.marginal_cdf(shift + scale * x),
                               np.where(diag > 0, cdf_x, 1 - cdf_x), rtol=1e-12)
    np.testing.assert_allclose(
        mixtures.component_covariances(*y[:2]),
        diag[:, None, :, None] * covariances_of(means, scales) * diag[:, None, None, :],
        rtol=1e-12, atol=1e-12)
  np.testing.assert_array_equal(y.log_weights, log_w)  # weights unchanged
  # Standard deviations, or a factor's diagonal, become |scale_d| times theirs
  # (the diagonal keeps its signs).
  diagonal = lambda a: np.diagonal(a, axis1=-2, axis2=-1) if kind == 'full' else a
  np.testing.assert_allclose(diagonal(y.scales), np.abs(diag)[:, None] * diagonal(scales),
                             rtol=1e-12)


@pytest.mark.parametrize('kind', KINDS)
def test_affine_broadcasts_and_checks_shapes(kind):
  means, scales, _ = random_kind_mixture(kind, np.random.default_rng(18), (), 3, 2)
  y = mixtures.affine(means[None], scales[None], shift=np.zeros((5, 2)), scale=1.0)
  assert y.batch_shape == (5,) and y.log_weights.shape == (5, 3)
  assert y.scales.shape == (5,) + scales.shape
  np.testing.assert_allclose(y.log_weights, -np.log(3), rtol=1e-6)
  with pytest.raises(ValueError, match=r'^scale shape \(3,\) must be a scalar, \[n\] or \[\.\.\., n\]'):
    mixtures.affine(means, scales, shift=0.0, scale=np.ones(3))
  # Axes match by rank: a shift with more axes than the points does not add any.
  with pytest.raises(ValueError, match=r'^shift shape \(5, 2\).*rank of the points \(2,\)'):
    mixtures.affine(means, scales, shift=np.zeros((5, 2)), scale=1.0)
  with pytest.raises(ValueError, match=r'^shift shape \(4, 2\)'):
    mixtures.affine(means[None].repeat(3, 0), scales[None].repeat(3, 0), shift=np.zeros((4, 2)),
                    scale=1.0)


# ----------------------------------------------------------------------------
# Full covariance: a mode where the tilt puts it, and the diagonal written as
# Cholesky factors.


def test_full_modes_match_grid_search(enable_x64):
  """Two components tilted alike merge into one mode; a third tilted the other way.

  The merged mode lies where the tilt puts it: a diagonal mixture with the
  same marginal scales has its mode elsewhere (0.40, 0.33).
  """
  means = np.array([[0.0, 0.0], [1.2, 1.0], [-3.0, 3.0]])
  factors = np.array([[[1.0, 0.0], [0.9, 0.436]], [[1.0, 0.0], [0.9, 0.436]],
                      [[0.8, 0.0], [-0.72, 0.35]]])
  log_w = np.log(np.array([0.4, 0.3, 0.3]))
  axis = np.linspace(-6, 6, 1201)
  grid = np.stack(np.meshgrid(axis, axis, indexing='ij'), -1)
  pdf = scipy_pdf(grid, means, factors, log_w)
  peak = (pdf[1:-1, 1:-1] > np.maximum.reduce([
      pdf[:-2, 1:-1], pdf[2:, 1:-1], pdf[1:-1, :-2], pdf[1:-1, 2:],
      pdf[:-2, :-2], pdf[2:, 2:], pdf[:-2, 2:], pdf[2:, :-2]]))
  found = grid[1:-1, 1:-1][peak]
  found = found[np.argsort(-pdf[1:-1, 1:-1][peak])]
  with enable_x64():
    x, log_p, valid = jax.jit(mixtures.modes)(means, factors, log_w)
  num_modes = int(np.sum(valid))
  assert num_modes == len(found) == 2, (x, valid, found)
  np.testing.assert_allclose(x[:num_modes], found, atol=0.02)
  np.testing.assert_allclose(x[0], [0.466, 0.389], atol=1e-3)
  np.testing.assert_allclose(
      log_p[:num_modes], np.log(scipy_pdf(np.asarray(x[:num_modes]), means, factors,
                                               log_w)), rtol=1e-10)
  np.testing.assert_allclose(mixtures.most_likely_mode(means, factors, log_w), x[0],
                             atol=1e-6)


@pytest.mark.parametrize('fn', [
    'log_prob', 'component_log_prob', 'marginal_cdf', 'mean', 'covariance',
    'component_covariances', 'marginal_scales', 'modes', 'sample', 'affine', 'marginal'])
def test_diagonal_factors_give_the_diagonal_results(fn, enable_x64):
  """Standard deviations written as Cholesky factors: the same results, function by function.

  The mixtures that affine and marginal return are compared by their
  densities and component covariances.
  """
  rng = np.random.default_rng(60)
  means, scales, log_w = random_mixture(rng, (3,), 4, 3)
  x = rng.normal(size=(3, 3))
  key = jax.random.key(3)
  factors = as_factors(scales)
  if fn == 'sample':
    # A flipped column flips its noise: the same distribution, other draws.
    factors = np.abs(factors)
  compare = lambda y, points: (y.log_prob(points), mixtures.component_covariances(*y[:2]))
  call = {
      'log_prob': lambda s: mixtures.log_prob(x, means, s, log_w),
      'component_log_prob': lambda s: mixtures.component_log_prob(x, means, s),
      'marginal_cdf': lambda s: mixtures.marginal_cdf(x, means, s, log_w),
      'mean': lambda s: mixtures.mean(means, s, log_w),
      'covariance': lambda s: mixtures.covariance(means, s, log_w),
      'component_covariances': lambda s: mixtures.component_covariances(means, s),
      'marginal_scales': lambda s: mixtures.marginal_scales(means, s),
      'modes': lambda s: mixtures.modes(means, s, log_w),
      'sample': lambda s: mixtures.sample(key, means, s, log_w, sample_shape=(5,)),
      'affine': lambda s: compare(mixtures.affine(means, s, log_w, shift=1.0,
                                                  scale=np.array([2.0, -1.0, 0.5])), x),
      'marginal': lambda s: compare(mixtures.marginal(means, s, log_w, dims=(2, 0)),
                                    x[:, [2, 0]]),
  }[fn]
  with enable_x64():
    chex.assert_trees_all_close(call(factors), call(scales), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------
# Modes against a fixed-point reference.


def _reference_modes(means, covariances, log_w):
  """The local maxima of one mixture (float64 NumPy): (locations [M, n], log p [M]).

  Plain fixed-point iteration x ← (Σ r_i Σ_i⁻¹)⁻¹ Σ r_i Σ_i⁻¹ μ_i from every
  mean until it stops moving, duplicates dropped, densest first; every point
  is then checked to be a maximum from the definition: zero gradient and a
  negative definite Hessian of log p by central differences.
  """
  precisions = np.linalg.inv(covariances)
  log_p = lambda x: np.log(sum(np.exp(lw) * stats.multivariate_normal.pdf(x, m, c)
                               for m, c, lw in zip(means, covariances, log_w)))
  found = []
  for x in means:
    for _ in range(100_000):
      log_c = log_w + np.array([stats.multivariate_normal.logpdf(x, m, c)
                                for m, c in zip(means, covariances)])
      r = np.exp(log_c - special.logsumexp(log_c))
      new_x = np.linalg.solve(np.einsum('i,inm->nm', r, precisions),
                              np.einsum('i,inm,im->n', r, precisions, means))
      done = np.max(np.abs(new_x - x)) < 1e-13
      x = new_x
      if done:
        break
    else:
      raise AssertionError('the reference iteration did not converge')
    if not any(np.max(np.abs(x - y)) < 1e-6 for y in found):
      found.append(x)
  # Differences in steps of 1e-3 of the narrowest scale; the gradient in its units.
  unit = np.sqrt(np.min(np.diagonal(covariances, axis1=-2, axis2=-1)))
  h = 1e-3 * unit
  eye = np.eye(means.shape[-1]) * h
  for x in found:
    grad = [(log_p(x + e) - log_p(x - e)) / (2 * h) for e in eye]
    hessian = [[(log_p(x + a + b) - log_p(x + a - b) - log_p(x - a + b) + log_p(x - a - b))
                / (4 * h * h) for b in eye] for a in eye]
    assert np.max(np.abs(grad)) * unit < 1e-6 and np.all(np.linalg.eigvalsh(hessian) < 0)
  found = np.array(found)
  values = np.array([log_p(x) for x in found])
  order = np.argsort(-values)
  return found[order], values[order]


def _assert_modes_match(got, expected, atol):
  x, log_p, valid = map(np.asarray, got)
  num = len(expected[0])
  assert int(np.sum(valid)) == num and np.all(valid[:num]), (valid, expected)
  np.testing.assert_allclose(x[:num], expected[0], atol=atol)
  np.testing.assert_allclose(log_p[:num], expected[1], atol=100 * atol)


@pytest.mark.parametrize('kind', KINDS)
def test_modes_of_random_mixtures_match_the_fixed_point_reference(kind, enable_x64):
  """Random 2-D and 3-D mixtures, in float64 and float32."""
  rng = np.random.default_rng(50 + (kind == 'full'))
  for dim in (2, 3):
    means, scales, log_w = random_kind_mixture(kind, rng, (12,), 6, dim)
    covariances = covariances_of(means, scales)
    expected = [_reference_modes(*a) for a in zip(means, covariances, log_w)]
    assert len({len(e[0]) for e in expected}) >= 3  # Merged and separate components.
    with enable_x64():
      got = jax.jit(mixtures.modes)(means, scales, log_w)
    for b, e in enumerate(expected):
      _assert_modes_match([a[b] for a in got], e, atol=1e-7)
    got = jax.jit(mixtures.modes)(*(a.astype(np.float32) for a in (means, scales, log_w)))
    for b, e in enumerate(expected):
      _assert_modes_match([a[b] for a in got], e, atol=2e-4)


def test_modes_keep_a_shallow_mode_beside_a_steep_basin(enable_x64):
  """A trained mixture (rounded) where an unchecked Newton step from the
  second mean jumps past a shallow mode (Hessian eigenvalues −384, −16) into
  the basin of another: the safeguards keep all six modes."""
  means = np.array([[0.3963, 0.1954], [0.4893, 0.662], [0.4788, 0.0446], [0.4848, 0.7942],
                    [0.5187, 0.9274], [0.5518, 0.6363], [0.2999, 0.6828], [0.4636, 0.0966]])
  scales = np.array([[0.0345, 0.0514], [0.0769, 0.2279], [0.0334, 0.0175], [0.041, 0.1665],
                     [0.0383, 0.043], [0.0128, 0.1369], [0.0684, 0.028], [0.0449, 0.0541]])
  log_w = np.full(8, -np.log(8))
  expected = _reference_modes(means, scales[:, :, None] * scales[:, None, :] * np.eye(2),
                              log_w)
  assert len(expected[0]) == 6
  _assert_modes_match(mixtures.modes(*(a.astype(np.float32) for a in (means, scales, log_w))),
                      expected, atol=1e-4)
  with enable_x64():
    _assert_modes_match(mixtures.modes(means, scales, log_w), expected, atol=1e-9)
