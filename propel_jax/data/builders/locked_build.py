"""Builds a TFDS dataset once, however many processes or runs ask for it at the same time.

TFDS writes a build into `incomplete.XXXX_<version>/` and renames it at the
end; two builders of the same dataset collide at that rename (the second
fails with FileExistsError) and may leave a half-written folder behind. So a
build holds an exclusive `flock` on `<version>.lock` beside the build's
folder: whoever takes it first builds; the others (processes of one
multi-process run, or separate runs sharing a data_dir) wait for it, then
read the finished build. The kernel drops the lock when its holder ends,
SIGKILL included, so a dead builder never blocks the next one.
"""

import contextlib
import fcntl
import json
import os
import socket
import time
from typing import Iterator

from absl import logging
import tensorflow_datasets as tfds


@contextlib.contextmanager
def _build_lock(path: str) -> Iterator[None]:
  """Holds an exclusive flock on `path`, waiting (and saying for whom) while another holds it."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      try:
        holder = 'pid {pid} on {host}'.format(**json.loads(os.pread(fd, 1 << 16, 0)))
      except (ValueError, KeyError, TypeError):
        holder = 'another process'
      logging.info('Waiting for %s to finish building the dataset (lock: %s).', holder, path)
      started = time.monotonic()
      fcntl.flock(fd, fcntl.LOCK_EX)
      logging.info('The build finished after %.0f s of waiting.', time.monotonic() - started)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({'pid': os.getpid(), 'host': socket.gethostname()}).encode(), 0)
    yield
  finally:
    os.close(fd)  # Releases the flock.


def prepare(name: str, data_dir: str | None = None,
            download_config: tfds.download.DownloadConfig | None = None
            ) -> tfds.core.DatasetBuilder:
  """The array_record builder of `name` ('dataset/config'), built first if it is not built yet.

  Args:
    name: TFDS name with config, e.g. 'synthetic_hands/ambiguous'.
    data_dir: TFDS data directory (None: TFDS's default).
    download_config: passed to `download_and_prepare` (e.g. a manual_dir).
  """
  builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
  if builder.is_prepared():
    return builder
  version_dir = os.fspath(builder.data_dir)
  if '://' in version_dir:  # A remote filesystem: flock does not reach it.
    logging.warning('Building %s in %s without a lock: build it once before starting '
                    'several processes.', name, version_dir)
    builder.download_and_prepare(download_config=download_config)
    return builder
  with _build_lock(version_dir + '.lock'):
    # Built by another process while this one waited: read that build.
    builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
    if not builder.is_prepared():
      builder.download_and_prepare(download_config=download_config)
  return builder
