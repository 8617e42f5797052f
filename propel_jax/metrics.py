"""Evaluation metrics for orientation regression, in degrees; pure jnp, jit-able.

Networks work in normalised units u ∈ [0, 1]; metrics are in degrees,
x = low + (high − low)·u per axis. A mixture maps to degrees by the same
affine map (`to_degrees`: means through it, scales times (high − low)), so
densities in degrees include the map's Jacobian:

    −log p_deg(x) = −log p_unit(u) + Σ_d log(high_d − low_d).

Symmetric datasets give every example K equivalent labels ([B, K, n]; K = 1
when unambiguous). Point metrics score a prediction against the equivalent
nearest to it (mean absolute error over the axes); density metrics score the
mixture against the equivalent it finds most likely (the highest density),
i.e. the symmetry is resolved in the model's favour in both cases.

Per-example functions return arrays; `batch_sums` turns one evaluation
batch (with its padding mask) into sums that add across batches and hosts,
and `summarize` turns the totals into the reported numbers.
"""

import jax
import jax.numpy as jnp
from jax.scipy import stats

from propel_jax import mixtures


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


def _masked_mean(values, mask):
  """Mean over the leading (batch) axis counting only rows where mask is True."""
  if mask is None:
    return values.mean(axis=0)
  weights = mask.astype(values.dtype).reshape(mask.shape + (1,) * (values.ndim - 1))
  return (values * weights).sum(axis=0) / weights.sum()


def mae_per_axis(abs_errors, mask=None):
  """[B, n] absolute errors (and optional [B] mask) -> [n] mean absolute error."""
  return _masked_mean(abs_errors, mask)


def cmae(abs_errors, mask=None):
  """The paper's combined MAE: the mean of the per-axis MAEs, a scalar."""
  return mae_per_axis(abs_errors, mask).mean()


def to_degrees(means, scales, label_low, label_high):
  """Maps a mixture from normalised units to degrees.

  Args:
    means: [..., I, n] component means in [0, 1].
    scales: [..., I, n] component standard deviations, normalised units.
    label_low: [n] (or scalar) degrees at u = 0.
    label_high: [n] (or scalar) degrees at u = 1.

  Returns:
    (means [..., I, n], scales [..., I, n]) in degrees; weights are unchanged.
  """
  low = jnp.asarray(label_low, means.dtype)
  span = jnp.asarray(label_high, means.dtype) - low
  return low + span * means, span * scales


def nll(labels, means, scales, log_weights=None):
  """[B] negative log-likelihood −log p(label) of a diagonal Gaussian mixture.

  Args:
    labels: [B, n]; means, scales: [B, I, n]; log_weights: [B, I] or None
      (uniform). All in the same units (degrees for reporting).
  """
  return -mixtures.log_prob(labels, means, scales, log_weights)


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
  lower is better, 0 for a point mass on the label).

  Args:
    labels: [B, n]; means, scales: [B, I, n]; log_weights: [B, I] or None.
  """
  if log_weights is None:
    weights = jnp.full(means.shape[:-1], 1.0 / means.shape[-2], means.dtype)
  else:
    weights = jnp.exp(log_weights)
  w = weights[..., None]  # [B, I, 1]
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


def mode_recall(modes, valid, equivalent_labels, radius_deg=5.0):
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


def batch_sums(predictions, equivalent_labels, *, mixture=None, modes=None, mask=None,
               level=0.9, radius_deg=5.0):
  """Sums over one batch that add up across batches and hosts; all in degrees.

  Args:
    predictions: {decoder name: [B, n]} point estimates.
    equivalent_labels: [B, K, n].
    mixture: optional (means [B, I, n], scales [B, I, n], log_weights [B, I])
      for the density metrics (NLL, CRPS, coverage).
    modes: optional (locations [B, I, n], valid [B, I]) for mode recall.
    mask: optional [B] bool, False on padding rows of the last batch.
    level: central interval probability for the coverage.
    radius_deg: mode recall radius.

  Returns:
    {'count': [], 'abs_error/<decoder>': [n], and with a mixture 'nll': [],
     'crps': [n], 'coverage': [n], with modes 'mode_recall': []}: sums over
    the unmasked rows.
  """
  batch = equivalent_labels.shape[0]
  weight = (jnp.ones((batch,), jnp.float32) if mask is None
            else mask.astype(jnp.float32))

  def total(values):  # [B, ...] -> [...], padding rows dropped.
    return jnp.tensordot(weight, values.astype(jnp.float32), axes=1)

  sums = {'count': weight.sum()}
  for name, prediction in predictions.items():
    sums[f'abs_error/{name}'] = total(absolute_errors(prediction, equivalent_labels))
  if mixture is not None:
    label = most_likely_equivalent(equivalent_labels, *mixture)
    sums['nll'] = total(nll(label, *mixture))
    sums['crps'] = total(crps(label, *mixture))
    sums['coverage'] = total(interval_coverage(label, *mixture, level=level))
  if modes is not None:
    sums['mode_recall'] = total(mode_recall(*modes, equivalent_labels, radius_deg))
  return sums


def summarize(sums, label_names, level=0.9):
  """Totals of `batch_sums` -> {metric name: float}.

  Names: 'mae/<decoder>/<axis>', 'cmae/<decoder>' (degrees), 'nll' (nats, per
  example, density in degrees), 'crps/<axis>' and 'crps' (degrees, mean over
  axes), 'coverage_<level%>/<axis>' and 'coverage_<level%>' (fractions),
  'mode_recall' (fraction).
  """
  count = float(sums['count'])
  if count <= 0:
    raise ValueError('summarize got no examples (count 0): was every row masked?')
  result = {}
  coverage_name = f'coverage_{round(100 * level)}'
  for key, value in sums.items():
    if key == 'count':
      continue
    mean = jnp.asarray(value) / count
    if key.startswith('abs_error/'):
      decoder = key.split('/', 1)[1]
      result.update({f'mae/{decoder}/{axis}': float(v) for axis, v in zip(label_names, mean)})
      result[f'cmae/{decoder}'] = float(mean.mean())
    elif key in ('crps', 'coverage'):
      name = coverage_name if key == 'coverage' else key
      result.update({f'{name}/{axis}': float(v) for axis, v in zip(label_names, mean)})
      result[name] = float(mean.mean())
    else:
      result[key] = float(mean)
  return result
