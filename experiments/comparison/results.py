"""The comparison's results: every finished run's metrics, their mean ± std over seeds.

`collect` reads each run of a comparison (its eval_metrics.json, per-example
outputs and metrics.jsonl) and returns what `report` writes: per-run metrics,
their mean ± std over seeds (the std with Bessel's correction, ddof = 1;
undefined, reported as None, for a single seed), learning curves from the
runs' periodic evaluations, errors by symmetry order, and each method's
settings from the head registry.
"""

import json
import os
from typing import Any, Sequence

import ml_collections
import numpy as np

from experiments.comparison import runner
from propel_jax import scoring
from propel_jax import scoring_directional
from propel_jax.training import evaluation
from propel_jax.training import reporting

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


# The periodic evaluations' metrics a learning curve follows (orientation
# reports): the log-likelihood of the label, every decoder's mean angular
# error, the share of equivalent labels with a mode and of images with all.
CURVE_METRICS = ('log_likelihood', 'angular_error/', 'mode_recall', 'mode_recall_all')
# Evaluation steps shown in results.md's learning-curve table (the plot has all).


def _is_curve_metric(name: str) -> bool:
  return any(name.startswith(m) if m.endswith('/') else name == m for m in CURVE_METRICS)


def learning_curve(directory: str) -> dict[str, list[float]] | None:
  """A run's periodic evaluations from its metrics.jsonl: {'step': [..], metric: [..]}.

  Returns:
    The steps in increasing order and, for every metric of CURVE_METRICS the
    evaluations logged, its value at each step (None where an evaluation
    lacked it); None if the run logged no evaluation.
  """
  path = os.path.join(directory, reporting.METRICS_FILE)
  if not os.path.exists(path):
    return None
  by_step = {}
  with open(path) as f:
    for record in map(json.loads, f):
      if record.get('split') == 'eval':
        # A resumed run truncates its log at the checkpoint: a step logged
        # twice keeps its later evaluation.
        by_step[int(record['step'])] = record
  if not by_step:
    return None
  steps = sorted(by_step)
  names = sorted({k for r in by_step.values() for k in r if _is_curve_metric(k)})
  curve = {'step': steps}
  curve.update({name: [by_step[s].get(name) for s in steps] for name in names})
  return curve


def mean_curve(per_seed: Sequence[dict[str, list[float]]], metric: str) -> dict[str, list]:
  """{'step', 'value'}: the mean over seeds of `metric` at the steps every seed evaluated it at."""
  by_seed = [{s: v for s, v in zip(c['step'], c[metric]) if v is not None}
             for c in per_seed if metric in c]
  if not by_seed:
    return {'step': [], 'value': []}
  steps = sorted(set.intersection(*(set(values) for values in by_seed)))
  return {'step': steps, 'value': [float(np.mean([v[s] for v in by_seed])) for s in steps]}


def learning_curves(per_seed: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
  """{'seeds': the runs' curves by seed, 'mean': {metric: mean_curve}} of one method."""
  metrics = sorted({k for c in per_seed.values() for k in c if k != 'step'},
                   key=lambda k: ([m.rstrip('/') for m in CURVE_METRICS].index(
                       k.split('/')[0]), k))
  return {'seeds': per_seed,
          'mean': {m: mean_curve(list(per_seed.values()), m) for m in metrics}}


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
  runs, summary, missing, curves = {}, {}, [], {}
  for method in methods:
    per_seed = {}
    for seed in config.compare.seeds:
      directory = runner.run_dir(workdir, method, seed)
      if runner.is_finished(runner.run_config(config, method, seed), directory):
        per_seed[str(seed)] = load_run(directory)
        curve = learning_curve(directory) if info.labels.is_directional else None
        if curve is not None:
          curves.setdefault(method.name, {})[str(seed)] = curve
      else:
        missing.append(f'{method.name}/seed_{seed}')
    runs[method.name] = per_seed
    if per_seed:
      summary[method.name] = aggregate(list(per_seed.values()))
  by_symmetry = (by_symmetry_order(runs, config, workdir) if info.labels.kind == 'circle'
                 else None)
  return {
      'by_symmetry_order': by_symmetry,
      'dataset': config.dataset,
      'label_names': list(info.labels.names),
      'label_kind': info.labels.kind,
      'learning_curves': {name: learning_curves(per_seed) for name, per_seed in curves.items()},
      'eval_split': config.eval_split,
      'log_likelihood_measure': scoring_directional.LOG_LIKELIHOOD_MEASURES.get(info.labels.kind),
      'split_sizes': dict(info.split_sizes),
      'methods': [m.name for m in methods[:num_main]],
      'sweep': [m.name for m in methods[num_main:]],
      'method_settings': {m.name: method_settings(config, m) for m in methods},
      'seeds': list(config.compare.seeds),
      'coverage_levels': list(scoring.COVERAGE_LEVELS),
      'mode_radius_deg': scoring.MODE_RADIUS_DEG,
      'config': config.to_dict(),
      'missing_runs': missing,
      'runs': runs,
      'summary': summary,
  }


def symmetry_orders(equivalent_labels: np.ndarray) -> np.ndarray:
  """[N] the number of distinct rows of each example's [K, d] equivalent labels."""
  gaps = np.linalg.norm(equivalent_labels[:, :, None] - equivalent_labels[:, None], axis=-1)
  # Row j is new if no earlier row equals it (to float rounding).
  earlier = np.tril(np.ones(gaps.shape[1:], bool), k=-1)
  return np.sum(~np.any((gaps < 1e-4) & earlier, axis=-1), axis=-1)


def by_symmetry_order(runs: dict[str, Any], config: ml_collections.ConfigDict,
                      workdir: str) -> dict[str, Any]:
  """Per method and symmetry order k: mean ± std over seeds of the per-image scores.

  The scores are recomputed from each finished run's saved outputs
  (`evaluation.directional_scores`), grouped by the number of distinct equivalent
  labels of the image.

  Returns:
    {method: {k: {score: mean_and_std over seeds}}} for the angular errors,
    accuracies, mode recall and all-modes share.
  """
  table = {}
  for name, per_seed in runs.items():
    grouped = {}
    for seed in per_seed:
      directory = runner.run_dir(workdir, runner.parse_method(name), int(seed))
      outputs = evaluation.Outputs.load(os.path.join(directory, evaluation.OUTPUTS_FILE))
      scores = evaluation.directional_scores(outputs)
      orders = symmetry_orders(outputs.equivalent_labels)
      for k in np.unique(orders):
        rows = orders == k
        for score, values in scores.items():
          grouped.setdefault(str(int(k)), {}).setdefault(score, []).append(
              float(np.mean(values[rows])))
    table[name] = {k: {score: mean_and_std(values) for score, values in scores.items()}
                   for k, scores in grouped.items()}
  return table


def method_settings(comparison_config: ml_collections.ConfigDict,
                    method: runner.Method) -> dict[str, Any]:
  """What a method's run trains, from its head's registry entry and its run config.

  Returns:
    {'head'} and, for a mixture, 'num_components', 'learn_weights' and (where
    the head can have full covariances) 'covariance'; for a head with a
    target width, its key (e.g. 'target_scale') and value.
  """
  config = runner.run_config(comparison_config, method, 0)
  head = method.spec
  settings = {'head': head.name}
  if head.mixture:
    settings['num_components'] = int(config.num_components)
    settings['learn_weights'] = head.learns_weights(config.model)
    if head.full_covariance:
      settings['covariance'] = config.model.covariance
  if head.target_width:
    settings[head.target_width.key] = config[head.target_width.key]
  return settings


