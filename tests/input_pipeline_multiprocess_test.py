"""Two real JAX processes (jax.distributed on CPU) each read their rows of every global batch."""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from propel_jax.data import input_pipeline
from propel_jax.data.builders import synthetic_hands

_WORKER = textwrap.dedent('''
    import sys
    import jax
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    port, process_id, data_dir, out = sys.argv[1:]
    jax.distributed.initialize(f'127.0.0.1:{port}', num_processes=2,
                               process_id=int(process_id))
    import numpy as np
    from propel_jax.data import input_pipeline
    name = 'synthetic_hands/ambiguous_small'
    # No shard arguments: the pipeline asks JAX which process this is.
    evals = list(input_pipeline.create_iterator(
        name, 'test', global_batch_size=60, seed=0, train=False, data_dir=data_dir))
    train = input_pipeline.create_iterator(
        name, 'train', global_batch_size=64, seed=0, train=True, data_dir=data_dir)
    np.savez(out, eval_label=np.stack([b['label'] for b in evals]),
             eval_mask=np.stack([b['mask'] for b in evals]),
             train_label=np.stack([next(train)['label'] for _ in range(8)]),
             process_index=jax.process_index(), process_count=jax.process_count())
''')


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_read_disjoint_shares(tmp_path):
  synthetic_hands.build(tmp_path, 'ambiguous_small')  # built once, before both start
  script = tmp_path / 'worker.py'
  script.write_text(_WORKER)
  port = _free_port()
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  procs = [subprocess.Popen([sys.executable, str(script), str(port), str(i), str(tmp_path),
                             str(tmp_path / f'out{i}.npz')],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
           for i in range(2)]
  for proc in procs:
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output.decode()[-3000:]
  outs = [np.load(tmp_path / f'out{i}.npz') for i in range(2)]
  assert [int(o['process_index']) for o in outs] == [0, 1]
  assert all(int(o['process_count']) == 2 for o in outs)
  # Together, per batch, the two processes read the global batches of one process: eval
  # (256 examples, global batch 60: 5 batches of 30 rows each, padding masked) ...
  name = 'synthetic_hands/ambiguous_small'
  evals = list(input_pipeline.create_iterator(name, 'test', global_batch_size=60, seed=0,
                                              train=False, data_dir=tmp_path))
  for key in ('label', 'mask'):
    assert all(o[f'eval_{key}'].shape[:2] == (5, 30) for o in outs)
    np.testing.assert_array_equal(
        np.concatenate([o[f'eval_{key}'] for o in outs], axis=1), [b[key] for b in evals])
  # ... and train (8 batches of 64, flips included).
  train = input_pipeline.create_iterator(name, 'train', global_batch_size=64, seed=0,
                                         train=True, data_dir=tmp_path)
  np.testing.assert_array_equal(
      np.concatenate([o['train_label'] for o in outs], axis=1),
      [next(train)['label'] for _ in range(8)])
