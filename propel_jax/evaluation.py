"""Evaluation: run the model over a split, compute metrics in degrees, write the report.

`run` feeds a split through the jitted predict step (every process its share,
the last batch padded and masked) and gathers the per-example outputs on
every process. `report` writes, from process 0, `eval_metrics.json` and the
plots. The metrics are `propel_jax.metrics.summarize`'s, in degrees, for
every decoder of the head:

    mae/<decoder>/<axis>   mean absolute error per axis (degrees)
    cmae/<decoder>         their mean, the paper's CMAE (degrees)

symmetry-aware: where a dataset lists several equivalent labels for an image
(the ambiguous synthetic hands: (φ, ψ) and (−φ, −ψ)), a prediction is scored
against the nearest of them. Mixture heads (propel, mdn) also get the
negative log-likelihood ('nll', nats, density in degrees), the CRPS
('crps/<axis>', degrees), the coverage of the central 90% interval of each
marginal ('coverage_90/<axis>') and the mode recall (the share of equivalent
labels some mode of the mixture lies within 5° of). Plus 'loss' (the
training loss, normalised units) and 'num_examples'.
"""

import dataclasses
import functools
import json
import os
from typing import Any, Callable

from absl import logging
import jax
import ml_collections
import numpy as np

from propel_jax import input_pipeline
from propel_jax import metrics as metrics_lib
from propel_jax import mixtures
from propel_jax import parallel
from propel_jax import plots

COVERAGE_LEVEL = 0.9


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
            if k.startswith('cmae/')]
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


@functools.partial(jax.jit, static_argnames=('level',))
def _metric_sums(predictions, equivalent_labels, mixture, label_low, label_high, *, level):
  """`metrics.batch_sums` in degrees, jitted: op by op it would compile for seconds."""

  def to_degrees(values):
    return label_low + (label_high - label_low) * values

  predictions = {name: to_degrees(value) for name, value in predictions.items()}
  modes = None
  if mixture is not None:
    means, scales, log_weights = mixture
    mixture = metrics_lib.to_degrees(means, scales, label_low, label_high) + (log_weights,)
    locations, _, valid = mixtures.modes(*mixture)
    modes = (locations, valid)
  return metrics_lib.batch_sums(predictions, to_degrees(equivalent_labels), mixture=mixture,
                                modes=modes, level=level)


def compute_metrics(outputs: dict[str, np.ndarray], info: Any) -> dict[str, float]:
  """Metrics in degrees from per-example outputs (see `EvalResult.outputs`).

  The metric definitions are `propel_jax.metrics`'s (batch_sums over the
  whole split, then summarize); this converts units and adds the loss.
  """
  predictions = {key.split('/', 1)[1]: value
                 for key, value in outputs.items() if key.startswith('prediction/')}
  mixture = None
  if 'means' in outputs:
    mixture = (outputs['means'], outputs['scales'], outputs['log_weights'])
  sums = _metric_sums(predictions, outputs['equivalent_labels'], mixture,
                      np.asarray(info.label_low, np.float32),
                      np.asarray(info.label_high, np.float32), level=COVERAGE_LEVEL)
  result = metrics_lib.summarize(sums, info.label_names, level=COVERAGE_LEVEL)
  result['loss'] = float(np.mean(outputs['loss']))
  result['num_examples'] = int(outputs['loss'].shape[0])
  return result


def report(result: EvalResult, workdir: str, *, num_params: int,
           config: ml_collections.ConfigDict, checkpoint_step: int | None = None
           ) -> dict[str, Any]:
  """Writes the evaluation of `result` from process 0.

  Files (with `_<split>` appended for a split other than config.test_split):
  eval_metrics.json; eval_outputs.npz, the per-example `result.outputs`
  (keys as there, e.g. 'prediction/mode', 'means', 'label') and the first
  images ('images'); plots/.

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
  # The per-example outputs, for analyses beyond these metrics (e.g. the
  # comparison's plots) without predicting the split again.
  np.savez_compressed(os.path.join(workdir, f'eval_outputs{suffix}.npz'),
                      images=result.images, **result.outputs)
  plot_dir = os.path.join(workdir, 'plots' + suffix)
  plots.write_all(result, plot_dir, config=config)
  logging.info('Evaluation on %s/%s: %s. Wrote %s and %s/.', result.dataset, result.split,
               summarize(metrics), path, plot_dir)
  return metrics
