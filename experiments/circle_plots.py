"""Plots of an evaluation whose labels are angles on the circle (unit vectors).

`write_all` draws into a directory:

    predicted_vs_true.png  per decoder, the predicted angle against the label's
                           (degrees in [0, 360)); symmetric shapes show up as
                           bands 360°/k apart;
    density_<i>.png        the image beside a polar plot of the predicted
                           density (relative to uniform: 1 on the dashed
                           circle), the equivalent labels (red rays), the
                           label (solid ray) and the decoded angles (dots).

`draw_polar` draws one example's polar panel (the comparison reuses it).
"""

import os
from typing import Any

from matplotlib import figure
import numpy as np

from propel_jax import scoring_directional
from propel_jax.training import evaluation

GRID_POINTS = 720


def _angles(vectors):
  return np.arctan2(vectors[..., 1], vectors[..., 0])


def density_relative_to_uniform(mixture: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
  """(angles [G] radians, 2π p(θ) [G]) of example `index`'s predicted density."""
  example = type(mixture)(*(np.asarray(field)[index:index + 1] for field in mixture))
  grid = np.asarray(scoring_directional.circle_grid(GRID_POINTS))
  log_p = scoring_directional.log_density(example, grid[:, None, :])[:, 0]
  return _angles(grid), 2.0 * np.pi * np.exp(np.asarray(log_p))


def draw_polar(ax, outputs: evaluation.Outputs, index: int, *, legend: bool = False) -> None:
  """One example's density, labels and predictions on polar axes `ax`."""
  top = 1.0
  if outputs.mixture is not None:
    theta, density = density_relative_to_uniform(outputs.mixture, index)
    ax.plot(np.append(theta, theta[0]), np.append(density, density[0]), color='C0',
            label='density (× uniform)')
    top = max(top, float(density.max()))
  circle = np.linspace(0, 2 * np.pi, 200)
  ax.plot(circle, np.ones_like(circle), color='0.6', ls='--', lw=0.8, label='uniform')
  for j, angle in enumerate(np.unique(np.round(_angles(outputs.equivalent_labels[index]), 5))):
    ax.plot([angle, angle], [0, top], color='red', ls=':', lw=1,
            label='equivalent labels' if j == 0 else None)
  label = _angles(outputs.label[index])
  ax.plot([label, label], [0, top], color='red', lw=1.2, label='label')
  for c, (decoder, prediction) in enumerate(sorted(outputs.predictions.items())):
    ax.scatter([_angles(prediction[index])], [top * 1.05], s=25, color=f'C{c + 1}',
               zorder=3, label=decoder)
  ax.set_ylim(0, top * 1.1)
  ax.tick_params(labelsize=6)
  ax.set_yticklabels([])
  if legend:
    ax.legend(fontsize=6, loc='upper left', bbox_to_anchor=(1.05, 1.0))


def plot_density(outputs: evaluation.Outputs, index: int, path: str) -> None:
  """The image of example `index` beside its polar density."""
  fig = figure.Figure(figsize=(7.5, 3.4))
  image_ax = fig.add_subplot(1, 2, 1)
  image_ax.imshow(np.squeeze(outputs.images[index]), cmap='gray', vmin=0.0, vmax=1.0)
  image_ax.set_axis_off()
  image_ax.set_title(f'example {index}')
  draw_polar(fig.add_subplot(1, 2, 2, projection='polar'), outputs, index, legend=True)
  fig.tight_layout()
  fig.savefig(path, dpi=80)


def plot_predicted_vs_true(outputs: evaluation.Outputs, path: str) -> None:
  """Predicted against true angle (degrees), one panel per decoder."""
  decoders = sorted(outputs.predictions)
  fig = figure.Figure(figsize=(3.4 * len(decoders), 3.4))
  axes = fig.subplots(1, len(decoders), squeeze=False)[0]
  true = np.rad2deg(_angles(outputs.label)) % 360
  for ax, decoder in zip(axes, decoders):
    predicted = np.rad2deg(_angles(outputs.predictions[decoder])) % 360
    ax.plot([0, 360], [0, 360], color='0.6', lw=1)
    ax.scatter(true, predicted, s=4, alpha=0.5)
    ax.set(xlim=(0, 360), ylim=(0, 360), xlabel='true angle (°)',
           ylabel=f'{decoder}: predicted angle (°)')
  fig.tight_layout()
  fig.savefig(path, dpi=80)


def write_all(outputs: evaluation.Outputs, directory: str, *, num_examples: int) -> None:
  """Writes every plot of a circle-valued evaluation into `directory`."""
  os.makedirs(directory, exist_ok=True)
  plot_predicted_vs_true(outputs, os.path.join(directory, 'predicted_vs_true.png'))
  for index in range(min(num_examples, len(outputs.images))):
    plot_density(outputs, index, os.path.join(directory, f'density_{index}.png'))
