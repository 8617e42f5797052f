"""Plots of an evaluation: predicted vs true per axis, and predicted densities.

`write_all` draws from a run's saved `eval_outputs.npz` into a directory:

    predicted_vs_true.png  one panel per (decoder, axis): prediction against
                           the label, in degrees, with the diagonal;
    density_<i>.png        for the first few examples, the image beside the
                           predicted density over the target space (every
                           pair of axes; a mixture's marginal on a pair is the
                           mixture of its components' marginals), each
                           component's 1σ ellipse on it (tilted where the
                           covariance is full), and the true label(s)
                           marked: the label as a cross, its equivalents
                           (e.g. the other mode of an ambiguous image) as
                           circles, the decoded predictions as dots. Heads
                           without a density show the predictions only.

Figures are `matplotlib.figure.Figure` objects written straight to files, so
drawing needs no display and never changes the caller's matplotlib backend.
`density_grid` is the one density-on-a-grid computation and
`draw_component_ellipses` the one ellipse drawing; the comparison's plots use
them too. Labels on the circle get `circle_plots` instead, rotations
`rotation_plots`.
"""

import glob
import itertools
import os
from typing import Any, Sequence

import jax
from matplotlib import figure
from matplotlib import image as mpl_image
from matplotlib import patches
import numpy as np
import tensorboardX

from experiments import circle_plots
from experiments import rotation_plots
from propel_jax import mixtures
from propel_jax.training import evaluation

GRID_POINTS = 120


def density_grid(mixture: mixtures.Mixture, axes: Sequence[int], low: Sequence[float],
                 high: Sequence[float], points: int = GRID_POINTS) -> np.ndarray:
  """The density of one example's mixture (degrees) on a grid over `axes`.

  Args:
    mixture: one example's mixture, means [I, n], in degrees.
    axes: one or two target axes; the density is the marginal over them.
    low, high: [n] the plotted range of every axis, degrees.
    points: grid points per axis (at cell centres).

  Returns:
    [points] for one axis; [points, points] for two, rows along axes[1] and
    columns along axes[0] (as `imshow(..., origin='lower')` expects).
  """
  axes = list(axes)
  # One mixture shared by every grid point: a leading batch axis of 1.
  marginal = jax.tree.map(lambda a: a[None], mixture.marginal(axes))
  ticks = [low[a] + (high[a] - low[a]) * (np.arange(points) + 0.5) / points for a in axes]
  grid = np.stack(np.meshgrid(*ticks), axis=-1).reshape(-1, len(axes))
  log_density = marginal.log_prob(grid)
  return np.exp(np.asarray(log_density)).reshape((points,) * len(axes))


def component_ellipses(mixture: mixtures.Mixture,
                       axes: Sequence[int]) -> list[tuple[np.ndarray, float, float, float]]:
  """Each component's 1σ ellipse over two target axes: the contour at Mahalanobis distance 1.

  Args:
    mixture: one example's mixture, means [I, n].
    axes: the two target axes (x, y).

  Returns:
    Per component (centre [2], width, height, angle in degrees), as
    `matplotlib.patches.Ellipse` takes them: the axis lengths 2√λ of the
    marginal covariance's eigenvalues, the first along the eigenvector of
    the larger, its angle from the x axis.
  """
  marginal = mixture.marginal(axes)
  covariances = np.asarray(mixtures.component_covariances(marginal.means,
                                                          marginal.scales), np.float64)
  ellipses = []
  for centre, covariance in zip(np.asarray(marginal.means), covariances):
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    major = eigenvectors[:, 1]
    ellipses.append((centre, 2 * np.sqrt(eigenvalues[1]), 2 * np.sqrt(eigenvalues[0]),
                     float(np.degrees(np.arctan2(major[1], major[0])))))
  return ellipses


def draw_component_ellipses(ax: Any, mixture: mixtures.Mixture, axes: Sequence[int]) -> None:
  """Draws `component_ellipses` on a density panel, white, darker for lighter components."""
  weights = np.exp(np.asarray(mixtures.normalized_log_weights(mixture.means,
                                                              mixture.log_weights)))
  for (centre, width, height, angle), weight in zip(component_ellipses(mixture, axes),
                                                    weights):
    ax.add_patch(patches.Ellipse(centre, width, height, angle=angle, fill=False,
                                 edgecolor='white', lw=0.8,
                                 alpha=float(0.3 + 0.7 * weight / weights.max())))


def _extent(info, axis):
  return info.labels.low[axis], info.labels.high[axis]


def plot_predicted_vs_true(outputs: evaluation.Outputs, info: Any, path: str) -> None:
  """Scatter of prediction vs label (degrees), one row per decoder, one column per axis."""
  decoders = sorted(outputs.predictions)
  labels = info.labels.to_degrees(outputs.label)
  names = info.labels.names
  fig = figure.Figure(figsize=(3.2 * len(names), 3.2 * len(decoders)))
  axes = fig.subplots(len(decoders), len(names), squeeze=False)
  for row, decoder in enumerate(decoders):
    predictions = info.labels.to_degrees(outputs.predictions[decoder])
    for col, name in enumerate(names):
      ax = axes[row, col]
      low, high = _extent(info, col)
      ax.plot([low, high], [low, high], color='0.6', lw=1)
      ax.scatter(labels[:, col], predictions[:, col], s=4, alpha=0.5)
      ax.set(xlim=(low, high), ylim=(low, high), xlabel=f'true {name} (°)',
             ylabel=f'{decoder}: predicted {name} (°)')
  fig.tight_layout()
  fig.savefig(path, dpi=80)


def plot_density(outputs: evaluation.Outputs, index: int, info: Any, path: str) -> None:
  """The image of example `index` beside its predicted density and labels."""
  names = info.labels.names
  pairs = list(itertools.combinations(range(len(names)), 2)) or [(0,)]
  fig = figure.Figure(figsize=(3.4 * (1 + len(pairs)), 3.4))
  axes = fig.subplots(1, 1 + len(pairs), squeeze=False)[0]
  axes[0].imshow(np.squeeze(outputs.images[index]), cmap='gray', vmin=0.0, vmax=1.0)
  axes[0].set_axis_off()
  axes[0].set_title(f'example {index}')
  mixture = None
  if outputs.mixture is not None:
    mixture = info.labels.mixture_to_degrees(
        example(outputs.mixture, index))
  label = info.labels.to_degrees(outputs.label[index])
  equivalents = info.labels.to_degrees(outputs.equivalent_labels[index])
  predictions = {d: info.labels.to_degrees(p[index])
                 for d, p in sorted(outputs.predictions.items())}
  for ax, pair in zip(axes[1:], pairs):
    if len(pair) == 1:
      _plot_density_1d(ax, mixture, label, equivalents, predictions, info)
      continue
    a, b = pair
    if mixture is not None:
      density = density_grid(mixture, pair, info.labels.low, info.labels.high)
      ax.imshow(density, origin='lower', extent=(*_extent(info, a), *_extent(info, b)),
                aspect='auto', cmap='viridis')
      draw_component_ellipses(ax, mixture, pair)
    ax.set(xlim=_extent(info, a), ylim=_extent(info, b))
    ax.scatter(equivalents[:, a], equivalents[:, b], s=60, facecolors='none',
               edgecolors='red', label='equivalent labels')
    ax.scatter([label[a]], [label[b]], marker='x', s=60, color='red', label='label')
    for decoder, prediction in predictions.items():
      ax.scatter([prediction[a]], [prediction[b]], s=20, label=decoder)
    ax.set(xlabel=f'{names[a]} (°)', ylabel=f'{names[b]} (°)')
  # Below the panels, where it hides no label.
  handles, legend_names = axes[-1].get_legend_handles_labels()
  fig.legend(handles, legend_names, loc='lower center', ncol=max(1, len(legend_names)),
             fontsize=8)
  fig.tight_layout(rect=(0, 0.08, 1, 1))
  fig.savefig(path, dpi=80)


def example(mixture: mixtures.Mixture, index: int) -> mixtures.Mixture:
  """Example `index` of a batched mixture of NumPy arrays."""
  return type(mixture)(*(np.asarray(field)[index] for field in mixture))


def _plot_density_1d(ax, mixture, label, equivalents, predictions, info):
  """For one target: the density curve (if any), labels and predictions as vertical lines."""
  low, high = _extent(info, 0)
  degrees = low + (high - low) * (np.arange(GRID_POINTS) + 0.5) / GRID_POINTS
  if mixture is not None:
    ax.plot(degrees, density_grid(mixture, (0,), info.labels.low, info.labels.high),
            label='density')
  for i, value in enumerate(equivalents[:, 0]):
    ax.axvline(value, color='red', ls='--', label='equivalent labels' if i == 0 else None)
  ax.axvline(label[0], color='red', label='label')
  for color, (decoder, prediction) in enumerate(predictions.items()):
    ax.axvline(prediction[0], ls=':', color=f'C{color}', label=decoder)
  ax.set(xlabel=f'{info.labels.names[0]} (°)', xlim=(low, high))


def write_all(outputs: evaluation.Outputs, info: Any, directory: str, *,
              num_examples: int) -> None:
  """Writes every plot of an evaluation's outputs into `directory`."""
  if info.labels.kind == 'circle':
    circle_plots.write_all(outputs, directory, num_examples=num_examples)
    return
  if info.labels.kind == 'rotation':
    rotation_plots.write_all(outputs, directory, num_examples=num_examples)
    return
  os.makedirs(directory, exist_ok=True)
  plot_predicted_vs_true(outputs, info, os.path.join(directory, 'predicted_vs_true.png'))
  for index in range(min(num_examples, len(outputs.images))):
    plot_density(outputs, index, info, os.path.join(directory, f'density_{index}.png'))


def write_for_run(workdir: str, config: Any, info: Any, split: str | None = None, *,
                  step: int | None = None) -> str:
  """Draws the plots of a run's saved evaluation of `split` into workdir/plots[_<split>]/.

  The same images go to TensorBoard (`tensorboard --logdir=workdir`: run
  'tensorboard/plots[_<split>]', tab IMAGES) at `step` (default:
  config.num_train_steps).

  Returns:
    The plot directory.
  """
  suffix = evaluation.file_suffix(split or config.test_split, config)
  outputs = evaluation.Outputs.load(
      os.path.join(workdir, evaluation.OUTPUTS_FILE.replace('.npz', f'{suffix}.npz')))
  directory = os.path.join(workdir, 'plots' + suffix)
  write_all(outputs, info, directory, num_examples=config.num_plot_examples)
  # Their own TensorBoard run under the workdir: the workdir keeps one events file (the
  # metric log) and the plot directory only the images.
  with tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard', 'plots' + suffix)) as writer:
    for path in sorted(glob.glob(os.path.join(directory, '*.png'))):
      name = os.path.splitext(os.path.basename(path))[0]
      writer.add_image(f'plots{suffix}/{name}', mpl_image.imread(path)[..., :3],
                       config.num_train_steps if step is None else step, dataformats='HWC')
  return directory
