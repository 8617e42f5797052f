"""The flags of a multi-process run, shared by the binaries that can run on several hosts.

Start one process per host with the same flags plus
--coordinator_address=HOST:PORT --num_processes=N --process_id=I. If one
process fails, the others stop within seconds and name it (see
`parallel.failures_stop_all`).
"""

import contextlib
from typing import Iterator

from absl import flags

from propel_jax.training import parallel

_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0 (multi-process runs).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, "This process's index.")
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    'heartbeat_timeout_s', parallel.HEARTBEAT_TIMEOUT_S,
    'Multi-process runs: a process silent this long (killed, hung) counts as dead and '
    'the others stop, naming it.')
_SHUTDOWN_TIMEOUT = flags.DEFINE_integer(
    'shutdown_timeout_s', parallel.SHUTDOWN_TIMEOUT_S,
    'Multi-process runs: how long the end of the run waits for every process.')


@contextlib.contextmanager
def joined() -> Iterator[None]:
  """Joins the run the flags describe (if any) for the block; a failure stops every process."""
  parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                  heartbeat_timeout_s=_HEARTBEAT_TIMEOUT.value,
                                  shutdown_timeout_s=_SHUTDOWN_TIMEOUT.value)
  with parallel.failures_stop_all():
    yield
