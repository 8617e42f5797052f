"""The training loop: `train_and_evaluate(config, workdir)` and `evaluate(config, workdir)`.

One code path for one CPU, several devices and several hosts: the state is
replicated over a 1-D 'data' mesh, every process feeds its share of each
global batch, and one jitted step (a pure function of the model's graph
definition and its state) does the rest; see `parallel.py`. The global
batches depend on the seed and the step only, not on the number of processes
or devices (`propel_jax.data.input_pipeline`).

A run lives in `workdir`:

    config.json         the configuration (evaluate reads it; a resumed run
                        must match it except for config.RESUMABLE_KEYS),
                        written once everything that can be checked was
    lock                held while a run or an evaluation works here
    checkpoints/<step>/ Orbax checkpoints: state + input position (the number
                        of the next global batch, the same on every process,
                        so a run may resume on another number of processes)
    metrics.jsonl       one JSON object per logged train/eval step
    events.out.tfevents.*  TensorBoard (tensorboardX)
    eval_metrics.json   the final evaluation (see `evaluation.py`)
    eval_outputs.npz    its per-example outputs (the binaries draw plots/ from it)

Rerunning the same command resumes from the newest checkpoint that restores
(damaged ones are skipped, moved to checkpoints/damaged/ and reported); a
SIGTERM saves a checkpoint and exits; a non-finite loss or gradient stops the
run before it can save a checkpoint from it. Zero gradients, a loss that
stopped falling and saturated outputs are warned about as they appear and at
the end.
"""

import dataclasses
import functools
import os
from typing import Any

from absl import logging
from flax import nnx
from flax import struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from propel_jax import mixtures
from propel_jax.data import input_pipeline
from propel_jax.nn import models
from propel_jax.training import checkpointing
from propel_jax.training import config as config_lib
from propel_jax.training import data_checks
from propel_jax.training import evaluation
from propel_jax.training import parallel
from propel_jax.training import reporting
from propel_jax.training import workdir_lock

CHECKPOINT_DIR = 'checkpoints'


# ----------------------------------------------------------------------------
# Optimiser and state.


def _warn_if_the_schedule_changed(config: ml_collections.ConfigDict,
                                  saved: dict[str, Any] | None, step: int) -> None:
  """Warns when a resume changes num_train_steps under a cosine schedule.

  The cosine decays over num_train_steps, so from the resumed step on the
  learning rate follows neither the old run's schedule nor a fresh run's.
  """
  if not step or saved is None or config.lr_schedule != 'cosine':
    return
  before = saved['num_train_steps']
  if before == config.num_train_steps:
    return
  old = config.copy_and_resolve_references()
  old.num_train_steps = before
  logging.warning(
      'config.num_train_steps changed from %d to %d on resuming at step %d: the cosine '
      'schedule now decays over the new length, so the learning rate at step %d is %.3g '
      '(%.3g before the change), and the result matches an uninterrupted run of neither '
      'length.', before, config.num_train_steps, step, step + 1,
      learning_rate_schedule(config)(step), learning_rate_schedule(old)(step))


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """`lr_schedule` after a linear warmup of `warmup_steps` from 0."""
  decay_steps = config.num_train_steps - config.warmup_steps
  if config.lr_schedule == 'constant':
    schedule = optax.constant_schedule(config.learning_rate)
  else:
    schedule = optax.cosine_decay_schedule(config.learning_rate, decay_steps)
  if not config.warmup_steps:
    return schedule
  warmup = optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
  return optax.join_schedules([warmup, schedule], [config.warmup_steps])


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Gradient clipping (global norm; off for 0) then Adam, AdamW or SGD on the schedule."""
  schedule = learning_rate_schedule(config)
  if config.optimizer == 'adam':
    optimizer = optax.adam(schedule)
  elif config.optimizer == 'adamw':
    optimizer = optax.adamw(schedule, weight_decay=config.weight_decay)
  else:
    optimizer = optax.sgd(schedule, momentum=0.9)
  if not config.grad_clip_norm:
    return optimizer
  return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optimizer)


@struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree (checkpointed whole).

  The model's graph (static structure) is not in here: it is rebuilt from the
  config, and the jitted steps close over it.

  Attributes:
    step: number of optimiser updates done, int32 scalar.
    params: the model's nnx.Param state.
    model_state: everything else the model holds (BatchNorm running
      statistics, and RNG stream counters if it draws random numbers).
    opt_state: the optimiser's state.
  """
  step: jax.Array
  params: nnx.State
  model_state: nnx.State
  opt_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class Model:
  """The model's static parts: a graph definition for training and one for inference.

  They differ only in static flags (BatchNorm uses batch statistics in
  training and running averages in inference); both take the same state.
  """
  train_graph: nnx.GraphDef
  eval_graph: nnx.GraphDef
  num_params: int


def create_model_and_state(config: ml_collections.ConfigDict, info: Any,
                           tx: optax.GradientTransformation,
                           mesh: jax.sharding.Mesh) -> tuple[Model, TrainState]:
  """Builds the model from the config and its initial state, replicated on `mesh`."""

  def build():
    return models.create_model(config, info, rngs=nnx.Rngs(config.seed))

  # The graph definitions come from an abstract model (no computation); the
  # state is initialised in one jitted call: one compiled program instead of
  # dispatching every initialiser op by op (docs/benchmarks.md).
  abstract_model = nnx.eval_shape(build)
  abstract_model.eval()
  eval_graph, _, _ = nnx.split(abstract_model, nnx.Param, ...)
  abstract_model.train()
  train_graph, _, _ = nnx.split(abstract_model, nnx.Param, ...)

  def init():
    _, params, model_state = nnx.split(build(), nnx.Param, ...)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                      opt_state=tx.init(params))

  # Initialisation runs once, so it is compiled without XLA's backend
  # optimisations: about 1 s instead of 10 s per run on CPU.
  init = jax.jit(init, out_shardings=parallel.replicated(mesh)).lower().compile(
      compiler_options={'xla_backend_optimization_level': 0})
  return Model(train_graph, eval_graph, models.count_params(abstract_model)), init()


# ----------------------------------------------------------------------------
# Steps: pure functions of (graph, state, batch), jitted over the mesh.


def train_step(graph: nnx.GraphDef, tx: optax.GradientTransformation,
               schedule: optax.Schedule, state: TrainState,
               batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimiser update on a global batch.

  Args:
    graph: the model's training graph definition.
    tx: the optimiser.
    schedule: the learning-rate schedule (reported only).
    state: the current state.
    batch: 'image' [B, H, W, C], 'label' [B, n], 'equivalent_labels' [B, K, n].

  Returns:
    The new state and scalar metrics: 'loss' (batch mean, before the
    update), 'grad_norm' (before clipping), 'learning_rate'.
  """

  def loss_fn(params):
    # copy: fresh Variables inside the differentiated function, which may
    # then update them (BatchNorm's running statistics).
    model = nnx.merge(graph, params, state.model_state, copy=True)
    loss = model.head.loss(model(batch['image']), batch).mean()
    _, _, model_state = nnx.split(model, nnx.Param, ...)
    return loss, model_state

  (loss, model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads),
             'learning_rate': schedule(state.step)}
  return TrainState(step=state.step + 1, params=params, model_state=model_state,
                    opt_state=opt_state), metrics


def predict_step(graph: nnx.GraphDef, state: TrainState,
                 batch: dict[str, jax.Array]) -> dict[str, Any]:
  """Per-example outputs for evaluation, in inference mode.

  Returns:
    'loss' [B]; 'predictions' {decoder: [B, n] in [0, 1]} for each of the
    head's decoders; 'mixture', the predicted `mixtures.Mixture` in [0, 1]
    units (None for heads without a density); and for a Gaussian mixture
    'modes', its {'locations': [B, I, n], 'valid': [B, I]} from
    `mixtures.modes` (else None), so that the metrics need not search again.
  """
  model = nnx.merge(graph, state.params, state.model_state)
  outputs = model(batch['image'])
  mixture = model.head.mixture(outputs)
  modes = None
  if isinstance(mixture, mixtures.Mixture):
    # The same search as the 'mode' decoder's: XLA computes it once.
    locations, _, valid = mixture.modes()
    modes = {'locations': locations, 'valid': valid}
  return {'loss': model.head.loss(outputs, batch),
          'predictions': model.head.decode(outputs),
          'mixture': mixture, 'modes': modes}


def jit_train_step(model: Model, tx: optax.GradientTransformation, schedule: optax.Schedule,
                   mesh: jax.sharding.Mesh):
  """The jitted train step: replicated state, batch sharded on 'data'."""
  replicated = parallel.replicated(mesh)
  return jax.jit(functools.partial(train_step, model.train_graph, tx, schedule),
                 in_shardings=(replicated, parallel.batch_sharded(mesh)),
                 out_shardings=(replicated, replicated), donate_argnums=0)


def jit_predict_step(model: Model, mesh: jax.sharding.Mesh):
  """The jitted predict step: replicated state, batch and outputs sharded on 'data'.

  Every output is per example, so each device predicts its own rows
  (shard_map): the step's loops (the mode searches) then stop on their own
  rows' convergence, with no cross-device reduction in them. Collectives
  inside loops are what multi-process CPU runs must avoid (see
  `layers._weight_gradient_row_blocks`).
  """
  sharded = parallel.batch_sharded(mesh)
  rows = jax.sharding.PartitionSpec(parallel.DATA_AXIS)
  per_device = jax.shard_map(functools.partial(predict_step, model.eval_graph), mesh=mesh,
                             in_specs=(jax.sharding.PartitionSpec(), rows), out_specs=rows)
  return jax.jit(per_device, in_shardings=(parallel.replicated(mesh), sharded),
                 out_shardings=sharded)


# ----------------------------------------------------------------------------
# The loop.


class NonFiniteLossError(FloatingPointError):
  """The loss or gradient became NaN or infinite."""


def _check_finite(first_step: int, metrics: list[dict[str, np.ndarray]],
                  checkpointer: checkpointing.Checkpointer) -> None:
  for offset, step_metrics in enumerate(metrics):
    bad = [k for k in ('loss', 'grad_norm') if not np.isfinite(step_metrics[k])]
    if bad:
      checkpointer.wait()
      latest = checkpointer.latest_step()
      # What is known, no more: every checkpoint precedes this step, and a
      # rerun resumes from the latest one (and meets the same values again).
      where = (f'the latest checkpoint, step {latest} in {checkpointer.directory}, was saved '
               f'before it' if latest is not None else 'no checkpoint was saved before it')
      values = ', '.join(f'{k}={float(step_metrics[k])}' for k in bad)
      raise NonFiniteLossError(
          f'Non-finite {values} at step {first_step + offset}; training stopped and {where}. '
          f'Try a lower config.learning_rate or a config.grad_clip_norm (in a new --workdir), '
          f'or check the data.')


def _open_run(config: ml_collections.ConfigDict, splits: tuple[str, ...] = ()):
  """Everything train_and_evaluate and evaluate share: checks, mesh, data info, model, state."""
  config_lib.validate(config)
  data_checks.register_image_folder(config)
  info = data_checks.check_data(config, splits)
  mesh = parallel.create_mesh()
  tx = create_optimizer(config)
  model, state = create_model_and_state(config, info, tx, mesh)
  return mesh, info, tx, model, state


def _abstract(state: TrainState) -> TrainState:
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any] | None:
  """Trains (or resumes) a run in `workdir`, then evaluates it on `config.test_split`.

  Args:
    config: see experiments/configs/default.py; deprecated names are read
      (`config_lib.resolve`).
    workdir: the run's directory (created if missing).

  Returns:
    The final evaluation metrics (as in eval_metrics.json), or None if a
    preemption notice (SIGTERM) stopped the run after saving a checkpoint.

  Raises:
    ValueError: for an invalid config, naming the key.
    WorkdirBusyError: if another run or evaluation works in `workdir`.
    DamagedCheckpointError: if `workdir` holds checkpoints but none restores.
    IncompatibleCheckpointError: if its latest checkpoint is of an older
      version that training cannot resume from (evaluate still reads it).
    NonFiniteLossError: if the loss or gradient became NaN or infinite.
  """
  config = config_lib.resolve(config)
  os.makedirs(workdir, exist_ok=True)
  with workdir_lock.hold(workdir):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config, workdir):
  """`train_and_evaluate` once the workdir is locked."""
  mesh, info, tx, model, state = _open_run(config)
  train_iter = input_pipeline.create_iterator(
      config.dataset, config.train_split, global_batch_size=config.batch_size, seed=config.seed,
      train=True, data_dir=config.data_dir, image_size=config.image_size,
      augment=config.augment, worker_count=config.worker_count)
  saved_config = config_lib.save_or_check(config, workdir)
  checkpointer = checkpointing.Checkpointer(os.path.join(workdir, CHECKPOINT_DIR),
                                            max_to_keep=config.max_checkpoints_to_keep)
  writer = None
  try:
    start, restored = checkpointer.restore_latest(_abstract(state), train_iter,
                                                  set_aside_damaged=True)
    start = start or 0
    if start:
      state = restored
      logging.info('Resumed from the checkpoint at step %d in %s.', start,
                   checkpointer.directory)
      _warn_if_the_schedule_changed(config, saved_config, start)
      if start > config.num_train_steps:
        logging.warning('The checkpoint (step %d) is past config.num_train_steps=%d: '
                        'evaluating it as it is.', start, config.num_train_steps)
    else:
      logging.info('Training %s (%d parameters) on %s from scratch.', config.head,
                   model.num_params, config.dataset)
    schedule = learning_rate_schedule(config)
    train = jit_train_step(model, tx, schedule, mesh)
    predict = jit_predict_step(model, mesh)
    writer = reporting.MetricWriter(workdir, resume_step=start)
    progress = reporting.Progress(start, config.num_train_steps)
    health = reporting.TrainingHealth(config.num_train_steps, config.log_every_steps)
    run_eval = functools.partial(evaluation.run, predict, mesh=mesh, info=info,
                                 config=config)
    last_eval = None
    with checkpointing.PreemptionWatcher(checkpointer) as preemption:
      pending, pending_from = [], start + 1
      for step in range(start + 1, config.num_train_steps + 1):
        batch = parallel.shard_batch(next(train_iter), mesh)
        state, metrics = train(state, batch)
        pending.append(metrics)
        is_last = step == config.num_train_steps
        save = step % config.checkpoint_every_steps == 0 or is_last
        stop = preemption.should_stop(step)
        # Log-interval boundaries include every checkpoint step, so a resumed
        # run logs exactly the lines an uninterrupted one would.
        if step % config.log_every_steps == 0 or save or stop:
          host_metrics = jax.device_get(pending)
          _check_finite(pending_from, host_metrics, checkpointer)
          rate = progress.update(step)
          means = {k: float(np.mean([m[k] for m in host_metrics])) for k in host_metrics[0]}
          writer.write(step, 'train', dict(means, steps_per_sec=rate))
          progress.log(step, means['loss'], rate, health.update_train(step, means))
          pending, pending_from = [], step + 1
        if step % config.eval_every_steps == 0 or is_last:
          last_eval = run_eval(state=state, split=config.eval_split)
          writer.write(step, 'eval', last_eval.metrics)
          reporting.log_with_warnings(
              f'eval on {config.eval_split} at step {step}: {last_eval.summary()}',
              health.update_eval(last_eval.metrics))
          progress.restart_clock()
        if save or stop:
          checkpointer.save(step, state, train_iter)
        if stop:
          checkpointer.wait()
          logging.warning('Preemption notice (SIGTERM): saved the checkpoint at step %d; '
                          'rerun the same command to resume.', step)
          return None
    checkpointer.wait()
    if last_eval is None or config.eval_split != config.test_split:
      last_eval = run_eval(state=state, split=config.test_split)
      health.update_eval(last_eval.metrics)
    metrics = evaluation.report(last_eval, workdir, num_params=model.num_params,
                                config=config)
    warnings = health.summary()
    if warnings and parallel.is_main_process():
      logging.warning('The run ended with warnings: %s.', '; '.join(warnings))
    return metrics
  finally:
    if writer is not None:
      writer.close()
    checkpointer.close()


def evaluate(config: ml_collections.ConfigDict, workdir: str,
             split: str | None = None) -> dict[str, Any]:
  """Evaluates the newest restorable checkpoint in `workdir` on `split` (default: test_split).

  Writes eval_metrics.json and eval_outputs.npz (with `_<split>` for a split
  other than config.test_split), as at the end of training. Damaged
  checkpoints are skipped with a warning, but left in place.

  Raises:
    FileNotFoundError: if `workdir` holds no checkpoint.
    WorkdirBusyError: if a run or another evaluation works in `workdir`.
    DamagedCheckpointError: if it holds checkpoints but none restores.
  """
  config = config_lib.resolve(config)
  split = split or config.test_split
  with workdir_lock.hold(workdir):
    checkpointer = checkpointing.Checkpointer(os.path.join(workdir, CHECKPOINT_DIR),
                                              read_only=True)
    try:
      if checkpointer.latest_step() is None:
        raise FileNotFoundError(f'No checkpoint in {checkpointer.directory}: train first '
                                f'(python -m experiments.train --workdir={workdir} ...).')
      mesh, info, _, model, state = _open_run(config, (split,))
      step, state = checkpointer.restore_latest(_abstract(state))
    finally:
      checkpointer.close()
    result = evaluation.run(jit_predict_step(model, mesh), state=state, mesh=mesh, info=info,
                            config=config, split=split)
    return evaluation.report(result, workdir, num_params=model.num_params, config=config,
                             checkpoint_step=step)
