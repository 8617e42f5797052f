"""One code path for one CPU, many devices and many hosts: mesh, shardings, batches.

The training state is replicated on every device of a 1-D mesh with the axis
'data'; each global batch is split along its first dimension over that axis.
Every process reads only its own share of a batch (its "local" batch) and
`jax.make_array_from_process_local_data` assembles the global array, so the
same jitted step runs unchanged on one CPU, on 8 devices of one host, or on
several hosts after `initialize_distributed`.
"""

import contextlib
import os
import sys
import threading
import time
import traceback
from typing import Any, Iterator, Mapping

from absl import logging
import jax
from jax._src import distributed as jax_distributed
from jax.experimental import multihost_utils
import numpy as np

DATA_AXIS = 'data'
# How long a process may stay silent before the others count it dead, and how
# long the shutdown of a run waits for all processes (jax.distributed's
# defaults, 100 s and 300 s, keep survivors waiting for minutes).
HEARTBEAT_TIMEOUT_S = 30
SHUTDOWN_TIMEOUT_S = 60
# Keys of the coordination service's key-value store that `failures_stop_all` uses:
# a failing process writes failed/<i>, the others seen/<j> once they have read it,
# and every process but 0 gone/<j> as it exits.
_FAILED_KEY = 'propel_jax/failed/'
_SEEN_KEY = 'propel_jax/seen/'
_GONE_KEY = 'propel_jax/gone/'
# How long a process waits for the others at each of those steps.
_NOTICE_S = 10.0
# Blocks of `failures_stop_all` ended so far: each ends at a barrier of its own.
_RUNS = 0


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None,
                           heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S,
                           shutdown_timeout_s: int = SHUTDOWN_TIMEOUT_S) -> None:
  """Joins a multi-process run when all three of its settings are given.

  Must run before anything touches a JAX device. On CPU the cross-process
  collectives go over gloo (the CPU backend has no other implementation).

  Args:
    coordinator_address: 'host:port' of process 0's coordination service.
    num_processes: number of processes in the run.
    process_id: this process's index in [0, num_processes).
    heartbeat_timeout_s: a process silent this long (killed, hung, its host
      gone) counts as dead, and jax.distributed stops the others with an
      error that names it.
    shutdown_timeout_s: how long the end of the run waits for every process.

  Raises:
    ValueError: if only some of the three settings are given, or they are
      inconsistent.
  """
  given = {'coordinator_address': coordinator_address, 'num_processes': num_processes,
           'process_id': process_id}
  if all(v is None for v in given.values()):
    return
  missing = [k for k, v in given.items() if v is None]
  if missing:
    raise ValueError(f'A multi-process run needs coordinator_address, num_processes and '
                     f'process_id together; missing: {", ".join(missing)} (given: {given}).')
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise ValueError(f'process_id must be in [0, num_processes); got process_id={process_id}, '
                     f'num_processes={num_processes}.')
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             heartbeat_timeout_seconds=heartbeat_timeout_s,
                             shutdown_timeout_seconds=shutdown_timeout_s)
  logging.info('Joined the run as process %d of %d (%d local / %d global devices).',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())


def create_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh over all devices of all processes, with the axis 'data'."""
  # Auto axes: the jitted step is written for one device and XLA's sharding
  # propagation inserts the gradient all-reduce; explicit axes would make every
  # model op declare how it treats the sharded batch dimension.
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """The sharding of values that every device holds whole (the training state)."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def batch_sharded(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """The sharding of batches: the first dimension split over 'data'."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DATA_AXIS))


def local_batch_size(global_batch_size: int) -> int:
  """This process's share of a global batch.

  Raises:
    ValueError: naming `batch_size` if it does not split evenly over devices.
  """
  if global_batch_size % jax.device_count():
    raise ValueError(f'config.batch_size={global_batch_size} must be divisible by the number '
                     f'of devices ({jax.device_count()}: {jax.process_count()} process(es) x '
                     f'{jax.local_device_count()} local device(s)). A resumed run keeps its '
                     f'batch size: resume it on a number of devices that divides it.')
  return global_batch_size // jax.process_count()


def shard_batch(local_batch: Mapping[str, Any],
                mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Assembles the global batch from every process's local NumPy batch.

  Args:
    local_batch: arrays of shape [b, ...] with b = global batch / process count.
    mesh: the mesh from `create_mesh`.

  Returns:
    Global arrays of shape [b * process_count, ...], sharded on 'data'.
  """
  sharding = batch_sharded(mesh)

  def to_global(x):
    x = np.asarray(x)
    global_shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
    return jax.make_array_from_process_local_data(sharding, x, global_shape)

  return {k: to_global(v) for k, v in local_batch.items()}


def replicate(tree: Any, mesh: jax.sharding.Mesh) -> Any:
  """Places a pytree of host or device values on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def to_host(tree: Any) -> Any:
  """Fetches (possibly multi-host) global arrays whole into NumPy on every process."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def on_every_process(flag: bool) -> bool:
  """Whether `flag` (each process passes its own) holds on every process.

  Every process gets the same answer, so decisions that depend on local files
  (a damaged checkpoint, a busy workdir) are taken together.
  """
  if jax.process_count() == 1:
    return bool(flag)
  return bool(np.all(multihost_utils.process_allgather(np.array(bool(flag)))))


def is_main_process() -> bool:
  """Only process 0 logs to files and writes outputs."""
  return jax.process_index() == 0


def _others() -> set[int]:
  return set(range(jax.process_count())) - {jax.process_index()}


def _wait_for(client, key: str, processes: set[int], poll_s: float) -> set[int]:
  """Waits (at most _NOTICE_S) until `processes` have written `key`<index>; those that did."""
  deadline = time.monotonic() + _NOTICE_S
  while True:
    written = {int(k.rsplit('/', 1)[-1]) for k, _ in client.key_value_dir_get(key)}
    if processes <= written or time.monotonic() > deadline:
      return written & processes
    time.sleep(poll_s)


def _leave(client, poll_s: float, alive: set[int]) -> None:
  """Ends this process of a failed run at once, with status 1.

  No atexit shutdown barrier (it would wait for the processes that are
  gone), and process 0, whose coordination service the others still use,
  exits last: a process that loses the service first is aborted by
  jax.distributed instead of exiting with its own status.

  Args:
    client: the jax.distributed client.
    poll_s: how often to look at the key-value store.
    alive: the other processes that may still be running (process 0 waits for them).
  """
  if jax.process_index():
    client.key_value_set(f'{_GONE_KEY}{jax.process_index()}', '')
  else:
    _wait_for(client, _GONE_KEY, alive, poll_s)
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(1)  # pylint: disable=protected-access


def _watch_for_failures(client, stop: threading.Event, poll_s: float) -> None:
  """Ends this process as soon as another process of the run reports a failure."""
  me = jax.process_index()
  while not stop.wait(poll_s):
    try:
      failed = client.key_value_dir_get(_FAILED_KEY)
    except Exception:  # pylint: disable=broad-except
      # The coordinator is gone; jax.distributed's own heartbeat check reports it.
      continue
    others = sorted((key.rsplit('/', 1)[-1], error) for key, error in failed
                    if key.rsplit('/', 1)[-1] != str(me))
    if others:
      for index, error in others:
        logging.error('Process %s of the run failed, so process %d stops too. Its error:\n%s',
                      index, me, error)
      client.key_value_set(f'{_SEEN_KEY}{me}', '')
      _leave(client, poll_s, _others())


@contextlib.contextmanager
def failures_stop_all(poll_s: float = 0.5) -> Iterator[None]:
  """A multi-process run fails as a whole, at once, naming the process that failed.

  An exception in any process is written to the coordination service's
  key-value store; every other process, wherever it is (a collective, a
  barrier, a dataset build), logs that process's index and error and exits
  with status 1 within `poll_s`, and so does the failing one once they have
  read it. A process that dies without a word (SIGKILL, a crash) stops
  sending heartbeats, and jax.distributed stops the others after
  `heartbeat_timeout_s` with an error that names it. A block that ends well
  ends with a barrier, so no process reaches the shutdown while another is
  still writing its outputs. One process: no effect.

  Args:
    poll_s: how often each process looks for the others' failures.
  """
  client = jax_distributed.global_state.client
  if jax.process_count() == 1 or client is None:
    yield
    return
  stop = threading.Event()
  watcher = threading.Thread(target=_watch_for_failures, args=(client, stop, poll_s),
                             name='failure-watch', daemon=True)
  watcher.start()
  try:
    yield
  except BaseException as e:  # SystemExit and KeyboardInterrupt end the run too.
    if isinstance(e, SystemExit) and e.code in (0, None):
      raise
    me = jax.process_index()
    error = ''.join(traceback.format_exception_only(type(e), e)).strip()
    logging.exception('Process %d failed; stopping every process of the run.', me)
    client.key_value_set(f'{_FAILED_KEY}{me}', error)
    answered = _wait_for(client, _SEEN_KEY, _others(), poll_s)
    silent = _others() - answered
    if silent:
      # E.g. a collective failed because a peer was killed: it cannot answer.
      logging.error('Process(es) %s did not answer within %.0f s: they have ended too '
                    '(killed or crashed; their logs say why).', sorted(silent), _NOTICE_S)
    _leave(client, poll_s, answered)
  # Every process ends the block before any starts the shutdown: one still
  # writing its outputs must not look dead to the others. No time limit
  # (the watcher and the heartbeats catch a failure meanwhile).
  global _RUNS
  _RUNS += 1
  client.wait_at_barrier(f'propel_jax/end/{_RUNS}', 2**31 - 1)
  stop.set()
  watcher.join()
