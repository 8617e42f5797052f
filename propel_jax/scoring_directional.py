"""Scores of orientation predictions on the circle and on SO(3), symmetry-aware.

Labels are unit vectors (cos θ, sin θ); every example has K equivalent labels
([N, K, 2], repeats allowed), any of which is right. Point estimates are
vectors of any length (their direction is the prediction). Predicted
densities are `directional.VonMisesFisherMixture`s, or Gaussian
`mixtures.Mixture`s in the plane, whose restriction to the circle is
normalised here by quadrature.

Per example:
  angular error      degrees from the point estimate to the nearest equivalent;
  acc@15, acc@30     whether that error is at most 15° / 30°;
  log-likelihood     log p(label) + log 2π in nats: the density with respect
                     to the uniform distribution on the circle (whose density
                     is 1/2π w.r.t. arc length), so a uniform prediction scores
                     0, higher is better. This is Implicit-PDF's convention on
                     SO(3) (log-likelihood w.r.t. the normalised Haar measure),
                     carried to the circle;
  spread             the expected angle (degrees) from a draw of the predicted
                     density to the nearest equivalent label: Σ_g p_g d_g over
                     a uniform grid of G angles, p normalised on the grid;
  mode recall        the share of equivalent labels within MODE_RADIUS_DEG of
                     a mode, and whether all of them are. Modes are the local
                     maxima of the density on the grid that rise to at least
                     twice the uniform density 1/2π (log-likelihood ratio
                     > log 2), so that ripples of a nearly flat density do not
                     count as modes (a k-fold von Mises mixture clears this for
                     κ ≳ 25, σ ≲ 12°).

The grid has GRID_POINTS angles (0.1° apart); densities sharper than that
(σ ≪ 0.1°) would be under-resolved, which the heads' concentration floors
and scales keep far away in practice.

Rotations (`per_example_rotation`): labels are unit quaternions, q and −q one
rotation, and densities antipodally symmetric vMF mixtures on S³. The error
is the geodesic angle 2 arccos|q₁ᵀq₂| on SO(3); the log-likelihood is w.r.t.
the normalised Haar measure (Implicit-PDF's convention): SO(3) is S³ with q
and −q identified, so log p_SO(3)(R) = log f_s(q) + log 2π², with f_s the
symmetrised density on S³ (area 2π²); uniform scores 0. Spread is a Monte
Carlo mean over draws of the density; modes are `directional.modes` of the
symmetrised mixture that reach twice the uniform density. A
`rotation_grid.GridDistribution` (the grid classifier) is scored on its own
cells: its log density is log p_cell + log G (equivolumetric cells), the
spread is the exact mean Σ_g p_g d_g over the cell centres, and its modes are
the cells that are local maxima among their neighbours at twice the uniform
density or more.
"""

import math

import jax
import jax.numpy as jnp

from propel_jax import directional
from propel_jax import mixtures
from propel_jax import rotation_grid

GRID_POINTS = 3600
ACCURACY_THRESHOLDS_DEG = (15.0, 30.0)
MODE_RADIUS_DEG = 10.0
_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
# log of the area 2π² of S³: the SO(3) density w.r.t. the normalised Haar measure.
_LOG_2PI_SQ = math.log(2.0 * math.pi**2)
SPREAD_SAMPLES = 256


def circle_grid(num_points: int = GRID_POINTS) -> jax.Array:
  """[G, 2] unit vectors at angles 2πg/G, g = 0..G-1."""
  return directional.angle_to_vector(
      jnp.arange(num_points, dtype=jnp.float32) * (2.0 * math.pi / num_points))


def angle_between_deg(a, b) -> jax.Array:
  """Angle in degrees between vectors [..., 2] (of any nonzero length), in [0, 180]."""
  cross = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
  dot = jnp.sum(a * b, axis=-1)
  return jnp.rad2deg(jnp.abs(jnp.arctan2(cross, dot)))


def angular_errors(predictions, equivalent_labels) -> jax.Array:
  """[N] degrees from each prediction [N, 2] to its nearest equivalent [N, K, 2]."""
  return jnp.min(angle_between_deg(predictions[..., None, :], equivalent_labels), axis=-1)


def log_density(distribution, points, grid=None) -> jax.Array:
  """log p at points on the circle, w.r.t. arc length.

  Args:
    distribution: a VonMisesFisherMixture (batch [N]) or a Gaussian Mixture in
      R² (batch [N]), restricted to the circle and normalised over `grid`.
    points: [N, 2] or [M, N, 2] unit vectors (leading axes broadcast).
    grid: [G, 2] the quadrature grid of a Gaussian mixture's normaliser.

  Returns:
    [N] or [M, N].
  """
  # The mixture's axes must match the points' one for one (no implicit broadcast).
  lead = lambda m, n: [None if a is None else a[(None,) * n] for a in m]
  if isinstance(distribution, directional.VonMisesFisherMixture):
    return directional.log_prob(points, *lead(distribution, points.ndim - 2))
  grid = circle_grid() if grid is None else grid
  raw = mixtures.log_prob(points, *lead(distribution, points.ndim - 2))
  on_grid = mixtures.log_prob(grid[:, None, :], *lead(distribution, 1))  # [G, N]
  log_normalizer = (jax.nn.logsumexp(on_grid, axis=0)
                    + math.log(2.0 * math.pi / grid.shape[0]))
  return raw - log_normalizer


def per_example(predictions, labels, equivalent_labels, distribution=None, *,
                grid_points: int = GRID_POINTS, radius_deg: float = MODE_RADIUS_DEG):
  """Every per-example score (see the module docstring).

  Args:
    predictions: {decoder: [N, 2]} point estimates.
    labels: [N, 2] the label (row 0 of the equivalents in our datasets).
    equivalent_labels: [N, K, 2].
    distribution: optional predicted density (see `log_density`).
    grid_points: G, the angles of the quadrature and mode grid.
    radius_deg: the mode recall radius.

  Returns:
    {'angular_error/<decoder>': [N] degrees, 'acc15/<decoder>',
     'acc30/<decoder>': [N] 0/1, and with a distribution 'log_likelihood',
     'spread', 'mode_recall', 'mode_recall_all': [N]}.
  """
  scores = {}
  for name, prediction in predictions.items():
    error = angular_errors(prediction, equivalent_labels)
    scores[f'angular_error/{name}'] = error
    for threshold in ACCURACY_THRESHOLDS_DEG:
      scores[f'acc{threshold:g}/{name}'] = (error <= threshold).astype(jnp.float32)
  if distribution is None:
    return scores
  grid = circle_grid(grid_points)
  scores['log_likelihood'] = log_density(distribution, labels, grid) + _LOG_2PI
  on_grid = log_density(distribution, grid[:, None, :], grid).T  # [N, G]
  distance = angle_between_deg(grid[None, :, None, :],
                               equivalent_labels[:, None, :, :])  # [N, G, K]
  probability = jax.nn.softmax(on_grid, axis=-1)
  scores['spread'] = jnp.sum(probability * jnp.min(distance, axis=-1), axis=-1)
  is_mode = ((on_grid > jnp.roll(on_grid, 1, axis=-1))
             & (on_grid >= jnp.roll(on_grid, -1, axis=-1)) & (on_grid + _LOG_2PI > _LOG_2))
  found = jnp.any(is_mode[..., None] & (distance <= radius_deg), axis=-2)  # [N, K]
  scores['mode_recall'] = found.mean(axis=-1, dtype=jnp.float32)
  scores['mode_recall_all'] = jnp.all(found, axis=-1).astype(jnp.float32)
  return scores


def geodesic_angle_deg(a, b) -> jax.Array:
  """Rotation angle (degrees, [0, 180]) between quaternions [..., 4] (any nonzero length).

  With b's sign chosen so that aᵀb ≥ 0 and both normalised, the angle φ
  between them is half the rotation angle, and φ/2 = atan2(‖a − b‖, ‖a + b‖)
  keeps its accuracy near 0, unlike arccos.
  """
  a = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
  b = b / jnp.linalg.norm(b, axis=-1, keepdims=True)
  b = jnp.where(jnp.sum(a * b, axis=-1, keepdims=True) < 0, -b, b)
  half = jnp.arctan2(jnp.linalg.norm(a - b, axis=-1), jnp.linalg.norm(a + b, axis=-1))
  return jnp.rad2deg(4.0 * half)


def rotation_errors(predictions, equivalent_labels) -> jax.Array:
  """[N] geodesic degrees from each quaternion [N, 4] to its nearest equivalent [N, K, 4]."""
  return jnp.min(geodesic_angle_deg(predictions[..., None, :], equivalent_labels), axis=-1)


def per_example_rotation(predictions, labels, equivalent_labels, distribution=None, *,
                         key=None, num_samples: int = SPREAD_SAMPLES,
                         radius_deg: float = MODE_RADIUS_DEG):
  """Every per-example score on SO(3) (see the module docstring).

  Args:
    predictions: {decoder: [N, 4]} point estimates (quaternions).
    labels: [N, 4].
    equivalent_labels: [N, K, 4].
    distribution: optional `directional.VonMisesFisherMixture` over [N]
      (antipodally symmetrised here) or `rotation_grid.GridDistribution`.
    key: PRNG key of the spread's draws (default: key 0).
    num_samples: draws per example for the spread (vMF mixtures).
    radius_deg: the mode recall radius (geodesic degrees).

  Returns:
    The same names as `per_example`.
  """
  scores = {}
  for name, prediction in predictions.items():
    error = rotation_errors(prediction, equivalent_labels)
    scores[f'angular_error/{name}'] = error
    for threshold in ACCURACY_THRESHOLDS_DEG:
      scores[f'acc{threshold:g}/{name}'] = (error <= threshold).astype(jnp.float32)
  if distribution is None:
    return scores
  if isinstance(distribution, directional.VonMisesFisherMixture):
    scores['log_likelihood'] = distribution.log_prob(labels, antipodal=True) + _LOG_2PI_SQ
    key = jax.random.key(0) if key is None else key
    draws = distribution.sample(key, (num_samples,), antipodal=True)  # [S, N, 4]
    scores['spread'] = rotation_errors(draws, equivalent_labels[None]).mean(axis=0)
    locations, log_density, valid = distribution.modes(antipodal=True)  # [N, I, ...]
    log_density = log_density + _LOG_2PI_SQ
  elif isinstance(distribution, rotation_grid.GridDistribution):
    scores['log_likelihood'] = distribution.log_prob(labels)
    nearest = rotation_errors(distribution.cells()[:, None, :],
                              equivalent_labels[None])  # [G, N]
    scores['spread'] = jnp.sum(jnp.exp(distribution.log_probs()) * nearest.T, axis=-1)
    locations, log_density, valid = distribution.modes()  # [N, G, ...]
  else:
    raise ValueError('Rotations are scored for von Mises-Fisher mixtures and grid '
                     f'distributions only; got {type(distribution).__name__}.')
  valid = valid & (log_density > _LOG_2)
  close = geodesic_angle_deg(locations[:, None, :, :],
                             equivalent_labels[:, :, None, :]) <= radius_deg  # [N, K, I]
  found = jnp.any(close & valid[:, None, :], axis=-1)
  scores['mode_recall'] = found.mean(axis=-1, dtype=jnp.float32)
  scores['mode_recall_all'] = jnp.all(found, axis=-1).astype(jnp.float32)
  return scores
