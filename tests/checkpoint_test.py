"""Checkpoints: state and input position round-trip exactly; SIGTERM is caught.

End to end, with the real binary in subprocesses: a run killed with SIGKILL
and rerun with the same command ends bitwise equal (parameters, optimiser
state, logged metrics) to an uninterrupted run; a SIGTERM saves a checkpoint
and exits cleanly. (A non-finite loss keeping the last good checkpoint is in
train_test.py.)
"""

import gc
import json
import os
import signal

from flax import nnx
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from propel_jax.training import checkpointing
import training_runs as runs


def _state(seed):
  """A training state like train.TrainState's: NNX params, BatchNorm stats, Adam."""
  model = nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(seed)),
                         nnx.BatchNorm(4, rngs=nnx.Rngs(seed)))
  _, params, rest = nnx.split(model, nnx.Param, ...)
  return {'step': jnp.int32(seed), 'params': params, 'model_state': rest,
          'opt_state': optax.adam(1e-3).init(params)}


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _dataset_iterator():
  return iter(grain.MapDataset.range(100).shuffle(seed=3).batch(4).to_iter_dataset())


def test_state_and_input_position_round_trip(tmp_path):
  saved_state = _state(1)
  iterator = _dataset_iterator()
  for _ in range(3):
    next(iterator)
  checkpointer = checkpointing.Checkpointer(tmp_path / 'ckpt', max_to_keep=2)
  checkpointer.save(3, saved_state, iterator)
  checkpointer.wait()
  expected_next = [next(iterator) for _ in range(5)]

  # A fresh process would build a different initial state and a fresh iterator.
  template = _state(2)
  fresh = _dataset_iterator()
  restored = checkpointer.restore(checkpointer.latest_step(),
                                  jax.tree.map(_shape_of, template), fresh)
  checkpointer.close()
  _assert_trees_equal(restored, saved_state)
  np.testing.assert_array_equal([next(fresh) for _ in range(5)], expected_next)


def _shape_of(x):
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)


def test_keeps_latest_and_restores_any_kept_step(tmp_path):
  checkpointer = checkpointing.Checkpointer(tmp_path, max_to_keep=2)
  iterator = _dataset_iterator()
  for step in (1, 2, 3):
    checkpointer.save(step, _state(step), iterator)
  checkpointer.wait()
  assert checkpointer.all_steps() == [2, 3]
  assert checkpointer.latest_step() == 3
  restored = checkpointer.restore(2, jax.tree.map(_shape_of, _state(0)))
  checkpointer.close()
  _assert_trees_equal(restored, _state(2))


def test_incomplete_checkpoint_is_ignored(tmp_path):
  # What a SIGKILL during a save leaves: Orbax's temporary step directory.
  checkpointer = checkpointing.Checkpointer(tmp_path, max_to_keep=3)
  checkpointer.save(1, _state(1), _dataset_iterator())
  checkpointer.wait()
  checkpointer.close()
  os.makedirs(tmp_path / '2.orbax-checkpoint-tmp-1234' / 'state')
  checkpointer = checkpointing.Checkpointer(tmp_path, max_to_keep=3)
  assert checkpointer.latest_step() == 1
  # The resumed run redoes step 2, and the debris is gone.
  checkpointer.save(2, _state(2), _dataset_iterator())
  checkpointer.wait()
  assert checkpointer.latest_step() == 2
  checkpointer.close()
  assert sorted(os.listdir(tmp_path)) == ['1', '2']


def _legacy_position(tmp_path, iterator, checksums):
  """Replaces checkpoint 1's position by what older versions wrote: a Grain state per process."""
  data = tmp_path / '1' / 'data'
  state_sha256 = json.loads((data / 'position.json').read_text())['state_sha256']
  os.remove(data / 'position.json')
  for i in range(2):
    record = {'json': iterator.get_state()}
    if checksums:
      body = {'iterator': record, 'state_sha256': state_sha256}
      record = dict(body, sha256=checkpointing._sha256(body))
    (data / f'process_{i}-of-2.json').write_text(json.dumps(record))


@pytest.mark.parametrize('checksums', [True, False])
def test_checkpoint_of_an_older_version_evaluates_but_does_not_resume(tmp_path, caplog,
                                                                      checksums):
  iterator = _dataset_iterator()
  next(iterator)
  checkpointer = checkpointing.Checkpointer(tmp_path)
  checkpointer.save(1, _state(1), iterator)
  checkpointer.wait()
  _legacy_position(tmp_path, iterator, checksums)
  abstract = jax.tree.map(_shape_of, _state(0))
  with pytest.raises(checkpointing.IncompatibleCheckpointError,
                     match=r'Checkpoint 1 in .* older version .* depended on the number of '
                           r'processes \(data/process_0-of-2.json holds a Grain iterator '
                           r'state\): training cannot resume from it exactly'):
    checkpointer.restore_latest(abstract, _dataset_iterator(), set_aside_damaged=True)
  assert checkpointer.all_steps() == [1] and not (tmp_path / 'damaged').exists()
  # Without an input position to take (evaluation), it restores, verified where it can be.
  step, state = checkpointer.restore_latest(abstract)
  checkpointer.close()
  assert step == 1
  _assert_trees_equal(state, _state(1))
  assert ('restored without verifying it' in caplog.text) == (not checksums)


def _big_state(seed):
  """`_state` plus an array that fills most of its data file, so flipped bytes change values."""
  rng = np.random.default_rng(seed)
  return dict(_state(seed), w=jnp.asarray(rng.normal(size=(128, 256)), jnp.float32))


def _largest_file(directory):
  files = [p for p in directory.rglob('*') if p.is_file()]
  return max(files, key=lambda p: p.stat().st_size)


def _flip_64_bytes(path):
  data = bytearray(path.read_bytes())
  middle = len(data) // 2
  data[middle - 32:middle + 32] = bytes(b ^ 0xFF for b in data[middle - 32:middle + 32])
  path.write_bytes(bytes(data))


# Each damage and (part of) the reason the skipped checkpoint is logged with.
DAMAGES = {
    'truncated array file': (
        lambda step: os.truncate(_largest_file(step / 'state'), 1000), 'Orbax could not restore'),
    'deleted array file': (lambda step: os.remove(_largest_file(step / 'state')),
                           'Orbax could not restore'),
    'deleted _METADATA': (lambda step: os.remove(step / 'state' / '_METADATA'),
                          'Orbax could not restore'),
    'empty position file': (lambda step: open(step / 'data' / 'position.json', 'w').close(),
                            'position.json is empty'),
    'deleted position file': (lambda step: os.remove(step / 'data' / 'position.json'),
                              'position.json is missing.'),
    'edited position file': (
        lambda step: (step / 'data' / 'position.json').write_text(
            (step / 'data' / 'position.json').read_text().replace('3', '4')),
        'does not match its SHA-256 checksum'),
    '64 flipped bytes': (lambda step: _flip_64_bytes(_largest_file(step / 'state')),
                         'do not match the SHA-256 checksum saved with them'),
}


# Orbax leaves the reads of a failed restore as coroutines never awaited.
@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
@pytest.mark.parametrize('damage', DAMAGES)
def test_damaged_latest_checkpoint_is_skipped_with_its_reason(tmp_path, caplog, damage):
  damage_fn, reason = DAMAGES[damage]
  checkpointer = checkpointing.Checkpointer(tmp_path, max_to_keep=3)
  iterator = _dataset_iterator()
  positions = {}
  for step in (1, 2):
    next(iterator)
    positions[step] = next(_restored_copy(iterator))
    checkpointer.save(step, _big_state(step), iterator)
  checkpointer.wait()
  checkpointer.close()
  damage_fn(tmp_path / '2')

  checkpointer = checkpointing.Checkpointer(tmp_path, max_to_keep=3)
  resumed = _dataset_iterator()
  step, state = checkpointer.restore_latest(jax.tree.map(_shape_of, _big_state(0)), resumed,
                                            set_aside_damaged=True)
  assert step == 1
  _assert_trees_equal(state, _big_state(1))
  np.testing.assert_array_equal(next(resumed), positions[1])
  message = ' '.join(r.getMessage() for r in caplog.records)
  assert f'Skipping checkpoint 2 in {tmp_path}: ' in message and reason in message, message
  # Kept for inspection, out of the way of the step that training saves again.
  assert checkpointer.all_steps() == [1] and (tmp_path / 'damaged' / '2').is_dir()
  checkpointer.save(2, _big_state(2), resumed)
  checkpointer.wait()
  assert checkpointer.restore_latest(jax.tree.map(_shape_of, _big_state(0)))[0] == 2
  checkpointer.close()
  gc.collect()  # Here, where their warnings are ignored.


def _restored_copy(iterator):
  """A fresh iterator at `iterator`'s position (to read what comes next without moving it)."""
  copy = _dataset_iterator()
  copy.set_state(iterator.get_state())
  return copy


def test_no_restorable_checkpoint_raises_and_changes_nothing(tmp_path):
  checkpointer = checkpointing.Checkpointer(tmp_path)
  for step in (1, 2):
    checkpointer.save(step, _state(step), _dataset_iterator())
  checkpointer.wait()
  for step in (1, 2):
    os.remove(tmp_path / str(step) / 'data' / 'position.json')
  with pytest.raises(checkpointing.DamagedCheckpointError,
                     match=r'No checkpoint in .* restores \(step 2: .*missing.*; step 1: .*\)'):
    checkpointer.restore_latest(jax.tree.map(_shape_of, _state(0)), set_aside_damaged=True)
  assert checkpointer.all_steps() == [1, 2]
  assert not (tmp_path / 'damaged').exists()
  checkpointer.close()
  assert checkpointing.Checkpointer(tmp_path / 'empty').restore_latest(None) == (None, None)


def test_sigterm_sets_the_stop_flag_and_handler_is_restored(tmp_path):
  checkpointer = checkpointing.Checkpointer(tmp_path)
  before = signal.getsignal(signal.SIGTERM)
  with checkpointing.PreemptionWatcher(checkpointer) as preemption:
    assert not preemption.should_stop(1)
    os.kill(os.getpid(), signal.SIGTERM)
    assert preemption.should_stop(2)
  assert signal.getsignal(signal.SIGTERM) is before
  checkpointer.close()


@pytest.mark.slow
def test_sigkill_and_rerun_is_bitwise_equal_to_an_uninterrupted_run(tmp_path, data_dir,
                                                                    jax_cache):
  overrides = ['--config.num_train_steps=60', '--config.checkpoint_every_steps=20',
               '--config.log_every_steps=10', '--config.eval_every_steps=30']
  reference = str(tmp_path / 'reference')
  runs.run(runs.train_command(reference, data_dir, *overrides), jax_cache)

  killed = str(tmp_path / 'killed')
  command = runs.train_command(killed, data_dir, *overrides)
  returncode, output = runs.start_and_signal_after_checkpoint(command, jax_cache, killed, 20,
                                                              signal.SIGKILL)
  assert returncode == -signal.SIGKILL, output[-3000:]
  assert not os.path.exists(os.path.join(killed, 'eval_metrics.json'))
  resumed = runs.run(command, jax_cache)
  assert 'Resumed from the checkpoint at step' in resumed.stderr

  step, state = runs.final_state(killed)
  reference_step, reference_state = runs.final_state(reference)
  assert step == reference_step == 60
  assert state.keys() == reference_state.keys()
  for key in state:
    np.testing.assert_array_equal(state[key], reference_state[key], err_msg=key)
  assert (runs.without_timing(runs.read_jsonl(os.path.join(killed, 'metrics.jsonl'))) ==
          runs.without_timing(runs.read_jsonl(os.path.join(reference, 'metrics.jsonl'))))
  with open(os.path.join(killed, 'eval_metrics.json')) as f, \
      open(os.path.join(reference, 'eval_metrics.json')) as g:
    assert json.load(f) == json.load(g)


@pytest.mark.slow
def test_sigterm_saves_and_exits(tmp_path, data_dir, jax_cache):
  workdir = str(tmp_path / 'run')
  command = runs.train_command(workdir, data_dir, '--config.num_train_steps=100000',
                               '--config.checkpoint_every_steps=10',
                               '--config.eval_every_steps=100000')
  returncode, output = runs.start_and_signal_after_checkpoint(command, jax_cache, workdir, 10,
                                                              signal.SIGTERM)
  assert returncode == 0, output[-3000:]
  assert 'Preemption notice (SIGTERM): saved the checkpoint at step' in output
  step, _ = runs.final_state(workdir)
  assert 10 < step < 100000
  assert f'saved the checkpoint at step {step};' in output
  assert not os.path.exists(os.path.join(workdir, 'eval_metrics.json'))
  # The last train line is the stop step: nothing trained is unlogged.
  assert runs.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))[-1]['step'] == step


@pytest.mark.slow
def test_a_damaged_latest_checkpoint_is_skipped_and_the_run_ends_as_if_uninterrupted(
    tmp_path, data_dir, jax_cache):
  workdir = tmp_path / 'run'
  command = runs.train_command(str(workdir), data_dir, '--config.num_train_steps=20',
                               '--config.checkpoint_every_steps=10',
                               '--config.log_every_steps=5', '--config.eval_every_steps=10')
  runs.run(command, jax_cache)
  step, reference_state = runs.final_state(str(workdir))
  assert step == 20
  reference_log = runs.without_timing(runs.read_jsonl(workdir / 'metrics.jsonl'))
  reference_metrics = json.loads((workdir / 'eval_metrics.json').read_text())

  # 64 flipped bytes in the final checkpoint's largest array file, which
  # Orbax alone may load silently.
  _flip_64_bytes(_largest_file(workdir / 'checkpoints' / '20' / 'state'))
  os.remove(workdir / 'eval_metrics.json')
  rerun = runs.run(command, jax_cache)
  assert f'Skipping checkpoint 20 in {workdir}/checkpoints: ' in rerun.stderr
  assert 'Resumed from the checkpoint at step 10' in rerun.stderr
  assert (workdir / 'checkpoints' / 'damaged' / '20').is_dir()

  # Resuming is exact, so the fallback retrains steps 11-20 to the same result.
  step, state = runs.final_state(str(workdir))
  assert step == 20 and state.keys() == reference_state.keys()
  for key in state:
    np.testing.assert_array_equal(state[key], reference_state[key], err_msg=key)
  assert runs.without_timing(runs.read_jsonl(workdir / 'metrics.jsonl')) == reference_log
  assert json.loads((workdir / 'eval_metrics.json').read_text()) == reference_metrics
