"""A run's configuration: deprecated names, validation, and `workdir/config.json`.

The keys are those of experiments/configs/default.py. Before a run reads a
config, `resolve` maps the deprecated names to the present ones:

    loss            -> head            (it names heads that are not losses)
    num_gaussians   -> num_components  (it sizes von Mises-Fisher heads too)
    target_scale read by vmfpropel -> target_concentration = 1/target_scale²
                       (κ of the ground truth; target_scale stays σ of the
                       Gaussian heads' ground truth)

Each deprecated use logs one warning naming the new key. A config that sets
an old key and its new key to different values is an error, except that a
command-line old key overrides a new key set in the config file, as a
command-line value always does.

A run's workdir keeps the resolved config as config.json; a resumed run must
match it except for RESUMABLE_KEYS and the target widths its head does not
read. A config.json written under the old names resolves like any config.
"""

import dataclasses
import json
import os
from typing import Any, Collection, Mapping

from absl import logging
import ml_collections
from ml_collections import config_flags
import numpy as np

from propel_jax.nn import registry
from propel_jax.training import parallel

CONFIG_FILE = 'config.json'
# Keys a resumed run may change: they say how long and how visibly to train,
# not what is trained.
RESUMABLE_KEYS = ('num_train_steps', 'eval_every_steps', 'checkpoint_every_steps',
                  'log_every_steps', 'max_checkpoints_to_keep', 'data_dir', 'worker_count',
                  'num_plot_examples')
SCHEDULES = ('constant', 'cosine')
OPTIMIZERS = ('adam', 'adamw', 'sgd')


@dataclasses.dataclass(frozen=True)
class RenamedKey:
  """A config key that was renamed: the old name is still read.

  Attributes:
    old: the deprecated name.
    new: the present name.
    default: the new key's value in experiments/configs/default.py. An old
      key set beside a new key at its default replaces it (an old config
      file built on the default config sets only the old key).
  """
  old: str
  new: str
  default: Any


RENAMED_KEYS = (RenamedKey('loss', 'head', 'propel'),
                RenamedKey('num_gaussians', 'num_components', 2))


def deprecated_keys() -> dict[str, Any]:
  """The old names as unset keys of their new key's type, so that `--config.loss=...` parses."""
  return {key.old: ml_collections.config_dict.placeholder(type(key.default))
          for key in RENAMED_KEYS}


def resolve(config: ml_collections.ConfigDict | Mapping[str, Any],
            given: Collection[str] | None = None, *, warn: bool = True
            ) -> ml_collections.ConfigDict:
  """The config under the present names (see the module docstring), as a new ConfigDict.

  Args:
    config: a config or its JSON values (config.json); old names may be set.
    given: the keys set on the command line (`config_flags.get_override_values`),
      None where unknown. An old key given there overrides a new key that was
      not; without it, a new key away from its default counts as set.
    warn: log one warning per deprecated use (off for a saved config.json,
      which the run rewrites under the present names).

  Returns:
    A ConfigDict without the old names, with `target_concentration` set for
    a head that reads it.

  Raises:
    ValueError: if an old key and its new key are set to different values.

  Examples:
    >>> from propel_jax.training import config as config_lib
    >>> saved = {'loss': 'vmfpropel', 'num_gaussians': 6, 'target_scale': 0.05}
    >>> resolved = config_lib.resolve(saved, warn=False)
    >>> resolved.head, resolved.num_components, resolved.target_concentration
    ('vmfpropel', 6, 400.0)
  """
  values = (config.to_dict() if isinstance(config, ml_collections.ConfigDict)
            else json.loads(json.dumps(dict(config))))
  for key in RENAMED_KEYS:
    old_value = values.pop(key.old, None)
    if old_value is None:
      continue
    new_value = values.get(key.new, key.default)
    if new_value != old_value:
      if given is not None and key.old in given:
        conflict = key.new in given
      else:
        conflict = new_value != key.default
      if conflict:
        raise ValueError(f'config.{key.old}={old_value!r} (the deprecated name of '
                         f'config.{key.new}) and config.{key.new}={new_value!r} disagree: '
                         f'set config.{key.new} only.')
    if warn:
      logging.warning('config.%s is deprecated: it is config.%s now (read as %s=%r).',
                      key.old, key.new, key.new, old_value)
    values[key.new] = old_value
  _resolve_target_concentration(values, warn)
  return ml_collections.ConfigDict(values)


def resolve_flag(config_flag: Any) -> ml_collections.ConfigDict:
  """`resolve` of a `config_flags` flag's config, knowing which keys its command line set.

  Args:
    config_flag: the flag, e.g. `absl.flags.FLAGS['config']`.
  """
  return resolve(config_flag.value, config_flags.get_override_values(config_flag))


def _resolve_target_concentration(values: dict[str, Any], warn: bool) -> None:
  """vmfpropel once took κ = 1/σ² from target_scale: do so where target_concentration is unset."""
  head = registry.HEADS.get(values.get('head'))
  width = head and head.target_width
  if width is not registry.TARGET_CONCENTRATION or values.get(width.key) is not None:
    return
  sigma = np.max(np.asarray(values.get('target_scale'), np.float64))
  if not sigma > 0:
    return  # `validate` names the bad target_scale.
  values[width.key] = float(width.from_sigma(sigma))
  if warn:
    logging.warning('config.target_scale as the %s target width is deprecated: set '
                    'config.%s (κ; read as 1/target_scale² = %g).', head.name, width.key,
                    values[width.key])


def validate(config: ml_collections.ConfigDict) -> None:
  """Fails before any work with a message naming the offending key.

  Checks the loop's keys and the head's name and numbers; the head's fit to
  the labels and the `model` keys are checked when the model is built (also
  before training), the dataset name when its info is read. Old names are
  resolved first (`resolve`).

  Raises:
    ValueError: naming the key, its value and what is allowed.
  """
  config = resolve(config)

  def fail(key, requirement):
    raise ValueError(f'config.{key}={config.get(key)!r} is invalid: {requirement}.')

  def is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

  for key in ('batch_size', 'num_train_steps', 'eval_every_steps', 'checkpoint_every_steps',
              'log_every_steps'):
    if not is_int(config.get(key)) or config.get(key) < 1:
      fail(key, 'must be a positive integer')
  if not is_int(config.seed):
    fail('seed', 'must be an integer')
  parallel.local_batch_size(config.batch_size)  # Divisible by the device count.
  if config.max_checkpoints_to_keep is not None and (
      not is_int(config.max_checkpoints_to_keep) or config.max_checkpoints_to_keep < 1):
    fail('max_checkpoints_to_keep', 'must be a positive integer or None (keep all)')
  if not isinstance(config.learning_rate, (int, float)) or not config.learning_rate > 0:
    fail('learning_rate', 'must be a positive number')
  if config.lr_schedule not in SCHEDULES:
    fail('lr_schedule', f'must be one of {SCHEDULES}')
  if not is_int(config.warmup_steps) or not 0 <= config.warmup_steps < config.num_train_steps:
    fail('warmup_steps', f'must be an integer in [0, num_train_steps={config.num_train_steps})')
  if config.optimizer not in OPTIMIZERS:
    fail('optimizer', f'must be one of {OPTIMIZERS}')
  if not config.grad_clip_norm >= 0:
    fail('grad_clip_norm', 'must be >= 0 (0: no clipping)')
  if not config.weight_decay >= 0:
    fail('weight_decay', 'must be >= 0')
  if config.get('head') not in registry.HEADS:
    fail('head', f'must be one of the registered heads {registry.names()}')
  if not is_int(config.get('num_components')) or config.num_components < 1:
    fail('num_components', 'must be a positive integer')
  if not np.all(np.asarray(config.get('target_scale'), dtype=float) > 0):
    fail('target_scale', 'must be positive (one number, or one per target)')
  concentration = config.get('target_concentration')
  if concentration is not None and not (
      isinstance(concentration, (int, float)) and concentration > 0):
    fail('target_concentration', 'must be a positive number (κ) or None')
  if not isinstance(config.dataset, str) or not config.dataset:
    fail('dataset', "must name a dataset, e.g. 'synthetic_hands/ambiguous'")
  if not is_int(config.num_plot_examples) or config.num_plot_examples < 0:
    fail('num_plot_examples', 'must be an integer >= 0')


def differences(saved: Mapping[str, Any], config: ml_collections.ConfigDict,
                ignore: Collection[str] = ()) -> list[str]:
  """The top-level keys in which a saved config.json and `config` train different runs.

  Both are compared under the present names (`resolve`). Keys in `ignore`
  and the target widths `config`'s head does not read are left out.

  Returns:
    'key: saved value -> value' for each such key, sorted.
  """
  saved = json.loads(resolve(saved, warn=False).to_json_best_effort())
  current = json.loads(resolve(config, warn=False).to_json_best_effort())
  head = registry.HEADS.get(current.get('head'))
  read = {head.target_width.key} if head and head.target_width else set()
  skip = set(ignore) | ({w.key for w in registry.target_widths()} - read)
  return [f'{k}: {saved.get(k)!r} -> {current.get(k)!r}'
          for k in sorted(set(saved) | set(current))
          if k not in skip and saved.get(k) != current.get(k)]


def save_or_check(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any] | None:
  """Writes `workdir/config.json`, or checks a resumed run's config against it.

  Args:
    config: the run's config (written under the present names: `resolve`).
    workdir: the run's directory.

  Returns:
    The configuration saved before (as JSON values), or None for a new run.

  Raises:
    ValueError: if `workdir` holds a run with a different configuration
      (other than RESUMABLE_KEYS), which a resume would silently mix up.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  saved = None
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    changed = differences(saved, config, ignore=RESUMABLE_KEYS)
    if changed:
      raise ValueError(f'{workdir} holds a run with a different configuration '
                       f'({"; ".join(changed)}). Use a new --workdir, or the same settings '
                       f'to resume it.')
  if parallel.is_main_process():
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(json.loads(resolve(config, warn=False).to_json_best_effort()), f, indent=2,
                sort_keys=True)
    os.replace(tmp, path)
  return saved


def load(workdir: str) -> ml_collections.ConfigDict:
  """The configuration a run in `workdir` was trained with, under the present names."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist: is {workdir} the --workdir of a '
                            f'training run (python -m experiments.train ... --workdir=DIR)?')
  with open(path) as f:
    return resolve(json.load(f), warn=False)
