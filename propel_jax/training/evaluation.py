"""Evaluation: run the model over a split, compute metrics in degrees, save them.

`run` feeds a split through the jitted predict step (every process its share,
the last batch padded and masked) and gathers the per-example outputs on
every process. `report` writes, from process 0, `eval_metrics.json` and the
per-example outputs `eval_outputs.npz` (which the plots and the comparison
read). The metrics are `propel_jax.scoring.summarize`'s, in degrees, for
every decoder of the head:

    mae/<decoder>/<axis>   mean absolute error per axis (degrees)
    cmae/<decoder>         their mean, the paper's CMAE (degrees)

symmetry-aware: where a dataset lists several equivalent labels for an image
(the ambiguous synthetic hands: (φ, ψ) and (−φ, −ψ)), a prediction is scored
against the nearest of them. Mixture heads (propel, mdn) also get the
negative log-likelihood ('nll', nats, density in degrees), the CRPS
('crps/<axis>', degrees), the coverage of the central intervals of each
marginal ('coverage_<level%>', e.g. 'coverage_90') and the mode recall
('mode_recall': the share of equivalent labels some mode lies within 5° of
on every axis; 'mode_recall_all': the share of images where all are found).
Plus 'loss' (the training loss, normalised units), 'num_examples' and, for
label ranges, 'saturated': the largest share, over the decoders, of predicted
values within SATURATION_MARGIN of an end of the label range (a sign of
saturated sigmoid outputs when it is large).

Datasets whose labels are angles on the circle (LabelSpec kind 'circle', unit
vectors) or rotations (kind 'rotation', unit quaternions; geodesic angles)
get `propel_jax.scoring_directional`'s scores instead, means over the
examples: 'angular_error/<decoder>' (and its 'median_angular_error/...'),
'acc15/<decoder>', 'acc30/<decoder>' in degrees and shares, and for heads
with a density 'log_likelihood' of the label and 'log_likelihood_all_equivalents'
(its mean over every equivalent label, SYMSOL I's protocol), in nats w.r.t. arc
length on the circle (uniform −log 2π) and w.r.t. the Haar measure of total
volume π² on SO(3) (Implicit-PDF's; uniform −log π²), 'spread' (degrees),
'mode_recall' and 'mode_recall_all' (modes within 10° of the equivalents).
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

from propel_jax import directional
from propel_jax import mixtures
from propel_jax import rotation_grid
from propel_jax import scoring
from propel_jax import scoring_directional
from propel_jax.data import input_pipeline
from propel_jax.data import labels as labels_lib
from propel_jax.training import parallel

# The mode-recall radius, `scoring`'s (importable from here too).
MODE_RADIUS_DEG = scoring.MODE_RADIUS_DEG
# Predictions closer than this to 0 or 1 (normalised label units, i.e. 0.1% of
# the label range) count as saturated.
SATURATION_MARGIN = 1e-3
METRICS_FILE = 'eval_metrics.json'
OUTPUTS_FILE = 'eval_outputs.npz'
# The mixture types `Outputs.load` can restore, by the name saved with them.
_MIXTURE_TYPES = {'Mixture': mixtures.Mixture,
                  'VonMisesFisherMixture': directional.VonMisesFisherMixture,
                  'GridDistribution': rotation_grid.GridDistribution}
# Examples scored at once: at most 64, and at most _SCORE_PAIRS // K for K
# equivalent labels (the spread and mode scores hold [chunk, K, grid points]
# arrays; the cone's and the cylinder's K are 360 and 720).
_SCORE_CHUNK = 64
_SCORE_PAIRS = 64 * 60


@dataclasses.dataclass
class Outputs:
  """A split's per-example outputs (padding removed), all in [0, 1] label units.

  Attributes:
    loss: [N] per-example training loss.
    predictions: {decoder: [N, n]} point estimates.
    mixture: the predicted mixture (means [N, I, n], ...) or None.
    label: [N, n].
    equivalent_labels: [N, K, n].
    images: the first few images [m, H, W, C], for the plots.
    modes: the Gaussian mixture's modes {'locations': [N, I, n], 'valid':
      [N, I]} (see `mixtures.modes`) or None: not searched for again.
  """
  loss: np.ndarray
  predictions: dict[str, np.ndarray]
  mixture: Any
  label: np.ndarray
  equivalent_labels: np.ndarray
  images: np.ndarray
  modes: dict[str, np.ndarray] | None = None

  def save(self, path: str) -> None:
    """Writes a compressed .npz that `load` reads back."""
    arrays = {'loss': self.loss, 'label': self.label,
              'equivalent_labels': self.equivalent_labels, 'images': self.images}
    arrays.update({f'prediction/{k}': v for k, v in self.predictions.items()})
    if self.mixture is not None:
      arrays['mixture_type'] = np.asarray(type(self.mixture).__name__)
      arrays.update({f'mixture/{k}': np.asarray(v)
                     for k, v in self.mixture._asdict().items()})
    if self.modes is not None:
      arrays.update({f'modes/{k}': v for k, v in self.modes.items()})
    np.savez_compressed(path, **arrays)

  @classmethod
  def load(cls, path: str) -> 'Outputs':
    with np.load(path) as data:
      arrays = {k: data[k] for k in data.files}
    mixture = None
    if 'mixture_type' in arrays:
      fields = {k.split('/', 1)[1]: v for k, v in arrays.items() if k.startswith('mixture/')}
      mixture = _MIXTURE_TYPES[str(arrays['mixture_type'])](**fields)
    modes = {k.split('/', 1)[1]: v for k, v in arrays.items() if k.startswith('modes/')}
    return cls(loss=arrays['loss'],
               predictions={k.split('/', 1)[1]: v for k, v in arrays.items()
                            if k.startswith('prediction/')},
               mixture=mixture, label=arrays['label'],
               equivalent_labels=arrays['equivalent_labels'], images=arrays['images'],
               modes=modes or None)


@dataclasses.dataclass
class EvalResult:
  """A split's per-example outputs and the metrics computed from them.

  Attributes:
    split: the split evaluated.
    dataset: the dataset it came from.
    outputs: the per-example `Outputs`.
    info: the DatasetInfo of the label space (names, ranges in degrees).
    metrics: name -> float, see the module docstring.
  """
  split: str
  dataset: str
  outputs: Outputs
  info: Any
  metrics: dict[str, Any]

  def summary(self) -> str:
    return summarize(self.metrics)


def summarize(metrics: dict[str, Any]) -> str:
  """A one-line digest: loss, CMAE per decoder, NLL if there is one."""
  parts = [f'loss {metrics["loss"]:.4f}']
  parts += [f'{k.split("/", 1)[1]} CMAE {v:.2f}°' for k, v in sorted(metrics.items())
            if k.startswith('cmae/')]
  parts += [f'{k.split("/", 1)[1]} angular error {v:.2f}°'
            for k, v in sorted(metrics.items()) if k.startswith('angular_error/')]
  if 'nll' in metrics:
    parts.append(f'NLL {metrics["nll"]:.3f}')
  if 'log_likelihood' in metrics:
    parts.append(f'log-likelihood {metrics["log_likelihood"]:.3f}')
  return ', '.join(parts)


def run(predict: Callable[..., dict[str, Any]], *, state: Any,
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
  gathered = jax.tree.map(lambda *parts: np.concatenate(parts), *chunks)
  keep = gathered.pop('mask').astype(bool)
  gathered = jax.tree.map(lambda values: values[keep], gathered)
  outputs = Outputs(images=images, **gathered)
  return EvalResult(split=split, dataset=dataset, outputs=outputs, info=info,
                    metrics=compute_metrics(outputs, info))


@functools.partial(jax.jit, static_argnames=('labels',))
def _per_example_scores(predictions, equivalent_labels, mixture, modes, *,
                        labels: labels_lib.LabelSpec):
  """`scoring.per_example` in degrees, jitted: op by op it would compile for seconds."""
  predictions = {name: labels.to_degrees(value) for name, value in predictions.items()}
  if mixture is not None:
    mixture = labels.mixture_to_degrees(mixture)
  if modes is not None:
    # Modes map with the mixture: the mode search is affine equivariant.
    modes = (labels.to_degrees(modes['locations']), modes['valid'])
  return scoring.per_example(predictions, labels.to_degrees(equivalent_labels), mixture,
                             modes=modes)


# Per-example scores of unit-vector labels, by LabelSpec kind.
_DIRECTIONAL_SCORES = {'circle': jax.jit(scoring_directional.per_example),
                       'rotation': jax.jit(scoring_directional.rotation_per_example)}


def directional_scores(outputs: Outputs, kind: str = 'circle') -> dict[str, np.ndarray]:
  """Every example's `scoring_directional.per_example` (kind 'circle') or
  `rotation_per_example` (kind 'rotation'), computed in equal chunks."""
  score = _DIRECTIONAL_SCORES[kind]
  count = outputs.label.shape[0]
  size = max(1, min(_SCORE_CHUNK, _SCORE_PAIRS // outputs.equivalent_labels.shape[1]))
  chunks = []
  for start in range(0, count, size):
    # The last chunk is padded with its own rows so that one program serves all.
    rows = np.minimum(np.arange(start, start + size), count - 1)
    take = lambda tree: jax.tree.map(lambda a: np.asarray(a)[rows], tree)
    chunks.append(jax.device_get(score(
        take(outputs.predictions), take(outputs.label), take(outputs.equivalent_labels),
        take(outputs.mixture))))
  return {k: np.concatenate([c[k] for c in chunks])[:count] for k in chunks[0]}


def compute_metrics(outputs: Outputs, info: Any) -> dict[str, Any]:
  """Metrics in degrees from per-example outputs (see the module docstring)."""
  if info.labels.is_directional:
    result = scoring_directional.summarize(directional_scores(outputs, info.labels.kind))
  else:
    scores = _per_example_scores(outputs.predictions, outputs.equivalent_labels,
                                 outputs.mixture, outputs.modes, labels=info.labels)
    result = scoring.summarize(scores, info.labels.names)
    result['saturated'] = max(float(np.mean(np.minimum(p, 1 - p) < SATURATION_MARGIN))
                              for p in outputs.predictions.values())
  result['loss'] = float(np.mean(outputs.loss))
  result['num_examples'] = int(outputs.loss.shape[0])
  return result


def per_example_errors(outputs: Outputs, info: Any) -> dict[str, np.ndarray]:
  """{decoder: [N]} symmetry-aware absolute error (degrees), mean over the axes.

  On the circle: the angular error to the nearest equivalent (degrees).
  """
  if info.labels.is_directional:
    errors = (scoring_directional.angular_errors if info.labels.kind == 'circle'
              else scoring_directional.rotation_errors)
    return {decoder: np.asarray(errors(prediction, outputs.equivalent_labels))
            for decoder, prediction in outputs.predictions.items()}
  labels = info.labels.to_degrees(outputs.equivalent_labels)
  return {decoder: np.asarray(scoring.absolute_errors(
              info.labels.to_degrees(prediction), labels)).mean(axis=-1)
          for decoder, prediction in outputs.predictions.items()}


def file_suffix(split: str, config: ml_collections.ConfigDict) -> str:
  """'' for config.test_split, else '_<split>': the evaluation files' suffix."""
  return '' if split == config.test_split else f'_{split}'


def report(result: EvalResult, workdir: str, *, num_params: int,
           config: ml_collections.ConfigDict, checkpoint_step: int | None = None
           ) -> dict[str, Any]:
  """Writes the evaluation of `result` from process 0.

  Files (with `file_suffix` appended for a split other than config.test_split):
  eval_metrics.json and eval_outputs.npz (`Outputs.save`).

  Returns:
    What was written to the JSON file.
  """
  metrics = dict(result.metrics, num_params=num_params, split=result.split,
                 dataset=result.dataset, head=config.head)
  if checkpoint_step is not None:
    metrics['checkpoint_step'] = checkpoint_step
  if not parallel.is_main_process():
    return metrics
  suffix = file_suffix(result.split, config)
  path = os.path.join(workdir, METRICS_FILE.replace('.json', f'{suffix}.json'))
  with open(path, 'w') as f:
    json.dump(metrics, f, indent=2, sort_keys=True)
  # The per-example outputs, for the plots and analyses beyond these metrics
  # without predicting the split again.
  result.outputs.save(os.path.join(workdir, OUTPUTS_FILE.replace('.npz', f'{suffix}.npz')))
  logging.info('Evaluation on %s/%s: %s. Wrote %s.', result.dataset, result.split,
               summarize(metrics), path)
  return metrics
