"""The comparison's report: every finished run's metrics, their mean ± std over seeds, tables.

`write_report` writes into the comparison's directory:

    results.json   every run's metrics, their mean ± std over seeds, coverage
                   curves, the settings and the command
    results.md     the same as tables
    plots/         error distributions, coverage curves, densities (`plots`)

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
from experiments.comparison import runner
from propel_jax import scoring
from propel_jax.training import evaluation
from propel_jax.training import parallel

RESULTS_JSON = 'results.json'
RESULTS_MD = 'results.md'


def median_steps_per_sec(directory: str) -> float | None:
  """Median training speed logged in metrics.jsonl (the first line, with compilation, left out)."""
  path = os.path.join(directory, 'metrics.jsonl')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    rates = [r['steps_per_sec'] for r in map(json.loads, f)
             if r.get('split') == 'train' and 'steps_per_sec' in r]
  rates = rates[1:] or rates
  return float(np.median(rates)) if rates else None


def load_run(directory: str) -> dict[str, Any]:
  """One finished run's metrics: eval_metrics.json, its coverage curve, and timing."""
  with open(os.path.join(directory, evaluation.METRICS_FILE)) as f:
    result = json.load(f)
  levels = [scoring.coverage_name(level) for level in scoring.COVERAGE_LEVELS]
  if all(name in result for name in levels):
    result['coverage_curve'] = [result[name] for name in levels]
  with open(os.path.join(directory, runner.TIMING_FILE)) as f:
    timing = json.load(f)
  result['train_seconds'] = timing['seconds']
  # A string, so that `aggregate` leaves it out; older runs did not record it.
  result['hardware'] = '; '.join(timing.get('hardware', ['not recorded']))
  result['steps_per_sec'] = median_steps_per_sec(directory)
  return result


# ----------------------------------------------------------------------------
# Aggregation over seeds.


def mean_and_std(values: Sequence[float]) -> dict[str, Any]:
  """{'mean', 'std' (ddof 1; None for one value), 'values'} of finite numbers."""
  array = np.asarray(values, np.float64)
  return {'mean': float(array.mean()),
          'std': float(array.std(ddof=1)) if array.size > 1 else None,
          'values': [float(v) for v in array]}


def aggregate(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Mean ± std over seeds of every numeric metric the runs share.

  Args:
    per_seed: one metrics dict per seed (as `load_run` returns).

  Returns:
    {metric: mean_and_std(...)} for scalar metrics; for list-valued ones
    (coverage_curve) {'mean': [..], 'std': [..]} element-wise. Strings and
    metrics some seed lacks are left out.
  """
  result = {}
  keys = set.intersection(*(set(r) for r in per_seed)) if per_seed else set()
  for key in sorted(keys):
    values = [r[key] for r in per_seed]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
      result[key] = mean_and_std(values)
    elif all(isinstance(v, list) for v in values):
      stats = [mean_and_std(column) for column in zip(*values)]
      result[key] = {'mean': [s['mean'] for s in stats], 'std': [s['std'] for s in stats]}
  return result


# ----------------------------------------------------------------------------
# The report.


def collect(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Loads every finished run and aggregates it: the content of results.json."""
  info = runner.dataset_info(config)
  methods = runner.all_methods(config)
  num_main = len(runner.parse_methods(config.compare.methods))
  runs, summary, missing = {}, {}, []
  for method in methods:
    per_seed = {}
    for seed in config.compare.seeds:
      directory = runner.run_dir(workdir, method, seed)
      if runner.is_finished(runner.run_config(config, method, seed), directory):
        per_seed[str(seed)] = load_run(directory)
      else:
        missing.append(f'{method.name}/seed_{seed}')
    runs[method.name] = per_seed
    if per_seed:
      summary[method.name] = aggregate(list(per_seed.values()))
  return {
      'dataset': config.dataset,
      'label_names': list(info.labels.names),
      'split_sizes': dict(info.split_sizes),
      'methods': [m.name for m in methods[:num_main]],
      'sweep': [m.name for m in methods[num_main:]],
      'method_settings': {m.name: _settings(config, m) for m in methods},
      'seeds': list(config.compare.seeds),
      'coverage_levels': list(scoring.COVERAGE_LEVELS),
      'mode_radius_deg': evaluation.MODE_RADIUS_DEG,
      'config': config.to_dict(),
      'missing_runs': missing,
      'runs': runs,
      'summary': summary,
  }


def _settings(comparison_config, method):
  config = runner.run_config(comparison_config, method, 0)
  settings = {'loss': method.loss}
  if method.is_mixture:
    settings['num_gaussians'] = int(config.num_gaussians)
    # The MDN always learns its weights.
    settings['learn_weights'] = method.loss == 'mdn' or bool(config.model.learn_weights)
    settings['covariance'] = config.model.covariance
  if method.loss == 'propel':
    settings['target_scale'] = config.target_scale
  return settings


def _weights_and_covariance(settings):
  """('learned' or 'equal', 'full' or 'diagonal') of a mixture method, '–' for others."""
  if 'covariance' not in settings:
    return '–', '–'
  return ('learned' if settings['learn_weights'] else 'equal'), settings['covariance']


def _fmt(stat: dict[str, Any] | None, digits: int = 2) -> str:
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

  lines += ['## Methods', '',
            'Mixture weights: equal (1/I, the paper\'s) or learned; covariance: diagonal '
            '(per-axis σ) or full (a Cholesky factor per component).', '',
            '| method | loss | I | target_scale | weights | covariance |',
            '|---|---|---|---|---|---|']
  for name in results['methods'] + results['sweep']:
    settings = results['method_settings'][name]
    weights, covariance = _weights_and_covariance(settings)
    lines.append(' | '.join([
        f'| {name}', settings['loss'], str(settings.get('num_gaussians', '–')),
        f'{settings["target_scale"]:g}' if 'target_scale' in settings else '–',
        weights, covariance]) + ' |')
  lines.append('')

  lines += ['## Point accuracy (degrees, symmetry-aware: nearest equivalent label)', '',
            '| method | decoder | CMAE | ' + ' | '.join(f'MAE {a}' for a in axes) + ' |',
            '|---|---|---|' + '---|' * len(axes)]
  for name in results['methods']:
    stats = summary.get(name, {})
    for decoder in _decoders(stats):
      lines.append(f'| {name} | {decoder} | {_fmt(stats.get(f"cmae/{decoder}"))} | ' +
                   ' | '.join(_fmt(stats.get(f'mae/{decoder}/{a}')) for a in axes) + ' |')
  lines += ['', '## Density, modes and cost', '',
            'NLL: nats per example, density in degrees; CRPS in degrees (mean over axes); '
            'coverage of the central 90% interval of each marginal (calibrated: 0.90); mode '
            f'recall: share of equivalent labels with a mode within {evaluation.MODE_RADIUS_DEG:g}° on '
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
        f'| {name}', _fmt(stats.get('nll')), _fmt(stats.get('crps')),
        _fmt(stats.get('coverage_90'), 3), _fmt(stats.get('mode_recall'), 3),
        _fmt(stats.get('mode_recall_all'), 3),
        f'{int(params["mean"]):,}' if params else '–',
        _fmt(stats.get('train_seconds'), 0), _fmt(stats.get('steps_per_sec'), 1)]) + ' |')
  if results['sweep']:
    lines += ['', '## Sensitivity of PROPEL to I, target_scale, weights and covariance', '',
              'target_scale is σ of the ground-truth Gaussian in normalised label units '
              '(1 = the label range).', '',
              '| method | I | target_scale | weights | covariance | mode CMAE | mean CMAE | '
              'NLL | 90% coverage | mode recall | all modes |',
              '|---|---|---|---|---|---|---|---|---|---|---|']
    propel = [n for n in results['methods'] + results['sweep']
              if results['method_settings'][n]['loss'] == 'propel']
    propel.sort(key=lambda n: (results['method_settings'][n]['target_scale'],
                               results['method_settings'][n]['num_gaussians'],
                               _weights_and_covariance(results['method_settings'][n])))
    for name in propel:
      stats, settings = summary.get(name, {}), results['method_settings'][name]
      lines.append(' | '.join([
          f'| {name}', str(settings['num_gaussians']), f'{settings["target_scale"]:g}',
          *_weights_and_covariance(settings),
          _fmt(stats.get('cmae/mode')), _fmt(stats.get('cmae/mean')), _fmt(stats.get('nll')),
          _fmt(stats.get('coverage_90'), 3), _fmt(stats.get('mode_recall'), 3),
          _fmt(stats.get('mode_recall_all'), 3)]) + ' |')
  if plot_files:
    lines += ['', '## Plots', '']
    lines += [f'![{os.path.splitext(os.path.basename(p))[0]}]({p})' for p in plot_files]
  return '\n'.join(lines) + '\n'


def write_report(config: ml_collections.ConfigDict, workdir: str, *, command: str,
                 wall_seconds: float | None = None) -> dict[str, Any]:
  """Writes results.json, results.md and plots/ for the finished runs in `workdir`.

  Returns:
    The content of results.json.
  """
  results = collect(config, workdir)
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


