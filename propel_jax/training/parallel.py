"""One code path for one CPU, many devices and many hosts: mesh, shardings, batches.

The training state is replicated on every device of a 1-D mesh with the axis
'data'; each global batch is split along its first dimension over that axis.
Every process reads only its own share of a batch (its "local" batch) and
`jax.make_array_from_process_local_data` assembles the global array, so the
same jitted step runs unchanged on one CPU, on 8 devices of one host, or on
several hosts after `initialize_distributed`.
"""

from typing import Any, Mapping

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

DATA_AXIS = 'data'


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins a multi-process run when all three of its settings are given.

  Must run before anything touches a JAX device. On CPU the cross-process
  collectives go over gloo (the CPU backend has no other implementation).

  Args:
    coordinator_address: 'host:port' of process 0's coordination service.
    num_processes: number of processes in the run.
    process_id: this process's index in [0, num_processes).

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
                             num_processes=num_processes, process_id=process_id)
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
