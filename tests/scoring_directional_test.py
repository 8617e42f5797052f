"""Tests of the circle scores against independent NumPy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from propel_jax import directional
from propel_jax import mixtures
from propel_jax import scoring_directional

_per_example = jax.jit(scoring_directional.per_example, static_argnames='grid_points')


def _vec(angles_deg):
  angles = np.deg2rad(np.asarray(angles_deg, np.float64))
  return np.stack([np.cos(angles), np.sin(angles)], -1).astype(np.float32)


def _vmf(means_deg, kappas, weights=None):
  means_deg = np.asarray(means_deg, np.float64)
  log_w = (np.zeros(means_deg.shape) if weights is None
           else np.log(np.asarray(weights, np.float64)))
  return directional.VonMisesFisherMixture(
      jnp.asarray(_vec(means_deg)), jnp.asarray(kappas, jnp.float32),
      jnp.asarray(log_w, jnp.float32))


def _reference_density(theta, means_deg, kappas, weights):
  """Von Mises mixture density w.r.t. arc length, float64 NumPy."""
  mu = np.deg2rad(np.asarray(means_deg, np.float64))
  kappas, weights = np.asarray(kappas, np.float64), np.asarray(weights, np.float64)
  terms = weights * np.exp(kappas * (np.cos(theta[:, None] - mu) - 1.0)) / (
      2 * np.pi * np.i0(kappas) * np.exp(-kappas))
  return terms.sum(-1)


def test_angular_errors_take_the_nearest_equivalent_across_the_wrap():
  predictions = _vec([359.0, 10.0, 95.0])
  equivalents = np.stack([_vec([1.0, 181.0]), _vec([200.0, 20.0]), _vec([-90.0, 90.0])])
  errors = scoring_directional.angular_errors(predictions * 3.0, equivalents)
  np.testing.assert_allclose(errors, [2.0, 10.0, 5.0], atol=1e-4)


def test_accuracies_and_point_scores():
  predictions = {'a': _vec([0.0, 20.0, 40.0])}
  labels = _vec([0.0, 0.0, 0.0])
  scores = scoring_directional.per_example(predictions, labels, labels[:, None])
  np.testing.assert_allclose(scores['acc15/a'], [1, 0, 0])
  np.testing.assert_allclose(scores['acc30/a'], [1, 1, 0])
  assert 'log_likelihood' not in scores


def test_summarize_takes_means_and_median_angular_errors():
  predictions = {'a': _vec([0.0, 20.0, 40.0, 100.0]), 'b': _vec([0.0, 0.0, 0.0, 0.0])}
  labels = _vec([0.0, 0.0, 0.0, 0.0])
  scores = scoring_directional.per_example(predictions, labels, labels[:, None])
  summary = scoring_directional.summarize(scores)
  assert set(summary) == set(scores) | {'median_angular_error/a', 'median_angular_error/b'}
  np.testing.assert_allclose(summary['angular_error/a'], 40.0, rtol=1e-5)
  np.testing.assert_allclose(summary['median_angular_error/a'], 30.0, rtol=1e-5)
  np.testing.assert_allclose(summary['acc30/a'], 0.5)
  np.testing.assert_allclose(summary['angular_error/b'], 0.0, atol=1e-6)
  with pytest.raises(ValueError, match='no examples'):
    scoring_directional.summarize({'angular_error/a': np.zeros((0,))})


def test_log_likelihood_is_the_density_per_radian_of_arc():
  means, kappas, weights = [[10.0, 150.0]] * 2, [[0.0, 0.0], [5.0, 40.0]], [[.5, .5], [.3, .7]]
  labels = _vec([0.0, 140.0])
  scores = _per_example({}, labels, labels[:, None], _vmf(means, kappas, weights),
                        grid_points=720)
  expected = [math.log(_reference_density(np.deg2rad([t]), m, k, w)[0])
              for t, m, k, w in zip([0.0, 140.0], means, kappas, weights)]
  np.testing.assert_allclose(scores['log_likelihood'], expected, rtol=1e-5, atol=1e-5)
  # Uniform: −log 2π, the density 1/2π per radian.
  np.testing.assert_allclose(scores['log_likelihood'][0], -math.log(2 * math.pi), atol=1e-6)
  # With the label as its only equivalent, the SYMSOL-I mean is the same score.
  np.testing.assert_allclose(scores['log_likelihood_all_equivalents'], scores['log_likelihood'],
                             rtol=1e-6)


def test_log_likelihood_of_one_von_mises_matches_scipy():
  from scipy import stats  # pylint: disable=g-import-not-at-top
  mu, kappa = 25.0, 12.0
  label_deg = np.array([40.0, -100.0])
  scores = _per_example({}, _vec(label_deg), _vec(label_deg)[:, None],
                        _vmf([[mu]] * 2, [[kappa]] * 2), grid_points=720)
  expected = stats.vonmises.logpdf(np.deg2rad(label_deg), kappa, loc=np.deg2rad(mu))
  np.testing.assert_allclose(scores['log_likelihood'], expected, rtol=1e-5)


def test_log_likelihood_all_equivalents_penalises_a_density_on_one_of_k():
  # SYMSOL I's protocol: log p averaged over the k = 4 equivalents (each
  # repeated twice, as our datasets do). One sharp von Mises on the label
  # against an equal mixture over all four.
  from scipy import stats  # pylint: disable=g-import-not-at-top
  kappa = 50.0
  equivalent_deg = np.array([10.0, 100.0, 190.0, 280.0] * 2)
  labels = _vec(equivalent_deg[:1])
  equivalents = _vec(equivalent_deg[None])
  one = _per_example({}, labels, equivalents, _vmf([[10.0]], [[kappa]]), grid_points=720)
  every = _per_example({}, labels, equivalents, _vmf([equivalent_deg[:4]], [[kappa] * 4]),
                       grid_points=720)
  theta = np.deg2rad(equivalent_deg)
  log_one = stats.vonmises.logpdf(theta, kappa, loc=np.deg2rad(10.0))
  log_every = np.log(np.mean(
      stats.vonmises.pdf(theta[:, None], kappa, loc=np.deg2rad(equivalent_deg[:4])), axis=1))
  np.testing.assert_allclose(one['log_likelihood'], log_one[:1], rtol=1e-5)
  np.testing.assert_allclose(one['log_likelihood_all_equivalents'], [log_one.mean()], rtol=1e-5)
  np.testing.assert_allclose(every['log_likelihood_all_equivalents'], [log_every.mean()],
                             rtol=1e-5)
  # The label alone favours the one-mode density by log 4; all equivalents
  # favour the four-mode one by far.
  np.testing.assert_allclose(one['log_likelihood'] - every['log_likelihood'], math.log(4),
                             atol=1e-4)
  assert every['log_likelihood_all_equivalents'][0] > one['log_likelihood_all_equivalents'][0] + 10


def test_gaussian_restricted_to_the_circle_is_a_von_mises():
  # N(x; μ, σ²1) on the unit circle ∝ exp(μᵀx / σ²): von Mises with κ = |μ|/σ².
  sigma, radius = 0.2, 0.8
  means = jnp.asarray(_vec([[30.0]] * 2) * radius)
  mixture = mixtures.Mixture(means, jnp.full((2, 1, 2), sigma), jnp.zeros((2, 1)))
  labels = _vec([25.0, 100.0])
  got = scoring_directional.log_density(mixture, jnp.asarray(labels))
  expected = np.log(_reference_density(np.deg2rad([25.0, 100.0]), [30.0],
                                       [radius / sigma**2], [1.0]))
  np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_spread_matches_numerical_integration():
  # Two modes of different width and weight; two equivalents 180° apart.
  means, kappas, weights = [20.0, 210.0], [30.0, 300.0], [0.4, 0.6]
  labels = _vec([0.0])
  equivalents = _vec([[0.0, 180.0]])
  scores = _per_example({}, labels, equivalents, _vmf([means], [kappas], [weights]),
                        grid_points=3600)
  theta = (np.arange(200_000) + 0.5) * (2 * np.pi / 200_000)
  density = _reference_density(theta, means, kappas, weights)
  to_nearest = np.rad2deg(np.minimum(
      np.abs(np.angle(np.exp(1j * theta))), np.abs(np.angle(np.exp(1j * (theta - np.pi))))))
  expected = np.sum(density * to_nearest) * (2 * np.pi / 200_000)
  np.testing.assert_allclose(scores['spread'], [expected], rtol=1e-3)


def test_mode_recall():
  equivalents = _vec([[0.0, 120.0, 240.0, 0.0, 120.0, 240.0]] * 3)
  labels = equivalents[:, 0]
  distribution = _vmf(
      [[2.0, 118.0, 245.0],  # all three found
       [0.0, 120.0, 120.0],  # 240° missing
       [0.0, 135.0, 240.0]],  # 120° more than 10° from the nearest mode
      [[200.0] * 3] * 3)
  scores = _per_example({}, labels, equivalents, distribution, grid_points=3600)
  np.testing.assert_allclose(scores['mode_recall'], [1.0, 2 / 3, 2 / 3], atol=1e-6)
  np.testing.assert_allclose(scores['mode_recall_all'], [1.0, 0.0, 0.0])
  # A flat density has no modes above the uniform level.
  flat = _per_example({}, labels[:1], equivalents[:1], _vmf([[0.0]], [[0.01]]),
                      grid_points=3600)
  np.testing.assert_allclose(flat['mode_recall'], [0.0])


# ----------------------------------------------------------------------------
# Rotations (unit quaternions).


def _about_z(angles_deg):
  half = np.deg2rad(np.asarray(angles_deg, np.float64)) / 2
  return np.stack([np.cos(half), 0 * half, 0 * half, np.sin(half)], -1).astype(np.float32)


def test_geodesic_angle_and_nearest_equivalent():
  a = _about_z([0.0, 30.0, 350.0])
  np.testing.assert_allclose(
      scoring_directional.geodesic_angle_deg(a, _about_z([0.0, 0.0, 0.0])), [0, 30, 10],
      atol=1e-3)
  # q and -q are one rotation.
  np.testing.assert_allclose(scoring_directional.geodesic_angle_deg(a, -a), 0.0, atol=1e-3)
  equivalents = np.stack([_about_z([90.0, 180.0, 270.0, 0.0])] * 3)
  np.testing.assert_allclose(scoring_directional.rotation_errors(a, equivalents),
                             [0, 30, 10], atol=1e-3)


def test_rotation_log_likelihood_spread_and_modes():
  from scipy import special  # pylint: disable=g-import-not-at-top
  equivalents = np.stack([_about_z([0.0, 90.0, 180.0, 270.0])] * 3)
  labels = equivalents[:, 0]
  kappa = 1e4
  mixture = directional.VonMisesFisherMixture(
      jnp.asarray(np.stack([equivalents[0], equivalents[0], equivalents[0, :1].repeat(4, 0)])),
      jnp.asarray([[kappa] * 4, [kappa, kappa, kappa, 0.0], [kappa] * 4], jnp.float32),
      jnp.zeros((3, 4)))
  # Example 1: its last component is uniform, so 270° has no mode; example 2:
  # all four components on the label.
  scores = jax.jit(scoring_directional.rotation_per_example)({}, labels, equivalents, mixture)
  np.testing.assert_allclose(scores['mode_recall'], [1.0, 0.75, 0.25])
  np.testing.assert_allclose(scores['mode_recall_all'], [1.0, 0.0, 0.0])
  # Example 2: one antipodal vMF at the label: f_s(q) = C_4(κ) (e^κ + e^-κ)/2 with
  # C_4(κ) = κ / (4π² I1(κ)), on SO(3) (volume π²) twice that.
  log_c4 = math.log(kappa) - math.log(4 * math.pi**2) - math.log(special.i1e(kappa)) - kappa
  expected = log_c4 + kappa - math.log(2) + math.log(2)
  np.testing.assert_allclose(scores['log_likelihood'][2], expected, rtol=1e-4)
  # Spread of a sharp vMF: the rotation angle is 2φ, φ ~ χ₃/√κ: E = 2√(8/π)/√κ rad.
  np.testing.assert_allclose(scores['spread'][2], np.rad2deg(2 * math.sqrt(8 / math.pi / kappa)),
                             rtol=0.1)


def test_rotation_scores_of_a_grid_distribution():
  from propel_jax import rotation_grid  # pylint: disable=g-import-not-at-top
  cells = rotation_grid.grid(1).astype(np.float64)
  count = len(cells)
  # Labels at cell centres; the equivalents are those turned by 0/90/180/270° about z.
  labels = cells[[5, 300]]
  turns = _about_z([0.0, 90.0, 180.0, 270.0]).astype(np.float64)
  w1, v1 = labels[:, None, :1], labels[:, None, 1:]
  w2, v2 = turns[None, :, :1], turns[None, :, 1:]
  equivalents = np.concatenate([w1 * w2 - np.sum(v1 * v2, -1, keepdims=True),
                                w1 * v2 + w2 * v1 + np.cross(v1, v2)], -1)  # q_label q_turn
  # Example 0 uniform; example 1 half its mass on the label's cell and half on
  # the cell nearest to the 90° equivalent.
  nearest = np.abs(equivalents[1] @ cells.T).argmax(1)
  logits = np.full((2, count), -30.0)
  logits[0] = 0.0
  logits[1, nearest[:2]] = 0.0
  grid_distribution = rotation_grid.GridDistribution(jnp.asarray(logits, jnp.float32))
  scores = jax.jit(scoring_directional.rotation_per_example)(
      {}, jnp.asarray(labels, jnp.float32), jnp.asarray(equivalents, jnp.float32),
      grid_distribution)
  # log(p_cell · G / π²), Implicit-PDF's score: uniform −log π², half the
  # mass on one cell log(G / 2π²); over the four equivalents the two empty
  # cells' probability e^-30 / (2 + (G − 2) e^-30) counts too.
  log_volume = math.log(math.pi**2)
  np.testing.assert_allclose(scores['log_likelihood'],
                             [-log_volume, math.log(count / 2) - log_volume], atol=1e-4)
  half = 1 / (2 + (count - 2) * math.exp(-30.0))
  empty = math.exp(-30.0) * half
  np.testing.assert_allclose(
      scores['log_likelihood_all_equivalents'],
      [-log_volume, (2 * math.log(half) + 2 * math.log(empty)) / 4 + math.log(count) - log_volume],
      atol=1e-4)
  # Spread: Σ_g p_g min_k angle(g, equivalent k), from the definition (arccos
  # of float32-rounded cells is good to about 0.02° near 0).
  angle = np.degrees(2 * np.arccos(np.clip(np.abs(np.einsum('gd,nkd->ngk', cells, equivalents)),
                                           -1, 1))).min(-1)  # [N, G]
  probability = np.exp(logits - logits.max(1, keepdims=True))
  probability /= probability.sum(1, keepdims=True)
  np.testing.assert_allclose(scores['spread'], (probability * angle).sum(1), rtol=1e-3,
                             atol=0.05)
  # Uniform: no mode reaches twice the uniform density. Example 1: two modes,
  # each on an equivalent.
  within = angle[1][nearest[:2]]
  assert within.max() < scoring_directional.MODE_RADIUS_DEG
  np.testing.assert_allclose(scores['mode_recall'], [0.0, 0.5])
  np.testing.assert_allclose(scores['mode_recall_all'], [0.0, 0.0])


def _haar_quaternions(rng, count):
  """Uniform rotations: normalised Gaussian 4-vectors, float64."""
  q = rng.standard_normal((count, 4))
  return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_uniform_rotation_densities_score_minus_log_pi_squared():
  from propel_jax import rotation_grid  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  labels = _haar_quaternions(rng, 3).astype(np.float32)
  equivalents = np.stack([labels, -labels, labels[::-1]], axis=1)
  flat_vmf = directional.VonMisesFisherMixture.uniform(
      jnp.asarray(_haar_quaternions(rng, 6).reshape(3, 2, 4), jnp.float32), jnp.zeros((3, 2)))
  flat_grid = rotation_grid.GridDistribution(jnp.zeros((3, rotation_grid.num_cells(1))))
  for distribution in (flat_vmf, flat_grid):
    scores = jax.jit(scoring_directional.rotation_per_example)({}, labels, equivalents,
                                                                distribution)
    for name in ('log_likelihood', 'log_likelihood_all_equivalents'):
      np.testing.assert_allclose(scores[name], -math.log(math.pi**2), atol=1e-5, err_msg=name)


def test_rotation_log_likelihood_of_one_antipodal_von_mises_fisher():
  # Closed form: f_s(q) = C_4(κ) cosh(κ μᵀq) on S³, C_4(κ) = κ / (4π² I1(κ)),
  # and the density on SO(3) (volume π²) is 2 f_s: every rotation is ±q.
  from scipy import special  # pylint: disable=g-import-not-at-top
  kappa = 8.0
  mean = np.array([1.0, 0.0, 0.0, 0.0])
  axis = np.array([1.0, 2.0, 2.0]) / 3.0
  labels = np.concatenate([np.cos(np.deg2rad([[20.0], [35.0]])),
                           np.sin(np.deg2rad([[20.0], [35.0]])) * axis], axis=1)  # 40°, 70°
  labels[1] *= -1  # The sign does not matter.
  turns = _about_z([0.0, 90.0, 180.0, 270.0]).astype(np.float64)
  w1, v1 = labels[:, None, :1], labels[:, None, 1:]
  w2, v2 = turns[None, :, :1], turns[None, :, 1:]
  equivalents = np.concatenate([w1 * w2 - np.sum(v1 * v2, -1, keepdims=True),
                                w1 * v2 + w2 * v1 + np.cross(v1, v2)], -1)  # q_label q_turn

  def log_density(q):
    t = np.abs(q @ mean)
    return (math.log(kappa) - math.log(4 * math.pi**2) - math.log(special.i1e(kappa)) - kappa
            + kappa * t + np.log1p(np.exp(-2 * kappa * t)))

  mixture = directional.VonMisesFisherMixture.uniform(
      jnp.asarray(np.tile(mean, (2, 1, 1)), jnp.float32), jnp.full((2, 1), kappa))
  scores = jax.jit(scoring_directional.rotation_per_example)(
      {}, jnp.asarray(labels, jnp.float32), jnp.asarray(equivalents, jnp.float32), mixture)
  np.testing.assert_allclose(scores['log_likelihood'], log_density(labels), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(scores['log_likelihood_all_equivalents'],
                             log_density(equivalents).mean(axis=1), rtol=1e-5, atol=1e-5)


def test_rotation_densities_integrate_to_one_over_volume_pi_squared():
  # ∫ p dμ = π² · E_Haar[p] for the measure μ of total volume π²; Monte Carlo
  # over 2·10⁵ uniform rotations (standard error about 0.3%).
  rng = np.random.default_rng(1)
  q = _haar_quaternions(rng, 200_000)
  mixture = directional.VonMisesFisherMixture(
      jnp.asarray(_haar_quaternions(rng, 3)[None], jnp.float32),
      jnp.asarray([[3.0, 6.0, 1.0]]), jnp.asarray([[0.0, 1.0, -1.0]]))
  log_p = scoring_directional.rotation_log_density(mixture, jnp.asarray(q[:, None], jnp.float32))
  np.testing.assert_allclose(math.pi**2 * np.exp(np.asarray(log_p, np.float64)).mean(), 1.0,
                             atol=0.015)


def test_rotation_log_density_rejects_other_distributions():
  mixture = mixtures.Mixture(jnp.zeros((1, 1, 4)), jnp.ones((1, 1, 4)), jnp.zeros((1, 1)))
  with pytest.raises(ValueError, match='von Mises-Fisher mixtures and grid'):
    scoring_directional.rotation_log_density(mixture, jnp.ones((1, 4)))


def test_label_shapes_are_checked():
  with pytest.raises(ValueError, match=r'\[N, 2\] and \[N, K, 2\]'):
    scoring_directional.per_example({}, _vec([0.0, 1.0]), _vec([0.0, 1.0]))
