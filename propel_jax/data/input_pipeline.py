"""Input pipeline: TFDS array_record data sources read by Grain.

`create_iterator` yields batches of NumPy arrays for this process:

  'image'              float32 [b, H, W, C] in [0, 1]
  'label'              float32 [b, n] normalised to [0, 1]
  'equivalent_labels'  float32 [b, K, n] normalised; row 0 is the label itself
  'mask'               bool [b] (evaluation only; False on padding rows)

with b = global_batch_size // jax.process_count().

The global batches do not depend on how many processes read them. Training:
epoch e is one permutation of the whole split drawn from (seed, e), together
with one left-right flip decision per position; global batch t is rows
[t·B, (t+1)·B) of the epochs laid end to end (each epoch's last incomplete
batch dropped). Evaluation passes over the split exactly once in order, padded
(with masked copies of record 0) to whole global batches, so every batch of
every process has the same shape and every process yields the same number of
batches (a jitted, sharded eval step needs both). Either way process p of P
reads rows [p·b, (p+1)·b) of every global batch, by random access into the
array_record files or into an in-memory cache of the decoded split.

Where the dataset declares how mirroring changes its labels, training flips
the images so chosen and negates the matching label dimensions.

The iterator's position is the number of the next global batch:
`it.get_state()` is the same on every process, and `it.set_state(state)`
moves an iterator for any number of processes there, so a run checkpointed by
P processes resumes on Q and sees exactly the batches of an uninterrupted run.

Labels are mapped from degrees to [0, 1] (the models' sigmoid outputs) by the
dataset's `LabelSpec` (`info.labels.to_unit`; `to_degrees` maps back).
"""

import dataclasses
import functools
import sys
from typing import Any, Callable, Iterator

from absl import flags
import grain.python as grain
import jax
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from propel_jax.data import builders  # Importing registers the builders with TFDS.
from propel_jax.data.builders import locked_build
from propel_jax.data import labels as labels_lib


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model and its evaluation need to know about a dataset.

  Attributes:
    name: TFDS name with config, e.g. 'synthetic_hands/ambiguous'.
    labels: the label spec: names (n = len(names)), the degree range mapped
      to [0, 1] (`labels.to_unit`, `labels.to_degrees`) and the flip rule.
    image_shape: (H, W, C) of the images the pipeline yields.
    num_equivalents: K, equivalent labels per example (1: no symmetry).
    split_sizes: number of examples per split.
  """
  name: str
  labels: labels_lib.LabelSpec
  image_shape: tuple[int, int, int]
  num_equivalents: int
  split_sizes: dict[str, int]


def prepare_builder(dataset: str, data_dir: str | None = None,
                    manual_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """Returns the TFDS builder of `dataset`, building it first if needed.

  Args:
    dataset: TFDS name with config, e.g. 'synthetic_hands/ambiguous'.
    data_dir: TFDS data directory (None: TFDS's default).
    manual_dir: where a manual download was extracted (None: TFDS's default,
      <data_dir>/downloads/manual/).

  Raises:
    ValueError: for a name that is not one of our datasets, or a build that
      is not stored as array_record.
  """
  try:
    # Registered names are checked before anything is built.
    builder = tfds.builder(dataset, data_dir=data_dir, file_format='array_record')
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(
        f'Unknown dataset {dataset!r}. The datasets of propel_jax are '
        f'{builders.DATASET_NAMES} (name/config, e.g. '
        '"synthetic_hands/ambiguous"); see docs/datasets.md.') from e
  if not hasattr(builder, 'label_spec'):
    raise ValueError(f'{dataset} is not one of the orientation datasets of '
                     f'propel_jax {builders.DATASET_NAMES} (an '
                     'image_folder/<name> must be registered with '
                     'propel_jax.data.builders.image_folder.register first).')
  if not builder.is_prepared():
    builder = locked_build.prepare(
        dataset, data_dir, tfds.download.DownloadConfig(manual_dir=manual_dir))
  if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise ValueError(
        f'{dataset} in {builder.data_dir} is stored as '
        f'{builder.info.file_format}, but the pipeline reads array_record. '
        'Rebuild it with file_format="array_record" in another data_dir.')
  return builder


def _info_from_builder(dataset, builder, image_size):
  spec = builder.label_spec
  features = builder.info.features
  height, width, channels = features['image'].shape
  if image_size is not None:
    height = width = image_size
  return DatasetInfo(
      name=dataset,
      labels=spec,
      image_shape=(height, width, channels),
      num_equivalents=features['equivalent_labels'].shape[0],
      split_sizes={name: split.num_examples
                   for name, split in builder.info.splits.items()},
  )


def get_dataset_info(dataset, *, data_dir=None, image_size=None):
  """Describes a dataset (building it first if it is not built yet).

  Args:
    dataset: TFDS name with config, e.g. 'synthetic_hands/ambiguous'.
    data_dir: TFDS data directory (None: TFDS's default).
    image_size: if set, the pipeline resizes images to image_size ×
      image_size, and `image_shape` says so.

  Returns:
    A `DatasetInfo`.
  """
  return _info_from_builder(dataset, prepare_builder(dataset, data_dir),
                            image_size)


def split_size(dataset: str, split: str, *, data_dir: str | None = None) -> int:
  """Number of examples of `split`: a split name or a TFDS slice ('train[:80%]').

  Raises:
    ValueError: for a split the dataset does not have (TFDS's message names
      those it has) or a slice it cannot take.
  """
  builder = prepare_builder(dataset, data_dir)
  try:
    return builder.info.splits[split].num_examples
  except ValueError as e:
    raise ValueError(f'{dataset}: {e} (TFDS slices such as "train[:80%]" work '
                     'too).') from e


class _BatchReader:
  """Reads the records a batch's 'index' names into one uint8 batch.

  Either straight from the array_record source (any size; each call reads and
  decodes b records) or from a cache of the whole decoded split held in
  memory (loaded once; then a batch is a NumPy gather).

  Indices past the end of the split are padding: they read record 0 and get
  mask False.
  """

  def __init__(self, source, name, image_size, cached=None):
    self._source = source
    self._name = name
    self._image_size = image_size
    self._num_records = len(source)
    self._cached = cached

  def __call__(self, batch):
    """{'index': [b] int, ...} -> the same dict with the records added."""
    indices = batch.pop('index')
    mask = indices < self._num_records
    rows = np.where(mask, indices, 0)
    if self._cached is not None:
      batch.update({key: value[rows] for key, value in self._cached.items()})
    else:
      batch.update(_read_records(self._source, rows, self._image_size, self._name))
    batch['mask'] = mask
    return batch


@functools.lru_cache(maxsize=2)
def _load_split(dataset, data_dir, split, image_size):
  """The decoded records of a whole split, kept for the next call.

  Remembers the last two splits (typically a run's train and test splits), so
  that repeated evaluations do not decode the split again. Callers must not
  modify the arrays.
  """
  source = prepare_builder(dataset, data_dir).as_data_source(split)
  return _read_records(source, np.arange(len(source)), image_size,
                       f'{dataset} {split}')


def _read_records(source, indices, image_size, name):
  """Decoded records [len(indices), ...] (images resized if asked to).

  Raises:
    ValueError: naming `name` (dataset and split) and the record, for a label
      that is NaN or infinite: it would turn the loss or the metrics into NaN
      far from its cause.
  """
  images, labels, equivalents = [], [], []
  for start in range(0, len(indices), 1024):
    for record in source.__getitems__(indices[start:start + 1024].tolist()):
      image = record['image']
      if image_size is not None and image.shape[:2] != (image_size,
                                                        image_size):
        image = _resize(image, image_size)
      images.append(image)
      labels.append(record['label'])
      equivalents.append(record['equivalent_labels'])
  records = {'image': np.stack(images), 'label': np.stack(labels),
             'equivalent_labels': np.stack(equivalents)}
  for key in ('label', 'equivalent_labels'):
    finite = np.isfinite(records[key]).reshape(len(indices), -1).all(axis=1)
    if not finite.all():
      bad = np.flatnonzero(~finite)[0]
      raise ValueError(f'{name}: record {indices[bad]} has a non-finite {key} '
                       f'{records[key][bad].tolist()}; fix or drop it and rebuild '
                       'the dataset.')
  return records


def _resize(image, size):
  """Bilinear (antialiased) resize of a uint8 [H, W, C] image to [size, size, C]."""
  squeeze = image.shape[-1] == 1
  pil = Image.fromarray(image[..., 0] if squeeze else image)
  resized = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))
  return resized[..., None] if squeeze else resized


class _TrainRows:
  """This process's rows of global training batch `step`, and their flips.

  Epoch e visits the split in an order drawn from (seed, e) alone, with a
  flip decision (probability 1/2) per position drawn along with it; global
  batch t is slice t mod (N // B) of epoch t // (N // B). One vectorised
  permutation per epoch: Grain's per-record index shuffle does Python work
  for every record, which would be the slowest part of the pipeline
  (docs/benchmarks.md).
  """

  def __init__(self, num_records, global_batch_size, first_row, num_rows, seed):
    self._num_records = num_records
    self._global_batch_size = global_batch_size
    self._batches_per_epoch = num_records // global_batch_size
    self._first_row = first_row
    self._num_rows = num_rows
    self._seed = seed
    # (epoch, order, flips), replaced as one object: Grain's read threads may
    # call this concurrently around an epoch boundary.
    self._cached = (None, None, None)

  def __call__(self, step):
    epoch, position = divmod(step, self._batches_per_epoch)
    cached_epoch, order, flips = self._cached
    if cached_epoch != epoch:
      rng = np.random.default_rng([self._seed, epoch])
      order = rng.permutation(self._num_records)
      flips = rng.uniform(size=self._num_records) < 0.5
      self._cached = (epoch, order, flips)
    start = position * self._global_batch_size + self._first_row
    rows = slice(start, start + self._num_rows)
    return {'index': order[rows], 'flip': flips[rows]}


class _EvalRows:
  """This process's rows of global evaluation batch `position` (in split order)."""

  def __init__(self, global_batch_size, first_row, num_rows):
    self._global_batch_size = global_batch_size
    self._first_row = first_row
    self._num_rows = num_rows

  def __call__(self, position):
    first = position * self._global_batch_size + self._first_row
    return {'index': np.arange(first, first + self._num_rows)}


class _Flip:
  """Mirrors the images the batch's 'flip' marks left-right and fixes their labels."""

  def __init__(self, flip_negates):
    self._sign = np.where(flip_negates, -1.0, 1.0).astype(np.float32)

  def __call__(self, batch):
    flip = batch['flip']
    # The reader returns fresh arrays: flip the chosen rows in place.
    batch['image'][flip] = batch['image'][flip, :, ::-1]
    sign = np.where(flip[:, None], self._sign, np.float32(1))
    batch['label'] = batch['label'] * sign
    batch['equivalent_labels'] = batch['equivalent_labels'] * sign[:, None]
    return batch


class _ToModelInputs:
  """uint8 images to [0, 1] float32, labels to [0, 1]; drops the train mask and flips."""

  def __init__(self, info, keep_mask):
    self._info = info
    self._keep_mask = keep_mask

  def __call__(self, batch):
    out = {'image': batch['image'].astype(np.float32) / np.float32(255)}
    for key in ('label', 'equivalent_labels'):
      out[key] = self._info.labels.to_unit(batch[key].astype(np.float32))
    if self._keep_mask:
      out['mask'] = batch['mask']
    return out


# Batches prepared ahead by background threads of each process (or worker).
# Grain's defaults (16 threads, 500 elements) are meant for single records;
# 500 batches would hold gigabytes.
_READ_THREADS = 2
_PREFETCH_BATCHES = 4

# Splits whose decoded images fit in this many bytes are held in memory (whole:
# over the epochs every process reads every record) by default.
_CACHE_LIMIT_BYTES = 1 << 30


class BatchIterator:
  """This process's parts of the global batches from a position on.

  The position is the number of the next global batch, the same on every
  process: `get_state()` also describes the data it counts in (dataset,
  split, seed, global batch size, number of examples), and `set_state()`
  refuses a position counted in other data. Training iterators never end;
  evaluation iterators end after the last global batch.
  """

  def __init__(self, build: Callable[[int], Iterator[dict[str, np.ndarray]]],
               description: dict[str, Any]):
    self._build = build
    self._description = description
    self._next_batch = 0
    self._iterator = None  # Built on the first `next`, at the position then.

  def __iter__(self) -> 'BatchIterator':
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._iterator is None:
      self._iterator = self._build(self._next_batch)
    batch = next(self._iterator)
    self._next_batch += 1
    return batch

  def get_state(self) -> dict[str, Any]:
    """The position, as JSON values: {'next_batch': t, and what it counts in}."""
    return dict(self._description, next_batch=self._next_batch)

  def set_state(self, state: dict[str, Any]) -> None:
    """Moves to the position `get_state()` returned, on any number of processes.

    Raises:
      ValueError: if the position was counted in other data (another
        dataset, split, seed, global batch size or number of examples): the
        batches from it would not be the ones it stands for.
    """
    differences = [f'{key} {state.get(key)!r} there, {value!r} here'
                   for key, value in self._description.items() if state.get(key) != value]
    if differences:
      raise ValueError(f'The input position (global batch {state.get("next_batch")}) was '
                       f'counted in other data ({"; ".join(differences)}): from it this '
                       f'iterator would not yield the batches it stands for.')
    self.close()
    self._next_batch = int(state['next_batch'])

  def close(self) -> None:
    """Stops the background work (threads, worker processes) of the current position."""
    if self._iterator is not None and hasattr(self._iterator, 'close'):
      self._iterator.close()
    self._iterator = None


def create_iterator(dataset: str, split: str, *, global_batch_size: int, seed: int,
                    train: bool, data_dir: str | None = None, image_size: int | None = None,
                    augment: bool | None = None, worker_count: int = 0,
                    cache: bool | None = None, shard_index: int | None = None,
                    shard_count: int | None = None) -> BatchIterator:
  """Creates a checkpointable iterator over this process's parts of the global batches.

  Args:
    dataset: TFDS name with config, e.g. 'synthetic_hands/ambiguous'; built
      into data_dir on first use (by one process: the others wait for it).
    split: split name, e.g. 'train', 'test' or a TFDS slice like 'train[:80%]'.
    global_batch_size: rows per batch over all processes; must be divisible
      by the number of processes.
    seed: order and augmentation seed (train); unused for evaluation.
    train: True: shuffle every epoch, repeat forever, augment, whole batches
      only. False: one pass in order, padded to whole batches, with 'mask'.
    data_dir: TFDS data directory (None: TFDS's default).
    image_size: resize images to image_size × image_size (None: as stored).
    augment: random left-right flips (labels fixed accordingly); None means
      on for training where the dataset defines how a flip changes its labels.
    worker_count: Grain worker processes that prepare batches (0: threads of
      this process). The batches do not depend on it.
    cache: hold the decoded split in memory (read once, then batches are
      gathers; the last two splits read stay cached for the next iterator);
      None: when it takes at most 1 GiB and there are no workers.
    shard_index, shard_count: this process's index and the number of
      processes; default jax.process_index() of jax.process_count().

  Returns:
    A `BatchIterator` yielding dicts of NumPy arrays (see the module
    docstring), with `get_state()` and `set_state()`.

  Raises:
    ValueError: for a batch that does not split over the processes, a
      training split smaller than one global batch, or flips asked for where
      the dataset defines none, or for evaluation.
  """
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  if global_batch_size % shard_count:
    raise ValueError(f'global_batch_size={global_batch_size} is not divisible '
                     f'by the number of processes ({shard_count}).')
  batch_size = global_batch_size // shard_count
  first_row = shard_index * batch_size
  builder = prepare_builder(dataset, data_dir)
  info = _info_from_builder(dataset, builder, image_size)
  source = builder.as_data_source(split)
  if augment is None:
    augment = train and info.labels.flip_negates is not None
  if augment and not train:
    raise ValueError('augment=True applies to training only; evaluation reads the '
                     'stored images.')
  if augment and info.labels.flip_negates is None:
    raise ValueError(f'{dataset} defines no label-preserving flip; use '
                     'augment=False.')

  if train:
    if len(source) < global_batch_size:
      raise ValueError(f'{dataset} {split} has {len(source)} examples, fewer than '
                       f'the global batch of {global_batch_size}.')
    rows = _TrainRows(len(source), global_batch_size, first_row, batch_size, seed)
    stop = sys.maxsize  # Forever.
  else:
    rows = _EvalRows(global_batch_size, first_row, batch_size)
    stop = -(-len(source) // global_batch_size)  # Padded to whole global batches.
  if cache is None:
    # Workers are for streaming: a cache would be copied into each of them.
    cache = (not worker_count and
             len(source) * np.prod(info.image_shape) <= _CACHE_LIMIT_BYTES)
  cached = _load_split(dataset, data_dir, split, image_size) if cache else None
  reader = _BatchReader(source, f'{dataset} {split}', image_size, cached)
  to_model_inputs = _ToModelInputs(info, keep_mask=not train)

  def build(start):
    ds = grain.MapDataset.range(start, max(start, stop)).map(rows).map(reader)
    if augment:
      ds = ds.map(_Flip(info.labels.flip_negates))
    ds = ds.map(to_model_inputs).to_iter_dataset(
        grain.ReadOptions(num_threads=_READ_THREADS,
                          prefetch_buffer_size=_PREFETCH_BATCHES))
    if worker_count:
      if not flags.FLAGS.is_parsed():
        # Grain's worker processes read absl flags; outside an absl app (a
        # notebook, pytest) nothing parsed them, so take the defaults.
        flags.FLAGS.mark_as_parsed()
      ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter(ds)

  return BatchIterator(build, {'dataset': dataset, 'split': split, 'seed': seed,
                               'global_batch_size': global_batch_size,
                               'num_examples': len(source)})
