"""Shared fixtures. Helpers shared by several test files live beside them as modules:
`fake_datasets` (small files in the real datasets' formats) and `training_runs`
(tiny configs, the training binary as a subprocess, readers of its outputs).

Tiers: `make test` runs everything; `make test-fast` (`pytest -m 'not slow'`)
skips the end-to-end runs marked `slow` (binaries in subprocesses, several
processes joined by jax.distributed, kill-and-resume).
"""

import jax
import pytest


def pytest_collection_modifyitems(items):
  """The `slow` runs first, so that with `-n 2` both workers start on them and the many short
  tests fill in after (the last long test does not start on a worker that is otherwise done)."""
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """An empty TFDS data directory shared by a module's tests (they build into it)."""
  return str(tmp_path_factory.mktemp('data'))


@pytest.fixture(scope='module')
def jax_cache(tmp_path_factory):
  """A JAX compilation cache shared by a module's subprocesses."""
  return str(tmp_path_factory.mktemp('jax_cache'))


@pytest.fixture
def enable_x64():
  """The float64 switch: `with enable_x64(): ...` runs its block with float64 enabled in JAX.

  Float64 references and finite differences run inside the block; outside it
  JAX keeps its float32 default, so the code under test runs as users run it.
  `enable_x64(False)` turns float64 off inside a block.
  """
  if hasattr(jax, 'enable_x64'):
    return jax.enable_x64
  from jax import experimental  # pylint: disable=g-import-not-at-top
  return experimental.enable_x64
