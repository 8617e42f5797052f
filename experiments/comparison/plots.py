"""Plots of a comparison (see `comparison`): errors, calibration, example densities.

`write_all` writes into DIR/plots/:

    error_distributions.png  per method and decoder, the empirical CDF of the
                             per-image error (symmetry-aware absolute error,
                             mean over the axes, degrees), all seeds pooled;
    coverage.png             per mixture method, the observed coverage of the
                             central intervals of each marginal against their
                             nominal probability (mean ± std over seeds; on the
                             diagonal when calibrated);
    densities.png            the first config.num_plot_examples test images
                             (top row) and, one row per
                             method (first seed), the predicted density over
                             the first two target axes with each
                             component's 1σ ellipse, the equivalent labels
                             (circles), the label (cross) and the decoded
                             predictions (dots); for labels on the circle,
                             polar plots of the density; for rotations,
                             Mollweide plots (`rotation_plots`);
    learning_curves.png      orientation comparisons: the periodic test
                             evaluations against training steps, one panel per
                             metric (`results.CURVE_METRICS`), one colour per
                             method, each seed thin and their mean thick.

Only the comparison's main methods are drawn, not the sensitivity sweep.
Figures are `matplotlib.figure.Figure` objects written straight to files.
"""

import os
from typing import Any

from matplotlib import colormaps
from matplotlib import figure
from matplotlib import ticker
import ml_collections
import numpy as np

from experiments import circle_plots
from experiments import plots as eval_plots
from experiments import rotation_plots
from experiments.comparison import runner
from propel_jax.training import evaluation

GRID_POINTS = 100
# Decoders drawn dashed: the second reading of a head (the first is solid).
_SECONDARY_DECODERS = ('mean', 'argmax')


def _finished_dirs(results, workdir, method_name):
  return [runner.run_dir(workdir, runner.parse_method(method_name), int(seed))
          for seed in results['runs'].get(method_name, {})]


def _load_outputs(directory):
  return evaluation.Outputs.load(os.path.join(directory, evaluation.OUTPUTS_FILE))


def plot_error_distributions(results: dict[str, Any], workdir: str, info: Any,
                             path: str) -> None:
  """Empirical CDFs of the per-image error, one curve per (method, decoder)."""
  fig = figure.Figure(figsize=(8, 5))
  ax = fig.subplots()
  colours = colormaps['tab10']
  for index, name in enumerate(results['methods']):
    errors = {}
    for directory in _finished_dirs(results, workdir, name):
      outputs = _load_outputs(directory)
      for decoder, values in evaluation.per_example_errors(outputs, info).items():
        errors.setdefault(decoder, []).append(values)
    for decoder, chunks in sorted(errors.items()):
      values = np.sort(np.concatenate(chunks))
      share = np.arange(1, values.size + 1) / values.size
      ax.plot(values, share, color=colours(index % 10),
              ls='--' if decoder in _SECONDARY_DECODERS else '-', label=f'{name} ({decoder})')
  ax.set(xscale='log', xlabel='per-image error, mean over axes (°, log scale)',
         ylabel='share of test images with a smaller error',
         title=f'Error distributions on {results["dataset"]}')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc='center left', bbox_to_anchor=(1.0, 0.5))
  fig.tight_layout()
  fig.savefig(path, dpi=90)


def plot_coverage(results: dict[str, Any], path: str) -> None:
  """Observed vs nominal coverage of central intervals, per mixture method."""
  levels = np.asarray(results['coverage_levels'])
  fig = figure.Figure(figsize=(5.5, 5))
  ax = fig.subplots()
  ax.plot([0, 1], [0, 1], color='0.6', lw=1, label='calibrated')
  for name in results['methods']:
    curve = results['summary'].get(name, {}).get('coverage_curve')
    if curve is None:
      continue
    std = np.asarray([s if s is not None else 0.0 for s in curve['std']])
    ax.errorbar(levels, curve['mean'], yerr=std, marker='o', ms=3, capsize=2, label=name)
  ax.set(xlim=(0, 1), ylim=(0, 1), xlabel='nominal probability of the central interval',
         ylabel='observed share of labels inside',
         title='Calibration of the marginals')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)


def plot_densities(results: dict[str, Any], workdir: str, info: Any, path: str) -> None:
  """Images on top, then one row per method: density (mixtures) or points, with the labels.

  Skipped for a one-dimensional target (no pair of axes).
  """
  rows = []
  for name in results['methods']:
    directories = _finished_dirs(results, workdir, name)
    if directories:
      rows.append((name, _load_outputs(directories[0])))
  if not rows:
    return
  # Every run saved its first config.num_plot_examples test images.
  count = min(len(outputs.images) for _, outputs in rows)
  if info.labels.is_directional:
    _plot_directional_densities(rows, count, path, info.labels.kind)
    return
  names = info.labels.names
  if count == 0 or len(names) < 2:  # A pair of axes to draw the density over.
    return
  fig = figure.Figure(figsize=(2.2 * count, 2.2 * (1 + len(rows))))
  axes = fig.subplots(1 + len(rows), count, squeeze=False)
  images = rows[0][1].images
  for col in range(count):
    axes[0, col].imshow(np.squeeze(images[col]), cmap='gray', vmin=0.0, vmax=1.0)
    axes[0, col].set_axis_off()
    axes[0, col].set_title(f'test image {col}', fontsize=8)
  low, high = info.labels.low, info.labels.high
  for row, (name, outputs) in enumerate(rows, start=1):
    for col in range(count):
      ax = axes[row, col]
      if outputs.mixture is not None:
        mixture = info.labels.mixture_to_degrees(eval_plots.example(outputs.mixture, col))
        density = eval_plots.density_grid(mixture, (0, 1), low, high, GRID_POINTS)
        ax.imshow(density, origin='lower', extent=(low[0], high[0], low[1], high[1]),
                  aspect='auto', cmap='viridis')
        eval_plots.draw_component_ellipses(ax, mixture, (0, 1))
      equivalents = info.labels.to_degrees(outputs.equivalent_labels[col])
      label = info.labels.to_degrees(outputs.label[col])
      ax.scatter(equivalents[:, 0], equivalents[:, 1], s=40, facecolors='none',
                 edgecolors='red')
      ax.scatter([label[0]], [label[1]], marker='x', s=40, color='red')
      for decoder, predictions in sorted(outputs.predictions.items()):
        prediction = info.labels.to_degrees(predictions[col])
        ax.scatter([prediction[0]], [prediction[1]], s=12,
                   color='white' if decoder in _SECONDARY_DECODERS else 'orange',
                   edgecolors='black', linewidths=0.5)
      ax.set(xlim=(info.labels.low[0], info.labels.high[0]),
             ylim=(info.labels.low[1], info.labels.high[1]))
      ax.tick_params(labelsize=6)
      if col == 0:
        ax.set_ylabel(f'{name}\n{names[1]} (°)', fontsize=8)
      if row == len(rows):
        ax.set_xlabel(f'{names[0]} (°)', fontsize=8)
  fig.suptitle('Predicted densities. Red: label (x) and its equivalents (o); orange: the first '
               'decoder, white: the second (mean / argmax)', fontsize=9)
  fig.tight_layout(rect=(0, 0, 1, 0.97))
  fig.savefig(path, dpi=80)


def _plot_directional_densities(rows, count, path, kind):
  """Images on top, then one row per method: polar densities on the circle
  (`circle_plots`), Mollweide plots for rotations (`rotation_plots`)."""
  if count == 0:
    return
  circle = kind == 'circle'
  width = 2.2 if circle else 3.2
  fig = figure.Figure(figsize=(width * count + 1.6, (2.3 if circle else 1.9) * (1 + len(rows))))
  images = rows[0][1].images
  for col in range(count):
    ax = fig.add_subplot(1 + len(rows), count, 1 + col)
    ax.imshow(np.squeeze(images[col]), cmap='gray', vmin=0.0, vmax=1.0)
    ax.set_axis_off()
    ax.set_title(f'test image {col}', fontsize=8)
  for row, (name, outputs) in enumerate(rows, start=1):
    for col in range(count):
      ax = fig.add_subplot(1 + len(rows), count, 1 + row * count + col,
                           projection='polar' if circle else 'mollweide')
      if circle:
        circle_plots.draw_polar(ax, outputs, col)
      else:
        rotation_plots.draw_mollweide(ax, outputs, col)
      if col == 0:
        ax.set_title(name, fontsize=8, loc='left')
  if circle:
    title = ('Predicted densities on the circle (× uniform; dashed: uniform). Red: label '
             '(solid) and its equivalents (dotted); dots: decoded angles')
  else:
    title = ('Predicted densities on SO(3): R e_z on a Mollweide map, colour the angle about '
             'it; circles: equivalent labels, x: label, black-edged dots: decoded rotations')
  fig.suptitle(title, fontsize=9)
  fig.tight_layout(rect=(0, 0, 1, 0.97))
  fig.savefig(path, dpi=80)


# (metric prefix, panel title, y scale) of the learning-curve panels.
_CURVE_PANELS = (('log_likelihood', 'log-likelihood of the label (nats)', 'linear'),
                 ('angular_error/', 'mean angular error (°, log scale)', 'log'),
                 ('mode_recall', 'mode recall', 'linear'),
                 ('mode_recall_all', 'all modes (share of images)', 'linear'))


def _curve_metrics(curve, prefix):
  if prefix.endswith('/'):
    return sorted(k for k in curve if k.startswith(prefix))
  return [prefix] if prefix in curve else []


def plot_learning_curves(results: dict[str, Any], path: str) -> None:
  """Periodic test metrics against steps, per method (seeds thin, their mean thick).

  Skipped when no run logged an evaluation.
  """
  curves = results.get('learning_curves') or {}
  if not curves:
    return
  fig = figure.Figure(figsize=(13, 3.6))
  axes = fig.subplots(1, len(_CURVE_PANELS))
  colours = colormaps['tab10']
  for ax, (prefix, title, scale) in zip(axes, _CURVE_PANELS):
    for index, name in enumerate(results['methods']):
      method = curves.get(name, {'seeds': {}, 'mean': {}})
      for metric in _curve_metrics(method['mean'], prefix):
        style = dict(color=colours(index % 10),
                     ls='--' if metric.endswith(_SECONDARY_DECODERS) else '-')
        for curve in method['seeds'].values():
          points = [(s, v) for s, v in zip(curve['step'], curve.get(metric, ()))
                    if v is not None]
          if points:
            ax.plot(*zip(*points), lw=0.6, alpha=0.45, **style)
        label = name if prefix != 'angular_error/' else f'{name} ({metric.split("/", 1)[1]})'
        ax.plot(method['mean'][metric]['step'], method['mean'][metric]['value'], lw=1.8,
                marker='o', ms=3, label=label, **style)
    ax.set(xlabel='training step', title=title, yscale=scale)
    if scale == 'log':  # Degrees as plain numbers, not powers of ten.
      ax.yaxis.set_major_formatter(ticker.ScalarFormatter())
      ax.yaxis.set_minor_formatter(ticker.ScalarFormatter())
      ax.tick_params(axis='y', which='minor', labelsize=6)
    if prefix.startswith('mode_recall'):
      ax.set_ylim(-0.02, 1.02)
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
  # The error panel has a line for every method and decoder.
  axes[-1].legend(*axes[1].get_legend_handles_labels(), fontsize=7, loc='center left',
                  bbox_to_anchor=(1.02, 0.5))
  fig.suptitle(f'Learning curves on {results["dataset"]} (evaluations on '
               f'{results.get("eval_split", "test")}; each seed thin, their mean thick)',
               fontsize=10)
  fig.tight_layout(rect=(0, 0, 1, 0.95))
  fig.savefig(path, dpi=90, bbox_inches='tight')


def write_all(results: dict[str, Any], workdir: str, *,
              config: ml_collections.ConfigDict) -> list[str]:
  """Writes every plot into workdir/plots/; returns their paths."""
  directory = os.path.join(workdir, 'plots')
  os.makedirs(directory, exist_ok=True)
  info = runner.dataset_info(config)
  paths = [os.path.join(directory, f) for f in
           ('error_distributions.png', 'coverage.png', 'densities.png', 'learning_curves.png')]
  plot_error_distributions(results, workdir, info, paths[0])
  if info.labels.kind == 'interval':  # Interval coverage of marginals: degree labels only.
    plot_coverage(results, paths[1])
  plot_densities(results, workdir, info, paths[2])
  plot_learning_curves(results, paths[3])
  return [p for p in paths if os.path.exists(p)]
