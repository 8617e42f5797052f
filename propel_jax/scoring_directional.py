"""Scores of orientation predictions on the circle and on SO(3), symmetry-aware.

Labels are unit vectors (cos θ, sin θ); every example has K equivalent labels
([N, K, 2]), any of which is right. Repeats are allowed and count as often as
they appear (our datasets repeat every equivalent equally often). Point
estimates are vectors of any length (their direction is the prediction).
Predicted densities are `directional.VonMisesFisherMixture`s, or Gaussian
`mixtures.Mixture`s in the plane, whose restriction to the circle is
normalised here by quadrature.

Log-likelihoods are in nats, higher is better, and each is a density with
respect to a stated measure, the one of the published tables:

  circle  arc length in radians (total 2π), as in deep directional
          statistics (Prokudin et al.): a uniform prediction scores
          −log 2π ≈ −1.838.
  SO(3)   the Haar measure of total volume π², as in Implicit-PDF's
          evaluation (`rotation_grid.SO3_VOLUME`): a uniform prediction
          scores −log π² ≈ −2.289.

(On the sphere S², `directional.log_prob` with d = 3 is the density w.r.t.
area, total 4π, uniform −log 4π; no dataset here has such labels.)

Per example:
  angular error      degrees from the point estimate to the nearest equivalent;
  acc@15, acc@30     whether that error is at most 15° / 30°;
  log_likelihood     log p(label), the label as drawn (row 0 of the
                     equivalents in our datasets);
  log_likelihood_all_equivalents
                     the mean of log p over the K equivalent labels: SYMSOL
                     I's protocol, under which a density that covers one
                     equivalent of k loses log k against one that covers all;
  spread             the expected angle (degrees) from a draw of the predicted
                     density to the nearest equivalent label, Implicit-PDF's
                     definition: Σ_g p_g d_g over a uniform grid of G angles,
                     p the density on the grid normalised there;
  mode recall        the share of equivalent labels within MODE_RADIUS_DEG of
                     a mode, and whether all of them are. Modes are the local
                     maxima of the density on the grid that rise to at least
                     twice the uniform density 1/2π, so that ripples of a
                     nearly flat density do not count as modes (a k-fold von
                     Mises mixture clears this for κ ≳ 25, σ ≲ 12°).

The grid has GRID_POINTS angles (0.1° apart); densities sharper than that
(σ ≪ 0.1°) would be under-resolved, which the heads' concentration floors
and scales keep far away in practice.

Rotations (`rotation_per_example`): labels are unit quaternions, q and −q one
rotation, and densities antipodally symmetric vMF mixtures on S³ or
`rotation_grid.GridDistribution`s (the grid classifier); `rotation_log_density`
puts both in the SO(3) measure above. The error is the geodesic angle
2 arccos|q₁ᵀq₂| on SO(3). A vMF mixture's symmetrised density f_s on S³
(∫ f_s = 1 over the sphere of area 2π²) is 2 f_s on SO(3), every rotation
having two preimages: log p(R) = log f_s(q) + log 2. A grid distribution's is
log(p_cell · G / π²) on the cell holding the rotation, exactly Implicit-PDF's
score. Spread: for a grid distribution the exact Σ_g p_g d_g over the cell
centres (Implicit-PDF's computation, from the grid probabilities); for a vMF
mixture the same expectation by Monte Carlo over SPREAD_SAMPLES draws (a grid
would under-resolve densities sharper than its cells). Modes are
`directional.modes` of the symmetrised mixture, or the grid cells that are
local maxima among their neighbours, that reach twice the uniform density.

The contract of both scoring modules (`propel_jax.scoring`'s docstring):
`angular_errors` / `rotation_errors(predictions, equivalent_labels)`;
`per_example` / `rotation_per_example(predictions, labels, equivalent_labels,
distribution=None, *, ..., radius_deg=MODE_RADIUS_DEG)` -> {name: [N]}, with
'angular_error/<decoder>' for every point estimate and, with a distribution,
'mode_recall' and 'mode_recall_all'; `summarize(scores)` -> {metric: float},
means over the examples; a distribution is passed before the points it is
scored at (`log_density(distribution, points)`); `MODE_RADIUS_DEG`, here a
geodesic angle. The labels as drawn (`labels`) are an argument here because
the log-likelihoods score them; the Gaussian scores use only the equivalents.

References:
  Murphy, Esteves, Jampani, Ramalingam, Makadia, "Implicit-PDF:
  Non-Parametric Representation of Probability Distributions on the Rotation
  Manifold", ICML 2021 (the SYMSOL benchmark and its log-likelihood and
  spread); Prokudin, Gehler, Nowozin, "Deep Directional Statistics: Pose
  Estimation with Uncertainty Quantification", ECCV 2018.
"""

import math

import jax
import jax.numpy as jnp

from propel_jax import _common
from propel_jax import directional
from propel_jax import mixtures
from propel_jax import rotation_grid
# The angles live in `propel_jax.rotations`; importable from here too.
from propel_jax.rotations import angle_between_deg
from propel_jax.rotations import geodesic_angle_deg

GRID_POINTS = 3600
ACCURACY_THRESHOLDS_DEG = (15.0, 30.0)
# A geodesic angle, one number for the whole rotation, scored on density
# grids whose cells reach 7° to 14° (rotation_grid's levels 2 and 3): 5°
# (`scoring.MODE_RADIUS_DEG`, per axis of Euler-angle labels) would be finer
# than the grid classifier can place a mode.
MODE_RADIUS_DEG = 10.0
SPREAD_SAMPLES = 256
# What each kind's log-likelihoods are densities with respect to (for reports).
LOG_LIKELIHOOD_MEASURES = {
    'circle': 'nats w.r.t. arc length in radians (uniform: −log 2π ≈ −1.838)',
    'rotation': 'nats w.r.t. the Haar measure of total volume π² on SO(3), Implicit-PDF\'s '
                'convention (uniform: −log π² ≈ −2.289)',
}
# Modes must reach twice the uniform density: log(2 / 2π) on the circle,
# log(2 / π²) on SO(3).
_LOG_MODE_FLOOR_CIRCLE = _common.LOG_2 - _common.LOG_2PI
_LOG_MODE_FLOOR_ROTATION = _common.LOG_2 - rotation_grid.LOG_SO3_VOLUME


def circle_grid(num_points: int = GRID_POINTS) -> jax.Array:
  """[G, 2] unit vectors at angles 2πg/G, g = 0..G-1.

  References:
    Murphy, Esteves, Sud, Manning and Wu, "Implicit-PDF: Non-parametric
    representation of probability distributions on the rotation manifold",
    ICML 2021.

  Examples:
    >>> from propel_jax import scoring_directional
    >>> grid = scoring_directional.circle_grid(4)
    >>> [[round(v, 4) + 0.0 for v in point] for point in grid.tolist()]
    [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]
  """
  return directional.angle_to_vector(
      jnp.arange(num_points, dtype=jnp.float32) * (2.0 * math.pi / num_points))


def angular_errors(predictions, equivalent_labels) -> jax.Array:
  """[N] degrees from each prediction [N, 2] to its nearest equivalent [N, K, 2].

  References:
    Prokudin, Gehler and Nowozin, "Deep Directional Statistics: Pose
    Estimation with Uncertainty Quantification", ECCV 2018.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import scoring_directional
    >>> equivalents = jnp.array([[[0.0, 1.0], [-1.0, 0.0]]])  # 90°, 180°
    >>> scoring_directional.angular_errors(jnp.array([[1.0, 0.0]]),
    ...                                    equivalents).tolist()
    [90.0]
  """
  return jnp.min(angle_between_deg(predictions[..., None, :], equivalent_labels), axis=-1)


def _lead(mixture, num):
  """A mixture's arrays with `num` size-1 axes in front, to meet points with more axes.

  The mixtures' shape rule matches axes by rank (points have one axis fewer
  than the means), so a mixture shared by M sets of points needs them.
  """
  return [None if a is None else a[(None,) * num] for a in mixture]


def log_density(distribution, points, grid=None) -> jax.Array:
  """log p at points on the circle, w.r.t. arc length in radians.

  Args:
    distribution: a VonMisesFisherMixture (batch [N]) or a Gaussian Mixture in
      R² (batch [N]), restricted to the circle and normalised over `grid`.
    points: [N, 2] or [M, N, 2] unit vectors (leading axes broadcast).
    grid: [G, 2] the quadrature grid of a Gaussian mixture's normaliser.

  Returns:
    [N] or [M, N].

  References:
    Prokudin, Gehler and Nowozin, "Deep Directional Statistics: Pose
    Estimation with Uncertainty Quantification", ECCV 2018.
    Murphy, Esteves, Sud, Manning and Wu, "Implicit-PDF: Non-parametric
    representation of probability distributions on the rotation manifold",
    ICML 2021.

  Examples:
    >>> uniform = directional.VonMisesFisherMixture.uniform(jnp.ones((1, 1, 2)), jnp.zeros((1, 1)))
    >>> round(float(log_density(uniform, jnp.array([[0.0, 1.0]]))[0]), 4)  # −log 2π
    -1.8379
  """
  if isinstance(distribution, directional.VonMisesFisherMixture):
    return directional.log_prob(points, *_lead(distribution, points.ndim - 2))
  grid = circle_grid() if grid is None else grid
  raw = mixtures.log_prob(points, *_lead(distribution, points.ndim - 2))
  on_grid = mixtures.log_prob(grid[:, None, :], *_lead(distribution, 1))  # [G, N]
  log_normalizer = (jax.nn.logsumexp(on_grid, axis=0)
                    + math.log(2.0 * math.pi / grid.shape[0]))
  return raw - log_normalizer


def _check_labels(labels, equivalent_labels, dim: int) -> None:
  """Raises unless labels are [N, dim] and equivalent_labels [N, K, dim]."""
  labels_shape, equivalents_shape = jnp.shape(labels), jnp.shape(equivalent_labels)
  if (len(labels_shape) != 2 or labels_shape[-1] != dim or len(equivalents_shape) != 3
      or equivalents_shape[0] != labels_shape[0] or equivalents_shape[-1] != dim):
    raise ValueError(f'labels {labels_shape} and equivalent_labels {equivalents_shape} must be '
                     f'[N, {dim}] and [N, K, {dim}] (K equivalent labels per example; K = 1 '
                     'for the label alone: equivalent_labels = labels[:, None]).')


def _recall(found) -> dict[str, jax.Array]:
  """The mode-recall scores from found [N, K] (whether a mode finds each equivalent)."""
  return {'mode_recall': found.mean(axis=-1, dtype=jnp.float32),
          'mode_recall_all': jnp.all(found, axis=-1).astype(jnp.float32)}


def _point_scores(predictions, equivalent_labels, errors) -> dict[str, jax.Array]:
  """Angular error and accuracies of every decoder, with `errors` the error function."""
  scores = {}
  for name, prediction in predictions.items():
    error = errors(prediction, equivalent_labels)
    scores[f'angular_error/{name}'] = error
    for threshold in ACCURACY_THRESHOLDS_DEG:
      scores[f'acc{threshold:g}/{name}'] = (error <= threshold).astype(jnp.float32)
  return scores


def per_example(predictions, labels, equivalent_labels, distribution=None, *,
                grid_points: int = GRID_POINTS, radius_deg: float = MODE_RADIUS_DEG):
  """Every per-example score on the circle (see the module docstring).

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
     'log_likelihood_all_equivalents' (nats w.r.t. arc length), 'spread'
     (degrees), 'mode_recall', 'mode_recall_all': [N]}.

  References:
    Prokudin, Gehler and Nowozin, "Deep Directional Statistics: Pose
    Estimation with Uncertainty Quantification", ECCV 2018.
    Murphy, Esteves, Sud, Manning and Wu, "Implicit-PDF: Non-parametric
    representation of probability distributions on the rotation manifold",
    ICML 2021.

  Examples:
    >>> labels = jnp.array([[1.0, 0.0]])
    >>> uniform = directional.VonMisesFisherMixture.uniform(jnp.ones((1, 1, 2)), jnp.zeros((1, 1)))
    >>> scores = per_example({}, labels, labels[:, None], uniform)
    >>> round(float(scores['log_likelihood'][0]), 4), round(float(scores['spread'][0]), 2)
    (-1.8379, 90.0)
  """
  _check_labels(labels, equivalent_labels, 2)
  scores = _point_scores(predictions, equivalent_labels, angular_errors)
  if distribution is None:
    return scores
  grid = circle_grid(grid_points)
  scores['log_likelihood'] = log_density(distribution, labels, grid)
  scores['log_likelihood_all_equivalents'] = jnp.mean(
      log_density(distribution, jnp.swapaxes(equivalent_labels, 0, 1), grid), axis=0)
  on_grid = log_density(distribution, grid[:, None, :], grid).T  # [N, G]
  distance = angle_between_deg(grid[None, :, None, :],
                               equivalent_labels[:, None, :, :])  # [N, G, K]
  probability = jax.nn.softmax(on_grid, axis=-1)
  scores['spread'] = jnp.sum(probability * jnp.min(distance, axis=-1), axis=-1)
  is_mode = ((on_grid > jnp.roll(on_grid, 1, axis=-1))
             & (on_grid >= jnp.roll(on_grid, -1, axis=-1))
             & (on_grid > _LOG_MODE_FLOOR_CIRCLE))
  found = jnp.any(is_mode[..., None] & (distance <= radius_deg), axis=-2)  # [N, K]
  return scores | _recall(found)


def rotation_errors(predictions, equivalent_labels) -> jax.Array:
  """[N] geodesic degrees from each quaternion [N, 4] to its nearest equivalent [N, K, 4].

  References:
    Huynh, "Metrics for 3D rotations: comparison and analysis", Journal of
    Mathematical Imaging and Vision 35(2), 2009.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import scoring_directional
    >>> identity = jnp.array([1.0, 0.0, 0.0, 0.0])
    >>> scoring_directional.rotation_errors(identity[None],
    ...                                     -identity[None, None]).tolist()
    [0.0]
  """
  return jnp.min(geodesic_angle_deg(predictions[..., None, :], equivalent_labels), axis=-1)


def rotation_log_density(distribution, quaternions) -> jax.Array:
  """log p at rotations w.r.t. the Haar measure of total volume π² on SO(3).

  Implicit-PDF's convention (module docstring): a uniform density scores
  −log π² ≈ −2.289.

  Args:
    distribution: a `directional.VonMisesFisherMixture` on S³ (batch [N];
      antipodally symmetrised here: log p = log f_s(q) + log 2) or a
      `rotation_grid.GridDistribution` (batch [N]; log(p_cell · G / π²)).
    quaternions: [N, 4] or [M, N, 4] (q and −q alike; leading axes broadcast).

  Returns:
    [N] or [M, N].

  Raises:
    ValueError: for another kind of distribution.

  References:
    Murphy, Esteves, Sud, Manning and Wu, "Implicit-PDF: Non-parametric
    representation of probability distributions on the rotation manifold",
    ICML 2021.

  Examples:
    >>> uniform = directional.VonMisesFisherMixture.uniform(jnp.ones((1, 1, 4)), jnp.zeros((1, 1)))
    >>> round(float(rotation_log_density(uniform, jnp.array([[0.0, 0.0, 1.0, 0.0]]))[0]), 4)
    -2.2895
  """
  if isinstance(distribution, directional.VonMisesFisherMixture):
    return directional.log_prob(quaternions, *_lead(distribution, quaternions.ndim - 2),
                                antipodal=True) + _common.LOG_2
  if isinstance(distribution, rotation_grid.GridDistribution):
    return distribution.log_prob(quaternions)
  raise ValueError('Rotations are scored for von Mises-Fisher mixtures and grid '
                   f'distributions only; got {type(distribution).__name__}.')


def rotation_per_example(predictions, labels, equivalent_labels, distribution=None, *,
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
    The same names as `per_example`; the log-likelihoods in nats w.r.t. the
    Haar measure of total volume π².

  References:
    Murphy, Esteves, Sud, Manning and Wu, "Implicit-PDF: Non-parametric
    representation of probability distributions on the rotation manifold",
    ICML 2021.

  Examples:
    >>> from propel_jax import rotation_grid
    >>> labels = jnp.array([[1.0, 0.0, 0.0, 0.0]])
    >>> uniform = rotation_grid.GridDistribution(jnp.zeros((1, 576)))
    >>> scores = rotation_per_example({}, labels, labels[:, None], uniform)
    >>> round(float(scores['log_likelihood'][0]), 4)  # −log π²
    -2.2895
  """
  _check_labels(labels, equivalent_labels, 4)
  scores = _point_scores(predictions, equivalent_labels, rotation_errors)
  if distribution is None:
    return scores
  scores['log_likelihood'] = rotation_log_density(distribution, labels)
  scores['log_likelihood_all_equivalents'] = jnp.mean(
      rotation_log_density(distribution, jnp.swapaxes(equivalent_labels, 0, 1)), axis=0)
  if isinstance(distribution, directional.VonMisesFisherMixture):
    key = jax.random.key(0) if key is None else key
    draws = distribution.sample(key, (num_samples,), antipodal=True)  # [S, N, 4]
    scores['spread'] = rotation_errors(draws, equivalent_labels[None]).mean(axis=0)
    locations, log_density_s3, valid = distribution.modes(antipodal=True)  # [N, I, ...]
    mode_log_density = log_density_s3 + _common.LOG_2
  else:
    nearest = rotation_errors(distribution.cells()[:, None, :],
                              equivalent_labels[None])  # [G, N]
    scores['spread'] = jnp.sum(jnp.exp(distribution.log_probs()) * nearest.T, axis=-1)
    locations, mode_log_density, valid = distribution.modes()  # [N, G, ...]
  valid = valid & (mode_log_density > _LOG_MODE_FLOOR_ROTATION)
  close = geodesic_angle_deg(locations[:, None, :, :],
                             equivalent_labels[:, :, None, :]) <= radius_deg  # [N, K, I]
  found = jnp.any(close & valid[:, None, :], axis=-1)
  return scores | _recall(found)


def summarize(scores) -> dict[str, float]:
  """The rows of `per_example` or `rotation_per_example` -> {metric name: float}.

  Each score's mean over the examples, and for each decoder the median
  angular error too ('median_angular_error/<decoder>').

  Args:
    scores: {name: [N]}.

  Raises:
    ValueError: if there are no examples (N = 0).

  References:
    Murphy, Esteves, Sud, Manning and Wu, "Implicit-PDF: Non-parametric
    representation of probability distributions on the rotation manifold",
    ICML 2021.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import scoring_directional
    >>> labels = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> predictions = {'mode': jnp.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])}
    >>> scores = scoring_directional.per_example(predictions, labels, labels[:, None])
    >>> summary = scoring_directional.summarize(scores)
    >>> [round(summary[name], 4) for name in ('angular_error/mode',
    ...                                       'median_angular_error/mode', 'acc30/mode')]
    [75.0, 45.0, 0.3333]
  """
  if any(jnp.shape(values)[0] == 0 for values in scores.values()):
    raise ValueError('summarize got no examples (N = 0).')
  result = {name: float(jnp.mean(values)) for name, values in scores.items()}
  result.update({f'median_{name}': float(jnp.median(values))
                 for name, values in scores.items() if name.startswith('angular_error/')})
  return result
