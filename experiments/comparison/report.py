"""The comparison's report: every finished run's metrics, their mean ± std over seeds, tables.

`write_report` writes into the comparison's directory:

    results.json   every run's metrics, their mean ± std over seeds, coverage
                   curves, learning curves, the settings and the command
    results.md     the same as tables
    plots/         error distributions, coverage curves, densities, learning
                   curves (`plots`)

The report lists the runs not finished yet; with several processes sharing a
comparison, the last one to finish writes the complete report. The mean ±
std of a metric is over seeds, the std with Bessel's correction (ddof = 1;
undefined, reported as None, for a single seed).
"""

import json
import math
import os
from typing import Any, Sequence

import ml_collections
import numpy as np

from experiments.comparison import plots
from experiments.comparison import results as results_lib
from propel_jax import scoring
from propel_jax import scoring_directional
from propel_jax.nn import registry
from propel_jax.training import parallel

RESULTS_JSON = 'results.json'
RESULTS_MD = 'results.md'
# How learning curves are named and sampled in results.md.
_CURVE_NAMES = {'log_likelihood': 'log-likelihood', 'mode_recall': 'mode recall',
                'mode_recall_all': 'all modes'}
_CURVE_TABLE_STEPS = 6


def _target_width(settings):
  """'key=value' of a method's target width, '–' for a head without one."""
  for width in registry.target_widths():
    if width.key in settings:
      return f'{width.key}={settings[width.key]:g}'
  return '–'


def _weights_and_covariance(settings):
  """('learned' or 'equal', 'full' or 'diagonal') of a mixture method, '–' for others."""
  if 'learn_weights' not in settings:
    return '–', '–'
  return ('learned' if settings['learn_weights'] else 'equal'), settings.get('covariance', '–')


def format_stat(stat: dict[str, Any] | None, digits: int = 2) -> str:
  """'mean ± std' (or 'mean' for one seed, '–' if absent)."""
  if stat is None:
    return '–'
  if stat['std'] is None:
    return f'{stat["mean"]:.{digits}f}'
  return f'{stat["mean"]:.{digits}f} ± {stat["std"]:.{digits}f}'


def _decoders(stats: dict[str, Any]) -> list[str]:
  return sorted(k.split('/', 1)[1] for k in stats if k.startswith('cmae/'))


def markdown(results: dict[str, Any], *, command: str, wall_seconds: float | None = None,
             plot_files: Sequence[str] = ()) -> str:
  """results.md from the content of results.json."""
  axes = results['label_names']
  summary = results['summary']
  train_cfg = results['config']
  lines = [f'# Comparison on `{results["dataset"]}`', '',
           f'Command: `{command}`', '',
           f'Dataset: {results["dataset"]} ({", ".join(f"{k} {v}" for k, v in sorted(results["split_sizes"].items()))} '
           f'examples); image size {train_cfg.get("image_size") or "as stored"}; '
           f'{train_cfg["num_train_steps"]} steps of batch {train_cfg["batch_size"]}, '
           f'{train_cfg["optimizer"]} lr {train_cfg["learning_rate"]} ({train_cfg["lr_schedule"]}); '
           f'backbone channels {tuple(train_cfg["model"]["channels"])}, FC '
           f'{train_cfg["model"]["hidden_units"]}. Seeds {results["seeds"]} (initialisation and '
           f'data order). Mean ± std over seeds (std with ddof 1).', '']
  total = sum(run['train_seconds'] for runs in results['runs'].values() for run in runs.values())
  hardware = sorted({run.get('hardware', 'not recorded') for runs in results['runs'].values()
                     for run in runs.values()})
  lines += [f'Training wall time, all runs together: {total / 60:.1f} min'
            + (f' (this invocation: {wall_seconds / 60:.1f} min).' if wall_seconds is not None
               else '.') + f' Hardware: {"; ".join(hardware)}.', '']
  if results['missing_runs']:
    lines += [f'**Missing runs** (not finished): {", ".join(results["missing_runs"])}.', '']
  if results.get('label_kind') in ('circle', 'rotation'):
    lines += _directional_tables(results)
    lines += _symmetry_table(results)
    lines += _learning_curve_table(results, plot_files)
    if plot_files:
      lines += ['', '## Plots', '']
      lines += [f'![{os.path.splitext(os.path.basename(p))[0]}]({p})' for p in plot_files]
    return '\n'.join(lines) + '\n'

  names = results['methods'] + results['sweep']
  widths = [w for w in registry.target_widths()
            if any(w.key in results['method_settings'][n] for n in names)]
  lines += ['## Methods', '',
            'Heads: ' + '; '.join(f'{h}: {registry.get(h).summary}' for h in dict.fromkeys(
                results['method_settings'][n]['head'] for n in names)) + '.',
            'Mixture weights: equal (1/I, the paper\'s) or learned; covariance: diagonal '
            '(per-axis σ) or full (a Cholesky factor per component).'
            + ''.join(f' {w.key}: {w.meaning}.' for w in widths), '',
            '| method | head | I | target width | weights | covariance |',
            '|---|---|---|---|---|---|']
  for name in names:
    settings = results['method_settings'][name]
    weights, covariance = _weights_and_covariance(settings)
    lines.append(' | '.join([
        f'| {name}', settings['head'], str(settings.get('num_components', '–')),
        _target_width(settings), weights, covariance]) + ' |')
  lines.append('')

  lines += ['## Point accuracy (degrees, symmetry-aware: nearest equivalent label)', '',
            '| method | decoder | CMAE | ' + ' | '.join(f'MAE {a}' for a in axes) + ' |',
            '|---|---|---|' + '---|' * len(axes)]
  for name in results['methods']:
    stats = summary.get(name, {})
    for decoder in _decoders(stats):
      lines.append(f'| {name} | {decoder} | {format_stat(stats.get(f"cmae/{decoder}"))} | ' +
                   ' | '.join(format_stat(stats.get(f'mae/{decoder}/{a}')) for a in axes) + ' |')
  lines += ['', '## Density, modes and cost', '',
            'NLL: nats per example, density in degrees; CRPS in degrees (mean over axes); '
            'coverage of the central 90% interval of each marginal (calibrated: 0.90); mode '
            f'recall: share of equivalent labels with a mode within {scoring.MODE_RADIUS_DEG:g}° on '
            'every axis; all modes: share of test images where every equivalent label has one. '
            'Density metrics score the equivalent label the model finds most likely. Train time: '
            'wall seconds of train_and_evaluate (compilation and evaluation included; runs trained '
            'at the same time on one machine slow each other down); steps/s: median logged '
            'training speed.', '',
            '| method | NLL | CRPS | 90% coverage | mode recall | all modes | params | '
            'train time (s) | steps/s |', '|---|---|---|---|---|---|---|---|---|']
  for name in results['methods']:
    stats = summary.get(name, {})
    params = stats.get('num_params')
    lines.append(' | '.join([
        f'| {name}', format_stat(stats.get('nll')), format_stat(stats.get('crps')),
        format_stat(stats.get('coverage_90'), 3), format_stat(stats.get('mode_recall'), 3),
        format_stat(stats.get('mode_recall_all'), 3),
        f'{int(params["mean"]):,}' if params else '–',
        format_stat(stats.get('train_seconds'), 0), format_stat(stats.get('steps_per_sec'), 1)]) + ' |')
  if results['sweep']:
    lines += ['', '## Sensitivity of PROPEL to I, target_scale, weights and covariance', '',
              'target_scale is σ of the ground-truth Gaussian in normalised label units '
              '(1 = the label range).', '',
              '| method | I | target_scale | weights | covariance | mode CMAE | mean CMAE | '
              'NLL | 90% coverage | mode recall | all modes |',
              '|---|---|---|---|---|---|---|---|---|---|---|']
    propel = [n for n in results['methods'] + results['sweep']
              if results['method_settings'][n]['head'] == 'propel']
    propel.sort(key=lambda n: (results['method_settings'][n]['target_scale'],
                               results['method_settings'][n]['num_components'],
                               _weights_and_covariance(results['method_settings'][n])))
    for name in propel:
      stats, settings = summary.get(name, {}), results['method_settings'][name]
      lines.append(' | '.join([
          f'| {name}', str(settings['num_components']), f'{settings["target_scale"]:g}',
          *_weights_and_covariance(settings),
          format_stat(stats.get('cmae/mode')), format_stat(stats.get('cmae/mean')), format_stat(stats.get('nll')),
          format_stat(stats.get('coverage_90'), 3), format_stat(stats.get('mode_recall'), 3),
          format_stat(stats.get('mode_recall_all'), 3)]) + ' |')
  if plot_files:
    lines += ['', '## Plots', '']
    lines += [f'![{os.path.splitext(os.path.basename(p))[0]}]({p})' for p in plot_files]
  return '\n'.join(lines) + '\n'


_DENSITY_NOTES = {
    'circle': ('The Euclidean PROPEL density is its Gaussian mixture restricted to the circle and '
               'normalised there; the classifier\'s spreads each bin\'s probability with a von '
               'Mises kernel of the bin width.'),
    'rotation': ('The vMF heads\' density is the antipodally symmetric mixture on S³ (spread: '
                 'Monte Carlo over 256 draws); the grid classifier\'s is each cell\'s probability '
                 'over its volume (spread: exact over the cells, as Implicit-PDF computes it).'),
}


def _directional_tables(results: dict[str, Any]) -> list[str]:
  """The tables of a comparison on the circle or SO(3) (scoring_directional's metrics)."""
  summary = results['summary']
  geodesic = ' (geodesic on SO(3))' if results['label_kind'] == 'rotation' else ''
  lines = ['## Angle of the point estimate (symmetry-aware: nearest equivalent label)', '',
           f'Angular error{geodesic} in degrees to the nearest equivalent label (mean and median '
           'over test images); Acc@15°/30°: share of test images within 15°/30° of one.', '',
           '| method | decoder | mean error (°) | median error (°) | Acc@15° | Acc@30° |',
           '|---|---|---|---|---|---|']
  for name in results['methods']:
    stats = summary.get(name, {})
    decoders = sorted(k.split('/', 1)[1] for k in stats if k.startswith('angular_error/'))
    for decoder in decoders:
      lines.append(' | '.join([
          f'| {name}', decoder, format_stat(stats.get(f'angular_error/{decoder}')),
          format_stat(stats.get(f'median_angular_error/{decoder}')),
          format_stat(stats.get(f'acc15/{decoder}'), 3), format_stat(stats.get(f'acc30/{decoder}'), 3)])
                   + ' |')
  kind = results['label_kind']
  lines += ['', '## Density, modes and cost', '',
            f'Log-likelihood in {scoring_directional.LOG_LIKELIHOOD_MEASURES[kind]}; higher is '
            'better. "label": of the label; "all equivalents": its mean over every equivalent '
            'label of the image (SYMSOL I\'s protocol; a density on one of k equivalents loses '
            'about log k). ' + _DENSITY_NOTES[kind] + ' Spread: expected angle (°) from the '
            'predicted density to the nearest equivalent label. Mode recall: share of equivalent '
            'labels with a mode (a local maximum at least twice the uniform density) within '
            f'{scoring_directional.MODE_RADIUS_DEG:g}°; all modes: share of test images where '
            'every equivalent label has one. Train time: wall seconds of train_and_evaluate '
            '(compilation and evaluation included).', '',
            '| method | log-likelihood (label) | log-likelihood (all equivalents) | spread (°) | '
            'mode recall | all modes | params | train time (s) | steps/s |',
            '|---|---|---|---|---|---|---|---|---|']
  for name in results['methods']:
    stats = summary.get(name, {})
    params = stats.get('num_params')
    lines.append(' | '.join([
        f'| {name}', format_stat(stats.get('log_likelihood'), 3),
        format_stat(stats.get('log_likelihood_all_equivalents'), 3), format_stat(stats.get('spread')),
        format_stat(stats.get('mode_recall'), 3), format_stat(stats.get('mode_recall_all'), 3),
        f'{int(params["mean"]):,}' if params else '–', format_stat(stats.get('train_seconds'), 0),
        format_stat(stats.get('steps_per_sec'), 1)]) + ' |')
  return lines


def _symmetry_table(results: dict[str, Any]) -> list[str]:
  """Share of test images with every equivalent found, and the median error, per k."""
  table = results.get('by_symmetry_order') or {}
  orders = sorted({int(k) for per_k in table.values() for k in per_k})
  if len(orders) < 2:
    return []
  lines = ['', '## By symmetry order k', '',
           'Per symmetry order k of the test image (k equivalent labels): the share of images '
           'where every equivalent label has a mode within '
           f'{scoring_directional.MODE_RADIUS_DEG:g}° (all modes), and the mean angular error of '
           'the first decoder (°). Mean over seeds.', '',
           '| method | ' + ' | '.join(f'k = {k}: all modes / error' for k in orders) + ' |',
           '|---|' + '---|' * len(orders)]
  for name in results['methods']:
    per_k = table.get(name, {})
    cells = []
    for k in orders:
      stats = per_k.get(str(k), {})
      errors = sorted(key for key in stats if key.startswith('angular_error/'))
      recall = stats.get('mode_recall_all')
      error = stats.get(errors[0]) if errors else None
      cells.append(f'{recall["mean"]:.2f}' if recall else '–')
      cells[-1] += f' / {error["mean"]:.1f}' if error else ' / –'
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return lines


def _curve_steps(steps: Sequence[int]) -> list[int]:
  """At most _CURVE_TABLE_STEPS of `steps`, evenly spread, the first and last included."""
  if len(steps) <= _CURVE_TABLE_STEPS:
    return list(steps)
  picks = np.round(np.linspace(0, len(steps) - 1, _CURVE_TABLE_STEPS)).astype(int)
  return [steps[i] for i in sorted(set(picks.tolist()))]


def _learning_curve_table(results: dict[str, Any], plot_files: Sequence[str]) -> list[str]:
  """The learning curves as a table of the periodic evaluations (mean over seeds)."""
  curves = results.get('learning_curves') or {}
  if not curves:
    return []
  steps = sorted({s for method in curves.values() for c in method['seeds'].values()
                  for s in c['step']})
  shown = _curve_steps(steps)
  plot = next((p for p in plot_files if os.path.basename(p) == 'learning_curves.png'), None)
  kind = results['label_kind']
  lines = ['', '## Learning curves', '',
           f'Test metrics against training steps, from the evaluations on '
           f'`{results.get("eval_split", "test")}` every '
           f'{results["config"].get("eval_every_steps")} steps (metrics.jsonl of each run); '
           f'mean over the seeds. Log-likelihood of the label in '
           f'{scoring_directional.LOG_LIKELIHOOD_MEASURES[kind]}; error: mean angular error '
           f'(°) of each decoder; mode recall and all modes as above. A method has converged '
           f'where its row stops changing'
           + (f'; every evaluation is drawn in [the plot]({plot}).' if plot else '.'), '',
           '| method | metric | ' + ' | '.join(f'step {s}' for s in shown) + ' |',
           '|---|---|' + '---|' * len(shown)]
  for name in results['methods']:
    if name not in curves:
      lines.append(f'| {name} | no evaluation logged |' + ' |' * len(shown))
      continue
    for metric, mean in curves[name]['mean'].items():
      by_step = dict(zip(mean['step'], mean['value']))
      digits = 1 if metric.startswith('angular_error/') else 3
      cells = [f'{by_step[s]:.{digits}f}' if s in by_step else '–' for s in shown]
      label = (f'error (°), {metric.split("/", 1)[1]}' if metric.startswith('angular_error/')
               else _CURVE_NAMES[metric])
      lines.append(f'| {name} | {label} | ' + ' | '.join(cells) + ' |')
  return lines


def write_report(config: ml_collections.ConfigDict, workdir: str, *, command: str,
                 wall_seconds: float | None = None) -> dict[str, Any]:
  """Writes results.json, results.md and plots/ for the finished runs in `workdir`.

  Returns:
    The content of results.json.
  """
  results = results_lib.collect(config, workdir)
  results['command'] = command
  plot_files = plots.write_all(results, workdir, config=config)
  if parallel.is_main_process():
    with open(os.path.join(workdir, RESULTS_JSON), 'w') as f:
      json.dump(results, f, indent=2, sort_keys=True, default=_json_default)
    with open(os.path.join(workdir, RESULTS_MD), 'w') as f:
      f.write(markdown(results, command=command, wall_seconds=wall_seconds,
                       plot_files=[os.path.relpath(p, workdir) for p in plot_files]))
  return results


def _json_default(value):
  if isinstance(value, (np.generic,)):
    return value.item()
  if isinstance(value, float) and math.isnan(value):
    return None
  raise TypeError(f'{type(value)} is not JSON serialisable')


