"""Tests of propel_jax.directional against references written from the definition.

The references are float64 NumPy/SciPy code: vMF densities from
scipy.special.iv, integrated by quadrature on the circle, the sphere and S^3
(so the closed-form overlap G is never used by a reference), SciPy's
rotations, and finite differences. float64 is switched on only inside the
tests that need it.
"""

import math

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest
from scipy import integrate
from scipy import special
from scipy import stats
from scipy.spatial.transform import Rotation

from propel_jax import directional

enable_x64 = jax.enable_x64 if hasattr(jax, 'enable_x64') else (
    jax.experimental.enable_x64)

DIMS = (2, 3, 4)


# ----------------------------------------------------------------------------
# Float64 references.


def ref_pdf(x, mus, kappas, log_weights=None, antipodal=False):
  """Mixture density at points x [N, d] from the definition (moderate κ)."""
  d = x.shape[-1]
  mus = mus / np.linalg.norm(mus, axis=-1, keepdims=True)
  if log_weights is None:
    weights = np.full(len(kappas), 1.0 / len(kappas))
  else:
    weights = np.exp(log_weights - special.logsumexp(log_weights))
  area = 2 * np.pi ** (d / 2) / special.gamma(d / 2)
  total = np.zeros(len(x))
  for mu, kappa, w in zip(mus, kappas, weights):
    nu = d / 2 - 1
    c = 1 / area if kappa == 0 else kappa ** nu / ((2 * np.pi) ** (d / 2)
                                                  * special.iv(nu, kappa))
    f = c * np.exp(kappa * x @ mu)
    if antipodal:
      f = 0.5 * (f + c * np.exp(-kappa * x @ mu))
    total += w * f
  return total


def quadrature(d):
  """(points [N, d], weights [N]) with Σ weights g(points) ≈ ∫_{S^{d-1}} g."""
  if d == 2:
    n = 2048
    theta = 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(theta), np.sin(theta)], -1), np.full(n, 2 * np.pi / n)
  if d == 3:  # Gauss-Legendre in cos θ, trapezoid in φ.
    u, wu = special.roots_legendre(160)
    m = 320
    phi = 2 * np.pi * np.arange(m) / m
    u, phi = np.meshgrid(u, phi, indexing='ij')
    s = np.sqrt(1 - u ** 2)
    points = np.stack([s * np.cos(phi), s * np.sin(phi), u], -1).reshape(-1, 3)
    return points, np.repeat(wu, m) * (2 * np.pi / m)
  # S^3 in Hopf coordinates: x = (cos η e^{iξ1}, sin η e^{iξ2}), dS =
  # sin η cos η dη dξ1 dξ2 = ½ du dξ1 dξ2 with u = sin² η ∈ [0, 1].
  u, wu = special.roots_legendre(48)
  u, wu = (u + 1) / 2, wu / 2
  m = 96
  xi = 2 * np.pi * np.arange(m) / m
  u, xi1, xi2 = np.meshgrid(u, xi, xi, indexing='ij')
  c, s = np.sqrt(1 - u), np.sqrt(u)
  points = np.stack([c * np.cos(xi1), c * np.sin(xi1), s * np.cos(xi2),
                     s * np.sin(xi2)], -1).reshape(-1, 4)
  return points, np.repeat(wu, m * m) * 0.5 * (2 * np.pi / m) ** 2


_QUADRATURE = {}


def grid(d):
  if d not in _QUADRATURE:
    _QUADRATURE[d] = quadrature(d)
  return _QUADRATURE[d]


def ref_distance(p, q, antipodal=False):
  """-log[2∫pq / ∫(p² + q²)] by quadrature; p, q = (mus, kappas, logits)."""
  x, w = grid(p[0].shape[-1])
  fp, fq = ref_pdf(x, *p, antipodal=antipodal), ref_pdf(x, *q, antipodal=antipodal)
  return -np.log(2 * np.sum(w * fp * fq) / np.sum(w * (fp ** 2 + fq ** 2)))


def ref_resultant_length(kappa, d):
  """A_d(κ) = I_{d/2}(κ) / I_{d/2-1}(κ)."""
  return special.ive(d / 2, kappa) / special.ive(d / 2 - 1, kappa)


def unit(rng, shape):
  v = rng.normal(size=shape)
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def random_mixture(rng, num, d, batch=(), kappa_range=(0.5, 6.0)):
  return (unit(rng, batch + (num, d)), rng.uniform(*kappa_range, batch + (num,)),
          rng.normal(size=batch + (num,)))


# ----------------------------------------------------------------------------
# Against quadrature of the definition.


def test_quadrature_is_exact_enough():
  # The references' own check: the grids integrate 1 and a vMF density.
  for d in DIMS:
    x, w = grid(d)
    np.testing.assert_allclose(np.sum(w), 2 * np.pi ** (d / 2) / special.gamma(d / 2),
                               rtol=1e-12)
    mus = unit(np.random.default_rng(d), (1, d))
    np.testing.assert_allclose(np.sum(w * ref_pdf(x, mus, [6.0])), 1, rtol=1e-11)


@pytest.mark.parametrize('d', DIMS)
@pytest.mark.parametrize('antipodal', [False, True])
def test_distance_matches_quadrature(d, antipodal):
  rng = np.random.default_rng(10 * d + antipodal)
  p = random_mixture(rng, 2, d)
  q = random_mixture(rng, 3, d)
  q[1][0] = 0.0  # a uniform component too
  with enable_x64():
    got = directional.mixture_distance(p[0], p[1], q[0], q[1], p_log_weights=p[2],
                                       q_log_weights=q[2], antipodal=antipodal)
    # PROPEL: p is one vMF on the (unnormalised) target.
    target = 3.0 * unit(rng, (d,))
    got_loss = directional.propel_loss(q[0], q[1], target, target_concentration=4.0,
                                       log_weights=q[2], antipodal=antipodal)
  assert got.dtype == jnp.float64
  np.testing.assert_allclose(got, ref_distance(p, q, antipodal), rtol=1e-9)
  np.testing.assert_allclose(
      got_loss, ref_distance((target[None], [4.0], None), q, antipodal), rtol=1e-9)


@pytest.mark.parametrize('d', DIMS)
def test_log_prob_matches_definition_and_integrates_to_one(d):
  rng = np.random.default_rng(d)
  mus, kappas, logits = random_mixture(rng, 3, d, kappa_range=(0.0, 8.0))
  x, w = grid(d)
  for antipodal in (False, True):
    with enable_x64():
      got = np.exp(directional.log_prob(x, mus, kappas, logits, antipodal=antipodal))
    np.testing.assert_allclose(got, ref_pdf(x, mus, kappas, logits, antipodal),
                               rtol=1e-11)
    np.testing.assert_allclose(np.sum(w * got), 1.0, rtol=1e-10)


def test_log_prob_far_from_a_sharp_component_is_exact_in_float32():
  mu = np.array([[1.0, 0.0, 0.0]], np.float32)
  x = np.array([np.cos(0.01), np.sin(0.01), 0.0], np.float32)
  got = directional.log_prob(x, mu, np.array([1e5], np.float32))
  # log C_3(κ) + κ (cos δ - 1) = log(κ / 2π(1 - e^{-2κ})) - κ (1 - cos δ).
  expected = np.log(1e5 / (2 * np.pi)) - 1e5 * 2 * np.sin(0.005) ** 2
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, expected, rtol=1e-5)


# ----------------------------------------------------------------------------
# Properties.


@pytest.mark.parametrize('d', DIMS)
def test_zero_iff_equal(d):
  rng = np.random.default_rng(20 + d)
  mus, kappas, logits = random_mixture(rng, 3, d, batch=(8,))
  perm = np.array([2, 0, 1])
  distance = lambda m, k, lw, antipodal=False: directional.mixture_distance(
      mus, kappas, m, k, p_log_weights=logits, q_log_weights=lw, antipodal=antipodal)
  # The same density, components in another order: 0.
  np.testing.assert_allclose(distance(mus[:, perm], kappas[:, perm], logits[:, perm]),
                             0, atol=2e-6)
  # Any change of the density: > 0, also a small one.
  assert np.all(distance(mus + 0.05 * unit(rng, mus.shape), kappas, logits) > 1e-5)
  assert np.all(distance(mus, kappas * 1.1, logits) > 1e-5)
  assert np.all(distance(mus, kappas, logits + [0.3, 0, 0]) > 1e-6)
  # Flipping one component changes the density unless it is antipodal.
  flipped = mus * np.array([-1, 1, 1])[:, None]
  assert np.all(distance(flipped, kappas, logits) > 1e-4)
  np.testing.assert_allclose(distance(flipped, kappas, logits, True), 0, atol=2e-6)
  # Random pairs: ≥ 0.
  others = random_mixture(rng, 2, d, batch=(64,), kappa_range=(0.0, 50.0))
  for antipodal in (False, True):
    values = directional.mixture_distance(
        *random_mixture(rng, 3, d, batch=(64,), kappa_range=(0.0, 50.0))[:2],
        others[0], others[1], q_log_weights=others[2], antipodal=antipodal)
    assert np.all(values >= -1e-6) and np.all(values > 1e-3)


@pytest.mark.parametrize('d', [3, 4])
def test_invariant_under_a_common_rotation(d):
  rng = np.random.default_rng(30 + d)
  mus, kappas, logits = random_mixture(rng, 3, d, batch=(4,))
  targets = unit(rng, (4, d))
  rotation = stats.special_ortho_group.rvs(d, random_state=rng)
  for antipodal in (False, True):
    loss = lambda m, y: directional.propel_loss(
        m, kappas, y, target_concentration=2.0, log_weights=logits,
        antipodal=antipodal)
    with enable_x64():
      before = loss(mus, targets)
      after = loss(mus @ rotation.T, targets @ rotation.T)
      moved = loss(mus, targets @ rotation.T)  # rotating one side only: not equal
    np.testing.assert_allclose(after, before, rtol=1e-12)
    assert np.all(np.abs(moved - before) > 1e-4)


@pytest.mark.parametrize('d', DIMS)
def test_antipodal_ignores_signs(d):
  rng = np.random.default_rng(40 + d)
  mus, kappas, logits = random_mixture(rng, 3, d, batch=(5,))
  targets = unit(rng, (5, d))
  signs = rng.choice([-1.0, 1.0], size=(5, 3, 1))
  loss = lambda m, y, antipodal: directional.propel_loss(
      m, kappas, y, target_concentration=3.0, log_weights=logits, antipodal=antipodal)
  base = loss(mus, targets, True)
  np.testing.assert_allclose(loss(mus, -targets, True), base, rtol=1e-5)
  np.testing.assert_allclose(loss(signs * mus, targets, True), base, rtol=1e-5)
  # Without the symmetry the target's sign matters.
  assert np.all(np.abs(loss(mus, -targets, False) - loss(mus, targets, False)) > 1e-3)


def test_logits_shift_invariance():
  rng = np.random.default_rng(5)
  mus, kappas, logits = random_mixture(rng, 4, 3, batch=(6,))
  targets = unit(rng, (6, 3))
  loss = lambda lw: directional.propel_loss(mus, kappas, targets,
                                            target_concentration=5.0, log_weights=lw)
  np.testing.assert_allclose(loss(logits + 5.0), loss(logits), rtol=1e-6)
  # Default weights are equal ones, whatever the common logit.
  np.testing.assert_allclose(loss(np.zeros_like(logits)) , loss(None), rtol=1e-6)
  np.testing.assert_allclose(loss(np.full_like(logits, -7.0)), loss(None), rtol=1e-6)
  assert np.all(np.abs(loss(logits) - loss(None)) > 1e-4)


def test_raw_vectors_are_normalised():
  rng = np.random.default_rng(6)
  mus, kappas, _ = random_mixture(rng, 2, 3, batch=(3,))
  targets = unit(rng, (3, 3))
  scale_m, scale_t = rng.uniform(0.1, 10, (3, 2, 1)), rng.uniform(0.1, 10, (3, 1))
  loss = lambda m, y: directional.propel_loss(m, kappas, y, target_concentration=2.0)
  np.testing.assert_allclose(loss(scale_m * mus, scale_t * targets),
                             loss(mus, targets), rtol=1e-5)
  assert np.all(np.isnan(loss(mus, targets * np.array([[0.0], [1], [1]]))[0]))


# ----------------------------------------------------------------------------
# Extreme inputs and float32.


@pytest.mark.parametrize('d', DIMS)
@pytest.mark.parametrize('antipodal', [False, True])
def test_extreme_inputs_finite_value_and_gradient(d, antipodal):
  """κ from 0 to 1e5, opposite targets, κ_a μ_a + κ_b μ_b = 0; float32."""
  e = np.eye(d, dtype=np.float32)
  # One example per row: (mean directions [2, d], κ [2], target, target κ).
  cases = []
  for kappa in (0.0, 1e-8, 1.0, 1e4, 1e5):
    cases.append(([e[0], e[1]], [kappa, kappa], -e[0], kappa))      # r = 0 with target
    cases.append(([e[0], -e[0]], [kappa, kappa], e[1], 1.0))         # r = 0 in q's self term
    cases.append(([e[0], e[0]], [kappa, 2 * kappa], -e[0], 0.5 * kappa))
  mus = np.array([c[0] for c in cases], np.float32)
  kappas = np.array([c[1] for c in cases], np.float32)
  targets = np.array([c[2] for c in cases], np.float32)
  target_kappas = np.array([c[3] for c in cases], np.float32)

  def loss(m, k, y, tk, lw):
    return directional.propel_loss(m, k, y, target_concentration=tk, log_weights=lw,
                                   antipodal=antipodal)

  logits = np.zeros(kappas.shape, np.float32)
  value = loss(mus, kappas, targets, target_kappas, logits)
  assert value.dtype == jnp.float32 and np.all(np.isfinite(value))
  assert np.all(value >= -1e-5)
  grads = jax.grad(lambda *a: loss(*a).sum(), argnums=(0, 1, 2, 3, 4))(
      mus, kappas, targets, target_kappas, logits)
  for g in grads:
    assert np.all(np.isfinite(g))
  # Float32 agrees with float64 where the values are O(1) and O(κ).
  with enable_x64():
    value64 = loss(*(a.astype(np.float64) for a in (mus, kappas, targets,
                                                    target_kappas, logits)))
  np.testing.assert_allclose(value, value64, rtol=2e-5, atol=2e-5)


def test_uniform_limits():
  e = np.eye(3)
  # κ = 0 everywhere: both densities uniform, distance 0; tiny κ: nearly 0.
  for kappa in (0.0, 1e-8):
    value = directional.propel_loss(e[:2][None], np.full((1, 2), kappa), -e[0][None],
                                    target_concentration=kappa)
    np.testing.assert_allclose(value, 0.0, atol=1e-7)
  # Uniform against vMF(κ): closed form from ∫f² = C(κ)²/C(2κ) and ∫f·u = 1/area.
  kappa = 3.0
  c = lambda k: k / (4 * np.pi * np.sinh(k))
  expected = -np.log(2 / (4 * np.pi) / (1 / (4 * np.pi) + c(kappa) ** 2 / c(2 * kappa)))
  with enable_x64():
    value = directional.propel_loss(e[:1], np.zeros(1), e[1], target_concentration=kappa)
  np.testing.assert_allclose(value, expected, rtol=1e-12)


def test_float32_keeps_accuracy_at_large_concentrations():
  # Two sharp vMFs 2/√κ apart: the loss is O(1), from exponents of O(κ).
  for d in DIMS:
    for kappa in (1e3, 1e5):
      angle = 2.0 / np.sqrt(kappa)
      target = np.zeros(d)
      target[:2] = np.cos(angle), np.sin(angle)
      mu = np.eye(d)[:1]
      args = lambda dtype: (mu.astype(dtype), np.array([kappa], dtype),
                            target.astype(dtype))
      value = directional.propel_loss(*args(np.float32), target_concentration=kappa)
      with enable_x64():
        value64 = directional.propel_loss(*args(np.float64), target_concentration=kappa)
      assert 0.5 < value64 < 3
      np.testing.assert_allclose(value, value64, rtol=1e-4)
      perfect = directional.propel_loss(mu.astype(np.float32), np.float32([kappa]),
                                        mu[0].astype(np.float32),
                                        target_concentration=kappa)
      np.testing.assert_allclose(perfect, 0.0, atol=1e-6)


def test_continuous_across_the_series_switch():
  """The series and the Bessel forms meet at κ = 1 and r = 1 without a step."""
  e = np.eye(4)
  with enable_x64():
    for d in DIMS:
      mu = e[:1, :d]
      for target_kappa in (1.0, 0.5):  # r = 2 κ_t crosses 1 at 0.5.
        values = [directional.propel_loss(mu, np.array([k]), e[0, :d],
                                          target_concentration=target_kappa * k / 1.0)
                  for k in (1.0 - 1e-10, 1.0 + 1e-10)]
        np.testing.assert_allclose(values[0], values[1], atol=1e-9)
        logp = [directional.log_prob(e[1, :d], mu, np.array([k]))
                for k in (1.0 - 1e-10, 1.0 + 1e-10)]
        np.testing.assert_allclose(logp[0], logp[1], atol=1e-9)


# ----------------------------------------------------------------------------
# Gradients, transformations.


@pytest.mark.parametrize('d', DIMS)
def test_check_grads(d):
  rng = np.random.default_rng(50 + d)
  mus, kappas, logits = random_mixture(rng, 3, d, batch=(2,), kappa_range=(0.2, 4.0))
  targets = 1.5 * unit(rng, (2, d))
  target_kappas = np.array([0.3, 2.0])
  for antipodal in (False, True):
    with enable_x64():
      loss = jax.jit(lambda m, k, y, tk, lw: directional.propel_loss(
          m, k, y, target_concentration=tk, log_weights=lw, antipodal=antipodal).sum())
      check_grads(loss, (mus, kappas, targets, target_kappas, logits), order=1,
                  modes=('fwd', 'rev'), eps=1e-6)
  with enable_x64():
    q = random_mixture(rng, 2, d, batch=(2,))
    check_grads(jax.jit(lambda pm, pk, qm, qk, qw: directional.mixture_distance(
        pm, pk, qm, qk, q_log_weights=qw, antipodal=True)),
                (mus, kappas, *q), order=2, modes=('rev',), eps=1e-5)


@pytest.mark.parametrize('d', DIMS)
def test_gradient_matches_central_differences_in_every_regime(d):
  """∂L/∂κ and ∂L/∂κ_t by hand-made central differences, float64.

  Concentrations below, at and above the series switch, and the point r = 0
  (equal κ, opposite target) where log G is evaluated from its series.
  """
  e = np.eye(d)
  mus = np.stack([e[0], (e[0] + e[1]) / np.sqrt(2)])
  for kappa, target, target_kappa in [(0.3, -e[0], 0.3), (0.7, e[1], 0.45),
                                      (2.0, -e[0], 2.0), (40.0, e[1], 25.0),
                                      (1e-9, e[1], 5.0)]:
    kappas = np.array([kappa, 1.5 * kappa])

    def loss(k, tk, antipodal):
      return directional.propel_loss(mus, k, target, target_concentration=tk,
                                     antipodal=antipodal)
    for antipodal in (False, True):
      with enable_x64():
        grad_k, grad_tk = jax.grad(loss, argnums=(0, 1))(kappas, target_kappa, antipodal)
        h = 1e-6 * max(kappa, 1.0)
        fd_k = [(loss(kappas + h * e2, target_kappa, antipodal)
                 - loss(kappas - h * e2, target_kappa, antipodal)) / (2 * h)
                for e2 in np.eye(2)]
        h_t = 1e-6 * max(target_kappa, 1.0)
        fd_tk = (loss(kappas, target_kappa + h_t, antipodal)
                 - loss(kappas, target_kappa - h_t, antipodal)) / (2 * h_t)
      np.testing.assert_allclose(grad_k, fd_k, rtol=1e-6, atol=1e-8)
      np.testing.assert_allclose(grad_tk, fd_tk, rtol=1e-6, atol=1e-8)


def test_gradient_at_zero_resultant_is_zero_by_symmetry():
  # Target opposite the only component with equal κ: moving the target along
  # the sphere either way changes the loss equally, so its gradient is 0.
  e = np.eye(3, dtype=np.float32)
  for kappa in (0.5, 1e4):
    grad = jax.grad(lambda y: directional.propel_loss(
        e[:1], np.float32([kappa]), y, target_concentration=kappa))(-e[0])
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, 0.0, atol=1e-6 * max(kappa, 1))


def test_jit_vmap_and_batching_agree():
  rng = np.random.default_rng(8)
  mus, kappas, logits = random_mixture(rng, 3, 4, batch=(5,))
  targets = unit(rng, (5, 4))
  target_kappas = rng.uniform(1, 5, 5)
  loss = lambda m, k, y, tk, lw: directional.propel_loss(
      m, k, y, target_concentration=tk, log_weights=lw, antipodal=True)
  eager = loss(mus, kappas, targets, target_kappas, logits)
  np.testing.assert_allclose(jax.jit(loss)(mus, kappas, targets, target_kappas, logits),
                             eager, rtol=1e-5)
  np.testing.assert_allclose(jax.vmap(loss)(mus, kappas, targets, target_kappas, logits),
                             eager, rtol=1e-5)
  one_by_one = [loss(mus[b], kappas[b], targets[b], target_kappas[b], logits[b])
                for b in range(5)]
  np.testing.assert_allclose(eager, one_by_one, rtol=1e-5)
  # Size-1 batch axes broadcast: one mixture for a [2, 5] batch of targets.
  shared = loss(mus[None, :1], kappas[None, :1], np.stack([targets, -targets]),
                2.0, logits[None, :1])
  assert shared.shape == (2, 5)
  np.testing.assert_allclose(shared[0, 0], loss(mus[0], kappas[0], targets[0], 2.0,
                                                logits[0]), rtol=1e-5)


def test_dtypes():
  mus, kappas = np.eye(3)[:2], np.ones(2)
  target = np.eye(3)[0]
  assert directional.propel_loss(mus.astype(jnp.bfloat16), kappas, target,
                                 target_concentration=1.0).dtype == jnp.float32
  assert directional.propel_loss(mus, kappas.astype(np.int32), target,
                                 target_concentration=1).dtype == jnp.float32
  with enable_x64():
    assert directional.propel_loss(mus, kappas, target,
                                   target_concentration=1.0).dtype == jnp.float64


# ----------------------------------------------------------------------------
# Errors.


def test_shape_errors_name_the_arguments():
  md, conc, y = np.ones((4, 2, 3)), np.ones((4, 2)), np.ones((4, 3))
  loss = lambda m, k, t, **kw: directional.propel_loss(
      m, k, t, **{'target_concentration': 1.0, **kw})
  with pytest.raises(ValueError, match=r'exactly one more axis.*\[\.\.\., None, :\].*'
                     r'mean_directions\[None\]'):
    loss(np.ones((4, 3)), np.ones(4), y)
  with pytest.raises(ValueError, match=r'exactly one more axis.*targets\[None\]'):
    loss(md, conc, np.ones(3))
  with pytest.raises(ValueError, match=r'concentrations shape \(4,\) must be \(4, 2\)'):
    loss(md, np.ones(4), y)
  with pytest.raises(ValueError, match=r'log_weights shape \(2,\) must be \(4, 2\)'):
    loss(md, conc, y, log_weights=np.zeros(2))
  with pytest.raises(ValueError, match=r'd = 5 must be one of'):
    loss(np.ones((4, 2, 5)), conc, np.ones((4, 5)))
  with pytest.raises(ValueError, match=r'd = 1 must be one of'):
    loss(np.ones((4, 2, 1)), conc, np.ones((4, 1)))
  with pytest.raises(ValueError, match=r'at least one component'):
    loss(np.ones((4, 0, 3)), np.ones((4, 0)), y)
  with pytest.raises(ValueError, match=r'same d'):
    loss(md, conc, np.ones((4, 2)))
  with pytest.raises(ValueError, match=r'targets \(3,\), mean_directions \(4,\)'):
    loss(md, conc, np.ones((3, 3)))
  with pytest.raises(ValueError, match=r'target_concentration shape \(3,\)'):
    loss(md, conc, y, target_concentration=np.ones(3))
  with pytest.raises(ValueError, match=r'target_concentration shape \(4, 1\)'):
    loss(md, conc, y, target_concentration=np.ones((4, 1)))
  for name, args in [('mean_directions', (md + 1j, conc, y)),
                     ('concentrations', (md, conc + 0j, y)),
                     ('targets', (md, conc, y * 1j))]:
    with pytest.raises(ValueError, match=name + ' must be real'):
      loss(*args)
  with pytest.raises(ValueError, match='target_concentration must be real'):
    loss(md, conc, y, target_concentration=1j)
  with pytest.raises(ValueError, match='log_weights must be real'):
    loss(md, conc, y, log_weights=conc * 1j)
  # mixture_distance names p_ / q_ arguments.
  with pytest.raises(ValueError, match=r'q_concentrations shape'):
    directional.mixture_distance(md, conc, md, np.ones((4, 3)))
  with pytest.raises(ValueError, match=r'same d'):
    directional.mixture_distance(md, conc, np.ones((4, 2, 4)), conc)
  with pytest.raises(ValueError, match=r'p_mean_directions \(4,\), q_mean_directions \(3,\)'):
    directional.mixture_distance(md, conc, np.ones((3, 2, 3)), np.ones((3, 2)))
  with pytest.raises(ValueError, match=r'p_mean_directions must be real'):
    directional.mixture_distance(md * 1j, conc, md, conc)
  with pytest.raises(ValueError, match=r'x shape \(4, 2\) must be \[\.\.\., d\] with d = 3'):
    directional.log_prob(np.ones((4, 2)), md, conc)
  with pytest.raises(ValueError, match=r'\[\.\.\., 4\]'):
    directional.quaternion_to_rotation_matrix(np.ones(3))


# ----------------------------------------------------------------------------
# Helpers: modes, sampling, mean direction, conversions, the pytree.


def test_modes_on_the_circle_match_a_grid_search():
  angles = np.array([0.0, 0.9, 3.0, -2.0])
  kappas = np.array([4.0, 6.0, 8.0, 1.0])
  logits = np.log([0.3, 0.2, 0.3, 0.2])
  mus = np.stack([np.cos(angles), np.sin(angles)], -1)
  theta = np.linspace(-np.pi, np.pi, 400001)
  pdf = ref_pdf(np.stack([np.cos(theta), np.sin(theta)], -1), mus, kappas, logits)
  peak = (pdf > np.roll(pdf, 1)) & (pdf > np.roll(pdf, -1))
  order = np.argsort(-pdf[peak])
  expected, expected_log_p = theta[peak][order], np.log(pdf[peak][order])
  n = len(expected)
  assert n == 3  # the broad component at -2 has no mode of its own
  with enable_x64():
    x, log_p, valid = directional.modes(mus, kappas, logits)
  assert int(np.sum(valid)) == n and np.all(valid[:n])
  got = np.arctan2(x[:n, 1], x[:n, 0])
  np.testing.assert_allclose(got, expected, atol=1e-4)
  np.testing.assert_allclose(log_p[:n], expected_log_p, atol=1e-8)
  np.testing.assert_allclose(directional.vector_to_angle(
      directional.most_likely_mode(mus, kappas, logits)), expected[0], atol=1e-4)


@pytest.mark.parametrize('d', DIMS)
def test_modes_of_well_separated_components(d):
  rng = np.random.default_rng(60 + d)
  mus = np.eye(d)[:2]
  mus = np.concatenate([mus, -mus[:1], mus[:1]])  # the last duplicates the first
  kappas = np.array([200.0, 100.0, 300.0, 200.0])
  logits = np.log([0.2, 0.4, 0.2, 0.2])
  rotation = stats.special_ortho_group.rvs(d, random_state=rng)
  mus = mus @ rotation.T
  x, log_p, valid = jax.jit(directional.modes)(
      np.stack([mus, mus]), np.stack([kappas] * 2), np.stack([logits] * 2))
  assert x.shape == (2, 4, d) and log_p.shape == (2, 4) and valid.shape == (2, 4)
  np.testing.assert_array_equal(valid, [[True, True, True, False]] * 2)
  # Densities: the duplicate pair (weight 0.4 at κ 200) ≈ the lone κ = 100 one
  # (0.4) < the κ = 300 one; ordering by the exact peak densities.
  expected = ref_pdf(mus[[0, 1, 2]], mus, kappas, logits)
  order = np.argsort(-expected)
  np.testing.assert_allclose(x[0, :3], mus[[0, 1, 2]][order], atol=1e-4)
  np.testing.assert_allclose(log_p[0, :3], np.log(expected[order]), rtol=1e-5)
  # Antipodal: components 0 and 2 are one axis, so two modes remain.
  x, log_p, valid = directional.modes(mus, kappas, logits, antipodal=True)
  assert int(np.sum(valid)) == 2 and np.all(valid[:2])
  np.testing.assert_allclose(np.abs(x[0] @ mus[0]), 1.0, atol=1e-6)
  np.testing.assert_allclose(np.abs(x[1] @ mus[1]), 1.0, atol=1e-6)


def marginal_cosine_cdf(kappa, d):
  """CDF of the angle θ = arccos(μᵀx), density ∝ e^{κ cos θ} sin^{d-2} θ."""
  theta = np.linspace(0, np.pi, 200001)
  log_density = kappa * (np.cos(theta) - 1) + (d - 2) * np.log(np.sin(theta) + 1e-300)
  cdf = integrate.cumulative_trapezoid(np.exp(log_density), theta, initial=0)
  return lambda t: np.interp(t, theta, cdf / cdf[-1])


@pytest.mark.parametrize('d', DIMS)
def test_sample_matches_the_density(d):
  rng = np.random.default_rng(70 + d)
  key = jax.random.key(d)
  # Each component's angle to its mean follows the marginal law (KS test).
  for kappa in (0.0, 0.7, 5.0, 300.0):
    mu = unit(rng, (1, d))
    x = directional.sample(key, mu, np.array([kappa]), sample_shape=(4000,))
    assert x.shape == (4000, d)
    np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 1, atol=1e-5)
    theta = np.arccos(np.clip(np.asarray(x, np.float64) @ mu[0], -1, 1))
    assert stats.kstest(theta, marginal_cosine_cdf(kappa, d)).pvalue > 1e-3, kappa
  # Mixture: the sample mean is the first moment Σ w A(κ) μ (5 standard errors).
  mus, kappas, logits = random_mixture(rng, 3, d)
  x = np.asarray(directional.sample(key, mus, kappas, logits, sample_shape=(100000,)))
  weights = np.exp(logits - special.logsumexp(logits))
  moment = np.sum((weights * ref_resultant_length(kappas, d))[:, None] * mus, 0)
  np.testing.assert_allclose(x.mean(0), moment, atol=5 * x.std(0).max() / np.sqrt(1e5))
  np.testing.assert_allclose(directional.mean_direction(mus, kappas, logits),
                             moment / np.linalg.norm(moment), rtol=1e-5)
  # Antipodal: each draw's sign is a fair coin, |μᵀx| unchanged.
  mu, kappa = unit(rng, (1, d)), np.array([20.0])
  plain = np.asarray(directional.sample(key, mu, kappa, sample_shape=(20000,)))
  sym = np.asarray(directional.sample(key, mu, kappa, sample_shape=(20000,),
                                      antipodal=True))
  assert abs(np.mean(sym @ mu[0] > 0) - 0.5) < 0.02
  np.testing.assert_allclose(np.abs(sym @ mu[0]), np.abs(plain @ mu[0]), atol=1e-6)


def test_sample_at_large_concentration_in_float32():
  # E[1 - μᵀx] = 1 - A_d(κ) ≈ (d-1)/(2κ): a resolution float32's cosine lacks.
  for d in DIMS:
    for kappa in (1e4, 1e5):
      mu = np.eye(d, dtype=np.float32)[:1]
      x = directional.sample(jax.random.key(1), mu, np.float32([kappa]),
                             sample_shape=(20000,))
      angle_sq = np.sum(np.square(np.asarray(x, np.float64)[:, 1:]), -1)  # ≈ 2(1 - w)
      expected = 2 * (1 - ref_resultant_length(kappa, d))
      np.testing.assert_allclose(angle_sq.mean(), expected, rtol=0.05)


def test_sample_batch_shapes_and_vmap():
  rng = np.random.default_rng(9)
  mus, kappas, logits = random_mixture(rng, 2, 3, batch=(4, 5))
  x = directional.sample(jax.random.key(0), mus, kappas, logits, sample_shape=(7,))
  assert x.shape == (7, 4, 5, 3)
  y = jax.jit(jax.vmap(lambda k, m, c: directional.sample(k, m, c)))(
      jax.random.split(jax.random.key(1), 4), mus[:, 0], kappas[:, 0])
  assert y.shape == (4, 3) and np.all(np.isfinite(y))


def test_mean_direction_matches_quadrature():
  rng = np.random.default_rng(11)
  with enable_x64():
    for d in (3, 4):
      mus, kappas, logits = random_mixture(rng, 3, d, kappa_range=(0.0, 6.0))
      x, w = grid(d)
      pdf = ref_pdf(x, mus, kappas, logits)
      first = np.sum((w * pdf)[:, None] * x, 0)
      np.testing.assert_allclose(directional.mean_direction(mus, kappas, logits),
                                 first / np.linalg.norm(first), atol=1e-10)
      # Antipodal: the principal axis of the second moment.
      pdf = ref_pdf(x, mus, kappas, logits, antipodal=True)
      second = np.einsum('n,ni,nj->ij', w * pdf, x, x)
      axis = np.linalg.eigh(second)[1][:, -1]
      got = directional.mean_direction(mus, kappas, logits, antipodal=True)
      assert got[0] >= 0
      np.testing.assert_allclose(got, axis * np.sign(axis[0]), atol=1e-9)


def test_quaternions_match_scipy_and_round_trip():
  rng = np.random.default_rng(12)
  q = unit(rng, (50, 4))
  # Half-turns (w = 0) and near-identity rotations exercise every branch.
  q[:4] = np.eye(4)[[1, 2, 3, 0]]
  q[4:8] = unit(rng, (4, 3)) @ np.eye(4)[1:]
  with enable_x64():
    matrices = directional.quaternion_to_rotation_matrix(q)
    np.testing.assert_allclose(matrices, Rotation.from_quat(q, scalar_first=True)
                               .as_matrix(), atol=1e-12)
    back = directional.rotation_matrix_to_quaternion(matrices)
    np.testing.assert_allclose(np.abs(np.sum(back * q, -1)), 1, atol=1e-12)
    # The sign is w ≥ 0's (half-turns, w = 0, have both: checked above).
    np.testing.assert_allclose(back[8:], q[8:] * np.where(q[8:, :1] < 0, -1, 1),
                               atol=1e-12)
    assert np.all(back[:, 0] >= 0)
    rotations = stats.special_ortho_group.rvs(3, size=20, random_state=rng)
    np.testing.assert_allclose(directional.quaternion_to_rotation_matrix(
        directional.rotation_matrix_to_quaternion(rotations)), rotations, atol=1e-12)
    # Raw (unnormalised) quaternions are normalised first.
    np.testing.assert_allclose(directional.quaternion_to_rotation_matrix(3.0 * q[9]),
                               matrices[9], atol=1e-12)


def test_angles_round_trip():
  theta = np.linspace(-np.pi + 1e-3, np.pi - 1e-3, 50)
  v = directional.angle_to_vector(theta)
  np.testing.assert_allclose(v, np.stack([np.cos(theta), np.sin(theta)], -1), atol=1e-6)
  np.testing.assert_allclose(directional.vector_to_angle(v), theta, atol=1e-6)
  np.testing.assert_allclose(directional.vector_to_angle(3 * np.array([0.0, -1.0])),
                             -np.pi / 2)


def test_mixture_pytree_delegates():
  rng = np.random.default_rng(13)
  mus, kappas, logits = random_mixture(rng, 3, 4, batch=(2,))
  mixture = directional.VonMisesFisherMixture(mus, kappas, logits)
  assert len(jax.tree.leaves(mixture)) == 3
  assert len(jax.tree.leaves(directional.VonMisesFisherMixture(mus, kappas))) == 2
  x = unit(rng, (2, 4))
  for antipodal in (False, True):
    got = jax.jit(lambda m, x: m.log_prob(x, antipodal=antipodal))(mixture, x)
    np.testing.assert_allclose(got, directional.log_prob(x, mus, kappas, logits,
                                                         antipodal=antipodal),
                               rtol=1e-6)
    np.testing.assert_allclose(
        mixture.mean_direction(antipodal=antipodal),
        directional.mean_direction(mus, kappas, logits, antipodal=antipodal), rtol=1e-6)
    np.testing.assert_allclose(
        mixture.most_likely_mode(antipodal=antipodal),
        directional.most_likely_mode(mus, kappas, logits, antipodal=antipodal),
        rtol=1e-6)
    for a, b in zip(mixture.modes(antipodal=antipodal),
                    directional.modes(mus, kappas, logits, antipodal=antipodal)):
      np.testing.assert_array_equal(a, b)
    key = jax.random.key(3)
    np.testing.assert_array_equal(
        mixture.sample(key, (5,), antipodal=antipodal),
        directional.sample(key, mus, kappas, logits, (5,), antipodal=antipodal))
