"""Evaluation: run the model over a split, compute metrics in degrees, write the report.

`run` feeds a split through the jitted predict step (every process its share,
the last batch padded and masked) and gathers the per-example outputs on
every process. `report` writes, from process 0, `eval_metrics.json` and the
plots. Metrics are in degrees, for every decoder of the head:

    mae_deg/<decoder>/<axis>   mean absolute error per axis
    cmae_deg/<decoder>         their mean (the paper's CMAE)

Errors are symmetry-aware: where a dataset lists several equivalent labels
for an image (the ambiguous synthetic hands: (φ, ψ) and (−φ, −ψ)), the error
is to the nearest of them. Mixture heads (propel, mdn) also get the
negative log-likelihood of the label (nats, density in degrees^-n), the CRPS
per axis (degrees), the coverage of central intervals of the marginals
(coverage_<level>/<axis>) and the mode recall (the share of equivalent
labels that some component's mean lies near).
"""

import dataclasses
import json
import os
from typing import Any, Callable

from absl import logging
import jax
import ml_collections
import numpy as np

from propel_jax import input_pipeline
from propel_jax import metrics as metrics_lib
from propel_jax import parallel
from propel_jax import plots

COVERAGE_LEVELS = (0.5, 0.9)


@dataclasses.dataclass
class EvalResult:
  """A split's per-example outputs and the metrics computed from them.

  Attributes:
    split: the split evaluated.
    dataset: the dataset it came from.
    outputs: per example (padding removed), from `train.predict_step`:
      'loss' [N], 'prediction/<decoder>' [N, n] in [0, 1], and for mixture
      heads 'means', 'scales' [N, I, n], 'log_weights' [N, I]; plus 'label'
      [N, n] and 'equivalent_labels' [N, K, n] in [0, 1].
    images: the first few images [m, H, W, C], for the plots.
    info: the DatasetInfo of the label space (names, ranges in degrees).
    metrics: name -> float, see the module docstring.
  """
  split: str
  dataset: str
  outputs: dict[str, np.ndarray]
  images: np.ndarray
  info: Any
  metrics: dict[str, float]

  def summary(self) -> str:
    return summarize(self.metrics)


def summarize(metrics: dict[str, Any]) -> str:
  """A one-line digest: loss, CMAE per decoder, NLL if there is one."""
  parts = [f'loss {metrics["loss"]:.4f}']
  parts += [f'{k.split("/", 1)[1]} CMAE {v:.2f}°' for k, v in sorted(metrics.items())
            if k.startswith('cmae_deg/')]
  if 'nll' in metrics:
    parts.append(f'NLL {metrics["nll"]:.3f}')
  return ', '.join(parts)


def run(predict: Callable[..., dict[str, jax.Array]], *, state: Any,
        mesh: jax.sharding.Mesh, info: Any, config: ml_collections.ConfigDict,
        split: str) -> EvalResult:
  """Predicts every example of `split` and computes the metrics.

  Args:
    predict: the jitted predict step (state, global batch) -> outputs.
    state: the training state.
    mesh: the device mesh.
    info: the training dataset's DatasetInfo (label ranges for degrees).
    config: the run's config (dataset, batch_size, ...).
    split: e.g. 'test'.

  Returns:
    The outputs and metrics, identical on every process.
  """
  dataset = config.test_dataset or config.dataset
  iterator = input_pipeline.create_iterator(
      dataset, split, global_batch_size=config.batch_size, seed=config.seed, train=False,
      data_dir=config.data_dir, image_size=config.image_size,
      worker_count=config.worker_count)
  chunks, images = [], None
  for local_batch in iterator:
    batch = parallel.shard_batch(local_batch, mesh)
    outputs = dict(predict(state, batch))
    for key in ('label', 'equivalent_labels', 'mask'):
      outputs[key] = batch[key]
    host_outputs = parallel.to_host(outputs)
    if images is None:  # The plots show the first few real examples.
      images = parallel.to_host(batch['image'])[host_outputs['mask']][:config.num_plot_examples]
    chunks.append(host_outputs)
  if not chunks:
    raise ValueError(f'Split {split!r} of {dataset} has no examples.')
  gathered = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  keep = gathered.pop('mask').astype(bool)
  gathered = {k: v[keep] for k, v in gathered.items()}
  return EvalResult(split=split, dataset=dataset, outputs=gathered, images=images,
                    info=info, metrics=compute_metrics(gathered, info))


def _to_degrees(values01: np.ndarray, info: Any) -> np.ndarray:
  return np.asarray(input_pipeline.denormalize_labels(values01, info), np.float64)


def compute_metrics(outputs: dict[str, np.ndarray], info: Any) -> dict[str, float]:
  """Metrics in degrees from per-example outputs (see `EvalResult.outputs`)."""
  span = np.asarray(info.label_high, np.float64) - np.asarray(info.label_low, np.float64)
  labels = _to_degrees(outputs['label'], info)
  equivalents = _to_degrees(outputs['equivalent_labels'], info)
  result = {'loss': float(np.mean(outputs['loss'])), 'num_examples': int(labels.shape[0])}
  for key in sorted(k for k in outputs if k.startswith('prediction/')):
    decoder = key.split('/', 1)[1]
    errors = metrics_lib.absolute_errors(_to_degrees(outputs[key], info), equivalents)
    for name, mae in zip(info.label_names, np.asarray(metrics_lib.mae_per_axis(errors))):
      result[f'mae_deg/{decoder}/{name}'] = float(mae)
    result[f'cmae_deg/{decoder}'] = float(metrics_lib.cmae(errors))
  if 'means' in outputs:
    means = _to_degrees(outputs['means'], info)
    scales = np.asarray(outputs['scales'], np.float64) * span
    log_weights = np.asarray(outputs['log_weights'], np.float64)
    result['nll'] = float(np.mean(metrics_lib.nll(means, scales, log_weights, labels)))
    crps = np.mean(np.asarray(metrics_lib.crps(means, scales, log_weights, labels)), axis=0)
    for name, value in zip(info.label_names, crps):
      result[f'crps_deg/{name}'] = float(value)
    for level in COVERAGE_LEVELS:
      covered = np.asarray(metrics_lib.interval_coverage(means, scales, log_weights, labels,
                                                         level=level))
      for name, value in zip(info.label_names, np.mean(covered, axis=0)):
        result[f'coverage_{int(round(100 * level))}/{name}'] = float(value)
    result['mode_recall'] = float(np.mean(metrics_lib.mode_recall(
        means, log_weights, equivalents)))
  return result


def report(result: EvalResult, workdir: str, *, num_params: int,
           config: ml_collections.ConfigDict, checkpoint_step: int | None = None
           ) -> dict[str, Any]:
  """Writes eval_metrics.json (or eval_metrics_<split>.json) and plots/ from process 0.

  Returns:
    What was written to the JSON file.
  """
  metrics = dict(result.metrics, num_params=num_params, split=result.split,
                 dataset=result.dataset, loss_name=config.loss)
  if checkpoint_step is not None:
    metrics['checkpoint_step'] = checkpoint_step
  if not parallel.is_main_process():
    return metrics
  suffix = '' if result.split == config.test_split else f'_{result.split}'
  path = os.path.join(workdir, f'eval_metrics{suffix}.json')
  with open(path, 'w') as f:
    json.dump(metrics, f, indent=2, sort_keys=True)
  plot_dir = os.path.join(workdir, 'plots' + suffix)
  plots.write_all(result, plot_dir, config=config)
  logging.info('Evaluation on %s/%s: %s. Wrote %s and %s/.', result.dataset, result.split,
               summarize(metrics), path, plot_dir)
  return metrics
