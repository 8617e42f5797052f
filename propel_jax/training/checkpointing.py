"""Checkpoints that lose nothing: training state, input position and RNG in one step.

A checkpoint is an Orbax `CheckpointManager` step directory in
`workdir/checkpoints/<step>/` with two items:

* `state`: the whole training state pytree (parameters, batch statistics,
  optimiser state, step counter, RNG key), saved once by Orbax for all
  processes;
* `data`: every process's input-iterator position, one JSON file per process
  (`process_<i>-of-<n>.json`), because each process reads its own share.

Orbax writes a step into a temporary directory and renames it only when
complete, so a process killed mid-save (SIGKILL) leaves the previous
checkpoint as the latest valid one.
"""

import base64
import dataclasses
import json
import signal
import threading
from typing import Any, Protocol

from etils import epath
import jax
import orbax.checkpoint as ocp

STATE = 'state'
DATA = 'data'


class StatefulIterator(Protocol):
  """An input iterator whose position can be read and restored (e.g. Grain's)."""

  def get_state(self) -> Any:
    ...

  def set_state(self, state: Any) -> None:
    ...


def _encode_iterator_state(state: Any) -> str:
  # Grain's dataset iterators describe their position as a JSON-able dict,
  # its DataLoader iterators as bytes; keep either, byte-exact.
  if isinstance(state, bytes):
    return json.dumps({'bytes': base64.b64encode(state).decode('ascii')})
  return json.dumps({'json': state}, indent=1)


def _decode_iterator_state(text: str) -> Any:
  record = json.loads(text)
  if 'bytes' in record:
    return base64.b64decode(record['bytes'])
  return record['json']


class IteratorHandler(ocp.CheckpointHandler):
  """Orbax handler that saves and restores each process's iterator position."""

  def _filename(self, directory: epath.Path) -> epath.Path:
    return directory / f'process_{jax.process_index()}-of-{jax.process_count()}.json'

  def save(self, directory: epath.Path, args: 'IteratorSave'):
    self._filename(directory).write_text(_encode_iterator_state(args.iterator.get_state()))

  def restore(self, directory: epath.Path, args: 'IteratorRestore') -> StatefulIterator:
    filename = self._filename(directory)
    if not filename.exists():
      raise FileNotFoundError(
          f'{filename} is missing: the checkpoint in {directory.parent} was written by a run '
          f'with a different number of processes than this one ({jax.process_count()}).')
    args.iterator.set_state(_decode_iterator_state(filename.read_text()))
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


@ocp.args.register_with_handler(IteratorHandler, for_restore=True)
@dataclasses.dataclass
class IteratorRestore(ocp.args.CheckpointArgs):
  iterator: StatefulIterator


class Checkpointer:
  """Saves and restores (training state, input position) pairs in `directory`.

  Args:
    directory: where the step directories go (created if missing).
    max_to_keep: how many of the latest checkpoints to keep (None: all).
  """

  def __init__(self, directory: str | epath.Path, *, max_to_keep: int | None = 3):
    self.directory = epath.Path(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             cleanup_tmp_directories=True),
        item_handlers={STATE: ocp.StandardCheckpointHandler(), DATA: IteratorHandler()})

  def latest_step(self) -> int | None:
    """The step of the newest complete checkpoint, or None if there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, iterator: StatefulIterator) -> None:
    """Starts saving `state` and the iterator position as checkpoint `step`.

    The arrays are copied off the devices before this returns, so `state` may
    be donated to the next step; the files are written in the background
    (call `wait`).
    """
    self._manager.save(step, args=ocp.args.Composite(
        **{STATE: ocp.args.StandardSave(state), DATA: IteratorSave(iterator)}), force=True)

  def restore(self, step: int, abstract_state: Any,
              iterator: StatefulIterator | None = None) -> Any:
    """Restores checkpoint `step` into the structure and shardings of `abstract_state`.

    Args:
      step: which checkpoint.
      abstract_state: a pytree of `jax.ShapeDtypeStruct` with shardings, e.g.
        from `jax.eval_shape` on the state's initialiser.
      iterator: if given, moved to the checkpoint's input position in place.

    Returns:
      The restored state.
    """
    items = {STATE: ocp.args.StandardRestore(abstract_state)}
    if iterator is not None:
      items[DATA] = IteratorRestore(iterator)
    return self._manager.restore(step, args=ocp.args.Composite(**items))[STATE]

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
