"""Scores of point estimates and predicted mixtures: MAE, NLL, CRPS, coverage, mode recall.

Pure jnp and jit-able. The scores are in the units of their inputs; the
evaluation passes degrees (a mixture in [0, 1] units maps to degrees with
`mixtures.affine`, which carries the Jacobian into the densities).

Symmetric datasets give every example K equivalent labels ([B, K, n]; K = 1
when unambiguous). Point metrics score a prediction against the equivalent
nearest to it (mean absolute error over the axes); density metrics score the
mixture against the equivalent it finds most likely (the highest density),
i.e. the symmetry is resolved in the model's favour in both cases.

Per-example functions return arrays; `batch_sums` sums them over the
examples and `summarize` turns the totals into the reported numbers.
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


def nearest_equivalent(predictions, equivalent_labels):
  """The equivalent label closest to each prediction.

  Args:
    predictions: [B, n] point estimates.
    equivalent_labels: [B, K, n] the labels each prediction may match.

  Returns:
    [B, n] per example the row of equivalent_labels with the smallest mean
    absolute difference to the prediction (the first one on ties).
  """
  if (equivalent_labels.ndim != predictions.ndim + 1 or
      equivalent_labels.shape[:-2] != predictions.shape[:-1] or
      equivalent_labels.shape[-1] != predictions.shape[-1]):
    raise ValueError(f'equivalent_labels shape {equivalent_labels.shape} must be '
                     f'[B, K, n] for predictions of shape {predictions.shape} ([B, n]).')
  distance = jnp.abs(predictions[..., None, :] - equivalent_labels).mean(axis=-1)
  best = jnp.argmin(distance, axis=-1)
  return jnp.take_along_axis(equivalent_labels, best[..., None, None], axis=-2)[..., 0, :]


def absolute_errors(predictions, equivalent_labels):
  """[B, n] |prediction − nearest equivalent label| per axis (symmetry-aware)."""
  return jnp.abs(predictions - nearest_equivalent(predictions, equivalent_labels))


def _expected_abs(offset, scale):
  """E|X| for X ~ N(offset, scale²): offset·(2Φ(offset/scale) − 1) + 2·scale·φ(offset/scale)."""
  z = offset / scale
  return offset * (2.0 * stats.norm.cdf(z) - 1.0) + 2.0 * scale * stats.norm.pdf(z)


def crps(labels, means, scales, log_weights=None):
  """[B, n] continuous ranked probability score of each axis's marginal.

  CRPS(F, y) = ∫ (F(x) − 1{x ≥ y})² dx = E|X − y| − ½ E|X − X'| with X, X'
  independent draws of F. For a 1-D Gaussian mixture both expectations are
  sums of E|N(m, s²)| over components (pairs of components for the second),
  which `_expected_abs` gives in closed form. In the labels' units (degrees:
  lower is better, 0 for a point mass on the label). For full covariances
  each axis's marginal uses the components' marginal standard deviations.

  Args:
    labels: [B, n]; means: [B, I, n]; scales: [B, I, n] or Cholesky factors
      [B, I, n, n]; log_weights: [B, I] or None.
  """
  scales = mixtures.marginal_scales(means, scales)
  w = jnp.exp(mixtures.normalized_log_weights(means, log_weights))[..., None]  # [B, I, 1]
  to_label = (w * _expected_abs(labels[..., None, :] - means, scales)).sum(axis=-2)
  pair_offset = means[..., :, None, :] - means[..., None, :, :]
  pair_scale = jnp.sqrt(jnp.square(scales[..., :, None, :]) +
                        jnp.square(scales[..., None, :, :]))
  pair_weight = w[..., :, None, :] * w[..., None, :, :]
  spread = (pair_weight * _expected_abs(pair_offset, pair_scale)).sum(axis=(-3, -2))
  return to_label - 0.5 * spread


def interval_coverage(labels, means, scales, log_weights=None, level=0.9):
  """[B, n] whether each label lies in its marginal's central `level` interval.

  The central interval [F⁻¹((1 − level)/2), F⁻¹((1 + level)/2)] contains y
  exactly when F(y) lies in [(1 − level)/2, (1 + level)/2], so no quantile
  needs inverting. A calibrated model covers a fraction `level` of labels.
  """
  cdf = mixtures.marginal_cdf(labels, means, scales, log_weights)
  tail = 0.5 * (1.0 - level)
  return (cdf >= tail) & (cdf <= 1.0 - tail)


def mode_recall(modes, valid, equivalent_labels, radius_deg=MODE_RADIUS_DEG):
  """[B] fraction of equivalent labels that some valid mode lies near.

  A label counts as found when a valid mode is within `radius_deg` of it on
  every axis. For ambiguous data this says whether the mixture represents
  all the readings of an image, not just the best one. Repeated rows of
  equivalent_labels count with their multiplicity.

  Args:
    modes: [B, I, n] mode locations (degrees), e.g. from `mixtures.modes`.
    valid: [B, I] which rows of `modes` are real (distinct) modes.
    equivalent_labels: [B, K, n] in degrees.
    radius_deg: the distance, per axis, that counts as found.
  """
  close = jnp.all(jnp.abs(modes[..., None, :, :] - equivalent_labels[..., :, None, :])
                  <= radius_deg, axis=-1)  # [B, K, I]
  found = jnp.any(close & valid[..., None, :], axis=-1)
  return found.mean(axis=-1, dtype=jnp.float32)


def most_likely_equivalent(equivalent_labels, means, scales, log_weights=None):
  """[B, n] the equivalent label with the highest density under the mixture."""
  log_density = jax.vmap(mixtures.log_prob, in_axes=(-2, None, None, None), out_axes=-1)(
      equivalent_labels, means, scales, log_weights)  # [B, K]
  best = jnp.argmax(log_density, axis=-1)
  return jnp.take_along_axis(equivalent_labels, best[..., None, None], axis=-2)[..., 0, :]


def batch_sums(predictions, equivalent_labels, *, mixture=None, modes=None,
               levels=COVERAGE_LEVELS, radius_deg=MODE_RADIUS_DEG):
  """Every score summed over the examples given; `summarize` takes the means.

  Args:
    predictions: {decoder name: [B, n]} point estimates.
    equivalent_labels: [B, K, n].
    mixture: optional `mixtures.Mixture` (means [B, I, n]) for the density
      metrics (NLL, CRPS, coverage) and the modes (mode recall).
    modes: optional (locations [B, I, n], valid [B, I]) of the mixture, as
      `mixtures.modes` gives them, where the caller has them already (the
      evaluation's predict step does); else computed here.
    levels: central interval probabilities for the coverage.
    radius_deg: mode recall radius.

  Returns:
    {'count': [], 'abs_error/<decoder>': [n], and with a mixture 'nll': [],
      'crps': [n], 'coverage': [len(levels), n], 'mode_recall': [],
      'mode_recall_all': []}: sums over the B examples.
  """

  def total(values):  # [B, ...] -> [...]
    return jnp.sum(values.astype(jnp.float32), axis=0)

  sums = {'count': jnp.float32(equivalent_labels.shape[0])}
  for name, prediction in predictions.items():
    sums[f'abs_error/{name}'] = total(absolute_errors(prediction, equivalent_labels))
  if mixture is not None:
    label = most_likely_equivalent(equivalent_labels, *mixture)
    sums['nll'] = total(losses.mixture_nll(mixture.means, mixture.scales, label,
                                           log_weights=mixture.log_weights))
    sums['crps'] = total(crps(label, *mixture))
    sums['coverage'] = total(jnp.stack(
        [interval_coverage(label, *mixture, level=level) for level in levels], axis=1))
    if modes is None:
      modes = mixtures.modes(*mixture)[::2]
    recall = mode_recall(*modes, equivalent_labels, radius_deg)
    sums['mode_recall'] = total(recall)
    sums['mode_recall_all'] = total(recall == 1.0)
  return sums


def summarize(sums, label_names, levels=COVERAGE_LEVELS):
  """Totals of `batch_sums` -> {metric name: float}.

  Names: 'mae/<decoder>/<axis>', 'cmae/<decoder>' (the paper's CMAE: the mean
  of the per-axis MAEs), 'nll' (per example), 'crps/<axis>' and 'crps' (mean
  over axes), 'coverage_<level%>/<axis>' and 'coverage_<level%>' (fractions;
  calibrated: level), 'mode_recall' (share of equivalent labels found) and
  'mode_recall_all' (share of examples with every equivalent found).
  """
  count = float(sums['count'])
  if count <= 0:
    raise ValueError('summarize got no examples (count 0).')
  result = {}

  def per_axis(name, values):
    result.update({f'{name}/{axis}': float(v) for axis, v in zip(label_names, values)})
    result[name] = float(values.mean())

  for key, value in sums.items():
    if key == 'count':
      continue
    mean = jnp.asarray(value) / count
    if key.startswith('abs_error/'):
      decoder = key.split('/', 1)[1]
      result.update({f'mae/{decoder}/{axis}': float(v) for axis, v in zip(label_names, mean)})
      result[f'cmae/{decoder}'] = float(mean.mean())
    elif key == 'crps':
      per_axis('crps', mean)
    elif key == 'coverage':
      for level, values in zip(levels, mean):
        per_axis(coverage_name(level), values)
    else:
      result[key] = float(mean)
  return result


def coverage_name(level: float) -> str:
  """The metric name of the central `level` interval's coverage, e.g. 'coverage_90'."""
  return f'coverage_{round(100 * level)}'
