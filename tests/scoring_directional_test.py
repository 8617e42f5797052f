"""Tests of the circle scores against independent NumPy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np

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


def test_log_likelihood_is_relative_to_the_uniform_density():
  means, kappas, weights = [[10.0, 150.0]] * 2, [[0.0, 0.0], [5.0, 40.0]], [[.5, .5], [.3, .7]]
  labels = _vec([0.0, 140.0])
  scores = _per_example({}, labels, labels[:, None], _vmf(means, kappas, weights),
                        grid_points=720)
  expected = [math.log(2 * math.pi * _reference_density(np.deg2rad([t]), m, k, w)[0])
              for t, m, k, w in zip([0.0, 140.0], means, kappas, weights)]
  np.testing.assert_allclose(scores['log_likelihood'], expected, rtol=1e-5, atol=1e-5)
  assert abs(expected[0]) < 1e-12  # uniform: 0 nats


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
  scores = jax.jit(scoring_directional.per_example_rotation)({}, labels, equivalents, mixture)
  np.testing.assert_allclose(scores['mode_recall'], [1.0, 0.75, 0.25])
  np.testing.assert_allclose(scores['mode_recall_all'], [1.0, 0.0, 0.0])
  # Example 2: one antipodal vMF at the label: f_s(q) = C_4(κ) (e^κ + e^-κ)/2 with
  # C_4(κ) = κ / (4π² I1(κ)), on SO(3) times 2π².
  log_c4 = math.log(kappa) - math.log(4 * math.pi**2) - math.log(special.i1e(kappa)) - kappa
  expected = log_c4 + kappa - math.log(2) + math.log(2 * math.pi**2)
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
  scores = jax.jit(scoring_directional.per_example_rotation)(
      {}, jnp.asarray(labels, jnp.float32), jnp.asarray(equivalents, jnp.float32),
      grid_distribution)
  np.testing.assert_allclose(scores['log_likelihood'], [0.0, math.log(count / 2)], atol=1e-4)
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
