"""Tests of propel_jax.losses against references written from the definition.

The references are float64 NumPy/SciPy code that evaluates the integrals
directly: sums of Gaussian overlaps (in log space, for far-away targets too),
numerical quadrature, the poster's closed-form partial derivatives and central
differences. float64 is switched on only inside the tests that need it. Tests
parametrised over `KINDS` make the same assertions for diagonal covariances
(scales are standard deviations) and full ones (Cholesky factors).
"""

import itertools
import re

import chex
import jax
from jax.experimental import checkify
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest
from scipy import integrate
from scipy import special
from scipy import stats

from propel_jax import _diagonal
from propel_jax import losses
from propel_jax import mixtures



# ----------------------------------------------------------------------------
# Float64 references from the definition.


def ref_overlap(mean_a, var_a, mean_b, var_b):
  """∫ N(x; a) N(x; b) dx for diagonal Gaussians ([n] arrays), float64."""
  var = var_a + var_b
  return np.prod(np.exp(-0.5 * (mean_a - mean_b) ** 2 / var)
                 / np.sqrt(2 * np.pi * var))


def ref_mixture_integral(am, av, aw, bm, bv, bw):
  """∫ a b dx for mixtures given as ([I, n] means, [I, n] variances, [I] weights)."""
  return sum(aw[i] * bw[j] * ref_overlap(am[i], av[i], bm[j], bv[j])
             for i in range(len(aw)) for j in range(len(bw)))


def ref_distance(pm, ps, pw, qm, qs, qw):
  """-log[2∫pq / ∫(p² + q²)] for one example, scales given as std."""
  p = (pm, ps ** 2, pw)
  q = (qm, qs ** 2, qw)
  pq = ref_mixture_integral(*p, *q)
  pp = ref_mixture_integral(*p, *p)
  qq = ref_mixture_integral(*q, *q)
  return -np.log(2 * pq / (pp + qq))


def ref_propel(means, scales, target, target_scale, weights=None):
  """PROPEL for one example: means, scales [I, n]; target [n]."""
  num = means.shape[0]
  weights = np.full(num, 1 / num) if weights is None else weights
  gt_scale = np.broadcast_to(target_scale, target.shape)
  return ref_distance(target[None], gt_scale[None], np.ones(1),
                      means, scales, weights)


def random_problem(rng, batch, num, dim, spread=1.0):
  means = rng.normal(size=batch + (num, dim)) * spread
  scales = rng.uniform(0.1, 1.0, size=batch + (num, dim))
  targets = rng.normal(size=batch + (dim,)) * spread
  return means, scales, targets


def random_log_weights(rng, shape):
  logits = rng.normal(size=shape)
  return logits - special.logsumexp(logits, axis=-1, keepdims=True)


def random_full_problem(rng, batch, num, dim, spread=1.0):
  """Means, Cholesky factors (some negative diagonals, junk above) and targets."""
  means = rng.normal(size=batch + (num, dim)) * spread
  factors = rng.normal(size=batch + (num, dim, dim)) * 0.4
  diagonal = rng.uniform(0.3, 1.0, size=batch + (num, dim)) * rng.choice(
      [-1.0, 1.0], size=batch + (num, dim))
  factors[..., np.arange(dim), np.arange(dim)] = diagonal
  # Only the lower triangle is read: the upper one holds junk.
  factors += np.triu(np.full((dim, dim), 100.0), k=1)
  targets = rng.normal(size=batch + (dim,)) * spread
  return means, factors, targets


def covariances_of(factors):
  """Σ = L Lᵀ from the lower triangle, float64 NumPy."""
  lower = np.tril(factors)
  return lower @ np.swapaxes(lower, -1, -2)


def gaussian_logpdf(x, mean, cov):
  """log N(x; mean, cov) from its definition, float64.

  Not scipy's multivariate_normal, which treats eigenvalues below 1e6 ε of
  the largest as zero and so calls covariances spanning 1e-6 to 1e6 singular.
  """
  diff = x - mean
  _, log_det = np.linalg.slogdet(2 * np.pi * cov)
  return -0.5 * (log_det + diff @ np.linalg.solve(cov, diff))


def ref_full_log_integral(am, ac, aw, bm, bc, bw):
  """log ∫ a b for mixtures ([I, n] means, [I, n, n] covariances, [I] weights)."""
  return special.logsumexp([
      np.log(aw[i]) + np.log(bw[j]) + gaussian_logpdf(am[i], bm[j], ac[i] + bc[j])
      for i in range(len(aw)) for j in range(len(bw))])


def ref_full_distance(pm, pc, pw, qm, qc, qw):
  """-log[2∫pq / ∫(p² + q²)] for Gaussian mixtures, float64."""
  p, q = (pm, pc, pw), (qm, qc, qw)
  return (np.logaddexp(ref_full_log_integral(*p, *p), ref_full_log_integral(*q, *q))
          - np.log(2) - ref_full_log_integral(*p, *q))


# The two kinds of covariance: scales [..., I, n] are standard deviations
# ('diagonal'), [..., I, n, n] lower-triangular Cholesky factors ('full'). A
# test parametrised over KINDS makes the same assertions about both.
KINDS = ('diagonal', 'full')


def random_kind_problem(kind, rng, batch, num, dim, spread=1.0):
  """`random_problem` or `random_full_problem`: means, scales of the kind, targets."""
  make = random_full_problem if kind == 'full' else random_problem
  return make(rng, batch, num, dim, spread)


def covariances(kind, scales):
  """Σ [..., I, n, n] of the components, float64 NumPy, from scales of either kind."""
  if kind == 'full':
    return covariances_of(scales)
  return np.square(scales)[..., None] * np.eye(scales.shape[-1])


def ref_kind_propel(kind, means, scales, target, target_scale, weights=None):
  """PROPEL for one example in log space: means [I, n], scales of the kind; float64."""
  num, dim = means.shape
  weights = np.full(num, 1 / num) if weights is None else weights
  gt_cov = np.diag(np.broadcast_to(target_scale, (dim,)) ** 2)
  return ref_full_distance(target[None], gt_cov[None], np.ones(1), means,
                           covariances(kind, scales), weights)


def ref_kind_loop(kind, means, scales, targets, target_scale, weights=None):
  """`ref_kind_propel` per example [B, ...], in float64; target_scale broadcast to [B, n]."""
  gt_scale = np.broadcast_to(target_scale, targets.shape)
  f64 = lambda a: np.asarray(a, np.float64)
  return [ref_kind_propel(kind, f64(means[b]), f64(scales[b]), f64(targets[b]),
                          f64(gt_scale[b]), None if weights is None else weights[b])
          for b in range(len(targets))]



# ----------------------------------------------------------------------------
# Values.


# n = 9 takes the looped factorisation of full covariances
# (`_linalg.MAX_UNROLLED_DIMS` = 8).
@pytest.mark.parametrize('num,dim', [(1, 1), (2, 1), (1, 3), (3, 2), (4, 5), (2, 9)])
@pytest.mark.parametrize('weighted', [False, True])
@pytest.mark.parametrize('kind', KINDS)
def test_propel_matches_float64_reference(kind, num, dim, weighted, enable_x64):
  rng = np.random.default_rng(num * 10 + dim)
  means, scales, targets = random_kind_problem(kind, rng, (4,), num, dim)
  target_scale = rng.uniform(0.1, 0.5, size=(1, dim))  # [n] is ambiguous for n = 4
  log_w = random_log_weights(rng, (4, num)) if weighted else None
  expected = ref_kind_loop(kind, means, scales, targets, target_scale,
                           None if log_w is None else np.exp(log_w))
  with enable_x64():
    got64 = losses.propel_loss(means, scales, targets, target_scale=target_scale,
                               log_weights=log_w)
    assert got64.dtype == jnp.float64
    np.testing.assert_allclose(got64, expected, rtol=1e-10, atol=1e-12)
  got32 = losses.propel_loss(*(a.astype(np.float32) for a in (means, scales, targets)),
                             target_scale=target_scale.astype(np.float32),
                             log_weights=None if log_w is None else log_w.astype(np.float32))
  assert got32.dtype == jnp.float32
  np.testing.assert_allclose(got32, expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize('kind', KINDS)
def test_scalar_and_per_dimension_target_scale_agree(kind):
  means, scales, targets = random_kind_problem(kind, np.random.default_rng(0), (4,), 3, 2)
  np.testing.assert_allclose(
      losses.propel_loss(means, scales, targets, target_scale=0.3),
      losses.propel_loss(means, scales, targets, target_scale=[0.3, 0.3]),
      rtol=1e-6)


@pytest.mark.parametrize('q_kind', KINDS)
@pytest.mark.parametrize('p_kind', KINDS)
def test_mixture_distance_matches_reference_for_two_mixtures(p_kind, q_kind, enable_x64):
  """Either side diagonal or full, independently."""
  rng = np.random.default_rng(1)
  pm, ps, _ = random_kind_problem(p_kind, rng, (3,), 2, 3)
  qm, qs, _ = random_kind_problem(q_kind, rng, (3,), 4, 3)
  pw, qw = random_log_weights(rng, (3, 2)), random_log_weights(rng, (3, 4))
  p_cov, q_cov = covariances(p_kind, ps), covariances(q_kind, qs)
  expected = [ref_full_distance(pm[b], p_cov[b], np.exp(pw[b]), qm[b], q_cov[b],
                                np.exp(qw[b])) for b in range(3)]
  with enable_x64():
    got = losses.mixture_distance(pm, ps, qm, qs, p_log_weights=pw, q_log_weights=qw)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    swapped = losses.mixture_distance(qm, qs, pm, ps, p_log_weights=qw, q_log_weights=pw)
    np.testing.assert_allclose(swapped, got, rtol=1e-12)
    # D(q, q) = 0.
    np.testing.assert_allclose(losses.mixture_distance(qm, qs, qm, qs), 0.0, atol=1e-12)


def test_ambiguous_label_as_mixture_target():
  """A label that is either +1 or -1: the best model puts a component on each."""
  target_means = np.array([[[1.0], [-1.0]]])
  target_scales = np.full((1, 2, 1), 0.1)
  both = losses.mixture_distance(target_means, target_scales,
                                 target_means, target_scales)
  one = losses.mixture_distance(target_means, target_scales,
                                np.array([[[1.0], [1.0]]]), target_scales)
  average = losses.mixture_distance(target_means, target_scales,
                                    np.zeros((1, 2, 1)), target_scales)
  np.testing.assert_allclose(both, 0.0, atol=1e-6)
  # Half the mass missing: -log[2 (H/2) / (H/2 + H)] = log 1.5.
  np.testing.assert_allclose(one, np.log(1.5), rtol=1e-5)
  assert average[0] > one[0]


def _propel_integrals_by_quadrature_1d(means, scales, target, target_scale):
  pdf = lambda x, m, s: np.exp(-0.5 * ((x - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))
  p_gt = lambda x: pdf(x, target, target_scale)
  p_m = lambda x: np.mean(pdf(x, means, scales))
  lo = min(target - 12 * target_scale, np.min(means - 12 * scales))
  hi = max(target + 12 * target_scale, np.max(means + 12 * scales))
  points = list(means) + [target]
  quad = lambda f: integrate.quad(f, lo, hi, points=points, limit=200,
                                  epsabs=0, epsrel=1e-12)[0]
  cross = quad(lambda x: p_gt(x) * p_m(x))
  squares = quad(lambda x: p_gt(x) ** 2 + p_m(x) ** 2)
  return -np.log(2 * cross / squares)


def test_matches_quadrature_n1(enable_x64):
  rng = np.random.default_rng(2)
  for num in (1, 2, 5):
    means = rng.normal(size=num)
    scales = rng.uniform(0.2, 1.0, size=num)
    target = rng.normal()
    expected = _propel_integrals_by_quadrature_1d(means, scales, target, 0.3)
    with enable_x64():
      got = losses.propel_loss(means[:, None], scales[:, None], np.array([target]),
                               target_scale=0.3)
    np.testing.assert_allclose(got, expected, rtol=1e-8)


@pytest.mark.parametrize('kind', KINDS)
def test_matches_grid_integration_n2(kind, enable_x64):
  """The three integrals of the definition on a grid, densities from SciPy.

  The trapezoidal rule on a fine grid is spectrally accurate for Gaussians.
  Diagonal scales with equal weights, or Cholesky factors with weights.
  """
  if kind == 'full':
    rng = np.random.default_rng(101)
    means, scales, target = random_full_problem(rng, (), 3, 2)
    covariances = covariances_of(scales)
    weights = np.array([0.2, 0.3, 0.5])
    target_scale = np.array([0.3, 0.5])
    log_weights = np.log(weights)
  else:
    rng = np.random.default_rng(3)
    means = rng.normal(size=(3, 2))
    scales = rng.uniform(0.3, 0.8, size=(3, 2))
    target = rng.normal(size=2)
    covariances = [np.diag(s ** 2) for s in scales]
    weights = np.full(3, 1 / 3)
    target_scale = np.array([0.2, 0.4])
    log_weights = None
  axis = np.linspace(-9, 9, 1201)
  grid = np.stack(np.meshgrid(axis, axis, indexing='ij'), -1)
  p_gt = stats.multivariate_normal.pdf(grid, target, np.diag(target_scale ** 2))
  p_m = sum(w * stats.multivariate_normal.pdf(grid, m, c)
            for w, m, c in zip(weights, means, covariances))
  integral = lambda f: integrate.trapezoid(integrate.trapezoid(f, axis, axis=1), axis)
  assert abs(integral(p_m) - 1) < 1e-9  # the grid holds the whole density
  expected = -np.log(2 * integral(p_gt * p_m) / integral(p_gt ** 2 + p_m ** 2))
  with enable_x64():
    got = losses.propel_loss(means, scales, target, target_scale=target_scale,
                             log_weights=log_weights)
  np.testing.assert_allclose(got, expected, rtol=1e-7)


def as_factors(scales, rng):
  """Standard deviations [..., n] as Cholesky factors [..., n, n] of the same Σ.

  Some columns' signs flipped and junk above the diagonal: neither is read.
  """
  dim = scales.shape[-1]
  signs = rng.choice([-1.0, 1.0], size=scales.shape)
  return scales[..., None] * np.eye(dim) * signs[..., None, :] + np.triu(
      np.full((dim, dim), 100.0), k=1)


@pytest.mark.parametrize('num,dim', [(1, 1), (1, 3), (4, 3), (2, 6)])
@pytest.mark.parametrize('kind', KINDS)
def test_zero_at_perfect_prediction(kind, num, dim):
  rng = np.random.default_rng(4)
  targets = rng.normal(size=(5, dim)).astype(np.float32)
  target_scale = rng.uniform(0.1, 1.0, size=dim).astype(np.float32)
  means = np.repeat(targets[:, None], num, axis=1)
  scales = np.broadcast_to(target_scale, means.shape)
  if kind == 'full':
    scales = as_factors(scales, rng).astype(np.float32)
  loss = losses.propel_loss(means, scales, targets, target_scale=target_scale)
  np.testing.assert_allclose(loss, 0.0, atol=2e-6)
  # Also for general mixtures: D(p, p) = 0 whatever the weights.
  pm, ps, _ = random_kind_problem(kind, rng, (5,), num, dim)
  pw = random_log_weights(rng, (5, num))
  np.testing.assert_allclose(
      losses.mixture_distance(pm, ps, pm, ps, p_log_weights=pw, q_log_weights=pw),
      0.0, atol=1e-5)


@pytest.mark.parametrize('kind', KINDS)
def test_nonnegative_and_positive_away_from_the_target(kind):
  rng = np.random.default_rng(5)
  means, scales, targets = random_kind_problem(kind, rng, (2000,), 3, 2, spread=2.0)
  # Widths over orders of magnitude: each dimension's (each row of L's) scaled.
  stretch = np.exp(rng.normal(size=means.shape))
  scales = stretch[..., None] * scales if kind == 'full' else stretch * scales
  loss = losses.propel_loss(means, scales, targets, target_scale=0.2)
  # Float32 rounding can give -1e-7 at a perfect fit; none is that close here.
  assert np.all(np.asarray(loss) > 0), float(np.min(loss))


@pytest.mark.parametrize('kind', KINDS)
def test_translation_invariance(kind, enable_x64):
  rng = np.random.default_rng(6)
  means, scales, targets = random_kind_problem(kind, rng, (8,), 3, 4)
  shift = rng.normal(size=4) * 5
  with enable_x64():
    base = losses.propel_loss(means, scales, targets, target_scale=0.3)
    moved = losses.propel_loss(means + shift, scales, targets + shift,
                               target_scale=0.3)
  np.testing.assert_allclose(moved, base, rtol=1e-10)


# ----------------------------------------------------------------------------
# Gradients.


@pytest.mark.parametrize('kind', KINDS)
def test_check_grads_all_float_arguments(kind, enable_x64):
  """Finite differences, first order both modes, second order (custom JVP)."""
  rng = np.random.default_rng(7)
  means, scales, targets = random_kind_problem(kind, rng, (2,), 3, 2)
  log_w = random_log_weights(rng, (2, 3))
  # [1, n]: per dimension; [n] would be ambiguous with B = n = 2.
  target_scale = np.array([[0.3, 0.5]])
  with enable_x64():
    loss = jax.jit(lambda m, s, y, ts, lw: losses.propel_loss(
        m, s, y, target_scale=ts, log_weights=lw).sum())
    args = (means, scales, targets, target_scale, log_w)
    check_grads(loss, args, order=1, modes=('fwd', 'rev'), eps=1e-5)
    check_grads(loss, args, order=2, modes=('rev',), eps=1e-5)
    qm, qs, _ = random_kind_problem(kind, rng, (2,), 2, 2)
    check_grads(jax.jit(lambda pm, ps, qm, qs: losses.mixture_distance(pm, ps, qm, qs)),
                (means, scales, qm, qs), order=1, modes=('rev',), eps=1e-5)


@pytest.mark.parametrize('kind', KINDS)
def test_gradients_match_central_differences_of_the_reference(kind, enable_x64):
  """∂L/∂μ and ∂L/∂scales entry by entry against the float64 reference."""
  rng = np.random.default_rng(105)
  means, scales, target = random_kind_problem(kind, rng, (), 3, 3)
  with enable_x64():
    grads = jax.grad(lambda m, s: losses.propel_loss(m, s, target, target_scale=0.4),
                     argnums=(0, 1))(means, scales)
  ref = lambda m, s: ref_kind_propel(kind, m, s, target, 0.4)
  # Scales entries: [i, d] for standard deviations, [i, r, c] for factors.
  cases = [(0, (0, 1)), (0, (2, 2))] + [
      (1, index[:scales.ndim]) for index in [(0, 0, 0), (1, 2, 1), (2, 1, 0), (2, 2, 2)]]
  for arg, index in cases:
    args = [means, scales]
    step = np.zeros_like(args[arg])
    step[index] = 1e-6
    plus, minus = list(args), list(args)
    plus[arg], minus[arg] = args[arg] + step, args[arg] - step
    expected = (ref(*plus) - ref(*minus)) / 2e-6
    np.testing.assert_allclose(grads[arg][index], expected, rtol=1e-5, atol=1e-8,
                               err_msg=f'argument {arg}, entry {index}')


def test_gradient_of_each_argument_alone_matches_all_at_once():
  """Symbolic zeros skip the gradients of arguments that are not differentiated.

  Each argument's gradient taken alone (the others then have symbolic-zero
  tangents) must equal its part of the gradient with respect to all of them,
  for PROPEL and for a mixture against a mixture, diagonal and full.
  """
  rng = np.random.default_rng(11)
  means, scales, targets = random_problem(rng, (4,), 3, 2)
  log_w = random_log_weights(rng, (4, 3))

  def propel(m, s, y, ts, lw):
    return losses.propel_loss(m, s, y, target_scale=ts, log_weights=lw).sum()

  qm, qs, _ = random_problem(rng, (4,), 2, 2)
  q_log_w = random_log_weights(rng, (4, 2))

  def distance(pm, ps, plw, qm, qs, qlw):
    return losses.mixture_distance(pm, ps, qm, qs, p_log_weights=plw,
                                   q_log_weights=qlw).sum()

  # Full covariance: Cholesky factors with the same diagonal, correlated.
  factors = np.tril(rng.normal(size=(4, 3, 2, 2)) * 0.2, -1) + scales[..., None] * np.eye(2)
  for fn, args in ((propel, (means, scales, targets, np.array([[0.3, 0.5]]), log_w)),
                   (propel, (means, factors, targets, np.array([[0.3, 0.5]]), log_w)),
                   (distance, (means, scales, log_w, qm, qs, q_log_w)),
                   (distance, (means, factors, log_w, qm, qs, q_log_w))):
    args = tuple(np.asarray(a, np.float32) for a in args)
    together = jax.grad(fn, argnums=tuple(range(len(args))))(*args)
    for i, expected in enumerate(together):
      alone = jax.jit(jax.grad(fn, argnums=i))(*args)
      np.testing.assert_allclose(alone, expected, rtol=1e-5, atol=1e-6,
                                 err_msg=f'{fn.__name__}, scales {args[1].shape}, argument {i}')
      assert np.abs(expected).max() > 1e-3  # every argument matters here


def test_contiguous_copy_is_exact_and_its_derivative_the_identity():
  """The CPU layout copy changes no value, tiny or huge (a -0 comes back +0)."""
  rng = np.random.default_rng(12)
  x = (rng.normal(size=(5, 3, 4)) * 10.0 ** rng.integers(-30, 30, size=(5, 3, 4)))
  x = x.astype(np.float32)
  copied = jax.jit(_diagonal.contiguous_on_cpu)(x)
  np.testing.assert_array_equal(np.asarray(copied), x)
  tangent = rng.normal(size=x.shape).astype(np.float32)
  _, tangent_out = jax.jvp(_diagonal.contiguous, (x,), (tangent,))
  np.testing.assert_array_equal(np.asarray(tangent_out), tangent)
  cotangent = jax.grad(lambda a: jnp.sum(_diagonal.contiguous(a) * tangent))(x)
  np.testing.assert_array_equal(np.asarray(cotangent), tangent)


def poster_partials(means, scales, target, target_scale):
  """The poster's closed-form ∂L/∂μ and ∂L/∂σ (σ the std), equal weights.

  L = -log T1 + log T2, T1 = (2/I) Σ_i G(gt, i),
  T2 = H(gt) + (1/I²) Σ_i H(i) + (2/I²) Σ_{i<j} G(i, j); the poster's
  ∂L/∂θ_i = -(1/T1) ∂T1/∂θ_i + (1/T2) ∂T2/∂θ_i, with the pair sum over i < j
  and ∂G/∂μ, ∂G/∂σ, ∂H/∂σ of the Gaussian closed forms.
  """
  num, dim = means.shape
  var = scales ** 2
  gt_var = np.broadcast_to(target_scale ** 2, (dim,))

  def overlap_and_partials(ma, va, sa, mb, vb):
    """G(a, b) and ∂G/∂μ_a, ∂G/∂σ_a ([n] each)."""
    g = ref_overlap(ma, va, mb, vb)
    s = va + vb
    return g, g * -(ma - mb) / s, g * 2 * sa * 0.5 * ((ma - mb) ** 2 / s ** 2 - 1 / s)

  t1 = 0.0
  d_t1 = np.zeros((2, num, dim))
  for i in range(num):
    g, dg_mu, dg_sigma = overlap_and_partials(means[i], var[i], scales[i],
                                              target, gt_var)
    t1 += 2 / num * g
    d_t1[:, i] = 2 / num * np.stack([dg_mu, dg_sigma])
  h = lambda v: (4 * np.pi) ** (-dim / 2) * np.prod(v) ** -0.5
  t2 = h(gt_var)
  d_t2 = np.zeros((2, num, dim))
  for i in range(num):
    t2 += h(var[i]) / num ** 2
    d_t2[1, i] += -h(var[i]) / scales[i] / num ** 2  # ∂H/∂σ = -H/σ
  for i, j in itertools.combinations(range(num), 2):
    g, dg_mu_i, dg_sigma_i = overlap_and_partials(means[i], var[i], scales[i],
                                                  means[j], var[j])
    _, dg_mu_j, dg_sigma_j = overlap_and_partials(means[j], var[j], scales[j],
                                                  means[i], var[i])
    t2 += 2 / num ** 2 * g
    d_t2[:, i] += 2 / num ** 2 * np.stack([dg_mu_i, dg_sigma_i])
    d_t2[:, j] += 2 / num ** 2 * np.stack([dg_mu_j, dg_sigma_j])
  return -d_t1 / t1 + d_t2 / t2


@pytest.mark.parametrize('num,dim', [(1, 1), (2, 1), (3, 3), (5, 2)])
def test_gradients_match_poster_closed_form(num, dim, enable_x64):
  rng = np.random.default_rng(8)
  means, scales, target = random_problem(rng, (), num, dim)
  expected = poster_partials(means, scales, target, 0.25)
  with enable_x64():
    grads = jax.grad(lambda m, s: losses.propel_loss(m, s, target, target_scale=0.25),
                     argnums=(0, 1))(means, scales)
  np.testing.assert_allclose(np.stack(grads), expected, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------
# Transformations.


def ref_gradients(kind, means, scales, target, target_scale):
  """(∂L/∂μ, ∂L/∂scales) of one example, equal weights, float64.

  The poster's closed form for standard deviations; central differences of
  the reference for Cholesky factors, entry by entry.
  """
  if kind == 'diagonal':
    return poster_partials(means, scales, target, target_scale)
  ref = lambda m, s: ref_kind_propel(kind, m, s, target, target_scale)
  grads = [np.zeros_like(means), np.zeros_like(scales)]
  for arg, grad in enumerate(grads):
    for index in np.ndindex(grad.shape):
      plus, minus = [means, scales], [means, scales]
      step = np.zeros_like(grad)
      step[index] = 1e-6
      plus[arg], minus[arg] = plus[arg] + step, minus[arg] - step
      grad[index] = (ref(*plus) - ref(*minus)) / 2e-6
  return grads


@pytest.mark.parametrize('jit', [False, True])
@pytest.mark.parametrize('kind', KINDS)
def test_jit_equals_eager(kind, jit):
  means, scales, targets = random_kind_problem(kind, np.random.default_rng(9), (4, 2), 3, 2)
  fn = lambda m, s, y: losses.propel_loss(m, s, y, target_scale=0.2)
  expected = ref_kind_loop(kind, *(a.reshape((8,) + a.shape[2:])
                                   for a in (means, scales, targets)), 0.2)
  got = (jax.jit(fn) if jit else fn)(means, scales, targets)
  chex.assert_shape(got, (4, 2))
  np.testing.assert_allclose(np.ravel(got), expected, rtol=2e-5)


@pytest.mark.parametrize('jit', [False, True])
@pytest.mark.parametrize('kind', KINDS)
def test_value_and_grad(kind, jit):
  means, scales, targets = random_kind_problem(kind, np.random.default_rng(9), (4,), 3, 2)
  fn = lambda m, s: losses.propel_loss(m, s, targets, target_scale=0.2).mean()
  value_and_grad = jax.value_and_grad(fn, argnums=(0, 1))
  value, grads = (jax.jit(value_and_grad) if jit else value_and_grad)(means, scales)
  np.testing.assert_allclose(value, np.mean(ref_kind_loop(kind, means, scales, targets, 0.2)),
                             rtol=2e-5)
  expected = [ref_gradients(kind, means[b], scales[b], targets[b], 0.2) for b in range(4)]
  for arg in range(2):
    np.testing.assert_allclose(grads[arg], np.stack([e[arg] for e in expected]) / 4,
                               rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize('kind', KINDS)
def test_vmap_equals_batched(kind):
  means, scales, targets = random_kind_problem(kind, np.random.default_rng(10), (5, 3), 4, 2)
  log_w = random_log_weights(np.random.default_rng(11), (5, 3, 4))
  fn = lambda m, s, y, lw: losses.propel_loss(m, s, y, target_scale=0.3,
                                              log_weights=lw)
  batched = fn(means, scales, targets, log_w)
  mapped = jax.vmap(jax.vmap(fn))(means, scales, targets, log_w)
  np.testing.assert_allclose(mapped, batched, rtol=1e-6)
  one_by_one = [fn(means[a, b], scales[a, b], targets[a, b], log_w[a, b])
                for a in range(5) for b in range(3)]
  chex.assert_shape(one_by_one[0], ())
  np.testing.assert_allclose(np.ravel(batched), one_by_one, rtol=1e-6)


@pytest.mark.parametrize('kind', KINDS)
def test_batch_shapes_broadcast(kind):
  """One mixture against several targets: size-1 leading axes broadcast."""
  means, scales, targets = random_kind_problem(kind, np.random.default_rng(12), (), 3, 2)
  many = np.random.default_rng(13).normal(size=(7, 2))
  got = losses.propel_loss(means[None], scales[None], many, target_scale=0.2)
  chex.assert_shape(got, (7,))
  np.testing.assert_allclose(
      got, [losses.propel_loss(means, scales, t, target_scale=0.2) for t in many],
      rtol=1e-6)


# ----------------------------------------------------------------------------
# Extreme inputs.


def _value_and_grads(means, scales, targets, target_scale, log_weights=None):
  fn = lambda m, s, y: losses.propel_loss(m, s, y, target_scale=target_scale,
                                          log_weights=log_weights).sum()
  return jax.jit(jax.value_and_grad(fn, argnums=(0, 1, 2)))(means, scales, targets)


def _assert_finite(*trees):
  for leaf in jax.tree.leaves(trees):
    assert np.all(np.isfinite(leaf)), leaf


@pytest.mark.parametrize('kind', KINDS)
def test_far_targets_finite_and_accurate(kind):
  """1000 standard deviations away, in float32: the loss grows like a squared error."""
  rng = np.random.default_rng(14)
  means, scales, _ = random_kind_problem(kind, rng, (4,), 3, 3)
  scales = scales * 0.1 if kind == 'full' else np.full_like(scales, 0.1)
  targets = means[:, 0] + 1000 * 0.1 * rng.choice([-1.0, 1.0], size=(4, 3))
  args = [a.astype(np.float32) for a in (means, scales, targets)]
  value, grads = _value_and_grads(*args, 0.1)
  _assert_finite(value, grads)
  loss = losses.propel_loss(*args, target_scale=0.1)
  expected = ref_kind_loop(kind, *args, 0.1)
  assert min(expected) > 1e4
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  # The gradient pulls the nearest component towards the target.
  assert np.all(np.sign(grads[2]) != 0)


@pytest.mark.parametrize('scale', [1e-4, 1e-2, 1e2, 1e4])
@pytest.mark.parametrize('kind', KINDS)
def test_tiny_and_huge_scales_finite_and_accurate(kind, scale):
  rng = np.random.default_rng(15)
  means, scales, targets = random_kind_problem(kind, rng, (4,), 3, 2)
  means, scales, targets = means * scale, scales * scale, targets * scale
  args = [a.astype(np.float32) for a in (means, scales, targets)]
  value, grads = _value_and_grads(*args, np.float32(0.3 * scale))
  _assert_finite(value, grads)
  np.testing.assert_allclose(losses.propel_loss(*args, target_scale=0.3 * scale),
                             ref_kind_loop(kind, means, scales, targets, 0.3 * scale),
                             rtol=1e-4)


@pytest.mark.parametrize('kind', KINDS)
def test_mixed_scales_within_one_mixture(kind):
  """Components from 1e-4 to 1e4 in one mixture, across dimensions and within a factor."""
  rng = np.random.default_rng(16)
  scales = magnitudes = 10.0 ** rng.uniform(-4, 4, size=(8, 6, 4))
  if kind == 'full':
    correlated = np.tril(rng.normal(size=(8, 6, 4, 4)) * 0.3, k=-1) + np.eye(4)
    scales = magnitudes[..., None] * correlated  # D C: Σ = D C Cᵀ D
  means = rng.normal(size=(8, 6, 4)) * magnitudes
  targets = rng.normal(size=(8, 4))
  args = [a.astype(np.float32) for a in (means, scales, targets)]
  value, grads = _value_and_grads(*args, 0.5)
  _assert_finite(value, grads)
  np.testing.assert_allclose(losses.propel_loss(*args, target_scale=0.5),
                             ref_kind_loop(kind, *args, 0.5), rtol=1e-4)


def test_many_components_and_dimensions_finite(enable_x64):
  """I = 256 components, n = 64 dimensions, in float32."""
  rng = np.random.default_rng(17)
  means, scales, targets = random_problem(rng, (1,), 256, 64)
  args = [a.astype(np.float32) for a in (means, scales, targets)]
  value, grads = _value_and_grads(*args, 0.2)
  _assert_finite(value, grads)
  with enable_x64():
    loss64 = losses.propel_loss(means, scales, targets, target_scale=0.2)
  np.testing.assert_allclose(losses.propel_loss(*args, target_scale=0.2), loss64,
                             rtol=1e-5)


@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize('kind', KINDS)
def test_low_precision_inputs(kind, dtype):
  means, scales, targets = random_kind_problem(kind, np.random.default_rng(18), (6,), 4, 3)
  low = [jnp.asarray(a, dtype) for a in (means, scales, targets)]
  loss = losses.propel_loss(*low, target_scale=0.3)
  assert loss.dtype == jnp.float32
  # Computed in float32 from the rounded inputs.
  expected = losses.propel_loss(*(a.astype(jnp.float32) for a in low),
                                target_scale=0.3)
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  value, grads = _value_and_grads(*low, 0.3)
  _assert_finite(value, grads)
  assert [g.dtype for g in grads] == [dtype] * 3


# ----------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize('means_shape,scales_shape,targets_shape,log_w_shape,match', [
    ((3,), (3,), (4, 3), None, r'targets \(4, 3\) and means \(3,\)'),
    ((4, 2, 3), (4, 2, 2), (4, 3), None, r'scales shape \(4, 2, 2\).*\(4, 2, 3\)'),
    ((4, 2, 3), (4, 2, 3), (4, 2), None, r'targets shape \(4, 2\).*\(4, 2, 3\)'),
    ((4, 2, 3), (4, 2, 3), (5, 3), None,
     r'targets \(5, 3\) and means \(4, 2, 3\) do not broadcast'),
    ((4, 2, 3), (4, 2, 3), (4, 3), (4, 3), r'log_weights shape \(4, 3\) must be \(4, 2\)'),
])
def test_shape_errors_name_the_shapes(means_shape, scales_shape, targets_shape,
                                      log_w_shape, match):
  zeros = np.zeros
  with pytest.raises(ValueError, match=match):
    losses.propel_loss(zeros(means_shape), np.ones(scales_shape), zeros(targets_shape),
                       target_scale=0.1,
                       log_weights=None if log_w_shape is None else zeros(log_w_shape))


def test_shape_errors_at_trace_time_and_for_target_scale():
  means, scales = np.zeros((4, 2, 3)), np.ones((4, 2, 3))
  with pytest.raises(ValueError, match=r'target_scale shape \(2,\).*targets shape \(4, 3\)'):
    jax.jit(lambda m, s, y: losses.propel_loss(m, s, y, target_scale=np.ones(2)))(
        means, scales, np.zeros((4, 3)))
  with pytest.raises(ValueError, match=r'same target dimension n'):
    losses.mixture_distance(means, scales, np.zeros((4, 2, 2)), np.ones((4, 2, 2)))
  with pytest.raises(ValueError, match=r'predictions shape \(4, 3\).*targets shape \(4, 2\)'):
    losses.mse_loss(np.zeros((4, 3)), np.zeros((4, 2)))


def _checked_loss(means, scales, targets, log_weights=None):
  losses.check_inputs(means, scales, targets, target_scale=0.1,
                      log_weights=log_weights)
  return losses.propel_loss(means, scales, targets, target_scale=0.1,
                            log_weights=log_weights)


@pytest.mark.parametrize('corrupt,message', [
    (lambda m, s, y: (m, s.at[0, 0, 0].set(0.0), y), 'scales must be finite and > 0'),
    (lambda m, s, y: (m, s.at[1, 1, 1].set(-1.0), y), 'scales must be finite and > 0'),
    (lambda m, s, y: (m.at[0, 0, 0].set(jnp.nan), s, y), 'means contain NaN'),
    (lambda m, s, y: (m, s, y.at[2, 0].set(jnp.nan)), 'targets contain NaN'),
])
def test_check_inputs_under_checkify(corrupt, message):
  means, scales, targets = map(jnp.asarray, random_problem(
      np.random.default_rng(19), (3,), 2, 2))
  checked = jax.jit(checkify.checkify(_checked_loss))
  err, loss = checked(means, scales, targets)
  err.throw()  # clean inputs pass
  _assert_finite(loss)
  err, _ = checked(*corrupt(means, scales, targets))
  with pytest.raises(checkify.JaxRuntimeError, match=message):
    err.throw()


def test_check_inputs_log_weights_and_eager():
  """Logits need not be normalised; NaN, +inf or an all -inf row are caught."""
  means, scales, targets = map(jnp.asarray, random_problem(
      np.random.default_rng(20), (3,), 2, 2))
  checked = jax.jit(checkify.checkify(_checked_loss))
  err, _ = checked(means, scales, targets, jnp.full((3, 2), 5.0))
  err.throw()
  for bad, message in [(jnp.nan, r'NaN or \+inf'), (jnp.inf, r'NaN or \+inf'),
                       (-jnp.inf, 'a finite entry')]:
    log_w = jnp.zeros((3, 2)).at[1].set(bad)
    err, _ = checked(means, scales, targets, log_w)
    with pytest.raises(checkify.JaxRuntimeError, match=message):
      err.throw()
  err, _ = checked(means, scales, targets, jnp.zeros((3, 2)).at[1, 0].set(-jnp.inf))
  err.throw()  # one component switched off is fine
  with pytest.raises(checkify.JaxRuntimeError, match='scales must be finite'):
    losses.check_inputs(means, -scales)
  with pytest.raises(ValueError, match=r'means must have exactly one more axis'):
    losses.check_inputs(means[:, 0], scales[:, 0], targets)


@pytest.mark.parametrize('kind', KINDS)
def test_nan_and_zero_scale_behaviour_is_as_documented(kind):
  means, scales, targets = random_kind_problem(kind, np.random.default_rng(21), (2,), 2, 2)
  targets[0, 0] = np.nan
  loss = losses.propel_loss(means, scales, targets, target_scale=0.1)
  assert np.isnan(loss[0]) and np.isfinite(loss[1])
  scales[1, 0, 0] = 0.0  # for factors, a zero on the diagonal: Σ singular
  assert not np.isfinite(losses.propel_loss(means, scales, targets, target_scale=0.1)[1])


# ----------------------------------------------------------------------------
# Argument rules: the component axis, logits, target_scale, public names.


def ref_propel_loop(means, scales, targets, target_scale, weights=None):
  """ref_propel per example; target_scale broadcast to targets [B, n] first."""
  gt_scale = np.broadcast_to(target_scale, targets.shape)
  return [ref_propel(means[b], scales[b], targets[b], gt_scale[b],
                     None if weights is None else weights[b])
          for b in range(len(targets))]


def ref_propel_direct(means, scales, target, target_scale, weights):
  """PROPEL for one example straight from the definition, float64.

  The three integrals as double sums of ∫N_a N_b = Π_d N(μ_ad; μ_bd, v_ad + v_bd),
  independent of the helpers above: means, scales [I, n]; target,
  target_scale [n]; weights [I] summing to 1.
  """
  def overlap(ma, va, mb, vb):
    v = va + vb
    return np.prod(np.exp(-(ma - mb) ** 2 / (2 * v)) / np.sqrt(2 * np.pi * v))

  var, gt_var = scales ** 2, target_scale ** 2
  num = len(weights)
  cross = sum(weights[i] * overlap(means[i], var[i], target, gt_var)
              for i in range(num))
  model = sum(weights[i] * weights[j] * overlap(means[i], var[i], means[j], var[j])
              for i in range(num) for j in range(num))
  truth = overlap(target, gt_var, target, gt_var)
  return -np.log(2 * cross / (truth + model))


@pytest.mark.parametrize('fn', ['propel_loss', 'mixture_nll'])
def test_forgotten_component_axis_raises(fn):
  """means [B, n] with targets [B, n] is refused, not read as one B-component mixture."""
  rng = np.random.default_rng(30)
  means, scales, targets = random_problem(rng, (4,), 1, 3)
  kwargs = {'target_scale': 0.2} if fn == 'propel_loss' else {}
  call = lambda m, s, y: getattr(losses, fn)(m, s, y, **kwargs)
  with pytest.raises(ValueError, match=(
      r'means must have exactly one more axis than targets.*'
      r'targets \(4, 3\) and means \(4, 3\).*means\[\.\.\., None, :\].*'
      r'one Gaussian per example.*means\[None\]')):
    call(means[:, 0], scales[:, 0], targets)
  with pytest.raises(ValueError, match='one more axis'):
    jax.jit(call)(means[:, 0], scales[:, 0], targets)
  # Both suggested fixes run and mean what they say.
  np.testing.assert_allclose(call(means[:, 0][..., None, :], scales[:, 0][..., None, :],
                                  targets), call(means, scales, targets), rtol=1e-6)
  shared = call(means[:, 0][None], scales[:, 0][None], targets)
  np.testing.assert_allclose(
      shared, [call(means[:, 0], scales[:, 0], t) for t in targets], rtol=1e-6)


@pytest.mark.parametrize('means_shape,targets_shape,match', [
    ((2, 3), (), r'targets must be \[\.\.\., n\].*got a scalar.*targets\[\.\.\., None\]'),
    ((3,), (), r'targets must be \[\.\.\., n\].*got a scalar'),
    ((4, 2, 3), (3,), r'got targets \(3,\) and means \(4, 2, 3\).*targets\[None\]'),
    ((2, 3), (5, 4, 3), r'got targets \(5, 4, 3\) and means \(2, 3\).*means\[None\]'),
    ((3,), (3,), r'means\[\.\.\., None, :\]'),
    ((), (3,), r'targets \(3,\) and means \(\)'),
])
def test_axis_count_errors(means_shape, targets_shape, match):
  with pytest.raises(ValueError, match=match):
    losses.propel_loss(np.zeros(means_shape), np.ones(means_shape),
                       np.zeros(targets_shape), target_scale=0.1)


def _logit_shifts(rng, log_w):
  """Normalised log weights, +5, and + a per-example constant."""
  per_example = rng.normal(size=log_w.shape[:-1] + (1,)) * 10
  return [log_w, log_w + 5.0, log_w + per_example]


@pytest.mark.parametrize('kind', KINDS)
def test_propel_logits_shift_invariant_values_and_gradients(kind, enable_x64):
  rng = np.random.default_rng(31)
  means, scales, targets = random_kind_problem(kind, rng, (5,), 3, 2)
  log_w = random_log_weights(rng, (5, 3))
  fn = jax.jit(jax.value_and_grad(
      lambda m, s, lw: losses.propel_loss(m, s, targets, target_scale=0.3,
                                          log_weights=lw).sum(), argnums=(0, 1, 2)))
  with enable_x64():
    results = [fn(means, scales, lw) for lw in _logit_shifts(rng, log_w)]
    expected = ref_kind_loop(kind, means, scales, targets, 0.3, np.exp(log_w))
    np.testing.assert_allclose(results[0][0], np.sum(expected), rtol=1e-10)
    for value, grads in results[1:]:
      np.testing.assert_allclose(value, results[0][0], rtol=1e-10)
      for got, want in zip(grads, results[0][1]):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12)
  # In float32 too, where the shift is not absorbed by chance.
  value32 = losses.propel_loss(*(a.astype(np.float32) for a in (means, scales, targets)),
                               target_scale=0.3,
                               log_weights=(log_w + 5.0).astype(np.float32))
  np.testing.assert_allclose(value32, expected, rtol=2e-5)


@pytest.mark.parametrize('kind', KINDS)
def test_mixture_distance_and_nll_logits_shift_invariant(kind, enable_x64):
  rng = np.random.default_rng(32)
  pm, ps, targets = random_kind_problem(kind, rng, (4,), 2, 3)
  qm, qs, _ = random_kind_problem(kind, rng, (4,), 3, 3)
  pw, qw = random_log_weights(rng, (4, 2)), random_log_weights(rng, (4, 3))
  distance = jax.value_and_grad(
      lambda pw, qw: losses.mixture_distance(pm, ps, qm, qs, p_log_weights=pw,
                                             q_log_weights=qw).sum(), argnums=(0, 1))
  nll = jax.value_and_grad(
      lambda qw: losses.mixture_nll(qm, qs, targets, log_weights=qw).sum())
  with enable_x64():
    base_d, base_nll = distance(pw, qw), nll(qw)
    p_cov, q_cov = covariances(kind, ps), covariances(kind, qs)
    expected = [ref_full_distance(pm[b], p_cov[b], np.exp(pw[b]), qm[b], q_cov[b],
                                  np.exp(qw[b])) for b in range(4)]
    np.testing.assert_allclose(base_d[0], np.sum(expected), rtol=1e-10)
    for p_shift, q_shift in zip(_logit_shifts(rng, pw)[1:], _logit_shifts(rng, qw)[1:]):
      value, grads = distance(p_shift, q_shift)
      np.testing.assert_allclose(value, base_d[0], rtol=1e-10)
      np.testing.assert_allclose(grads[0], base_d[1][0], atol=1e-10)
      np.testing.assert_allclose(grads[1], base_d[1][1], atol=1e-10)
      value, grad = nll(q_shift)
      np.testing.assert_allclose(value, base_nll[0], rtol=1e-10)
      np.testing.assert_allclose(grad, base_nll[1], atol=1e-10)


@pytest.mark.parametrize('kind', ['scalar', '[n]', '[1, n]', '[B]', '[B, 1]', '[B, n]'])
def test_target_scale_shapes_match_float64_reference(kind, enable_x64):
  batch, num, dim = 5, 3, 2
  rng = np.random.default_rng(33)
  means, scales, targets = random_problem(rng, (batch,), num, dim)
  log_w = rng.normal(size=(batch, num)) * 2  # logits, not normalised
  weights = special.softmax(log_w, axis=-1)
  per = {'scalar': (), '[n]': (dim,), '[1, n]': (1, dim), '[B]': (batch,),
         '[B, 1]': (batch, 1), '[B, n]': (batch, dim)}[kind]
  target_scale = rng.uniform(0.1, 0.6, size=per)
  # The per-example, per-dimension scale each form stands for.
  full = (target_scale[:, None] if kind == '[B]' else target_scale) * np.ones((batch, dim))
  expected = [ref_propel_direct(means[b], scales[b], targets[b], full[b], weights[b])
              for b in range(batch)]
  with enable_x64():
    got = losses.propel_loss(means, scales, targets, target_scale=target_scale,
                             log_weights=log_w)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
  got32 = jax.jit(lambda ts: losses.propel_loss(
      means.astype(np.float32), scales.astype(np.float32), targets.astype(np.float32),
      target_scale=ts, log_weights=log_w.astype(np.float32)))(target_scale.astype(np.float32))
  np.testing.assert_allclose(got32, expected, rtol=2e-5)


def test_target_scale_with_leading_batch_axes(enable_x64):
  """[A, B] examples: target_scale [A, B] (per example), [A, B, n] and [A, 1, 1]."""
  rng = np.random.default_rng(34)
  means, scales, targets = random_problem(rng, (3, 4), 2, 2)
  flat = lambda a: a.reshape((12,) + a.shape[2:])
  for target_scale, full in [
      (ts := rng.uniform(0.1, 0.5, size=(3, 4)), ts[..., None] * np.ones(2)),
      (ts := rng.uniform(0.1, 0.5, size=(3, 4, 2)), ts),
      (ts := rng.uniform(0.1, 0.5, size=(3, 1, 1)), ts * np.ones((3, 4, 2)))]:
    expected = ref_propel_loop(flat(means), flat(scales), flat(targets), flat(full))
    with enable_x64():
      got = losses.propel_loss(means, scales, targets, target_scale=target_scale)
    chex.assert_shape(got, (3, 4))
    np.testing.assert_allclose(np.ravel(got), expected, rtol=1e-10)


def test_target_scale_ambiguous_when_batch_equals_n(enable_x64):
  rng = np.random.default_rng(35)
  means, scales, targets = random_problem(rng, (3,), 2, 3)
  target_scale = np.array([0.1, 0.2, 0.4])
  with pytest.raises(ValueError, match=(r'target_scale shape \(3,\) is ambiguous for '
                                        r'targets shape \(3, 3\).*target_scale\[:, None\]'
                                        r'.*target_scale\[None, :\]')):
    losses.propel_loss(means, scales, targets, target_scale=target_scale)
  # Both suggestions work, and differ.
  with enable_x64():
    per_example = losses.propel_loss(means, scales, targets,
                                     target_scale=target_scale[:, None])
    per_dim = losses.propel_loss(means, scales, targets,
                                 target_scale=target_scale[None, :])
  np.testing.assert_allclose(per_example, ref_propel_loop(
      means, scales, targets, target_scale[:, None]), rtol=1e-10)
  np.testing.assert_allclose(per_dim, ref_propel_loop(
      means, scales, targets, target_scale), rtol=1e-10)
  assert not np.allclose(per_example, per_dim)


@pytest.mark.parametrize('targets_shape,scale_shape', [
    ((4, 3), (2,)), ((4, 3), (4, 2)), ((4, 3), (5,)), ((2, 4, 3), (3, 4))])
def test_target_scale_bad_shapes(targets_shape, scale_shape):
  means = np.zeros(targets_shape[:-1] + (2, targets_shape[-1]))
  with pytest.raises(ValueError, match=(
      rf'target_scale shape {re.escape(str(scale_shape))} does not fit targets '
      rf'shape {re.escape(str(targets_shape))}')):
    losses.propel_loss(means, np.ones_like(means), np.zeros(targets_shape),
                       target_scale=np.ones(scale_shape))


@pytest.mark.parametrize('bad,match', [
    ({'scales': (4, 3, 3)}, r'^scales shape \(4, 3, 3\) must equal means shape'),
    ({'log_weights': (4, 3)}, r'^log_weights shape \(4, 3\) must be \(4, 2\)'),
    ({'log_weights': (2,)}, r'^log_weights shape \(2,\)'),
    ({'means': (4, 0, 3), 'scales': (4, 0, 3)}, r'^means \(4, 0, 3\) has no components'),
    ({'means': (4, 2, 0), 'scales': (4, 2, 0), 'targets': (4, 0)},
     r'^means \(4, 2, 0\) has no dimensions'),
])
def test_propel_errors_name_its_own_arguments(bad, match):
  """Never the internal q_means / q_log_weights of mixture_distance."""
  shapes = {'means': (4, 2, 3), 'scales': (4, 2, 3), 'targets': (4, 3),
            'log_weights': None} | bad
  args = {k: None if v is None else np.ones(v) for k, v in shapes.items()}
  with pytest.raises(ValueError, match=match) as error:
    losses.propel_loss(args['means'], args['scales'], args['targets'], target_scale=0.1,
                       log_weights=args['log_weights'])
  assert 'q_' not in str(error.value) and 'p_' not in str(error.value)


@pytest.mark.parametrize('complex_arg', ['means', 'scales', 'targets', 'target_scale',
                                         'log_weights'])
def test_complex_inputs_raise(complex_arg):
  args = {'means': np.zeros((4, 2, 3)), 'scales': np.ones((4, 2, 3)),
          'targets': np.zeros((4, 3)), 'target_scale': np.float64(0.1),
          'log_weights': np.zeros((4, 2))}
  args[complex_arg] = args[complex_arg] + 0j
  with pytest.raises(ValueError, match=rf'^{complex_arg} must be real; got dtype complex'):
    losses.propel_loss(args['means'], args['scales'], args['targets'],
                       target_scale=args['target_scale'], log_weights=args['log_weights'])
  if complex_arg != 'target_scale':
    name = 'x' if complex_arg == 'targets' else complex_arg
    with pytest.raises(ValueError, match=f'^{complex_arg} must be real'):
      losses.mixture_nll(args['means'], args['scales'], args['targets'],
                         log_weights=args['log_weights'])
    with pytest.raises(ValueError, match=f'^{name} must be real'):
      mixtures.log_prob(args['targets'], args['means'], args['scales'],
                        args['log_weights'])
  real = np.zeros((4, 2, 3))
  with pytest.raises(ValueError, match=r'^q_means must be real'):
    losses.mixture_distance(real, real + 1, real + 0j, real + 1)
  with pytest.raises(ValueError, match=r'^predictions must be real'):
    losses.mse_loss(real[:, 0] + 0j, real[:, 0])


def test_empty_components_and_dimensions_raise():
  with pytest.raises(ValueError, match=r'^q_means \(4, 0, 3\) has no components \(I = 0\)'):
    losses.mixture_distance(np.zeros((4, 1, 3)), np.ones((4, 1, 3)),
                            np.zeros((4, 0, 3)), np.ones((4, 0, 3)))
  with pytest.raises(ValueError, match=r'^p_means \(4, 1, 0\) has no dimensions \(n = 0\)'):
    losses.mixture_distance(np.zeros((4, 1, 0)), np.ones((4, 1, 0)),
                            np.zeros((4, 2, 0)), np.ones((4, 2, 0)))
  with pytest.raises(ValueError, match=r'^means \(4, 0, 3\) has no components'):
    losses.mixture_nll(np.zeros((4, 0, 3)), np.ones((4, 0, 3)), np.zeros((4, 3)))
  with pytest.raises(ValueError, match=r'n >= 1; got shape \(4, 0\)'):
    losses.l1_loss(np.zeros((4, 0)), np.zeros((4, 0)))


def test_mixture_distance_axis_count_must_match():
  rng = np.random.default_rng(36)
  pm, ps, _ = random_problem(rng, (4,), 1, 3)
  qm, qs, _ = random_problem(rng, (4,), 2, 3)
  with pytest.raises(ValueError, match=(r'p_means \(4, 3\) and q_means \(4, 2, 3\) must '
                                        r'have the same number of axes.*'
                                        r'p_means\[\.\.\., None, :\].*p_means\[None\]')):
    losses.mixture_distance(pm[:, 0], ps[:, 0], qm, qs)
  # Size-1 batch axes broadcast.
  got = losses.mixture_distance(pm[:1], ps[:1], qm, qs)
  np.testing.assert_allclose(
      got, [losses.mixture_distance(pm[0], ps[0], qm[b], qs[b]) for b in range(4)],
      rtol=1e-6)


@pytest.mark.parametrize('kind', KINDS)
def test_jit_and_vmap_of_per_example_scales_and_logits(kind):
  rng = np.random.default_rng(37)
  means, scales, targets = random_kind_problem(kind, rng, (6,), 3, 2)
  logits = rng.normal(size=(6, 3)) * 3
  target_scale = rng.uniform(0.1, 0.5, size=6)
  args = [a.astype(np.float32) for a in (means, scales, targets, target_scale, logits)]
  fn = lambda m, s, y, ts, lw: losses.propel_loss(m, s, y, target_scale=ts,
                                                  log_weights=lw)
  eager = fn(*args)
  np.testing.assert_allclose(jax.jit(fn)(*args), eager, rtol=1e-6)
  # vmap: each call sees one example with a scalar target_scale.
  np.testing.assert_allclose(jax.vmap(fn)(*args), eager, rtol=1e-6)
  np.testing.assert_allclose(eager, ref_kind_loop(
      kind, means, scales, targets, target_scale[:, None], special.softmax(logits, -1)),
                             rtol=2e-5)
  grads = jax.jit(jax.grad(lambda *a: fn(*a).sum(), argnums=(3, 4)))(*args)
  _assert_finite(grads)
  np.testing.assert_allclose(np.sum(grads[1], axis=-1), 0.0, atol=1e-6)


# ----------------------------------------------------------------------------
# Baselines.


def test_mse_and_l1():
  rng = np.random.default_rng(22)
  pred, target = rng.normal(size=(2, 5, 3))
  np.testing.assert_allclose(losses.mse_loss(pred, target),
                             [np.mean((p - t) ** 2) for p, t in zip(pred, target)],
                             rtol=1e-6)
  np.testing.assert_allclose(losses.l1_loss(pred, target),
                             [np.mean(np.abs(p - t)) for p, t in zip(pred, target)],
                             rtol=1e-6)


@pytest.mark.parametrize('kind', KINDS)
def test_mixture_nll_matches_scipy(kind, enable_x64):
  """Against SciPy's density."""
  rng = np.random.default_rng(112 if kind == 'full' else 23)
  means, scales, targets = random_kind_problem(kind, rng, (4,), 3, 3)
  cov = covariances(kind, scales)
  log_w = random_log_weights(rng, (4, 3))
  expected = [-special.logsumexp([log_w[b, i] + stats.multivariate_normal.logpdf(
      targets[b], means[b, i], cov[b, i]) for i in range(3)]) for b in range(4)]
  with enable_x64():
    got = losses.mixture_nll(means, scales, targets, log_weights=log_w)
    np.testing.assert_allclose(got, expected, rtol=1e-10)



# ----------------------------------------------------------------------------
# Full covariance: what only Cholesky factors have (the form they are read in,
# the two factorisations, many dimensions), and the diagonal written as one.


@pytest.mark.parametrize('fn', ['propel_loss', 'mixture_distance', 'mixture_nll'])
def test_diagonal_factors_reproduce_the_diagonal_path(fn, enable_x64):
  """Standard deviations written as Cholesky factors: the same values and gradients."""
  rng = np.random.default_rng(102)
  means, scales, targets = random_problem(rng, (4,), 3, 3)
  log_w = random_log_weights(rng, (4, 3))
  qm, qs, _ = random_problem(rng, (4,), 2, 3)
  q_factors = as_factors(qs, rng)
  factors = as_factors(scales, rng)
  # q_scales is q's (mixture_distance) in the same kind as s.
  loss = {
      'propel_loss': lambda m, s, q_scales: losses.propel_loss(
          m, s, targets, target_scale=0.3, log_weights=log_w),
      'mixture_distance': lambda m, s, q_scales: losses.mixture_distance(
          m, s, qm, q_scales, p_log_weights=log_w),
      'mixture_nll': lambda m, s, q_scales: losses.mixture_nll(
          m, s, targets, log_weights=log_w),
  }[fn]
  grads = jax.grad(lambda *a: loss(*a).sum(), argnums=(0, 1))
  with enable_x64():
    np.testing.assert_allclose(loss(means, factors, q_factors), loss(means, scales, qs),
                               rtol=1e-12)
    d_means_full, d_factors = grads(means, factors, q_factors)
    d_means, d_scales = grads(means, scales, qs)
    np.testing.assert_allclose(d_means_full, d_means, rtol=1e-10, atol=1e-12)
    # ∂/∂σ_d of the diagonal path is ∂/∂L_dd of the full one, times L_dd's sign.
    diagonal = lambda a: np.diagonal(a, axis1=-2, axis2=-1)
    np.testing.assert_allclose(diagonal(d_factors), d_scales * np.sign(diagonal(factors)),
                               rtol=1e-9, atol=1e-12)
  f32 = lambda a: a.astype(np.float32)
  np.testing.assert_allclose(loss(means, f32(factors), f32(q_factors)),
                             loss(means, f32(scales), f32(qs)), rtol=1e-5)


def test_full_covariance_upper_triangle_and_diagonal_signs_not_read():
  """Only L's lower triangle counts, and the sign of a column does not."""
  rng = np.random.default_rng(104)
  means, factors, targets = random_full_problem(rng, (3,), 2, 3)
  signs = rng.choice([-1.0, 1.0], size=(3, 2, 1, 3))
  loss = jax.jit(jax.value_and_grad(lambda f: losses.propel_loss(
      means, f, targets, target_scale=0.3).sum()))
  value, grad = loss(factors)
  np.testing.assert_allclose(loss(np.tril(factors))[0], value, rtol=1e-6)
  np.testing.assert_allclose(loss(np.tril(factors) * signs)[0], value, rtol=1e-6)
  np.testing.assert_array_equal(np.triu(grad, k=1), 0.0)


@pytest.mark.parametrize('dim', [3, 9])  # unrolled and looped factorisations
def test_full_covariance_check_grads_order_2_each_factorisation(dim, enable_x64):
  rng = np.random.default_rng(110 + dim)
  means, factors, targets = random_full_problem(rng, (1,), 2, dim)
  with enable_x64():
    loss = jax.jit(lambda m, f: losses.propel_loss(m, f, targets, target_scale=0.4).sum())
    args = (means, np.tril(factors))
    if dim <= 8:
      check_grads(loss, args, order=2, modes=('fwd', 'rev'), eps=1e-5)
    else:
      # Forward-over-reverse through the looped factorisation compiles for
      # about 35 s on 2 cores; reverse-over-reverse and first-order forward
      # mode cover the loop's derivatives in 15.
      check_grads(loss, args, order=2, modes=('rev',), eps=1e-5)
      check_grads(loss, args, order=1, modes=('fwd',), eps=1e-5)


def test_full_covariance_above_the_unrolled_size_runs_repeatedly():
  """The looped path (n > 8) runs many jitted calls on XLA:CPU.

  Jitted `jnp.linalg.cholesky` and triangular solves hang there after a few
  calls on two cores (docs/benchmarks.md#full-covariance); the loop does not.
  """
  rng = np.random.default_rng(111)
  means, factors, targets = (a.astype(np.float32)
                             for a in random_full_problem(rng, (32,), 4, 12))
  step = jax.jit(jax.value_and_grad(
      lambda m, f: losses.propel_loss(m, f, targets, target_scale=0.4).mean(), argnums=(0, 1)))
  first = step(means, factors)
  for _ in range(10):
    again = step(means, factors)
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
    np.testing.assert_array_equal(a, b)


def test_full_covariance_sixteen_dimensions_and_32_components():
  """n = 16 (the looped factorisation), I = 32, in float32."""
  rng = np.random.default_rng(109)
  means, factors, targets = random_full_problem(rng, (1,), 32, 16)
  factors = np.tril(factors) / 4  # keep Σ well conditioned: ≈ I/4 + noise
  args = [a.astype(np.float32) for a in (means, factors, targets)]
  value, grads = _value_and_grads(*args, 0.2)
  _assert_finite(value, grads)
  np.testing.assert_allclose(losses.propel_loss(*args, target_scale=0.2),
                             ref_kind_loop('full', *args, 0.2), rtol=1e-4)


@pytest.mark.parametrize('fn', ['propel_loss', 'mixture_nll'])
def test_full_covariance_shape_errors_name_the_arguments(fn):
  kwargs = {'target_scale': 0.2} if fn == 'propel_loss' else {}
  call = lambda m, s: getattr(losses, fn)(m, s, np.zeros((4, 3)), **kwargs)
  with pytest.raises(ValueError, match=(
      r'scales shape \(4, 2, 3, 2\) must equal means shape \(4, 2, 3\).*standard '
      r'deviations.*\(4, 2, 3, 3\).*Cholesky factors')):
    call(np.zeros((4, 2, 3)), np.ones((4, 2, 3, 2)))
  with pytest.raises(ValueError, match=r'scales shape \(4, 2, 3, 3, 3\)'):
    call(np.zeros((4, 2, 3)), np.ones((4, 2, 3, 3, 3)))
  with pytest.raises(ValueError, match=r'q_scales shape \(4, 2, 2, 2\)'):
    losses.mixture_distance(np.zeros((4, 1, 3)), np.ones((4, 1, 3)), np.zeros((4, 2, 3)),
                            np.ones((4, 2, 2, 2)))


def test_check_inputs_full_covariance():
  rng = np.random.default_rng(111)
  means, factors, targets = map(jnp.asarray, random_full_problem(rng, (3,), 2, 2))
  checked = jax.jit(checkify.checkify(_checked_loss))
  err, loss = checked(means, factors, targets)
  err.throw()  # junk above the diagonal and negative diagonals are fine
  _assert_finite(loss)
  for bad in (factors.at[1, 0, 1, 1].set(0.0), factors.at[0, 1, 1, 0].set(jnp.nan)):
    err, _ = checked(means, bad, targets)
    with pytest.raises(checkify.JaxRuntimeError,
                       match='Cholesky factors.*finite lower triangle.*nonzero diagonal'):
      err.throw()
  err, _ = checked(means, factors.at[0, 1, 0, 1].set(jnp.nan), targets)
  err.throw()  # the upper triangle is not read
