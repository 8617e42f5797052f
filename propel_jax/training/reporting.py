"""What a user sees during training: a progress line, metrics.jsonl, TensorBoard, warnings.

Only process 0 writes; on other processes `MetricWriter` does nothing, so the
training loop calls it unconditionally.

`workdir/metrics.jsonl` holds one JSON object per logged step, e.g.

    {"split": "train", "step": 100, "loss": 0.41, "steps_per_sec": 31.2, ...}
    {"split": "eval", "step": 500, "loss": 0.38, "cmae/mode": 7.9, ...}

When a run resumes from step s, lines and TensorBoard events after s (written
by the interrupted run after its last checkpoint) are dropped, so both logs
read as if the run had never stopped.
"""

import json
import logging as std_logging
import math
import os
import time
from typing import Any, Mapping, Sequence

from absl import logging
import jax
import numpy as np

METRICS_FILE = 'metrics.jsonl'


def _to_python(value: Any) -> Any:
  if isinstance(value, (np.ndarray, np.generic, jax.Array)):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()
  return value


def _truncate_jsonl(path: str, last_step: int) -> None:
  """Keeps only the lines of `path` with step <= last_step."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    kept = [line for line in f if line.strip() and json.loads(line)['step'] <= last_step]
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.writelines(kept)
  os.replace(tmp, path)


class MetricWriter:
  """Appends metrics to `workdir/metrics.jsonl` and TensorBoard event files in `workdir`.

  Args:
    workdir: the run's directory.
    resume_step: the step the run starts from (0 for a fresh run); logged
      entries after it are dropped.
  """

  def __init__(self, workdir: str, *, resume_step: int = 0):
    self._active = jax.process_index() == 0
    if not self._active:
      return
    # Imported here: tensorboardX (and its protobuf) is only needed by training.
    import tensorboardX  # pylint: disable=g-import-not-at-top
    self.path = os.path.join(workdir, METRICS_FILE)
    _truncate_jsonl(self.path, resume_step)
    self._file = open(self.path, 'a')
    # purge_step hides the interrupted run's events after the checkpoint.
    self._tensorboard = tensorboardX.SummaryWriter(
        workdir, purge_step=resume_step + 1 if resume_step else None)

  def write(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
    """Logs scalar `metrics` of `split` ('train' or 'eval') at `step`."""
    if not self._active:
      return
    record = {'split': split, 'step': int(step)}
    record.update({k: _to_python(v) for k, v in metrics.items()})
    self._file.write(json.dumps(record) + '\n')
    self._file.flush()
    for name, value in record.items():
      if name not in ('split', 'step') and isinstance(value, (int, float)):
        self._tensorboard.add_scalar(f'{split}/{name}', value, step)
    self._tensorboard.flush()

  def close(self) -> None:
    if self._active:
      self._file.close()
      self._tensorboard.close()


def format_duration(seconds: float) -> str:
  """'1h02m', '3m05s' or '42s'."""
  if not math.isfinite(seconds):
    return '?'
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  if hours:
    return f'{hours}h{minutes:02d}m'
  if minutes:
    return f'{minutes}m{seconds:02d}s'
  return f'{seconds}s'


class Progress:
  """Measures steps/s between log points and prints a progress line with the ETA.

  The first interval after (re)starting includes compilation; its rate is
  reported like any other, and the ETA uses the latest interval's rate.

  Args:
    first_step: the step training (re)starts from.
    num_steps: the final step.
  """

  def __init__(self, first_step: int, num_steps: int):
    self._num_steps = num_steps
    self._last_step = first_step
    self._last_time = time.perf_counter()

  def restart_clock(self) -> None:
    """Excludes the time since the last update (an evaluation) from the next rate."""
    self._last_time = time.perf_counter()

  def update(self, step: int) -> float:
    """Marks `step` as done; returns the steps/s since the previous update."""
    now = time.perf_counter()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    return rate

  def line(self, step: int, loss: float, steps_per_sec: float) -> str:
    """e.g. 'step 120/2000 (6%) | loss 0.2345 | 15.2 steps/s | ETA 2m04s'."""
    eta = (self._num_steps - step) / steps_per_sec if steps_per_sec > 0 else math.inf
    return (f'step {step}/{self._num_steps} ({100 * step // max(self._num_steps, 1)}%) | '
            f'loss {loss:.4f} | {steps_per_sec:.1f} steps/s | ETA {format_duration(eta)}')

  def log(self, step: int, loss: float, steps_per_sec: float,
          warnings: Sequence[str] = ()) -> None:
    """Logs the progress line, with `warnings` appended (then at WARNING level)."""
    log_with_warnings(self.line(step, loss, steps_per_sec), warnings)


def log_with_warnings(line: str, warnings: Sequence[str]) -> None:
  """Logs `line` from process 0: INFO, or WARNING with ' | warning: ...' appended."""
  if jax.process_index() != 0:
    return
  if warnings:
    logging.warning('%s', ''.join([line] + [f' | warning: {w}' for w in warnings]))
  else:
    logging.info('%s', line)


class TrainingHealth:
  """Signs that a run trains without learning, read from what the loop logs anyway.

  Three signs, each a warning while it holds (the binaries print them in the
  progress or evaluation line, and those still holding at the end in the
  final summary):
  * a whole log interval of zero gradient norm: saturated sigmoid outputs or
    dead units give exactly 0, and nothing changes any more;
  * a training loss that has stopped falling: its running median over
    `WINDOW` log lines set no new low for a quarter of the run (and at least
    `WINDOW` intervals);
  * saturated outputs: more than half of an evaluation's point predictions
    at the ends of the label range (evaluation's 'saturated' metric).
  It only reads the host values of the logged metrics: no extra device sync.

  Args:
    num_train_steps: the run's length.
    log_every_steps: the interval of the progress lines.
  """

  WINDOW = 5
  SATURATED_SHARE = 0.5

  def __init__(self, num_train_steps: int, log_every_steps: int):
    self._patience = max(self.WINDOW * log_every_steps, num_train_steps // 4)
    self._losses = []
    self._best, self._best_step = math.inf, 0
    self._train_warnings = []
    self._eval_warnings = []

  def update_train(self, step: int, means: Mapping[str, float]) -> list[str]:
    """Takes a log interval's mean metrics at `step`; returns the warnings that hold."""
    warnings = []
    if means['grad_norm'] == 0:
      warnings.append('the gradient norm is 0 (saturated outputs or dead units; a lower '
                      'config.learning_rate may help)')
    self._losses.append(means['loss'])
    if len(self._losses) >= self.WINDOW:
      median = float(np.median(self._losses[-self.WINDOW:]))
      if median < self._best:
        self._best, self._best_step = median, step
      elif step - self._best_step >= self._patience:
        warnings.append(f'the loss has not fallen for {step - self._best_step} steps (running '
                        f'median {median:.4g}, lowest {self._best:.4g} at step '
                        f'{self._best_step})')
    self._train_warnings = warnings
    return warnings

  def update_eval(self, metrics: Mapping[str, Any]) -> list[str]:
    """Takes an evaluation's metrics; returns the warnings that hold."""
    saturated = metrics.get('saturated', 0.0)
    self._eval_warnings = [] if saturated <= self.SATURATED_SHARE else [
        f'{saturated:.0%} of the predictions are at an end of the label range (saturated '
        f'outputs; a lower config.learning_rate may help)']
    return self._eval_warnings

  def summary(self) -> list[str]:
    """The warnings that held at the last log line and the last evaluation."""
    return self._train_warnings + self._eval_warnings


class _LibraryInfoFilter(std_logging.Filter):
  """Drops INFO and DEBUG records logged from inside the given packages."""

  def __init__(self, packages):
    super().__init__()
    self._markers = tuple(f'{os.sep}{p}{os.sep}' for p in packages)

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or not any(
        m in record.pathname for m in self._markers)


def quiet_library_logs(packages=('orbax', 'grain')) -> None:
  """Keeps the progress lines readable: Orbax logs dozens of INFO lines per checkpoint.

  For the binaries; warnings and errors of those packages still show.
  """
  logging.get_absl_handler().addFilter(_LibraryInfoFilter(packages))
