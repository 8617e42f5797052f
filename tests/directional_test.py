"""Tests of propel_jax.directional against references written from the definition.

The references are float64 NumPy/SciPy code: vMF densities from
scipy.special.iv, integrated by quadrature on the circle, the sphere and S^3
(so no reference uses the closed-form overlap), SciPy's rotations and
Beta/marginal laws, and finite differences. float64 is switched on only
inside the tests that need it.

Compilation dominates the run time, so most tests share one problem shape
per d (`problem`: B = 4 examples, I = 3 components) and call the public
functions eagerly: their jitted cores then compile once per shape, dtype and
`antipodal` for the whole file.
"""

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


DIMS = (2, 3, 4)
B, I = 4, 3


# ----------------------------------------------------------------------------
# Float64 references.


def ref_pdf(x, mus, kappas, log_weights=None, antipodal=False):
  """Mixture density at points x [N, d] from the definition (moderate κ)."""
  d = x.shape[-1]
  mus = mus / np.linalg.norm(mus, axis=-1, keepdims=True)
  x = x / np.linalg.norm(x, axis=-1, keepdims=True)
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
    n = 256
    theta = 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(theta), np.sin(theta)], -1), np.full(n, 2 * np.pi / n)
  if d == 3:  # Gauss-Legendre in cos θ, trapezoid in φ.
    u, wu = special.roots_legendre(64)
    m = 128
    phi = 2 * np.pi * np.arange(m) / m
    u, phi = np.meshgrid(u, phi, indexing='ij')
    s = np.sqrt(1 - u ** 2)
    points = np.stack([s * np.cos(phi), s * np.sin(phi), u], -1).reshape(-1, 3)
    return points, np.repeat(wu, m) * (2 * np.pi / m)
  # S^3 in Hopf coordinates: x = (cos η e^{iξ1}, sin η e^{iξ2}), dS =
  # sin η cos η dη dξ1 dξ2 = ½ du dξ1 dξ2 with u = sin² η ∈ [0, 1].
  u, wu = special.roots_legendre(32)
  u, wu = (u + 1) / 2, wu / 2
  m = 64
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


# ----------------------------------------------------------------------------
# The shared problem shape.


def problem(d, seed, kappa_range=(0.5, 6.0)):
  """PROPEL arguments for B examples of I components; raw (non-unit) vectors."""
  rng = np.random.default_rng(seed)
  return dict(
      mean_directions=unit(rng, (B, I, d)) * rng.uniform(0.5, 2.0, (B, I, 1)),
      concentrations=rng.uniform(*kappa_range, (B, I)),
      targets=unit(rng, (B, d)) * rng.uniform(0.5, 2.0, (B, 1)),
      target_concentration=rng.uniform(1.0, 5.0, B),
      log_weights=rng.normal(size=(B, I)))


def loss(args, antipodal=False):
  return directional.propel_loss(
      args['mean_directions'], args['concentrations'], args['targets'],
      target_concentration=args['target_concentration'],
      log_weights=args['log_weights'], antipodal=antipodal)


def distance(p, q, antipodal=False):
  """mixture_distance between (mus, kappas, logits) triples."""
  return directional.mixture_distance(p[0], p[1], q[0], q[1], p_log_weights=p[2],
                                      q_log_weights=q[2], antipodal=antipodal)


def mixture(args):
  return args['mean_directions'], args['concentrations'], args['log_weights']


# ----------------------------------------------------------------------------
# Against quadrature of the definition.


def test_quadrature_is_exact_enough():
  # The references' own check: the grids integrate 1 and a vMF density.
  for d in DIMS:
    x, w = grid(d)
    np.testing.assert_allclose(np.sum(w), 2 * np.pi ** (d / 2) / special.gamma(d / 2),
                               rtol=1e-12)
    # κ = 12: the sharpest integrand below (a square of κ = 6 densities).
    mus = unit(np.random.default_rng(d), (1, d))
    np.testing.assert_allclose(np.sum(w * ref_pdf(x, mus, [12.0])), 1, rtol=1e-12)


@pytest.mark.parametrize('d', DIMS)
@pytest.mark.parametrize('antipodal', [False, True])
def test_distance_and_loss_match_quadrature(d, antipodal, enable_x64):
  args = problem(d, 10 * d + antipodal)
  args['concentrations'][0, 1] = 0.0  # a uniform component too
  p = mixture(problem(d, 100 + d))
  q = mixture(args)
  with enable_x64():
    got_distance = distance(p, q, antipodal)
    got_loss = loss(args, antipodal)
  assert got_loss.dtype == jnp.float64 and got_loss.shape == (B,)
  for b in range(B):
    q_b = tuple(a[b] for a in q)
    np.testing.assert_allclose(
        got_distance[b], ref_distance(tuple(a[b] for a in p), q_b, antipodal),
        rtol=1e-9)
    target = (args['targets'][b][None], [args['target_concentration'][b]], None)
    np.testing.assert_allclose(got_loss[b], ref_distance(target, q_b, antipodal),
                               rtol=1e-9)


@pytest.mark.parametrize('d', DIMS)
def test_log_prob_matches_definition_and_integrates_to_one(d, enable_x64):
  mus, kappas, logits = mixture(problem(d, d, kappa_range=(0.0, 8.0)))
  x, w = grid(d)
  for antipodal in (False, True):
    with enable_x64():
      got = np.exp(directional.log_prob(x, mus[:1], kappas[:1], logits[:1],
                                        antipodal=antipodal))
    np.testing.assert_allclose(got, ref_pdf(x, mus[0], kappas[0], logits[0], antipodal),
                               rtol=1e-11)
    np.testing.assert_allclose(np.sum(w * got), 1.0, rtol=1e-10)


def test_log_prob_near_a_sharp_component_is_exact_in_float32():
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
  args = problem(d, 20 + d)
  p = mixture(args)
  rng = np.random.default_rng(d)
  perm = np.array([2, 0, 1])
  # The same density, components in another order and raw vectors rescaled: 0.
  same = (3.0 * p[0][:, perm], p[1][:, perm], p[2][:, perm])
  np.testing.assert_allclose(distance(p, same), 0, atol=2e-6)
  # Any change of the density: > 0, also a small one.
  assert np.all(distance(p, (p[0] + 0.05 * unit(rng, p[0].shape), p[1], p[2])) > 1e-5)
  assert np.all(distance(p, (p[0], p[1] * 1.1, p[2])) > 1e-5)
  assert np.all(distance(p, (p[0], p[1], p[2] + [0.3, 0, 0])) > 1e-6)
  # Flipping a component changes the density unless it is antipodal.
  flipped = (p[0] * np.array([-1, 1, 1])[:, None], p[1], p[2])
  assert np.all(distance(p, flipped) > 1e-4)
  np.testing.assert_allclose(distance(p, flipped, True), 0, atol=2e-6)
  # Random pairs, from broad to sharp: ≥ 0 (and clearly > 0).
  for seed in range(4):
    q = mixture(problem(d, 1000 * seed + d, kappa_range=(0.0, 50.0)))
    for antipodal in (False, True):
      values = distance(mixture(problem(d, seed, kappa_range=(0.0, 50.0))), q, antipodal)
      assert np.all(values > 1e-3)


@pytest.mark.parametrize('d', [3, 4])
def test_invariant_under_a_common_rotation(d, enable_x64):
  args = problem(d, 30 + d)
  rotation = stats.special_ortho_group.rvs(d, random_state=d)
  rotated = dict(args, mean_directions=args['mean_directions'] @ rotation.T,
                 targets=args['targets'] @ rotation.T)
  one_side = dict(args, targets=rotated['targets'])
  for antipodal in (False, True):
    with enable_x64():
      before, after = loss(args, antipodal), loss(rotated, antipodal)
      moved = loss(one_side, antipodal)  # rotating one side only: not equal
    np.testing.assert_allclose(after, before, rtol=1e-12)
    assert np.all(np.abs(moved - before) > 1e-4)


@pytest.mark.parametrize('d', DIMS)
def test_antipodal_ignores_signs(d):
  args = problem(d, 40 + d)
  signs = np.random.default_rng(d).choice([-1.0, 1.0], size=(B, I, 1))
  flipped_target = dict(args, targets=-args['targets'])
  flipped_components = dict(args, mean_directions=signs * args['mean_directions'])
  base = loss(args, True)
  np.testing.assert_allclose(loss(flipped_target, True), base, rtol=1e-5)
  np.testing.assert_allclose(loss(flipped_components, True), base, rtol=1e-5)
  # Without the symmetry the target's sign matters.
  assert np.all(np.abs(loss(flipped_target) - loss(args)) > 1e-3)


def test_logits_shift_invariance():
  args = problem(3, 5)
  shifted = dict(args, log_weights=args['log_weights'] + 5.0)
  np.testing.assert_allclose(loss(shifted), loss(args), rtol=1e-6)
  # Equal logits, whatever their value, are the default equal weights.
  for value in (0.0, -7.0):
    equal = dict(args, log_weights=np.full((B, I), value))
    np.testing.assert_allclose(loss(equal), loss(dict(args, log_weights=None)),
                               rtol=1e-6)
  assert np.all(np.abs(loss(args) - loss(dict(args, log_weights=np.zeros((B, I)))))
                > 1e-4)


def test_raw_vectors_are_normalised_and_zero_gives_nan():
  args = problem(3, 6)
  rng = np.random.default_rng(6)
  rescaled = dict(args,
                  mean_directions=args['mean_directions'] * rng.uniform(0.1, 10, (B, I, 1)),
                  targets=args['targets'] * rng.uniform(0.1, 10, (B, 1)))
  np.testing.assert_allclose(loss(rescaled), loss(args), rtol=1e-5)
  zero = dict(args, targets=args['targets'] * np.array([[0.0], [1], [1], [1]]))
  values = loss(zero)
  assert np.isnan(values[0]) and np.all(np.isfinite(values[1:]))


# ----------------------------------------------------------------------------
# Extreme inputs and float32.


def extreme_rows(d, kappa):
  """B rows at concentration κ: the resultant 0 in the cross term and in q's self
  term, a target opposite every component, and unequal κ opposite."""
  e = np.eye(d)
  kappas = np.full((B, I), kappa)
  kappas[3] = [kappa, 2 * kappa, 0.5 * kappa]
  return dict(
      mean_directions=np.stack([[e[0], e[1], e[1]], [e[0], -e[0], e[1]],
                                [e[0], e[0], e[0]], [e[0], e[0], e[1]]]),
      concentrations=kappas,
      targets=np.stack([-e[0], e[1], -e[0], -e[0]]),
      target_concentration=np.array([kappa, 1.0, kappa, 0.5 * kappa]),
      log_weights=np.zeros((B, I)))


@pytest.mark.parametrize('d', DIMS)
def test_extreme_inputs_finite_value_and_gradient(d, enable_x64):
  """κ = 0, 1e-8, 1e4, 1e5 (and 1) in float32: finite loss and gradient.

  Gradients with the symmetry (whose overlaps contain the plain ones: a NaN
  or inf in either would show) for every d, and without it for d = 3;
  values of both against float64.
  """
  names = ('mean_directions', 'concentrations', 'targets', 'target_concentration',
           'log_weights')
  for kappa in (0.0, 1e-8, 1.0, 1e4, 1e5):
    args = {k: v.astype(np.float32) for k, v in extreme_rows(d, kappa).items()}
    for antipodal in (True, False) if d == 3 else (True,):
      total = lambda *v, a=antipodal: loss(dict(zip(names, v)), a).sum()
      value, grads = jax.value_and_grad(total, argnums=range(5))(*args.values())
      assert np.isfinite(value), kappa
      for name, g in zip(names, grads):
        assert np.all(np.isfinite(g)), (kappa, name)
      # Row 2, the target opposite equal components of equal κ (r = 0):
      # moving it along the sphere any way changes the loss equally, so by
      # symmetry its gradient is 0.
      np.testing.assert_allclose(grads[2][2], 0.0, atol=1e-6 * max(kappa, 1.0))
    for antipodal in (False, True):
      values = loss(args, antipodal)
      assert np.all(values >= -1e-5)
      # Float32 agrees with float64, values O(1) to O(κ).
      with enable_x64():
        values64 = np.asarray(loss(extreme_rows(d, kappa), antipodal))
      np.testing.assert_allclose(values, values64, rtol=2e-5, atol=2e-5)


def test_uniform_limits(enable_x64):
  args = extreme_rows(3, 0.0)
  # κ = 0 everywhere: every density uniform, distance 0; tiny κ: nearly 0.
  for kappa in (0.0, 1e-8):
    uniform = dict(args, concentrations=np.full((B, I), kappa),
                   target_concentration=np.full(B, kappa))
    np.testing.assert_allclose(loss(uniform), 0.0, atol=1e-6)
  # Uniform mixture against vMF(κ): ∫f² = C(κ)²/C(2κ), ∫f u = 1/area.
  kappa = 3.0
  c = lambda k: k / (4 * np.pi * np.sinh(k))
  expected = -np.log(2 / (4 * np.pi) / (1 / (4 * np.pi) + c(kappa) ** 2 / c(2 * kappa)))
  with enable_x64():
    value = loss(dict(args, target_concentration=np.full(B, kappa)))
  np.testing.assert_allclose(value, expected, rtol=1e-12)


@pytest.mark.parametrize('d', DIMS)
def test_float32_keeps_accuracy_at_large_concentrations(d, enable_x64):
  # Sharp vMFs a few 1/√κ apart: O(1) losses from exponents of O(κ).
  rng = np.random.default_rng(d)
  for kappa in (1e3, 1e5):
    args = problem(d, d)
    mus = unit(rng, (B, 1, d))
    args['mean_directions'] = mus + rng.normal(size=(B, I, d)) * 2 / np.sqrt(kappa)
    args['targets'] = mus[:, 0] + rng.normal(size=(B, d)) * 2 / np.sqrt(kappa)
    args['concentrations'] = kappa * rng.uniform(0.5, 2, (B, I))
    args['target_concentration'] = np.full(B, kappa)
    value = loss({k: v.astype(np.float32) for k, v in args.items()})
    with enable_x64():
      value64 = np.asarray(loss(args))
    assert np.all((1e-3 < value64) & (value64 < 100))
    np.testing.assert_allclose(value, value64, rtol=1e-4, atol=1e-5)
    # A perfect prediction is 0 up to rounding.
    perfect = dict(args, mean_directions=np.repeat(mus, I, axis=1),
                   targets=mus[:, 0], concentrations=np.full((B, I), kappa))
    np.testing.assert_allclose(
        loss({k: v.astype(np.float32) for k, v in perfect.items()}), 0.0, atol=1e-6)


@pytest.mark.parametrize('x64', [False, True])
def test_continuous_across_the_series_switch(x64, enable_x64):
  """The series and the Bessel forms meet at κ = ½ and r = ½ without a step."""
  # Steps of a few ulps either side: the loss itself moves by far less than atol.
  dtype, atol, eps = (np.float64, 1e-10, 1e-12) if x64 else (np.float32, 2e-6, 1e-7)
  cast = lambda args: {k: v.astype(dtype) for k, v in args.items()}
  with enable_x64(x64):
    for d in DIMS:
      args = extreme_rows(d, 0.5)  # κ = ½, and r = ½ in row 3's target term
      below, above = (loss(cast(dict(
          args, concentrations=args['concentrations'] * f,
          target_concentration=args['target_concentration'] * f)))
                      for f in (1 - eps, 1 + eps))
      np.testing.assert_allclose(below, above, atol=atol)
      # r = 2 κ_t crosses ½ at κ_t = ¼ in the target's self term.
      quarter = [loss(cast(dict(args, target_concentration=np.full(B, 0.25 + step))))
                 for step in (-eps, eps)]
      np.testing.assert_allclose(quarter[0], quarter[1], atol=atol)


# ----------------------------------------------------------------------------
# Gradients, transformations.


def regime_problem(d):
  """Rows exercising every branch: random; r = 0 (equal κ, opposite target);
  κ near the series switch; tiny κ."""
  args = problem(d, 50 + d, kappa_range=(0.2, 4.0))
  e = np.eye(d)
  args['mean_directions'][1, 0] = e[0]
  args['concentrations'][1, 0] = 0.7
  args['targets'][1], args['target_concentration'][1] = -e[0], 0.7
  args['concentrations'][2] = [1.0 + 1e-3, 0.999, 0.5]
  args['target_concentration'][2] = 0.5 + 1e-3
  args['concentrations'][3] = [1e-9, 3.0, 1e-9]
  return args


@pytest.mark.parametrize('d', DIMS)
def test_gradients_match_finite_differences(d, enable_x64):
  args = regime_problem(d)
  names = list(args)

  def total(*values, antipodal):
    return loss(dict(zip(names, values)), antipodal).sum()

  # The symmetric overlap ½[G(μ_a, μ_b) + G(μ_a, -μ_b)] contains the plain
  # one, so antipodal=True checks both; for d = 3 also the plain path, in
  # forward mode.
  if d == 3:
    with enable_x64():
      check_grads(lambda *v: total(*v, antipodal=False), tuple(args.values()),
                  order=1, modes=('fwd',), eps=1e-6)
  for antipodal in (True,):
    f = lambda *v: total(*v, antipodal=antipodal)  # pylint: disable=cell-var-from-loop
    with enable_x64():
      check_grads(f, tuple(args.values()), order=1, modes=('rev',), eps=1e-6)
      # And by hand along each concentration, in every regime.
      # (All argnums, like check_grads' vjp, so the compiled gradient is reused.)
      grad = jax.grad(f, argnums=tuple(range(len(names))))(*args.values())[1]
      h = 1e-7
      for b, i in np.ndindex(B, I):
        step = np.zeros((B, I))
        step[b, i] = h
        plus, minus = dict(args), dict(args)
        plus['concentrations'] = args['concentrations'] + step
        minus['concentrations'] = args['concentrations'] - step
        fd = (f(*plus.values()) - f(*minus.values())) / (2 * h)
        np.testing.assert_allclose(grad[b, i], fd, rtol=1e-6, atol=1e-7)


def test_jit_vmap_and_batching_agree():
  args = problem(4, 8)
  eager = loss(args, True)
  np.testing.assert_allclose(jax.jit(lambda a: loss(a, True))(args), eager, rtol=1e-5)
  names = list(args)
  per_example = jax.vmap(lambda *v: loss(dict(zip(names, v)), True))(*args.values())
  np.testing.assert_allclose(per_example, eager, rtol=1e-5)
  # Size-1 batch axes broadcast: one mixture for a [2, B] batch of targets.
  shared = directional.propel_loss(
      args['mean_directions'][None, :1], args['concentrations'][None, :1],
      np.stack([args['targets'], -args['targets']]), target_concentration=2.0,
      log_weights=args['log_weights'][None, :1], antipodal=True)
  assert shared.shape == (2, B)
  one = dict(args, target_concentration=np.full(B, 2.0),
             mean_directions=np.repeat(args['mean_directions'][:1], B, 0),
             concentrations=np.repeat(args['concentrations'][:1], B, 0),
             log_weights=np.repeat(args['log_weights'][:1], B, 0))
  np.testing.assert_allclose(shared[0], loss(one, True), rtol=1e-5)
  np.testing.assert_allclose(shared[1], loss(one, True), rtol=1e-5)  # antipodal


def test_dtypes(enable_x64):
  args = problem(3, 0)
  assert loss(args).dtype == jnp.float32
  half = dict(args, mean_directions=args['mean_directions'].astype(jnp.bfloat16))
  assert loss(half).dtype == jnp.float32
  with enable_x64():
    assert loss(args).dtype == jnp.float64


# ----------------------------------------------------------------------------
# Errors.


def test_shape_errors_name_the_arguments():
  md, conc, y = np.ones((4, 2, 3)), np.ones((4, 2)), np.ones((4, 3))

  def call(m, k, t, **kw):
    return directional.propel_loss(m, k, t, **{'target_concentration': 1.0, **kw})
  with pytest.raises(ValueError, match=r'exactly one more axis.*\[\.\.\., None, :\].*'
                     r'mean_directions\[None\]'):
    call(np.ones((4, 3)), np.ones(4), y)
  with pytest.raises(ValueError, match=r'exactly one more axis.*targets\[None\]'):
    call(md, conc, np.ones(3))
  with pytest.raises(ValueError, match=r'concentrations shape \(4,\) must be \(4, 2\)'):
    call(md, np.ones(4), y)
  with pytest.raises(ValueError, match=r'log_weights shape \(2,\) must be \(4, 2\)'):
    call(md, conc, y, log_weights=np.zeros(2))
  with pytest.raises(ValueError, match=r'd = 5 must be one of'):
    call(np.ones((4, 2, 5)), conc, np.ones((4, 5)))
  with pytest.raises(ValueError, match=r'd = 1 must be one of'):
    call(np.ones((4, 2, 1)), conc, np.ones((4, 1)))
  with pytest.raises(ValueError, match=r'at least one component'):
    call(np.ones((4, 0, 3)), np.ones((4, 0)), y)
  with pytest.raises(ValueError, match=r'same d'):
    call(md, conc, np.ones((4, 2)))
  with pytest.raises(ValueError, match=r'targets \(3, 3\) \(batch \(3,\)\), '
                     r'mean_directions \(4, 2, 3\) \(batch \(4,\)\)'):
    call(md, conc, np.ones((3, 3)))
  with pytest.raises(ValueError, match=r'target_concentration shape \(3,\)'):
    call(md, conc, y, target_concentration=np.ones(3))
  with pytest.raises(ValueError, match=r'target_concentration shape \(4, 3\).*one number '
                     r'per example, not per axis'):
    call(md, conc, y, target_concentration=np.ones((4, 3)))
  for name, args in [('mean_directions', (md + 1j, conc, y)),
                     ('concentrations', (md, conc + 0j, y)),
                     ('targets', (md, conc, y * 1j))]:
    with pytest.raises(ValueError, match=name + ' must be real'):
      call(*args)
  with pytest.raises(ValueError, match='target_concentration must be real'):
    call(md, conc, y, target_concentration=1j)
  with pytest.raises(ValueError, match='log_weights must be real'):
    call(md, conc, y, log_weights=conc * 1j)
  # mixture_distance names its p_ / q_ arguments.
  with pytest.raises(ValueError, match=r'q_concentrations shape'):
    directional.mixture_distance(md, conc, md, np.ones((4, 3)))
  with pytest.raises(ValueError, match=r'same d'):
    directional.mixture_distance(md, conc, np.ones((4, 2, 4)), conc)
  with pytest.raises(ValueError,
                     match=r'p_mean_directions \(4, 2, 3\) \(batch \(4,\)\), '
                           r'q_mean_directions \(3, 2, 3\) \(batch \(3,\)\)'):
    directional.mixture_distance(md, conc, np.ones((3, 2, 3)), np.ones((3, 2)))
  with pytest.raises(ValueError, match=r'p_mean_directions must be real'):
    directional.mixture_distance(md * 1j, conc, md, conc)
  with pytest.raises(ValueError, match=r'q_mean_directions must be \[\.\.\., I, d\]'):
    directional.mixture_distance(md, conc, np.ones(3), np.ones(()))
  # The helpers check too.
  with pytest.raises(ValueError, match=r'x shape \(4, 2\) must be \[\.\.\., d\] with d = 3'):
    directional.log_prob(np.ones((4, 2)), md, conc)
  with pytest.raises(ValueError, match=r'concentrations shape'):
    directional.sample(jax.random.key(0), md, np.ones(4))
  with pytest.raises(ValueError, match=r'd = 5'):
    directional.modes(np.ones((2, 5)), np.ones(2))
  with pytest.raises(ValueError, match=r'\[\.\.\., 4\]'):
    directional.quaternion_to_rotation_matrix(np.ones(3))
  with pytest.raises(ValueError, match=r'\[\.\.\., 3, 3\]'):
    directional.rotation_matrix_to_quaternion(np.ones((4, 4)))
  with pytest.raises(ValueError, match=r'\[\.\.\., 2\]'):
    directional.vector_to_angle(np.ones(3))


# ----------------------------------------------------------------------------
# Helpers: modes, sampling, mean direction, conversions, the pytree.


def test_modes_on_the_circle_match_a_grid_search():
  """Overlapping components, float32; the second row is the first mirrored.

  (Batched [2, 4, 2] like test_modes_of_well_separated_components[2], so
  the compiled program is shared.)
  """
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
  batch = lambda a, b: np.stack([a, b])
  x, log_p, valid = directional.modes(batch(mus, mus * [1, -1]), batch(kappas, kappas),
                                      batch(logits, logits))
  best = directional.most_likely_mode(batch(mus, mus * [1, -1]), batch(kappas, kappas),
                                      batch(logits, logits))
  np.testing.assert_array_equal(valid, [[True] * n + [False] * (4 - n)] * 2)
  for row, sign in enumerate((1, -1)):
    np.testing.assert_allclose(directional.vector_to_angle(x[row, :n]), sign * expected,
                               atol=2e-5)
    np.testing.assert_allclose(log_p[row, :n], expected_log_p, rtol=2e-6)
    np.testing.assert_allclose(directional.vector_to_angle(best[row]), sign * expected[0],
                               atol=2e-5)


def separated_mixture(d):
  """Two batch rows of four sharp components; the last duplicates the first."""
  mus = np.eye(d)[:2]
  mus = np.concatenate([mus, -mus[:1], mus[:1]])
  rotation = stats.special_ortho_group.rvs(d, random_state=60 + d)
  mus = np.stack([mus @ rotation.T, -mus])
  kappas = np.array([[200.0, 100.0, 300.0, 200.0]] * 2)
  logits = np.log([[0.2, 0.4, 0.2, 0.2]] * 2)
  return mus, kappas, logits


@pytest.mark.parametrize('d', DIMS)
def test_modes_of_well_separated_components(d):
  mus, kappas, logits = separated_mixture(d)
  x, log_p, valid = directional.modes(mus, kappas, logits)
  assert x.shape == (2, 4, d) and log_p.shape == (2, 4) and valid.shape == (2, 4)
  np.testing.assert_array_equal(valid, [[True, True, True, False]] * 2)
  for b in range(2):
    # Ordered by the exact density at each component mean.
    peaks = ref_pdf(mus[b, :3], mus[b], kappas[b], logits[b])
    order = np.argsort(-peaks)
    np.testing.assert_allclose(x[b, :3], mus[b, :3][order], atol=1e-4)
    np.testing.assert_allclose(log_p[b, :3], np.log(peaks[order]), rtol=1e-5)
  if d != 4:  # (the antipodal path does not depend on d: checked once)
    return
  # Antipodal: components 0 and 2 are one axis, so two modes remain.
  x, log_p, valid = directional.modes(mus, kappas, logits, antipodal=True)
  np.testing.assert_array_equal(valid, [[True, True, False, False]] * 2)
  for b in range(2):
    np.testing.assert_allclose(np.sort(np.abs(x[b, :2] @ mus[b, :2].T), axis=None),
                               [0, 0, 1, 1], atol=1e-5)


def marginal_angle_cdf(kappa, d):
  """CDF of the angle θ = arccos(μᵀx) of vMF(μ, κ): density ∝ e^{κ cos θ} sin^{d-2} θ."""
  theta = np.linspace(0, np.pi, 200001)
  log_density = kappa * (np.cos(theta) - 1) + (d - 2) * np.log(np.sin(theta) + 1e-300)
  cdf = integrate.cumulative_trapezoid(np.exp(log_density), theta, initial=0)
  return lambda t: np.interp(t, theta, cdf / cdf[-1])


def draw(key, mus, kappas, logits=None, antipodal=False):
  """20000 draws from a 3-component mixture (one compiled sampler per d)."""
  return np.asarray(directional.sample(
      key, mus, kappas, np.zeros(3) if logits is None else logits,
      sample_shape=(20000,), antipodal=antipodal), np.float64)


@pytest.mark.parametrize('d', DIMS)
def test_sample_matches_the_density(d):
  rng = np.random.default_rng(70 + d)
  key = jax.random.key(d)
  # One vMF (three equal components): its angle to the mean follows the
  # marginal law (Kolmogorov-Smirnov), from uniform to sharp.
  for kappa in (0.0, 0.7, 5.0, 300.0):
    mu = unit(rng, (d,))
    x = draw(key, np.stack([mu] * 3), np.full(3, kappa))
    np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 1, atol=1e-6)
    theta = np.arccos(np.clip(x @ mu, -1, 1))
    assert stats.kstest(theta, marginal_angle_cdf(kappa, d)).pvalue > 1e-3, kappa
  # A mixture: the sample mean is Σ w A(κ) μ (5 standard errors), the
  # direction mean_direction's.
  mus, kappas, logits = unit(rng, (3, d)), np.array([0.5, 3.0, 9.0]), rng.normal(size=3)
  x = draw(key, mus, kappas, logits)
  weights = np.exp(logits - special.logsumexp(logits))
  moment = np.sum((weights * ref_resultant_length(kappas, d))[:, None] * mus, 0)
  np.testing.assert_allclose(x.mean(0), moment, atol=5 * x.std(0).max() / np.sqrt(len(x)))
  np.testing.assert_allclose(directional.mean_direction(mus, kappas, logits),
                             moment / np.linalg.norm(moment), rtol=1e-5)
  if d != 4:  # (the antipodal path does not depend on d: checked once)
    return
  # Antipodal: each draw's sign a fair coin, |μᵀx| as without the symmetry.
  mu, kappa = np.stack([unit(rng, (d,))] * 3), np.full(3, 20.0)
  plain, sym = draw(key, mu, kappa), draw(key, mu, kappa, antipodal=True)
  assert abs(np.mean(sym @ mu[0] > 0) - 0.5) < 0.02
  np.testing.assert_allclose(np.abs(sym @ mu[0]), np.abs(plain @ mu[0]), atol=1e-6)


@pytest.mark.parametrize('d', DIMS)
def test_sample_at_large_concentration_in_float32(d):
  # E[1 - μᵀx] = 1 - A_d(κ) ≈ (d-1)/(2κ): finer than float32's spacing near 1.
  for kappa in (1e4, 1e5):
    mu = np.eye(d)[0]
    x = draw(jax.random.key(1), np.stack([mu] * 3), np.full(3, kappa))
    angle_sq = np.sum(np.square(x[:, 1:]), -1)  # ≈ 2(1 - μᵀx)
    np.testing.assert_allclose(angle_sq.mean(), 2 * (1 - ref_resultant_length(kappa, d)),
                               rtol=0.05)


def test_mean_direction_matches_quadrature(enable_x64):
  with enable_x64():
    for d in (3, 4):
      mus, kappas, logits = (a[0] for a in mixture(problem(d, 11, (0.0, 6.0))))
      x, w = grid(d)
      pdf = ref_pdf(x, mus, kappas, logits)
      first = np.sum((w * pdf)[:, None] * x, 0)
      np.testing.assert_allclose(directional.mean_direction(mus, kappas, logits),
                                 first / np.linalg.norm(first), atol=1e-10)
      # Antipodal: the principal axis of the second moment, first coordinate ≥ 0.
      pdf = ref_pdf(x, mus, kappas, logits, antipodal=True)
      axis = np.linalg.eigh(np.einsum('n,ni,nj->ij', w * pdf, x, x))[1][:, -1]
      got = directional.mean_direction(mus, kappas, logits, antipodal=True)
      np.testing.assert_allclose(got, axis * np.sign(axis[0]), atol=1e-9)


def test_quaternions_match_scipy_and_round_trip(enable_x64):
  rng = np.random.default_rng(12)
  q = unit(rng, (50, 4))
  # Half-turns (w = 0) and the identity exercise every branch.
  q[:4] = np.eye(4)[[1, 2, 3, 0]]
  q[4:8] = unit(rng, (4, 3)) @ np.eye(4)[1:]
  with enable_x64():
    matrices = directional.quaternion_to_rotation_matrix(q)
    np.testing.assert_allclose(
        matrices, Rotation.from_quat(q, scalar_first=True).as_matrix(), atol=1e-12)
    back = directional.rotation_matrix_to_quaternion(matrices)
    np.testing.assert_allclose(np.abs(np.sum(back * q, -1)), 1, atol=1e-12)
    # The sign with w ≥ 0 (half-turns, w = 0, have both: checked above).
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
  """Each method calls its function, passing `antipodal` on.

  antipodal=True shows that it is passed on; the arrays have the shapes of
  the tests above, so their compiled programs are reused.
  """
  mus, kappas, logits = separated_mixture(4)
  m = directional.VonMisesFisherMixture(mus, kappas, logits)
  assert len(jax.tree.leaves(m)) == 3  # `antipodal` is not a leaf
  uniform = directional.VonMisesFisherMixture.uniform(mus, kappas)
  assert len(jax.tree.leaves(uniform)) == 3  # log_weights is always an array
  np.testing.assert_allclose(uniform.log_weights, np.full((2, 4), -np.log(4.0)), rtol=1e-6)
  assert (uniform.num_components, uniform.num_dims, uniform.batch_shape) == (4, 4, (2,))
  x = unit(np.random.default_rng(0), (2, 4))
  np.testing.assert_array_equal(
      m.log_prob(x, antipodal=True),
      directional.log_prob(x, mus, kappas, logits, antipodal=True))
  for a, b in zip(m.modes(antipodal=True),
                  directional.modes(mus, kappas, logits, antipodal=True)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(
      m.most_likely_mode(antipodal=True),
      directional.most_likely_mode(mus, kappas, logits, antipodal=True))
  # A [3, 4] mixture, as in test_sample_matches_the_density.
  rng = np.random.default_rng(1)
  mus, kappas, logits = unit(rng, (3, 4)), np.array([0.5, 3.0, 9.0]), np.zeros(3)
  m = directional.VonMisesFisherMixture(mus, kappas, logits)
  key = jax.random.key(3)
  np.testing.assert_array_equal(
      m.sample(key, (20000,), antipodal=True),
      directional.sample(key, mus, kappas, logits, (20000,), antipodal=True))
  expected = directional.mean_direction(mus, kappas, logits, antipodal=True)
  np.testing.assert_array_equal(m.mean_direction(antipodal=True), expected)
  assert not np.allclose(m.mean_direction(), expected, atol=1e-3)
  # Through jit as an argument.
  np.testing.assert_allclose(
      jax.jit(lambda m: m.mean_direction(antipodal=True))(m), expected, rtol=1e-5)


@pytest.mark.parametrize('antipodal', [False, True])
def test_mode_log_densities_are_the_density_at_the_modes(antipodal):
  """`modes` returns log p at its locations: the symmetrised density with `antipodal`."""
  mus, kappas, logits = separated_mixture(3)
  x, log_p, _ = directional.modes(mus, kappas, logits, antipodal=antipodal)
  want = directional.log_prob(x, mus[:, None], kappas[:, None], logits[:, None],
                              antipodal=antipodal)  # every slot of each row
  np.testing.assert_allclose(log_p, want, rtol=1e-5, atol=1e-5)
