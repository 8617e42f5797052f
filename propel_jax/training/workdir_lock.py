"""One run per workdir: a lock file that names its holder.

Two runs writing one workdir lose work: their checkpoints collide inside
Orbax and one truncates the other's metrics.jsonl. So `train_and_evaluate`
and `evaluate` hold `workdir/lock` while they run, and a second run refuses at
once, naming the file and the holder (pid, host, start time, command line).

The lock is an exclusive `flock` on that file; the file's content only says
who holds it. The kernel drops a flock when its process ends, however it ends
(SIGKILL included), so a lock file left by a dead process is free: the next
run takes it over and says so. Unlike checking whether the recorded pid is
alive, this cannot be fooled by a reused pid, and two runs cannot both take
over the same stale lock. On a filesystem without flock (rare; most network
filesystems emulate it) the run proceeds unlocked, with a warning.
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from typing import Iterator

from absl import logging

from propel_jax.training import parallel

LOCK_FILE = 'lock'

# Locks this process holds: path -> [file descriptor, depth]. A process may
# take its own lock again (the comparison runner holds a run's lock around
# train_and_evaluate, which takes it too).
_HELD: dict[str, list[int]] = {}


class WorkdirBusyError(RuntimeError):
  """Another live process holds the workdir's lock."""


def _describe(holder: str) -> str:
  """'pid 123 on host since 2024-01-01 12:00:00 (python -m ...)' from the lock file's text."""
  try:
    record = json.loads(holder)
    return (f"pid {record['pid']} on {record['host']} since {record['started']} "
            f"({record['command']})")
  except (ValueError, KeyError, TypeError):
    return 'a process that has not written its name yet'


def _acquire(path: str) -> int | None:
  """Takes the lock at `path`; its file descriptor, or None where flock is unsupported.

  Raises:
    WorkdirBusyError: if another process holds it.
  """
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      holder = os.read(fd, 1 << 16).decode(errors='replace')
      os.close(fd)
      if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
        raise WorkdirBusyError(
            f'{os.path.dirname(path)} is in use by another run: {path} is held by '
            f'{_describe(holder)}. Wait for it to end, stop it, or use another '
            f'--workdir.') from None
      logging.warning('Cannot lock %s (%s): running without protection against a second '
                      'run in the same workdir.', path, e)
      return None
    # The holder before us may have deleted the file between our open and our
    # flock (it releases by deleting): then we hold a lock on nothing.
    try:
      same = os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
      same = False
    if same:
      break
    os.close(fd)
  stale = os.read(fd, 1 << 16).decode(errors='replace')
  if stale.strip():
    logging.warning('Took over %s from %s, which ended without releasing it.', path,
                    _describe(stale))
  record = {'pid': os.getpid(), 'host': socket.gethostname(),
            'started': time.strftime('%Y-%m-%d %H:%M:%S'), 'command': ' '.join(sys.argv)}
  os.ftruncate(fd, 0)
  os.pwrite(fd, json.dumps(record).encode(), 0)
  return fd


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds `workdir`'s lock (process 0 takes it) for the duration of the block.

  Raises:
    WorkdirBusyError: on every process, if another live process holds it.
  """
  path = os.path.join(os.path.realpath(workdir), LOCK_FILE)
  error = None
  if parallel.is_main_process():
    if path in _HELD:
      _HELD[path][1] += 1
    else:
      try:
        _HELD[path] = [_acquire(path), 1]
      except WorkdirBusyError as e:
        error = e
  # Decided together: the other processes must not start a run process 0 refused.
  if not parallel.on_every_process(error is None):
    raise error or WorkdirBusyError(f'Process 0 could not lock {path} (see its log).')
  try:
    yield
  finally:
    if path in _HELD:
      _HELD[path][1] -= 1
      if not _HELD[path][1]:
        fd, _ = _HELD.pop(path)
        if fd is not None:
          # Deleted while still held: a run that opened the file before this
          # finds it replaced and retries (see `_acquire`).
          os.remove(path)
          os.close(fd)
