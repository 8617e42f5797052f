"""Runs a comparison: every method × seed trained and evaluated the same way.

A comparison lives in a directory DIR:

    runs/<method>/seed_<k>/   one `train.train_and_evaluate` run each (its
                              config.json, checkpoints, eval_metrics.json,
                              eval_outputs.npz, plots/) plus timing.json
    results.json, results.md, plots/   the report (see `report`)

The comparison's config is a training config (every key `train` reads: the
base every run starts from) plus a `compare` section: `methods` and `sweep`
(comma-separated method names; the sweep's appear only in the sensitivity
table) and `seeds` (experiments/configs/compare_synthetic.py).

A method is named by a string, so that it can be the directory name and a
command-line value: `<head>[_i<I>][_s<σ>][_lw][_full]` with <head> a name in
`propel_jax.nn.registry`, e.g. 'mse', 'heatmap', 'propel_i2' (PROPEL with
I = 2 components), 'mdn_i4', 'propel_i2_s0.05' (a ground truth of σ = 0.05
instead of the base config's), 'propel_i4_lw' (learned mixture weights),
'propel_i4_full' (full-covariance components). Each suffix needs a head that
supports it (its registry entry). σ sets the head's target width
(`registry.TargetWidth.from_sigma`): target_scale = σ for the Gaussian
heads, target_concentration = 1/σ² (σ an angle in radians) for vmfpropel.
Every method trains the same backbone with the same base config; only the
head (and its loss) change.

Rerunning a comparison skips the runs that are finished (their outputs exist
and their saved config equals the one asked for) and resumes the others from
their latest checkpoint, so a comparison interrupted at any point loses at
most the work since a run's last checkpoint. Several processes may work on
one comparison at once (the same command started several times): each trains
the runs whose workdir lock it gets (`propel_jax.training.workdir_lock`) and
skips those another process holds.
"""

import contextlib
import dataclasses
import json
import os
import re
import time
from typing import Sequence

from absl import logging
import jax
import ml_collections

from experiments import plots
from propel_jax.data import input_pipeline
from propel_jax.nn import registry
from propel_jax.training import config as config_lib
from propel_jax.training import data_checks
from propel_jax.training import evaluation
from propel_jax.training import parallel
from propel_jax.training import train
from propel_jax.training import workdir_lock

RUNS_DIR = 'runs'
TIMING_FILE = 'timing.json'

_METHOD_RE = re.compile(r'^(?P<head>[a-z0-9]+?)(?:_i(?P<i>\d+))?(?:_s(?P<s>\d+(?:\.\d+)?(?:e-?\d+)?))?'
                        r'(?P<lw>_lw)?(?P<full>_full)?$')


# ----------------------------------------------------------------------------
# Methods and their configs.


@dataclasses.dataclass(frozen=True)
class Method:
  """One head to compare.

  Attributes:
    name: as given, e.g. 'propel_i2_s0.05'; the run directory's name.
    head: a name in `registry.HEADS`.
    num_components: I for mixture heads, None to keep the base config's.
    target_sigma: σ of the ground truth (the head's target width is
      `from_sigma(σ)`), None to keep the base's.
    learn_weights: True to learn the mixture weights, None to keep the base's.
    covariance: 'full' for full-covariance components, None to keep the
      base's.
  """
  name: str
  head: str
  num_components: int | None = None
  target_sigma: float | None = None
  learn_weights: bool | None = None
  covariance: str | None = None

  @property
  def spec(self) -> registry.Head:
    """The head's registry entry."""
    return registry.get(self.head)


def parse_method(name: str) -> Method:
  """'propel_i2_s0.05' -> Method('propel_i2_s0.05', 'propel', 2, 0.05).

  Raises:
    ValueError: naming the method, for an unknown head, or a suffix its
      registry entry does not support (`_i` and `_full` need a mixture,
      `_s` a target width, `_lw` optionally learned weights), or I < 1.
  """
  match = _METHOD_RE.match(name)
  if not match or match['head'] not in registry.HEADS:
    raise ValueError(f'Unknown method {name!r}: use <head>[_i<I>][_s<σ>][_lw][_full] with '
                     f'<head> one of {registry.names()}, e.g. propel_i2, mdn_i4, mse, '
                     f'propel_i2_s0.05, propel_i4_lw, propel_i4_full.')
  head = registry.get(match['head'])
  num_components = int(match['i']) if match['i'] else None
  target_sigma = float(match['s']) if match['s'] else None

  def supporting(condition):
    return tuple(h.name for h in registry.HEADS.values() if condition(h))

  if num_components is not None and (not head.mixture or num_components < 1):
    raise ValueError(f'Method {name!r}: _i<I> needs a mixture head '
                     f'{supporting(lambda h: h.mixture)} and I >= 1.')
  if target_sigma is not None and (head.target_width is None or target_sigma <= 0):
    raise ValueError(f'Method {name!r}: _s<σ> needs a head with a target width '
                     f'{supporting(lambda h: h.target_width)} and σ > 0.')
  if match['lw'] and head.learned_weights != 'optional':
    raise ValueError(f'Method {name!r}: _lw (learned weights) needs a head of '
                     f'{supporting(lambda h: h.learned_weights == "optional")}; the MDNs '
                     'always learn their weights.')
  if match['full'] and not head.full_covariance:
    raise ValueError(f'Method {name!r}: _full (full covariance) needs a Gaussian mixture head '
                     f'{supporting(lambda h: h.full_covariance)}.')
  return Method(name, head.name, num_components, target_sigma,
                learn_weights=True if match['lw'] else None,
                covariance='full' if match['full'] else None)


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
  """The training config of one run: the base (all but `compare`), the method's head, the seed.

  The base is read under the present key names (`config_lib.resolve`).
  """
  settings = comparison_config.to_dict()
  settings.pop('compare', None)
  config = config_lib.resolve(settings)
  config.head = method.head
  config.seed = int(seed)
  if method.num_components is not None:
    config.num_components = method.num_components
  if method.target_sigma is not None:
    width = method.spec.target_width
    config[width.key] = width.from_sigma(method.target_sigma)
  if method.learn_weights is not None:
    config.model.learn_weights = method.learn_weights
  if method.covariance is not None:
    config.model.covariance = method.covariance
  # The method's head may read a target width the base's head did not.
  return config_lib.resolve(config)


def run_dir(workdir: str, method: Method, seed: int) -> str:
  return os.path.join(workdir, RUNS_DIR, method.name, f'seed_{seed}')


# ----------------------------------------------------------------------------
# Running.


def is_finished(config: ml_collections.ConfigDict, directory: str) -> bool:
  """Whether `directory` holds a complete run of exactly `config`."""
  needed = (config_lib.CONFIG_FILE, evaluation.METRICS_FILE, evaluation.OUTPUTS_FILE,
            TIMING_FILE)
  if not all(os.path.exists(os.path.join(directory, f)) for f in needed):
    return False
  with open(os.path.join(directory, config_lib.CONFIG_FILE)) as f:
    saved = json.load(f)
  return not config_lib.differences(saved, config)


def dataset_info(config: ml_collections.ConfigDict) -> input_pipeline.DatasetInfo:
  """The DatasetInfo of the runs' training dataset (registering an image folder first)."""
  data_checks.register_image_folder(config)
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
    if metrics is not None:
      plots.write_for_run(directory, config, dataset_info(config))
  return metrics is not None


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
    if is_finished(run_cfg, directory):
      logging.info('%s: finished, skipped.', where)
      continue
    os.makedirs(directory, exist_ok=True)
    with contextlib.ExitStack() as stack:
      try:
        stack.enter_context(workdir_lock.hold(directory))
      except workdir_lock.WorkdirBusyError as e:
        logging.info('%s: skipped, %s', where, e)
        continue
      logging.info('%s: training in %s.', where, directory)
      if not train_run(run_cfg, directory):
        return False
  return True


def all_methods(config: ml_collections.ConfigDict) -> list[Method]:
  """The main methods then the sensitivity sweep's, each name once."""
  main = parse_methods(config.compare.methods)
  names = {m.name for m in main}
  sweep = [m for m in parse_methods(config.compare.get('sweep', '') or '') if m.name not in names]
  return main + sweep


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
    config_lib.validate(run_config(config, method, seeds[0]))
