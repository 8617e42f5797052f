"""Input pipeline: TFDS array_record data sources read by Grain.

`create_iterator` yields batches of NumPy arrays for this process:

  'image'              float32 [b, H, W, C] in [0, 1]
  'label'              float32 [b, n] normalised to [0, 1]
  'equivalent_labels'  float32 [b, K, n] normalised; row 0 is the label itself
  'mask'               bool [b] (evaluation only; False on padding rows)

with b = global_batch_size // jax.process_count(); process
jax.process_index() reads only its own shard of the split.

Training (`train=True`) shuffles with the seed, repeats forever and, where the
dataset declares how mirroring changes its labels, flips images left-right at
random and negates the matching label dimensions. Evaluation passes over the
split exactly once; the split is padded (with masked copies of record 0) to a
multiple of the global batch size so that every batch of every process has the
same shape and every process yields the same number of batches (a jitted,
sharded eval step needs both).

The iterator is Grain's: `it.get_state()` / `it.set_state(state)` save and
restore its position (Orbax saves it with `grain.PyGrainCheckpointSave`), so a
resumed run sees exactly the batches an uninterrupted one would.

Labels are mapped between degrees and [0, 1] (the models' sigmoid outputs) by
`normalize_labels` / `denormalize_labels`, the one place that does it.
"""

import dataclasses

from absl import flags
import grain.python as grain
import jax
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

import propel_jax.datasets  # pylint: disable=unused-import  (registers builders)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model and its evaluation need to know about a dataset.

  Attributes:
    name: TFDS name with config, e.g. 'synthetic_hands/ambiguous'.
    label_names: one name per label dimension; n = len(label_names).
    label_low: per-dimension value in degrees that normalises to 0.
    label_high: per-dimension value in degrees that normalises to 1.
    image_shape: (H, W, C) of the images the pipeline yields.
    num_equivalents: K, equivalent labels per example (1: no symmetry).
    split_sizes: number of examples per split.
    flip_negates: per label dimension, whether a left-right mirror negates it;
      None if the dataset is never flipped.
  """
  name: str
  label_names: tuple[str, ...]
  label_low: tuple[float, ...]
  label_high: tuple[float, ...]
  image_shape: tuple[int, int, int]
  num_equivalents: int
  split_sizes: dict[str, int]
  flip_negates: tuple[bool, ...] | None = None


def normalize_labels(labels_deg, info):
  """Maps labels from degrees to [0, 1] (label_low -> 0, label_high -> 1).

  Args:
    labels_deg: [..., n] array (NumPy or JAX).
    info: the dataset's `DatasetInfo`.

  Returns:
    [..., n] array of the same kind and float dtype.
  """
  low = np.asarray(info.label_low, np.float32)
  high = np.asarray(info.label_high, np.float32)
  return (labels_deg - low) / (high - low)


def denormalize_labels(labels01, info):
  """Inverse of `normalize_labels`: [..., n] in [0, 1] -> degrees."""
  low = np.asarray(info.label_low, np.float32)
  high = np.asarray(info.label_high, np.float32)
  return labels01 * (high - low) + low


def _prepared_builder(dataset, data_dir):
  """Returns the TFDS builder of `dataset`, building it first if needed."""
  try:
    builder = tfds.builder(dataset, data_dir=data_dir,
                           file_format='array_record')
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(
        f'Unknown dataset {dataset!r}. The datasets of propel_jax are '
        f'{propel_jax.datasets.DATASET_NAMES} (name/config, e.g. '
        '"synthetic_hands/ambiguous"); see README.md "Datasets".') from e
  if not hasattr(builder, 'label_spec'):
    raise ValueError(f'{dataset} is not one of the orientation datasets of '
                     f'propel_jax {propel_jax.datasets.DATASET_NAMES}.')
  if not builder.is_prepared():
    builder.download_and_prepare()
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
      label_names=spec.names,
      label_low=spec.low,
      label_high=spec.high,
      image_shape=(height, width, channels),
      num_equivalents=features['equivalent_labels'].shape[0],
      split_sizes={name: split.num_examples
                   for name, split in builder.info.splits.items()},
      flip_negates=spec.flip_negates,
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
  return _info_from_builder(dataset, _prepared_builder(dataset, data_dir),
                            image_size)


class _PaddedSource(grain.RandomAccessDataSource):
  """The records of a source plus masked copies of record 0 up to `length`.

  Each record gains 'mask': True for real records, False for padding.
  """

  def __init__(self, source, length):
    self._source = source
    self._length = length

  def __len__(self):
    return self._length

  def __getitem__(self, index):
    real = index < len(self._source)
    record = dict(self._source[index if real else 0])
    record['mask'] = np.bool_(real)
    return record


class _Decode(grain.MapTransform):
  """Keeps the fields the models use and resizes the image if asked to."""

  def __init__(self, image_size, keep_mask):
    self._image_size = image_size
    self._keep_mask = keep_mask

  def map(self, element):
    image = element['image']
    if self._image_size is not None and image.shape[:2] != (
        self._image_size, self._image_size):
      image = _resize(image, self._image_size)
    out = {'image': image,
           'label': element['label'],
           'equivalent_labels': element['equivalent_labels']}
    if self._keep_mask:
      out['mask'] = element['mask']
    return out


def _resize(image, size):
  """Bilinear (antialiased) resize of a uint8 [H, W, C] image to [size, size, C]."""
  squeeze = image.shape[-1] == 1
  pil = Image.fromarray(image[..., 0] if squeeze else image)
  resized = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))
  return resized[..., None] if squeeze else resized


class _RandomFlip(grain.RandomMapTransform):
  """Mirrors the image left-right with probability 1/2 and fixes the labels.

  The rng comes from Grain (derived from the seed and the record's position),
  so the flips are deterministic and resume with the iterator.
  """

  def __init__(self, flip_negates):
    self._sign = np.where(flip_negates, -1.0, 1.0).astype(np.float32)

  def random_map(self, element, rng):
    if rng.uniform() < 0.5:
      return element
    element = dict(element)
    element['image'] = element['image'][:, ::-1]
    element['label'] = element['label'] * self._sign
    element['equivalent_labels'] = element['equivalent_labels'] * self._sign
    return element


class _ToModelInputs(grain.MapTransform):
  """Batch-level (vectorised): uint8 images to [0, 1], labels to [0, 1]."""

  def __init__(self, info):
    self._info = info

  def map(self, batch):
    batch = dict(batch)
    batch['image'] = batch['image'].astype(np.float32) / np.float32(255)
    for key in ('label', 'equivalent_labels'):
      batch[key] = normalize_labels(batch[key], self._info).astype(np.float32)
    return batch


def create_iterator(dataset, split, *, global_batch_size, seed, train,
                    data_dir=None, image_size=None, augment=None,
                    worker_count=0, shard_index=None, shard_count=None):
  """Creates a checkpointable iterator over this process's batches.

  Args:
    dataset: TFDS name with config, e.g. 'synthetic_hands/ambiguous'; built
      into data_dir on first use.
    split: split name, e.g. 'train', 'test' or a TFDS slice like 'train[:80%]'.
    global_batch_size: rows per batch over all processes; must be divisible
      by the number of processes.
    seed: shuffling and augmentation seed (train); unused for evaluation.
    train: True: shuffle, repeat forever, augment, drop nothing but incomplete
      batches. False: one pass, in order, padded, with 'mask'.
    data_dir: TFDS data directory (None: TFDS's default).
    image_size: resize images to image_size × image_size (None: as stored).
    augment: random left-right flips (labels fixed accordingly); None means
      on for training where the dataset defines how a flip changes its labels.
    worker_count: Grain worker processes (0: read in this process). Each
      worker batches its own records, so the batches depend on worker_count
      (not only on the seed): resume with the worker_count you saved with.
    shard_index, shard_count: this process's shard; default
      jax.process_index() of jax.process_count().

  Returns:
    A Grain `DataLoaderIterator` yielding dicts of NumPy arrays (see the
    module docstring), with `get_state()` and `set_state()`.
  """
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  if global_batch_size % shard_count:
    raise ValueError(f'global_batch_size={global_batch_size} is not divisible '
                     f'by the number of processes ({shard_count}).')
  batch_size = global_batch_size // shard_count
  builder = _prepared_builder(dataset, data_dir)
  info = _info_from_builder(dataset, builder, image_size)
  source = builder.as_data_source(split)
  if augment is None:
    augment = train and info.flip_negates is not None
  if augment and info.flip_negates is None:
    raise ValueError(f'{dataset} defines no label-preserving flip; use '
                     'augment=False.')

  operations = [_Decode(image_size, keep_mask=not train)]
  if train:
    if len(source) < shard_count:
      raise ValueError(f'{dataset} {split} has {len(source)} examples, fewer '
                       f'than the {shard_count} processes.')
    sampler = grain.IndexSampler(
        num_records=len(source),
        shard_options=grain.ShardOptions(shard_index, shard_count,
                                         drop_remainder=True),
        shuffle=True, num_epochs=None, seed=seed)
    if augment:
      operations.append(_RandomFlip(info.flip_negates))
  else:
    # Pad to whole global batches: then the contiguous, equal shards of all
    # processes hold the same number of whole batches.
    num_batches = -(-len(source) // global_batch_size)
    source = _PaddedSource(source, num_batches * global_batch_size)
    sampler = grain.IndexSampler(
        num_records=len(source),
        shard_options=grain.ShardOptions(shard_index, shard_count,
                                         drop_remainder=True),
        shuffle=False, num_epochs=1, seed=seed)
  operations += [grain.Batch(batch_size, drop_remainder=True),
                 _ToModelInputs(info)]
  if worker_count and not flags.FLAGS.is_parsed():
    # Grain's worker processes read absl flags; outside an absl app (a
    # notebook, pytest) nothing parsed them, so take the defaults.
    flags.FLAGS.mark_as_parsed()
  loader = grain.DataLoader(data_source=source, sampler=sampler,
                            operations=operations, worker_count=worker_count)
  return iter(loader)
