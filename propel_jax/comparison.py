"""Compares output heads on one dataset: every method × seed trained and evaluated the same way.

A comparison lives in a directory DIR:

    runs/<method>/seed_<k>/   one `train.train_and_evaluate` run each (its
                              config.json, checkpoints, eval_metrics.json,
                              eval_outputs.npz: the final model's per-example
                              test outputs and first test images, ...) plus
                              timing.json
    results.json              every run's metrics, their mean ± std over seeds,
                              coverage curves, the settings and the command
    results.md                the same as tables
    plots/                    error distributions, coverage curves, densities
                              (see `comparison_plots`)

The comparison's config is a training config (every key `train` reads: the
base every run starts from) plus a `compare` section: `methods` and `sweep`
(comma-separated method names; the sweep's appear only in the sensitivity
table) and `seeds` (experiments/configs/compare_synthetic.py). The density
grid shows the first `num_plot_examples` test images, which every run saves
with its outputs; the analyses read those saved outputs rather than
predicting the test split again.

A method is named by a string, so that it can be the directory name and a
command-line value: `<loss>[_i<I>][_s<target_scale>]`, e.g. 'mse', 'heatmap',
'propel_i2' (PROPEL with I = 2 Gaussians), 'mdn_i4', 'propel_i2_s0.05'
(target_scale 0.05 instead of the base config's). Every method trains the
same backbone with the same base config; only the head (and its loss) change.

Rerunning a comparison skips the runs that are finished (their outputs exist
and their saved config equals the one asked for) and resumes the others from
their latest checkpoint (`train.train_and_evaluate` does that), so a
comparison interrupted at any point loses at most the work since a run's last
checkpoint. Several processes may work on one comparison at once (the same
command started several times): each claims the runs it trains (`_claim`);
the report lists the runs not finished yet, and the last process to finish
writes the complete one.

The mean ± std of a metric is over seeds, the std with Bessel's correction
(ddof = 1; undefined, reported as None, for a single seed).
"""

import dataclasses
import json
import math
import os
import re
import socket
import time
from typing import Any, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from propel_jax import input_pipeline
from propel_jax import metrics as metrics_lib
from propel_jax import mixtures
from propel_jax import models
from propel_jax import parallel
from propel_jax import train

RUNS_DIR = 'runs'
# Written by the final evaluation of `train.train_and_evaluate` (`evaluation.report`).
OUTPUTS_FILE = 'eval_outputs.npz'
TIMING_FILE = 'timing.json'
CLAIM_FILE = 'claimed_by'
RESULTS_JSON = 'results.json'
RESULTS_MD = 'results.md'
# Nominal probabilities of the central intervals in the coverage curves.
COVERAGE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
MODE_RADIUS_DEG = 5.0

_METHOD_RE = re.compile(r'^(?P<loss>[a-z0-9]+?)(?:_i(?P<i>\d+))?(?:_s(?P<s>\d+(?:\.\d+)?(?:e-?\d+)?))?$')
_MIXTURE_LOSSES = ('propel', 'mdn')


# ----------------------------------------------------------------------------
# Methods and their configs.


@dataclasses.dataclass(frozen=True)
class Method:
  """One head to compare.

  Attributes:
    name: as given, e.g. 'propel_i2_s0.05'; the run directory's name.
    loss: one of `models.LOSSES`.
    num_gaussians: I for mixture heads, None to keep the base config's.
    target_scale: PROPEL's σ_gt (normalised units), None to keep the base's.
  """
  name: str
  loss: str
  num_gaussians: int | None = None
  target_scale: float | None = None

  @property
  def is_mixture(self) -> bool:
    return self.loss in _MIXTURE_LOSSES


def parse_method(name: str) -> Method:
  """'propel_i2_s0.05' -> Method('propel_i2_s0.05', 'propel', 2, 0.05).

  Raises:
    ValueError: naming the method, for an unknown loss, `_i` on a head that
      is not a mixture, `_s` on a head other than propel, or I < 1.
  """
  match = _METHOD_RE.match(name)
  if not match or match['loss'] not in models.LOSSES:
    raise ValueError(f'Unknown method {name!r}: use <loss>[_i<I>][_s<target_scale>] with '
                     f'<loss> one of {models.LOSSES}, e.g. propel_i2, mdn_i4, mse, '
                     f'propel_i2_s0.05.')
  loss = match['loss']
  num_gaussians = int(match['i']) if match['i'] else None
  target_scale = float(match['s']) if match['s'] else None
  if num_gaussians is not None and (loss not in _MIXTURE_LOSSES or num_gaussians < 1):
    raise ValueError(f'Method {name!r}: _i<I> needs a mixture loss {_MIXTURE_LOSSES} and I >= 1.')
  if target_scale is not None and (loss != 'propel' or target_scale <= 0):
    raise ValueError(f'Method {name!r}: _s<target_scale> needs loss propel and a scale > 0.')
  return Method(name, loss, num_gaussians, target_scale)


def parse_methods(methods: str | Sequence[str]) -> list[Method]:
  """A comma-separated string or a sequence of names -> Methods, duplicates refused."""
  names = methods.split(',') if isinstance(methods, str) else list(methods)
  names = [n.strip() for n in names if n.strip()]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise ValueError(f'Methods {duplicates} are listed more than once.')
  return [parse_method(n) for n in names]


def run_config(comparison_config: ml_collections.ConfigDict, method: Method,
               seed: int) -> ml_collections.ConfigDict:
  """The training config of one run: the base (all but `compare`), the method's head, the seed."""
  settings = comparison_config.to_dict()
  settings.pop('compare', None)
  config = ml_collections.ConfigDict(settings)
  config.loss = method.loss
  config.seed = int(seed)
  if method.num_gaussians is not None:
    config.num_gaussians = method.num_gaussians
  if method.target_scale is not None:
    config.target_scale = method.target_scale
  return config


def run_dir(workdir: str, method: Method, seed: int) -> str:
  return os.path.join(workdir, RUNS_DIR, method.name, f'seed_{seed}')


# ----------------------------------------------------------------------------
# Running.


def _is_finished(config: ml_collections.ConfigDict, directory: str) -> bool:
  """Whether `directory` holds a complete run of exactly `config`."""
  needed = (train.CONFIG_FILE, 'eval_metrics.json', OUTPUTS_FILE, TIMING_FILE)
  if not all(os.path.exists(os.path.join(directory, f)) for f in needed):
    return False
  with open(os.path.join(directory, train.CONFIG_FILE)) as f:
    saved = json.load(f)
  return saved == json.loads(config.to_json_best_effort())


def dataset_info(config: ml_collections.ConfigDict) -> input_pipeline.DatasetInfo:
  """The DatasetInfo of the runs' training dataset (registering an image folder first)."""
  train.register_image_folder(config)
  return input_pipeline.get_dataset_info(config.dataset, data_dir=config.data_dir,
                                         image_size=config.image_size)


def _hardware() -> str:
  """What this process trains on, e.g. 'gpu: NVIDIA H100 80GB HBM3 ×1' (all processes' devices)."""
  device = jax.devices()[0]
  return f'{device.platform}: {device.device_kind} ×{jax.device_count()}'


def _add_timing(directory: str, seconds: float) -> None:
  """Adds one call's wall seconds and the hardware it ran on to the run's timing.json."""
  path = os.path.join(directory, TIMING_FILE)
  timing = {'seconds': 0.0, 'calls': 0}
  if os.path.exists(path):
    with open(path) as f:
      timing = json.load(f)
  timing['seconds'] += seconds
  timing['calls'] += 1
  # A resumed run may have moved machines: keep every one it used.
  timing['hardware'] = sorted(set(timing.get('hardware', [])) | {_hardware()})
  with open(path + '.tmp', 'w') as f:
    json.dump(timing, f)
  os.replace(path + '.tmp', path)


def train_run(config: ml_collections.ConfigDict, directory: str) -> bool:
  """Trains and evaluates one run (resuming it), adding its wall time to timing.json.

  Returns:
    True if the run is complete, False if a preemption notice (SIGTERM)
    stopped it after a checkpoint (rerun to resume).
  """
  start = time.perf_counter()
  metrics = train.train_and_evaluate(config, directory)
  if parallel.is_main_process():
    _add_timing(directory, time.perf_counter() - start)
  return metrics is not None


def _claim(directory: str) -> bool:
  """Claims a run for this process; False if another live process holds it.

  Several `compare` processes may share one workdir (run the same command in
  several terminals to use more cores): each trains the runs it claims. The
  claim is a file created atomically with this host and pid; a claim by a
  process of this host that no longer exists (killed) is taken over. Claims
  from other hosts are trusted: delete a stale one by hand.
  """
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, CLAIM_FILE)
  me = f'{socket.gethostname()} {os.getpid()}'
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      try:
        with open(path) as f:
          host, pid = f.read().split()
      except (FileNotFoundError, ValueError):
        continue  # Released or being written meanwhile: try again.
      if host != socket.gethostname() or _process_exists(int(pid)):
        return False
      os.remove(path)  # Its process died: take the run over (it resumes).
      continue
    with os.fdopen(fd, 'w') as f:
      f.write(me)
    return True
  return False


def _process_exists(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def run_all(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Trains every missing run of the comparison `config` that no other process is training.

  Returns:
    True when this process has nothing left to do; False if a preemption
    stopped a run.
  """
  methods = all_methods(config)
  # Seed-major: a comparison stopped early has every method at least once.
  todo = [(m, s) for s in config.compare.seeds for m in methods]
  for index, (method, seed) in enumerate(todo):
    directory = run_dir(workdir, method, seed)
    run_cfg = run_config(config, method, seed)
    where = f'[{index + 1}/{len(todo)}] {method.name} seed {seed}'
    if _is_finished(run_cfg, directory):
      logging.info('%s: finished, skipped.', where)
      continue
    if parallel.is_main_process() and not _claim(directory):
      logging.info('%s: being trained by another process (%s), skipped.', where,
                   os.path.join(directory, CLAIM_FILE))
      continue
    logging.info('%s: training in %s.', where, directory)
    try:
      if not train_run(run_cfg, directory):
        return False
    finally:
      if parallel.is_main_process():
        os.remove(os.path.join(directory, CLAIM_FILE))
  return True


def all_methods(config: ml_collections.ConfigDict) -> list[Method]:
  """The main methods then the sensitivity sweep's, each name once."""
  main = parse_methods(config.compare.methods)
  names = {m.name for m in main}
  sweep = [m for m in parse_methods(config.compare.get('sweep', '') or '') if m.name not in names]
  return main + sweep


# ----------------------------------------------------------------------------
# Per-run analysis of the saved outputs.


def load_outputs(directory: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """A run's per-example test outputs (see `evaluation.EvalResult.outputs`) and images."""
  with np.load(os.path.join(directory, OUTPUTS_FILE)) as data:
    outputs = {k: data[k] for k in data.files}
  images = outputs.pop('images')
  return outputs, images


@jax.jit
def _mixture_analysis(means, scales, log_weights, equivalent_labels, low, high):
  """Per example, in degrees: all-modes-found flag and central-interval coverage per level."""
  means, scales = metrics_lib.to_degrees(means, scales, low, high)
  labels = low + (high - low) * equivalent_labels
  locations, _, valid = mixtures.modes(means, scales, log_weights)
  recall = metrics_lib.mode_recall(locations, valid, labels, MODE_RADIUS_DEG)
  label = metrics_lib.most_likely_equivalent(labels, means, scales, log_weights)
  coverage = jnp.stack([metrics_lib.interval_coverage(label, means, scales, log_weights, level)
                        for level in COVERAGE_LEVELS])  # [L, B, n]
  return recall, coverage


def per_example_errors(outputs: dict[str, np.ndarray], info: Any) -> dict[str, np.ndarray]:
  """{decoder: [N]} symmetry-aware absolute error (degrees), mean over the axes."""
  labels = input_pipeline.denormalize_labels(outputs['equivalent_labels'], info)
  errors = {}
  for key, value in outputs.items():
    if key.startswith('prediction/'):
      prediction = input_pipeline.denormalize_labels(value, info)
      errors[key.split('/', 1)[1]] = np.asarray(
          metrics_lib.absolute_errors(prediction, labels)).mean(axis=-1)
  return errors


def analyse_run(outputs: dict[str, np.ndarray], info: Any) -> dict[str, Any]:
  """What the comparison adds to a run's eval_metrics.json, from its outputs.

  Returns:
    For mixture heads: 'mode_recall_all' (share of test images with a mode
    within MODE_RADIUS_DEG, on every axis, of every equivalent label) and
    'coverage_curve' ([len(COVERAGE_LEVELS)] observed coverage of the central
    intervals, mean over examples and axes); {} for point heads.
  """
  if 'means' not in outputs:
    return {}
  low = np.asarray(info.label_low, np.float32)
  high = np.asarray(info.label_high, np.float32)
  recall, coverage = _mixture_analysis(outputs['means'], outputs['scales'],
                                       outputs['log_weights'], outputs['equivalent_labels'],
                                       low, high)
  return {'mode_recall_all': float(np.mean(np.asarray(recall) == 1.0)),
          'coverage_curve': np.asarray(coverage, np.float64).mean(axis=(1, 2)).tolist()}


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


def load_run(directory: str, info: Any) -> dict[str, Any]:
  """One finished run's metrics: eval_metrics.json + `analyse_run` + timing."""
  with open(os.path.join(directory, 'eval_metrics.json')) as f:
    result = json.load(f)
  outputs, _ = load_outputs(directory)
  result.update(analyse_run(outputs, info))
  with open(os.path.join(directory, TIMING_FILE)) as f:
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
  info = dataset_info(config)
  methods = all_methods(config)
  num_main = len(parse_methods(config.compare.methods))
  runs, summary, missing = {}, {}, []
  for method in methods:
    per_seed = {}
    for seed in config.compare.seeds:
      directory = run_dir(workdir, method, seed)
      if _is_finished(run_config(config, method, seed), directory):
        per_seed[str(seed)] = load_run(directory, info)
      else:
        missing.append(f'{method.name}/seed_{seed}')
    runs[method.name] = per_seed
    if per_seed:
      summary[method.name] = aggregate(list(per_seed.values()))
  return {
      'dataset': config.dataset,
      'label_names': list(info.label_names),
      'split_sizes': dict(info.split_sizes),
      'methods': [m.name for m in methods[:num_main]],
      'sweep': [m.name for m in methods[num_main:]],
      'method_settings': {m.name: _settings(config, m) for m in methods},
      'seeds': list(config.compare.seeds),
      'coverage_levels': list(COVERAGE_LEVELS),
      'mode_radius_deg': MODE_RADIUS_DEG,
      'config': config.to_dict(),
      'missing_runs': missing,
      'runs': runs,
      'summary': summary,
  }


def _settings(comparison_config, method):
  config = run_config(comparison_config, method, 0)
  settings = {'loss': method.loss}
  if method.is_mixture:
    settings['num_gaussians'] = int(config.num_gaussians)
  if method.loss == 'propel':
    settings['target_scale'] = config.target_scale
  return settings


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
            f'recall: share of equivalent labels with a mode within {MODE_RADIUS_DEG:g}° on '
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
    lines += ['', '## Sensitivity of PROPEL to I and target_scale', '',
              'target_scale is σ of the ground-truth Gaussian in normalised label units '
              '(1 = the label range).', '',
              '| method | I | target_scale | mode CMAE | mean CMAE | NLL | 90% coverage | '
              'mode recall | all modes |', '|---|---|---|---|---|---|---|---|---|']
    propel = [n for n in results['methods'] + results['sweep']
              if results['method_settings'][n]['loss'] == 'propel']
    propel.sort(key=lambda n: (results['method_settings'][n]['target_scale'],
                               results['method_settings'][n]['num_gaussians']))
    for name in propel:
      stats, settings = summary.get(name, {}), results['method_settings'][name]
      lines.append(' | '.join([
          f'| {name}', str(settings['num_gaussians']), f'{settings["target_scale"]:g}',
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
  from propel_jax import comparison_plots  # pylint: disable=g-import-not-at-top  (matplotlib)

  results = collect(config, workdir)
  results['command'] = command
  plot_files = comparison_plots.write_all(results, workdir, config=config)
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


def compare(config: ml_collections.ConfigDict, workdir: str, *, command: str) -> dict | None:
  """Runs (or resumes) the comparison, then writes the report.

  Returns:
    The content of results.json, or None if a preemption notice stopped a run
    (rerun the same command to resume).
  """
  validate(config)
  os.makedirs(workdir, exist_ok=True)
  start = time.perf_counter()
  if not run_all(config, workdir):
    return None
  return write_report(config, workdir, command=command,
                      wall_seconds=time.perf_counter() - start)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the comparison's own keys and every run's config before any training.

  Raises:
    ValueError: naming the offending key or method.
  """
  if 'compare' not in config:
    raise ValueError('The config has no `compare` section: use a comparison config, e.g. '
                     '--config=experiments/configs/compare_synthetic.py:ambiguous_small.')
  seeds = config.compare.get('seeds')
  if not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f'config.compare.seeds={seeds!r} must be a non-empty tuple of '
                     f'distinct integers, e.g. --config.compare.seeds="(0, 1, 2)".')
  methods = all_methods(config)
  if not methods:
    raise ValueError('config.compare.methods lists no method.')
  for method in methods:
    train.validate_config(run_config(config, method, seeds[0]))
