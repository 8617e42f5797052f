"""Shared by the tests that run training: tiny configs, the binary as a subprocess, readers.

The binaries run as real subprocesses; they share a JAX compilation cache so
that only the first one pays for compiling.
"""

import json
import os
import socket
import subprocess
import sys
import time

from absl import flags
import jax
from ml_collections import config_flags
import numpy as np
import orbax.checkpoint as ocp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = f'{REPO}/experiments/configs/synthetic.py:small'
# A tiny network and batch: the tests are about the system, not the model.
TINY = ['--config.model.channels=(4, 8)', '--config.model.hidden_units=8',
        '--config.batch_size=8', '--config.num_plot_examples=2',
        '--config.eval_split=test[:64]', '--config.test_split=test[:64]']


def parse_config(argv):
  """The config of `--config=FILE[:variant]` and `--config.KEY=VALUE` flags, parsed like the binary."""
  argv = ['prog', *argv]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=flag_values,
                                  sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def config(data_dir, *overrides):
  """The tiny synthetic config with `--config.KEY=VALUE` overrides, parsed like the binary."""
  return parse_config([f'--config={CONFIG}', f'--config.data_dir={data_dir}', *TINY, *overrides])


def train_command(workdir, data_dir, *overrides):
  """The command line of experiments.train for the tiny config."""
  return [sys.executable, '-m', 'experiments.train', f'--config={CONFIG}',
          f'--workdir={workdir}', f'--config.data_dir={data_dir}', *TINY, *overrides]


def subprocess_env(**variables):
  """A subprocess's environment: this checkout first on PYTHONPATH, then the caller's entries.

  Keeping the caller's PYTHONPATH matters where the packages themselves come
  from it (e.g. a GPU machine whose extra packages live in a --target folder).

  Args:
    **variables: more environment variables to set.
  """
  path = os.pathsep.join(p for p in (REPO, os.environ.get('PYTHONPATH')) if p)
  return dict(os.environ, PYTHONPATH=path, **variables)


def env(jax_cache, **variables):
  """The binaries' environment: `subprocess_env` plus a shared compilation cache."""
  return subprocess_env(JAX_COMPILATION_CACHE_DIR=jax_cache,
                        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
                        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0', **variables)


def run(command, jax_cache, timeout=300, **variables):
  """Runs a binary to completion; fails the test with its log tail if it fails."""
  result = subprocess.run(command, cwd=REPO, env=env(jax_cache, **variables),
                          capture_output=True, text=True, timeout=timeout)
  assert result.returncode == 0, result.stderr[-5000:]
  return result


def multiprocess_commands(command, num_processes):
  """`command` once per process of a run on 127.0.0.1 (jax.distributed, gloo on CPU)."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  return [command + [f'--coordinator_address=127.0.0.1:{port}',
                     f'--num_processes={num_processes}', f'--process_id={i}']
          for i in range(num_processes)]


def start(commands, jax_cache, **variables):
  """Starts the processes of a run (one command each), output captured together."""
  return [subprocess.Popen(command, cwd=REPO, env=env(jax_cache, **variables),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
          for command in commands]


def finish(processes, timeout=300):
  """Waits for every process of a run: [(returncode, output)]."""
  outputs = [p.communicate(timeout=timeout)[0] for p in processes]
  return [(p.returncode, output) for p, output in zip(processes, outputs)]


def signal_after_checkpoint(processes, workdir, step, sig, which=None):
  """Sends `sig` to the processes of a run (`which` indices, default all) once checkpoint `step`
  is complete; then waits for all of them: [(returncode, output)]."""
  checkpoint = os.path.join(workdir, 'checkpoints', str(step))
  deadline = time.monotonic() + 300
  # Orbax renames a checkpoint to its final name only when it is complete.
  while not os.path.isdir(checkpoint) and all(p.poll() is None for p in processes):
    assert time.monotonic() < deadline, 'no checkpoint appeared'
    time.sleep(0.01)
  for i, process in enumerate(processes):
    if which is None or i in which:
      process.send_signal(sig)
  return finish(processes)


def start_and_signal_after_checkpoint(command, jax_cache, workdir, step, sig):
  """Starts a run and sends `sig` as soon as its checkpoint `step` is complete."""
  return signal_after_checkpoint(start([command], jax_cache), workdir, step, sig)[0]


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def without_timing(records):
  return [{k: v for k, v in r.items() if k != 'steps_per_sec'} for r in records]


def checkpoint_steps(workdir):
  """The steps of the complete checkpoints in `workdir`, in order."""
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


def final_state(workdir, step=None):
  """The arrays of checkpoint `step` (default: the latest), as a flat {path: array} dict."""
  checkpoints = os.path.join(workdir, 'checkpoints')
  step = checkpoint_steps(workdir)[-1] if step is None else step
  path = os.path.join(checkpoints, str(step), 'state')
  checkpointer = ocp.StandardCheckpointer()
  # Onto this process's first device, whatever devices the run had.
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        checkpointer.metadata(path).item_metadata)
  restored = checkpointer.restore(path, target)
  return step, {'/'.join(map(str, path)): np.asarray(leaf)
                for path, leaf in flatten(restored)}


def flatten(tree, prefix=()):
  """Yields (path, leaf) of a restored checkpoint's nested dicts and lists."""
  if isinstance(tree, dict):
    for key, value in tree.items():
      yield from flatten(value, prefix + (key,))
  elif isinstance(tree, (list, tuple)):
    for i, value in enumerate(tree):
      yield from flatten(value, prefix + (i,))
  elif tree is not None:  # None: an empty optimiser state.
    yield prefix, tree
