"""Checkpoints that lose nothing: training state, input position and RNG in one step.

A checkpoint is an Orbax `CheckpointManager` step directory in
`workdir/checkpoints/<step>/` with two items:

* `state`: the whole training state pytree (parameters, batch statistics,
  optimiser state, step counter, RNG key), saved once by Orbax for all
  processes;
* `data`: the input iterator's position, one JSON file `position.json`
  written by process 0: the position is the same on every process (the
  number of the next global batch; see `propel_jax.data.input_pipeline`), so a
  checkpoint written by P processes resumes on any number of them. The file
  also holds the SHA-256 of the state's arrays as saved, and a SHA-256 of its
  own content.

Orbax writes a step into a temporary directory and renames it only when
complete, so a process killed mid-save (SIGKILL) leaves the previous
checkpoint as the latest valid one. Damage after that (a truncated, deleted or
altered file) shows when restoring: as an Orbax error, as a position file
that fails its checksum, or as restored arrays that differ from the checksum
saved with them. `restore_latest` then falls back to the newest checkpoint
that passes all three, and says which ones it skipped and why.

Checkpoints of older versions hold one Grain iterator state per process
(`process_<i>-of-<n>.json`), positions in an input order that depended on the
number of processes: they still evaluate, but training refuses to resume from
them (`IncompatibleCheckpointError`) rather than resume inexactly.
"""

import dataclasses
import hashlib
import json
import signal
import threading
from typing import Any, Protocol

from absl import logging
from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp

from propel_jax.training import parallel

STATE = 'state'
DATA = 'data'
# Where training moves the checkpoints it skipped as damaged (inside the
# checkpoint directory; Orbax ignores folders whose name is not a step).
DAMAGED = 'damaged'
POSITION_FILE = 'position.json'


class StatefulIterator(Protocol):
  """An input iterator whose position can be read and restored.

  The position (`get_state()`, a JSON value) must be the same on every
  process and restorable on any number of processes, as
  `input_pipeline.BatchIterator`'s is: process 0 alone saves it.
  """

  def get_state(self) -> Any:
    ...

  def set_state(self, state: Any) -> None:
    ...


class DamagedCheckpointError(RuntimeError):
  """A checkpoint that does not restore, or restores other values than were saved."""


class IncompatibleCheckpointError(RuntimeError):
  """A checkpoint of an older version whose input position cannot be resumed from."""


def state_digest(state: Any) -> str:
  """SHA-256 of a state pytree: every leaf's path, dtype, shape and bytes.

  The training state is replicated, so this process's first shard of each
  array is the whole array, the same on every process.
  """
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    if isinstance(leaf, jax.Array):
      leaf = leaf.addressable_shards[0].data
    array = np.ascontiguousarray(leaf)
    digest.update(f'{jax.tree_util.keystr(path)} {array.dtype.str} {array.shape}\n'.encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def _sha256(body: dict[str, Any]) -> str:
  # Of the canonical JSON, so that the file's layout does not matter.
  return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class _Position:
  """A verified position file: the iterator's state and the state's checksum.

  `iterator_state` is None for the per-process files of older versions
  (`legacy_file` names the one read), `state_sha256` None for files written
  before checksums were (nothing to verify the arrays against).
  """
  iterator_state: Any
  state_sha256: str | None
  legacy_file: str | None = None


def _read_record(filename: epath.Path) -> dict[str, Any]:
  """A position file's JSON object, its checksum verified where it has one.

  Raises:
    DamagedCheckpointError: naming the file and what is wrong with it.
  """
  if not filename.exists():
    raise DamagedCheckpointError(f'{filename} is missing.')
  text = filename.read_text()
  if not text.strip():
    raise DamagedCheckpointError(f'{filename} is empty.')
  try:
    record = json.loads(text)
  except json.JSONDecodeError as e:
    raise DamagedCheckpointError(f'{filename} is not valid JSON ({e}).') from e
  if not isinstance(record, dict):
    raise DamagedCheckpointError(f'{filename} does not hold a position record.')
  body = {'iterator': record.get('iterator'), 'state_sha256': record.get('state_sha256')}
  if 'sha256' in record and record['sha256'] != _sha256(body):
    raise DamagedCheckpointError(f'{filename} does not match its SHA-256 checksum.')
  return record


def _read_position(directory: epath.Path) -> _Position:
  """The position file in a checkpoint's `data` directory, verified.

  Raises:
    DamagedCheckpointError: naming the file and what is wrong with it.
  """
  filename = directory / POSITION_FILE
  legacy = (sorted(directory.glob('process_*-of-*.json'))
            if directory.exists() and not filename.exists() else [])
  if legacy:
    # Every process of an older run saved the same state checksum.
    record = _read_record(legacy[0])
    return _Position(None, record.get('state_sha256'), legacy_file=legacy[0].name)
  record = _read_record(filename)
  if 'sha256' not in record:
    raise DamagedCheckpointError(f'{filename} has no SHA-256 checksum.')
  return _Position(record['iterator'], record['state_sha256'])


class IteratorHandler(ocp.CheckpointHandler):
  """Orbax handler that saves and restores the input iterator's position.

  With the position goes the checksum of the state saved alongside (see
  `Checkpointer.restore`, which verifies both).
  """

  def save(self, directory: epath.Path, args: 'IteratorSave'):
    if not parallel.is_main_process():
      return  # The same position on every process: one file.
    body = {'iterator': args.iterator.get_state(), 'state_sha256': args.state_sha256}
    (directory / POSITION_FILE).write_text(
        json.dumps(dict(body, sha256=_sha256(body)), indent=1))

  def restore(self, directory: epath.Path, args: 'IteratorRestore') -> StatefulIterator:
    args.iterator.set_state(_read_position(directory).iterator_state)
    return args.iterator

  def metadata(self, directory: epath.Path) -> None:
    del directory

  def finalize(self, directory: epath.Path) -> None:
    del directory

  def close(self) -> None:
    pass


@ocp.args.register_with_handler(IteratorHandler, for_save=True)
@dataclasses.dataclass
class IteratorSave(ocp.args.CheckpointArgs):
  iterator: StatefulIterator
  state_sha256: str


@ocp.args.register_with_handler(IteratorHandler, for_restore=True)
@dataclasses.dataclass
class IteratorRestore(ocp.args.CheckpointArgs):
  iterator: StatefulIterator


class Checkpointer:
  """Saves and restores (training state, input position) pairs in `directory`.

  Args:
    directory: where the step directories go (created if missing, unless
      read_only).
    max_to_keep: how many of the latest checkpoints to keep (None: all).
    read_only: for evaluation: creates, cleans up and saves nothing.
  """

  def __init__(self, directory: str | epath.Path, *, max_to_keep: int | None = 3,
               read_only: bool = False):
    self.directory = epath.Path(directory)
    # Read-only, Orbax starts no background clean-up of temporary folders, which
    # could otherwise outlive a quick exit and print a traceback at shutdown.
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                             cleanup_tmp_directories=not read_only,
                                             read_only=read_only),
        item_handlers={STATE: ocp.StandardCheckpointHandler(), DATA: IteratorHandler()})

  def latest_step(self) -> int | None:
    """The step of the newest complete checkpoint, or None if there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, iterator: StatefulIterator) -> None:
    """Starts saving `state` and the iterator position as checkpoint `step`.

    The arrays are copied off the devices (and checksummed) before this
    returns, so `state` may be donated to the next step; the files are written
    in the background (call `wait`).
    """
    self._manager.save(step, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardSave(state),
        DATA: IteratorSave(iterator, state_digest(state))}), force=True)

  def restore(self, step: int, abstract_state: Any,
              iterator: StatefulIterator | None = None) -> Any:
    """Restores checkpoint `step` into the structure and shardings of `abstract_state`.

    Verifies the position file against its checksum before reading the
    state, and the restored arrays against the checksum saved with them.

    Args:
      step: which checkpoint.
      abstract_state: a pytree of `jax.ShapeDtypeStruct` with shardings, e.g.
        from `jax.eval_shape` on the state's initialiser.
      iterator: if given, moved to the checkpoint's input position in place.

    Returns:
      The restored state.

    Raises:
      DamagedCheckpointError: saying what failed (on every process alike).
      IncompatibleCheckpointError: for an `iterator` and a checkpoint of an
        older version, whose input position it cannot take.
    """
    problem = None
    try:
      position = _read_position(self.directory / str(step) / DATA)
    except DamagedCheckpointError as e:
      problem = e
    # Orbax's restore ends in a barrier: every process must go in, or none.
    if not parallel.on_every_process(problem is None):
      raise problem or DamagedCheckpointError('Another process found the position file '
                                              'damaged (see its log).')
    if iterator is not None and position.legacy_file is not None:
      raise IncompatibleCheckpointError(
          f'Checkpoint {step} in {self.directory} was written by an older version of '
          f'propel_jax, whose input order depended on the number of processes '
          f'({DATA}/{position.legacy_file} holds a Grain iterator state): training cannot '
          f'resume from it exactly. It still evaluates (python -m experiments.evaluate); '
          f'to train on, start a new --workdir.')
    try:
      state = self._manager.restore(step, args=ocp.args.Composite(
          **{STATE: ocp.args.StandardRestore(abstract_state)}))[STATE]
    except Exception as e:  # pylint: disable=broad-except
      # Damage surfaces as TensorStore, JSON, pytree or OS errors, whichever
      # file it hit.
      first_line = str(e).strip().split('\n', 1)[0]
      raise DamagedCheckpointError(
          f'Orbax could not restore {STATE}/: {type(e).__name__}: {first_line}') from e
    if position.state_sha256 is None:
      logging.warning('Checkpoint %d in %s has no checksums (written by an older version): '
                      'restored without verifying it.', step, self.directory)
    elif state_digest(state) != position.state_sha256:
      raise DamagedCheckpointError(f'the restored arrays do not match the SHA-256 checksum '
                                   f'saved with them: a file under {STATE}/ is damaged.')
    if iterator is not None:
      iterator.set_state(position.iterator_state)
    return state

  def restore_latest(self, abstract_state: Any, iterator: StatefulIterator | None = None, *,
                     set_aside_damaged: bool = False) -> tuple[int | None, Any]:
    """Restores the newest checkpoint that passes `restore`'s checks.

    Logs every checkpoint it skips, with the reason. With `set_aside_damaged`
    (training, which will save those steps again) the skipped ones move to
    `directory/damaged/`, kept for inspection.

    Returns:
      (step, state), or (None, None) if there is no checkpoint.

    Raises:
      DamagedCheckpointError: if there are checkpoints but none restores
        (starting over would silently discard them).
      IncompatibleCheckpointError: see `restore`.
    """
    skipped = {}
    for step in sorted(self.all_steps(), reverse=True):
      problem = None
      try:
        state = self.restore(step, abstract_state, iterator)
      except DamagedCheckpointError as e:
        problem = e
      if parallel.on_every_process(problem is None):
        if skipped and set_aside_damaged:
          self._set_aside(skipped)
        return step, state
      reason = problem or 'it did not restore on another process (see its log)'
      skipped[step] = reason
      logging.warning('Skipping checkpoint %d in %s: %s', step, self.directory, reason)
    if skipped:
      reasons = '; '.join(f'step {step}: {reason}' for step, reason in skipped.items())
      raise DamagedCheckpointError(
          f'No checkpoint in {self.directory} restores ({reasons}). Nothing was changed; '
          f'move the directory away to train from scratch.')
    return None, None

  def _set_aside(self, steps) -> None:
    aside = self.directory / DAMAGED
    if parallel.is_main_process():
      aside.mkdir(exist_ok=True)
      for step in steps:
        target, n = aside / str(step), 1
        while target.exists():
          target, n = aside / f'{step}.{n}', n + 1
        (self.directory / str(step)).rename(target)
        logging.warning('Moved the damaged checkpoint %d to %s.', step, target)
    parallel.on_every_process(True)  # A barrier: the moves are done.
    self._manager.reload()

  def wait(self) -> None:
    """Blocks until every started save is complete on disk."""
    self._manager.wait_until_finished()

  def reached_preemption(self, step: int) -> bool:
    """Whether all processes agreed to stop at `step` after a preemption notice.

    Only meaningful in multi-process runs (JAX's preemption service, which
    listens to SIGTERM itself); single-process runs handle SIGTERM directly.
    """
    return self._manager.reached_preemption(step)

  def close(self) -> None:
    self._manager.close()


class PreemptionWatcher:
  """Tells the training loop when a SIGTERM (preemption notice) asks it to stop.

  In a single process a SIGTERM handler records the notice and the loop saves
  and exits at the next step boundary. With several processes, JAX's
  preemption service already listens to SIGTERM and agrees on one step at
  which every process stops, so this defers to it (through `checkpointer`).
  Use as a context manager: the previous SIGTERM handler comes back on exit.
  """

  def __init__(self, checkpointer: Checkpointer):
    self._checkpointer = checkpointer
    self._notified = False
    self._previous_handler = None

  def __enter__(self) -> 'PreemptionWatcher':
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
    return self

  def __exit__(self, *exc_info) -> None:
    if self._previous_handler is not None:
      signal.signal(signal.SIGTERM, self._previous_handler)
      self._previous_handler = None

  def _on_sigterm(self, signum, frame) -> None:
    del signum, frame
    self._notified = True

  def should_stop(self, step: int) -> bool:
    """Whether to save a checkpoint at `step` (just completed) and exit."""
    if jax.process_count() > 1:
      return self._checkpointer.reached_preemption(step)
    return self._notified
