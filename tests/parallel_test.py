"""One code path for 1 and 8 devices: the sharded step equals the single-device step.

Runs in a subprocess with 8 fake CPU devices (XLA's host platform device
count), so the other tests keep their single device.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from propel_jax.training import parallel
import training_runs as runs  # tests/ is on sys.path under pytest.

REPO = runs.REPO

# Two training steps of the real model on real batches of the small
# synthetic dataset, once on a mesh of all 8 devices (the batch split 2 per
# device) and once on a mesh of device 0 alone. The sums run in another order,
# so the results agree to rounding.
_EIGHT_DEVICES_SCRIPT = textwrap.dedent('''
    import sys
    import jax, numpy as np
    from propel_jax.data import input_pipeline; from propel_jax.training import parallel, train
    sys.path.insert(0, 'tests')
    import training_runs as runs

    assert jax.device_count() == 8, jax.devices()
    config = runs.config(sys.argv[1], '--config.batch_size=16', '--config.augment=False')
    info = input_pipeline.get_dataset_info(config.dataset, data_dir=config.data_dir)
    iterator = input_pipeline.create_iterator(
        config.dataset, 'train', global_batch_size=16, seed=0, train=True,
        data_dir=config.data_dir, augment=False)
    batches = [next(iterator) for _ in range(2)]
    tx = train.create_optimizer(config)
    schedule = train.learning_rate_schedule(config)
    results = {}
    for name, mesh in [('eight', parallel.create_mesh()),
                       ('one', jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',)))]:
      model, state = train.create_model_and_state(config, info, tx, mesh)
      step = train.jit_train_step(model, tx, schedule, mesh)
      predict = train.jit_predict_step(model, mesh)
      for batch in batches:
        state, metrics = step(state, parallel.shard_batch(batch, mesh))
      outputs = predict(state, parallel.shard_batch(batches[0], mesh))
      assert len(state.step.sharding.device_set) == mesh.size
      results[name] = [np.asarray(x) for x in jax.tree.leaves((state, metrics, outputs))]
    worst = 0.0
    for a, b in zip(results['eight'], results['one']):
      worst = max(worst, float(np.max(np.abs(a.astype(float) - b.astype(float)), initial=0)))
    print('max abs difference', worst)
    for a, b in zip(results['eight'], results['one']):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
''')

@pytest.mark.slow
def test_eight_device_step_equals_one_device_step(tmp_path):
  # Fake CPU devices, also where an accelerator would be the default backend.
  env = runs.subprocess_env(XLA_FLAGS='--xla_force_host_platform_device_count=8',
                            JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', _EIGHT_DEVICES_SCRIPT, str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-5000:]
  assert 'max abs difference' in result.stdout

def test_shard_batch_keeps_rows_in_order():
  mesh = parallel.create_mesh()
  batch = {'image': np.arange(24, dtype=np.float32).reshape(4, 3, 2),
           'mask': np.array([True, True, False, True])}
  sharded = parallel.shard_batch(batch, mesh)
  for key, value in batch.items():
    np.testing.assert_array_equal(np.asarray(sharded[key]), value)
    assert sharded[key].sharding == parallel.batch_sharded(mesh)

@pytest.mark.parametrize('given', [dict(coordinator_address='127.0.0.1:1234'),
                                   dict(num_processes=2, process_id=0)])
def test_partial_distributed_settings_fail(given):
  with pytest.raises(ValueError, match='missing'):
    parallel.initialize_distributed(**given)

def test_process_id_out_of_range_fails():
  with pytest.raises(ValueError, match='process_id must be in'):
    parallel.initialize_distributed('127.0.0.1:1234', 2, 2)


# Compiles the train and predict steps of full-size models for a mesh of two
# devices and lists every collective that runs inside a loop. XLA:CPU orders a
# loop's collectives against the program's others only by when the loop starts,
# so processes joined over gloo may issue them in different orders: such a
# program fails ("distributed collective mismatch") or hangs on 2 processes.
# The compiled program is the one each process of a 2-process run compiles.
_COLLECTIVES_IN_LOOPS_SCRIPT = textwrap.dedent('''
    import re, sys
    import jax, tensorflow_datasets as tfds
    from propel_jax.data import input_pipeline
    from propel_jax.training import parallel, train
    sys.path.insert(0, 'tests')
    import training_runs as runs

    COLLECTIVE = re.compile(r'= .*\\b(all-reduce|all-gather|reduce-scatter|all-to-all|'
                            r'collective-permute)(-start)?\\(')
    CALLS = re.compile(r'\\b(?:body|condition|calls|to_apply|branch_computations)='
                       r'\\{?([^,}\\s]+(?:, *%[^,}\\s]+)*)')

    def collectives_in_loops(hlo):
      computations, name = {}, None
      for line in hlo.splitlines():
        header = re.match(r'^(?:ENTRY )?%([^ ]+) ', line)
        if header and line.rstrip().endswith('{'):
          name = header.group(1)
          computations[name] = []
        elif name:
          computations[name].append(line)
      loops = set()
      for lines in computations.values():
        for line in lines:
          if ' while(' in line:
            loops.update(re.findall(r'(?:body|condition)=%([^,\\s]+)', line))
      reached, todo = set(), list(loops)
      while todo:
        name = todo.pop()
        if name in reached:
          continue
        reached.add(name)
        for line in computations.get(name, []):
          for group in CALLS.findall(line):
            todo.extend(n.strip().lstrip('%') for n in group.split(','))
      return [f'{name}: {line.strip()[:120]}' for name in sorted(reached)
              for line in computations.get(name, []) if COLLECTIVE.search(line)]

    assert jax.device_count() == 2, jax.devices()
    mesh = parallel.create_mesh()
    failures, checked = [], 0
    for config_file, overrides in [
        ('synthetic.py', ['--config.model.conv_weight_gradient=' + option])
        for option in ('auto', 'xla')] + [  # 'auto' is 'row_blocks' on CPU.
        ('compare_orientation.py:mixed', ['--config.head=vmfpropel']),
        ('compare_orientation.py:cube', ['--config.head=vmfpropel'])]:
      argv = [f'--config=experiments/configs/{config_file}', '--config.batch_size=16', *overrides]
      config = runs.parse_config(argv)
      builder = tfds.builder(config.dataset, data_dir=sys.argv[1])
      info = input_pipeline._info_from_builder(config.dataset, builder, config.image_size)
      tx = train.create_optimizer(config)
      model, state = train.create_model_and_state(config, info, tx, mesh)
      height, width, channels = info.image_shape
      n, k = len(info.labels.names), info.num_equivalents
      batch = {'image': jax.ShapeDtypeStruct((16, height, width, channels), 'float32'),
               'label': jax.ShapeDtypeStruct((16, n), 'float32'),
               'equivalent_labels': jax.ShapeDtypeStruct((16, k, n), 'float32')}
      steps = {'train': train.jit_train_step(model, tx, train.learning_rate_schedule(config),
                                             mesh),
               'predict': train.jit_predict_step(model, mesh)}
      for name, step in steps.items():
        found = collectives_in_loops(step.lower(state, batch).compile().as_text())
        checked += 1
        if found:
          failures.append((config_file, overrides, name, found))
    print('checked', checked, 'programs')
    for failure in failures:
      print('COLLECTIVES IN A LOOP:', failure)
    assert not failures
''')


@pytest.mark.slow
def test_no_collective_runs_inside_a_loop(tmp_path):
  env = runs.subprocess_env(XLA_FLAGS='--xla_force_host_platform_device_count=2',
                            JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', _COLLECTIVES_IN_LOOPS_SCRIPT, str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
  assert 'checked 8 programs' in result.stdout
