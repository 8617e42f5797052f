"""Two real JAX processes (jax.distributed on CPU) each read their own share."""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

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
             train_label=np.concatenate([next(train)['label'] for _ in range(8)]),
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
  # Eval: 256 examples, global batch 60 -> 5 batches of 30 rows in each process.
  for o in outs:
    assert o['eval_label'].shape == (5, 30, 2)
  real = np.concatenate([o['eval_label'][o['eval_mask']] for o in outs])
  assert len(real) == 256 and len(np.unique(real[:, 0])) == 256
  # Train: the first epoch of each process (8 batches of 32 = 256) is its own half.
  halves = [o['train_label'][:, 0] for o in outs]
  assert all(len(np.unique(h)) == 256 for h in halves)
  assert not np.isin(halves[0], halves[1]).any()
