"""Scores of point estimates and predicted Gaussian mixtures: MAE, NLL, CRPS, coverage, mode recall.

For labels in R^n (angles in degrees); `propel_jax.scoring_directional` scores
labels on the circle and on SO(3). Pure jnp and jit-able. The scores are in
the units of their inputs; the evaluation passes degrees (a mixture in [0, 1]
units maps to degrees with `mixtures.affine`, which carries the Jacobian into
the densities).

Symmetric datasets give every example K equivalent labels ([N, K, n]; K = 1
when unambiguous). Point metrics score a prediction against the equivalent
nearest to it (mean absolute error over the axes); density metrics score the
mixture against the equivalent it finds most likely (the highest density),
i.e. the symmetry is resolved in the model's favour in both cases.

Both scoring modules keep one contract:

- errors: `absolute_errors(predictions, equivalent_labels)` (here; the
  directional ones `angular_errors`, `rotation_errors`), each point
  estimate's error to its nearest equivalent label.
- `per_example(predictions, ..., equivalent_labels, distribution=None, *,
  ..., radius_deg=MODE_RADIUS_DEG)`: {name: [N, ...]}, one row per example:
  '<error>/<decoder>' for every point estimate of the dict `predictions`;
  with a distribution, its density scores and 'mode_recall' (the share of
  equivalent labels a mode finds) and 'mode_recall_all' (1 where it finds
  all of them).
- `summarize(scores, ...)`: those rows -> {metric name: float}, means over
  the examples.
- A predicted density is one object (here a `mixtures.Mixture`), passed
  before the labels it is scored against: `crps(distribution, labels)`.
- `MODE_RADIUS_DEG`: the mode-recall radius (here 5° on every axis).
"""

import jax
import jax.numpy as jnp
from jax.scipy import stats

from propel_jax import losses
from propel_jax import mixtures

# A label counts as found when a mode is this close on every axis (degrees).
# `scoring_directional.MODE_RADIUS_DEG` is a geodesic angle on a density
# grid, a different measure with its own value.
MODE_RADIUS_DEG = 5.0

# Central-interval probabilities at which coverage is scored; a calibrated
# model covers each share of labels.
COVERAGE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def nearest_equivalent(predictions, equivalent_labels) -> jax.Array:
  """[N, n] the equivalent label [N, K, n] closest to each prediction [N, n].

  Closest by the mean absolute difference over the axes; the first one on
  ties.

  References:
    Asad, Basaru, Arif and Slabaugh, "PROPEL: Probabilistic Parametric
    Regression Loss for Convolutional Neural Networks", ICPR 2020.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import scoring
    >>> equivalents = jnp.array([[[10.0, 20.0], [-10.0, -20.0]]])
    >>> scoring.nearest_equivalent(jnp.array([[-8.0, -15.0]]), equivalents).tolist()
    [[-10.0, -20.0]]
  """
  if (equivalent_labels.ndim != predictions.ndim + 1 or
      equivalent_labels.shape[:-2] != predictions.shape[:-1] or
      equivalent_labels.shape[-1] != predictions.shape[-1]):
    raise ValueError(f'equivalent_labels shape {equivalent_labels.shape} must be '
                     f'[N, K, n] for predictions of shape {predictions.shape} ([N, n]).')
  distance = jnp.abs(predictions[..., None, :] - equivalent_labels).mean(axis=-1)
  best = jnp.argmin(distance, axis=-1)
  return jnp.take_along_axis(equivalent_labels, best[..., None, None], axis=-2)[..., 0, :]


def absolute_errors(predictions, equivalent_labels) -> jax.Array:
  """[N, n] |prediction − nearest equivalent label| per axis (symmetry-aware).

  References:
    Asad, Basaru, Arif and Slabaugh, "PROPEL: Probabilistic Parametric
    Regression Loss for Convolutional Neural Networks", ICPR 2020.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import scoring
    >>> equivalents = jnp.array([[[10.0, 20.0], [-10.0, -20.0]]])
    >>> scoring.absolute_errors(jnp.array([[-8.0, -15.0]]), equivalents).tolist()
    [[2.0, 5.0]]
  """
  return jnp.abs(predictions - nearest_equivalent(predictions, equivalent_labels))


def _expected_abs(offset, scale):
  """E|X| for X ~ N(offset, scale²): offset·(2Φ(offset/scale) − 1) + 2·scale·φ(offset/scale)."""
  z = offset / scale
  return offset * (2.0 * stats.norm.cdf(z) - 1.0) + 2.0 * scale * stats.norm.pdf(z)


def crps(distribution: mixtures.Mixture, labels) -> jax.Array:
  """[N, n] continuous ranked probability score of each axis's marginal.

  CRPS(F, y) = ∫ (F(x) − 1{x ≥ y})² dx = E|X − y| − ½ E|X − X'| with X, X'
  independent draws of F. For a 1-D Gaussian mixture both expectations are
  sums of E|N(m, s²)| over components (pairs of components for the second),
  in closed form. In the labels' units (degrees: lower is better, 0 for a
  point mass on the label). For full covariances each axis's marginal uses
  the components' marginal standard deviations.

  Args:
    distribution: a `mixtures.Mixture` with means [N, I, n].
    labels: [N, n].

  References:
    Gneiting and Raftery, "Strictly proper scoring rules, prediction, and
    estimation", Journal of the American Statistical Association 102(477),
    2007.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures, scoring
    >>> standard = mixtures.Mixture.uniform(jnp.zeros((1, 1, 1)), jnp.ones((1, 1, 1)))
    >>> round(float(scoring.crps(standard, jnp.zeros((1, 1)))[0, 0]), 4)  # (√2 − 1)/√π
    0.2337
  """
  means, scales, log_weights = distribution
  scales = mixtures.marginal_scales(means, scales)
  w = jnp.exp(mixtures.normalized_log_weights(means, log_weights))[..., None]  # [N, I, 1]
  to_label = (w * _expected_abs(labels[..., None, :] - means, scales)).sum(axis=-2)
  pair_offset = means[..., :, None, :] - means[..., None, :, :]
  pair_scale = jnp.sqrt(jnp.square(scales[..., :, None, :]) +
                        jnp.square(scales[..., None, :, :]))
  pair_weight = w[..., :, None, :] * w[..., None, :, :]
  spread = (pair_weight * _expected_abs(pair_offset, pair_scale)).sum(axis=(-3, -2))
  return to_label - 0.5 * spread


def interval_coverage(distribution: mixtures.Mixture, labels, level: float = 0.9
                      ) -> jax.Array:
  """[N, n] whether each label [N, n] lies in its marginal's central `level` interval.

  The central interval [F⁻¹((1 − level)/2), F⁻¹((1 + level)/2)] contains y
  exactly when F(y) lies in [(1 − level)/2, (1 + level)/2], so no quantile
  needs inverting. A calibrated model covers a fraction `level` of labels.

  References:
    Gneiting, Balabdaoui and Raftery, "Probabilistic forecasts, calibration
    and sharpness", Journal of the Royal Statistical Society B 69(2), 2007.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures, scoring
    >>> standard = mixtures.Mixture.uniform(jnp.zeros((2, 1, 1)), jnp.ones((2, 1, 1)))
    >>> scoring.interval_coverage(standard, jnp.array([[1.5], [1.7]])).tolist()
    [[True], [False]]
  """
  cdf = mixtures.marginal_cdf(labels, *distribution)
  tail = 0.5 * (1.0 - level)
  return (cdf >= tail) & (cdf <= 1.0 - tail)


def mode_recall(modes, valid, equivalent_labels,
                radius_deg: float = MODE_RADIUS_DEG) -> jax.Array:
  """[N] fraction of equivalent labels that some valid mode lies near.

  A label counts as found when a valid mode is within `radius_deg` of it on
  every axis. For ambiguous data this says whether the mixture represents
  all the readings of an image, not just the best one. Repeated rows of
  equivalent_labels count with their multiplicity.

  Args:
    modes: [N, I, n] mode locations (degrees), e.g. from `mixtures.modes`.
    valid: [N, I] which rows of `modes` are real (distinct) modes.
    equivalent_labels: [N, K, n] in degrees.
    radius_deg: the distance, per axis, that counts as found.

  References:
    Carreira-Perpiñán, "Mode-finding for mixtures of Gaussian
    distributions", IEEE TPAMI 22(11), 2000.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import scoring
    >>> equivalents = jnp.array([[[10.0, 20.0], [-10.0, -20.0]]])
    >>> modes = jnp.array([[[12.0, 17.0], [-30.0, -20.0]]])
    >>> scoring.mode_recall(modes, jnp.array([[True, True]]), equivalents).tolist()
    [0.5]
  """
  close = jnp.all(jnp.abs(modes[..., None, :, :] - equivalent_labels[..., :, None, :])
                  <= radius_deg, axis=-1)  # [N, K, I]
  found = jnp.any(close & valid[..., None, :], axis=-1)
  return found.mean(axis=-1, dtype=jnp.float32)


def most_likely_equivalent(distribution: mixtures.Mixture, equivalent_labels) -> jax.Array:
  """[N, n] the equivalent label [N, K, n] with the highest density under the mixture.

  References:
    Asad, Basaru, Arif and Slabaugh, "PROPEL: Probabilistic Parametric
    Regression Loss for Convolutional Neural Networks", ICPR 2020.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures, scoring
    >>> mixture = mixtures.Mixture.uniform(jnp.array([[[-9.0, -19.0]]]), jnp.ones((1, 1, 2)))
    >>> equivalents = jnp.array([[[10.0, 20.0], [-10.0, -20.0]]])
    >>> scoring.most_likely_equivalent(mixture, equivalents).tolist()
    [[-10.0, -20.0]]
  """
  log_density = jax.vmap(mixtures.log_prob, in_axes=(-2, None, None, None), out_axes=-1)(
      equivalent_labels, *distribution)  # [N, K]
  best = jnp.argmax(log_density, axis=-1)
  return jnp.take_along_axis(equivalent_labels, best[..., None, None], axis=-2)[..., 0, :]


def per_example(predictions, equivalent_labels, distribution=None, *, modes=None,
                levels=COVERAGE_LEVELS, radius_deg: float = MODE_RADIUS_DEG
                ) -> dict[str, jax.Array]:
  """Every per-example score (see the module docstring); `summarize` takes the means.

  Args:
    predictions: {decoder name: [N, n]} point estimates.
    equivalent_labels: [N, K, n].
    distribution: optional `mixtures.Mixture` (means [N, I, n]) for the
      density metrics (NLL, CRPS, coverage), scored against each example's
      `most_likely_equivalent`, and the modes (mode recall).
    modes: optional (locations [N, I, n], valid [N, I]) of the mixture, as
      `mixtures.modes` gives them, where the caller has them already (the
      evaluation's predict step does); else computed here.
    levels: central interval probabilities for the coverage.
    radius_deg: mode recall radius.

  Returns:
    {'abs_error/<decoder>': [N, n], and with a distribution 'nll': [N],
    'crps': [N, n], 'coverage': [N, len(levels), n] (0/1), 'mode_recall':
    [N] (a share), 'mode_recall_all': [N] (0/1)}, float32.

  References:
    Asad, Basaru, Arif and Slabaugh, "PROPEL: Probabilistic Parametric
    Regression Loss for Convolutional Neural Networks", ICPR 2020.
    Gneiting and Raftery, "Strictly proper scoring rules, prediction, and
    estimation", Journal of the American Statistical Association 102(477),
    2007.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures, scoring
    >>> equivalents = jnp.array([[[10.0, 20.0], [-10.0, -20.0]]])
    >>> mixture = mixtures.Mixture.uniform(equivalents, jnp.ones((1, 2, 2)))
    >>> scores = scoring.per_example({'mode': jnp.array([[-8.0, -15.0]])},
    ...                              equivalents, mixture, levels=(0.5, 0.9))
    >>> scores['abs_error/mode'].tolist(), scores['coverage'].shape
    ([[2.0, 5.0]], (1, 2, 2))
    >>> scores['mode_recall'].tolist(), scores['mode_recall_all'].tolist()
    ([1.0], [1.0])
  """
  scores = {f'abs_error/{name}': absolute_errors(prediction, equivalent_labels)
            for name, prediction in predictions.items()}
  if distribution is None:
    return scores
  label = most_likely_equivalent(distribution, equivalent_labels)
  means, scales, log_weights = distribution
  scores['nll'] = losses.mixture_nll(means, scales, label, log_weights=log_weights)
  scores['crps'] = crps(distribution, label)
  scores['coverage'] = jnp.stack(
      [interval_coverage(distribution, label, level) for level in levels],
      axis=-2).astype(jnp.float32)
  if modes is None:
    modes = mixtures.modes(*distribution)[::2]
  recall = mode_recall(*modes, equivalent_labels, radius_deg)
  scores['mode_recall'] = recall
  scores['mode_recall_all'] = (recall == 1.0).astype(jnp.float32)
  return scores


def summarize(scores, label_names, levels=COVERAGE_LEVELS) -> dict[str, float]:
  """The rows of `per_example` -> {metric name: float}, means over the examples.

  Names: 'mae/<decoder>/<axis>', 'cmae/<decoder>' (the paper's CMAE: the mean
  of the per-axis MAEs), 'nll' (per example), 'crps/<axis>' and 'crps' (mean
  over axes), 'coverage_<level%>/<axis>' and 'coverage_<level%>' (fractions;
  calibrated: level), 'mode_recall' (share of equivalent labels found) and
  'mode_recall_all' (share of examples with every equivalent found).

  Args:
    scores: `per_example`'s dict, [N, ...] each.
    label_names: the names of the n axes.
    levels: the coverage levels `per_example` used.

  Raises:
    ValueError: if there are no examples (N = 0).

  References:
    Asad, Basaru, Arif and Slabaugh, "PROPEL: Probabilistic Parametric
    Regression Loss for Convolutional Neural Networks", ICPR 2020.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import scoring
    >>> equivalents = jnp.array([[[10.0, 20.0]], [[0.0, 0.0]]])
    >>> scores = scoring.per_example({'mode': jnp.array([[8.0, 20.0], [0.0, 4.0]])},
    ...                              equivalents)
    >>> scoring.summarize(scores, ('yaw', 'pitch'))
    {'mae/mode/yaw': 1.0, 'mae/mode/pitch': 2.0, 'cmae/mode': 1.5}
  """
  if any(jnp.shape(values)[0] == 0 for values in scores.values()):
    raise ValueError('summarize got no examples (N = 0).')
  result = {}

  def per_axis(name, values):
    result.update({f'{name}/{axis}': float(v) for axis, v in zip(label_names, values)})
    result[name] = float(values.mean())

  for key, values in scores.items():
    mean = jnp.mean(jnp.asarray(values, jnp.float32), axis=0)
    if key.startswith('abs_error/'):
      decoder = key.split('/', 1)[1]
      result.update({f'mae/{decoder}/{axis}': float(v) for axis, v in zip(label_names, mean)})
      result[f'cmae/{decoder}'] = float(mean.mean())
    elif key == 'crps':
      per_axis('crps', mean)
    elif key == 'coverage':
      for level, level_values in zip(levels, mean):
        per_axis(coverage_name(level), level_values)
    else:
      result[key] = float(mean)
  return result


def coverage_name(level: float) -> str:
  """The metric name of the central `level` interval's coverage, e.g. 'coverage_90'.

  Examples:
    >>> from propel_jax import scoring
    >>> scoring.coverage_name(0.95)
    'coverage_95'
  """
  return f'coverage_{round(100 * level)}'
