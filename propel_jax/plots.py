"""Plots of an evaluation: predicted vs true per axis, and predicted densities.

`write_all` writes to a directory:

    predicted_vs_true.png  one panel per (decoder, axis): prediction against
                           the label, in degrees, with the diagonal;
    density_<i>.png        for the first few examples, the image beside the
                           predicted density over the target space (every
                           pair of axes; a mixture's marginal on a pair is the
                           mixture of its components' marginals), with the
                           true label(s) marked: the label as a cross, its
                           equivalents (e.g. the other mode of an ambiguous
                           image) as circles, the decoded predictions as dots.
                           Heads without a density show the predictions only.

matplotlib runs with the Agg backend (no display needed).
"""

import itertools
import os
from typing import Any

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from propel_jax import input_pipeline
from propel_jax import mixtures

GRID_POINTS = 120


def _degrees(values01, info):
  return np.asarray(input_pipeline.denormalize_labels(np.asarray(values01), info), np.float64)


def _decoders(outputs):
  return sorted(k.split('/', 1)[1] for k in outputs if k.startswith('prediction/'))


def plot_predicted_vs_true(outputs: dict[str, np.ndarray], info: Any, path: str) -> None:
  """Scatter of prediction vs label (degrees), one row per decoder, one column per axis."""
  decoders = _decoders(outputs)
  labels = _degrees(outputs['label'], info)
  names = info.label_names
  fig, axes = plt.subplots(len(decoders), len(names), squeeze=False,
                           figsize=(3.2 * len(names), 3.2 * len(decoders)))
  for row, decoder in enumerate(decoders):
    predictions = _degrees(outputs[f'prediction/{decoder}'], info)
    for col, name in enumerate(names):
      ax = axes[row, col]
      low, high = info.label_low[col], info.label_high[col]
      ax.plot([low, high], [low, high], color='0.6', lw=1)
      ax.scatter(labels[:, col], predictions[:, col], s=4, alpha=0.5)
      ax.set(xlim=(low, high), ylim=(low, high), xlabel=f'true {name} (°)',
             ylabel=f'{decoder}: predicted {name} (°)')
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def _pair_density(outputs, index, pair, info):
  """Log-density on a grid over axes `pair` of the target space, in [0, 1] units.

  Returns:
    (extent in degrees, log-density [GRID_POINTS, GRID_POINTS] with rows
    along pair[1] and columns along pair[0]).
  """
  a, b = pair
  ticks = (np.arange(GRID_POINTS) + 0.5) / GRID_POINTS
  xs, ys = np.meshgrid(ticks, ticks)
  points = np.stack([xs.ravel(), ys.ravel()], axis=-1)  # [G*G, 2]
  means = outputs['means'][index][:, [a, b]]
  scales = outputs['scales'][index][:, [a, b]]
  log_weights = outputs['log_weights'][index]
  log_density = np.asarray(mixtures.log_prob(
      points, np.broadcast_to(means, (points.shape[0],) + means.shape),
      np.broadcast_to(scales, (points.shape[0],) + scales.shape),
      np.broadcast_to(log_weights, (points.shape[0],) + log_weights.shape)))
  extent = (info.label_low[a], info.label_high[a], info.label_low[b], info.label_high[b])
  return extent, log_density.reshape(GRID_POINTS, GRID_POINTS)


def plot_density(outputs: dict[str, np.ndarray], image: np.ndarray, index: int, info: Any,
                 path: str) -> None:
  """The image of example `index` beside its predicted density and labels."""
  names = info.label_names
  pairs = list(itertools.combinations(range(len(names)), 2)) or [(0, 0)]
  fig, axes = plt.subplots(1, 1 + len(pairs), figsize=(3.4 * (1 + len(pairs)), 3.4),
                           squeeze=False)
  axes = axes[0]
  axes[0].imshow(np.squeeze(image), cmap='gray', vmin=0.0, vmax=1.0)
  axes[0].set_axis_off()
  axes[0].set_title(f'example {index}')
  label = _degrees(outputs['label'][index], info)
  equivalents = _degrees(outputs['equivalent_labels'][index], info)
  for ax, (a, b) in zip(axes[1:], pairs):
    if len(names) == 1:
      _plot_density_1d(ax, outputs, index, info)
      continue
    if 'means' in outputs:
      extent, log_density = _pair_density(outputs, index, (a, b), info)
      ax.imshow(np.exp(log_density), origin='lower', extent=extent, aspect='auto',
                cmap='viridis')
    else:
      ax.set(xlim=_extent(info, a), ylim=_extent(info, b))
    ax.scatter(equivalents[:, a], equivalents[:, b], s=60, facecolors='none',
               edgecolors='red', label='equivalent labels')
    ax.scatter([label[a]], [label[b]], marker='x', s=60, color='red', label='label')
    for decoder in _decoders(outputs):
      prediction = _degrees(outputs[f'prediction/{decoder}'][index], info)
      ax.scatter([prediction[a]], [prediction[b]], s=20, label=decoder)
    ax.set(xlabel=f'{names[a]} (°)', ylabel=f'{names[b]} (°)')
  # Below the panels, where it hides no label.
  handles, legend_names = axes[-1].get_legend_handles_labels()
  fig.legend(handles, legend_names, loc='lower center', ncol=max(1, len(legend_names)),
             fontsize=8)
  fig.tight_layout(rect=(0, 0.08, 1, 1))
  fig.savefig(path, dpi=80)
  plt.close(fig)


def _extent(info, axis):
  return info.label_low[axis], info.label_high[axis]


def _plot_density_1d(ax, outputs, index, info):
  """For one target: the density curve (if any), labels and predictions as vertical lines."""
  ticks = (np.arange(GRID_POINTS) + 0.5) / GRID_POINTS
  degrees = _degrees(ticks[:, None], info)[:, 0]
  if 'means' in outputs:
    n = GRID_POINTS
    log_density = mixtures.log_prob(
        ticks[:, None], *(np.broadcast_to(outputs[k][index], (n,) + outputs[k].shape[1:])
                          for k in ('means', 'scales', 'log_weights')))
    ax.plot(degrees, np.exp(np.asarray(log_density)), label='density')
  for i, value in enumerate(_degrees(outputs['equivalent_labels'][index], info)[:, 0]):
    ax.axvline(value, color='red', ls='--', label='equivalent labels' if i == 0 else None)
  ax.axvline(_degrees(outputs['label'][index], info)[0], color='red', label='label')
  for color, decoder in enumerate(_decoders(outputs)):
    ax.axvline(_degrees(outputs[f'prediction/{decoder}'][index], info)[0], ls=':',
               color=f'C{color}', label=decoder)
  ax.set(xlabel=f'{info.label_names[0]} (°)', xlim=_extent(info, 0))


def write_all(result: Any, directory: str, *, config: Any) -> None:
  """Writes every plot of an `evaluation.EvalResult` into `directory`."""
  os.makedirs(directory, exist_ok=True)
  plot_predicted_vs_true(result.outputs, result.info,
                         os.path.join(directory, 'predicted_vs_true.png'))
  for index in range(min(config.num_plot_examples, len(result.images))):
    plot_density(result.outputs, result.images[index], index, result.info,
                 os.path.join(directory, f'density_{index}.png'))
