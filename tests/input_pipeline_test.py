"""Tests of the Grain input pipeline on a real (small) synthetic TFDS dataset."""

import json

import numpy as np
from PIL import Image
import pytest

from propel_jax.data import input_pipeline
from propel_jax.data.builders import image_folder
from propel_jax.data.builders import synthetic_hands

DATASET = 'synthetic_hands/ambiguous_small'  # 512 train / 256 test, 32x32


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp('tfds')
  synthetic_hands.build(path, 'ambiguous_small')
  return path


@pytest.fixture(scope='module')
def info(data_dir):
  return input_pipeline.get_dataset_info(DATASET, data_dir=data_dir)


def _records(data_dir, split):
  """All stored records of a split, straight from TFDS (no pipeline)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  source = tfds.builder(DATASET, data_dir=data_dir).as_data_source(split)
  return [source[i] for i in range(len(source))]


def _train(data_dir, **kwargs):
  kwargs = dict(dict(global_batch_size=32, seed=0, train=True, data_dir=data_dir), **kwargs)
  return input_pipeline.create_iterator(DATASET, 'train', **kwargs)


def _global_batches(iterators, num_batches):
  """The global batches that the iterators of processes 0, 1, ... read together."""
  parts = [[next(it) for _ in range(num_batches)] for it in iterators]
  return [{key: np.concatenate([part[key] for part in batch]) for key in batch[0]}
          for batch in zip(*parts)]


def _assert_batches_equal(expected, got):
  assert len(expected) == len(got)
  for a, b in zip(expected, got):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_dataset_info(info):
  assert info.name == DATASET
  assert info.labels.names == ('azimuth', 'elevation')
  assert info.labels.low == (-45.0, -45.0) and info.labels.high == (45.0, 45.0)
  assert info.image_shape == (32, 32, 1)
  assert info.num_equivalents == 2
  assert info.split_sizes == {'train': 512, 'test': 256}


def test_normalize_round_trip_and_definition(info):
  labels = np.random.default_rng(0).uniform(-45, 45, size=(5, 3, 2)).astype(np.float32)
  normalised = info.labels.to_unit(labels)
  # Definition: (x - low) / (high - low) per dimension.
  np.testing.assert_allclose(normalised, (labels + 45.0) / 90.0, rtol=1e-6)
  np.testing.assert_allclose(info.labels.to_degrees(normalised), labels,
                             atol=1e-5)
  np.testing.assert_array_equal(
      info.labels.to_unit(np.array([[-45.0, 45.0]])), [[0.0, 1.0]])


def test_train_batches_shapes_and_ranges(data_dir):
  batch = next(_train(data_dir))
  assert set(batch) == {'image', 'label', 'equivalent_labels'}
  assert batch['image'].shape == (32, 32, 32, 1) and batch['image'].dtype == np.float32
  assert batch['label'].shape == (32, 2) and batch['label'].dtype == np.float32
  assert batch['equivalent_labels'].shape == (32, 2, 2)
  assert 0.0 <= batch['image'].min() and batch['image'].max() <= 1.0
  assert 0.0 <= batch['label'].min() and batch['label'].max() <= 1.0
  np.testing.assert_array_equal(batch['equivalent_labels'][:, 0], batch['label'])
  # The other equivalent label is the opposite orientation, here 1 - label.
  np.testing.assert_allclose(batch['equivalent_labels'][:, 1], 1.0 - batch['label'], atol=1e-6)


def test_eval_yields_the_split_once_in_order_padded_and_masked(data_dir, info):
  batches = list(input_pipeline.create_iterator(
      DATASET, 'test', global_batch_size=100, seed=0, train=False, data_dir=data_dir))
  assert len(batches) == 3  # ceil(256 / 100)
  for batch in batches:
    assert batch['image'].shape == (100, 32, 32, 1) and batch['mask'].shape == (100,)
  mask = np.concatenate([b['mask'] for b in batches])
  np.testing.assert_array_equal(mask, np.arange(300) < 256)
  records = _records(data_dir, 'test')
  images = np.concatenate([b['image'] for b in batches])[:256]
  labels = np.concatenate([b['label'] for b in batches])[:256]
  np.testing.assert_array_equal(images, np.stack([r['image'] for r in records]) / np.float32(255))
  np.testing.assert_allclose(info.labels.to_degrees(labels),
                             np.stack([r['label'] for r in records]), atol=1e-4)


def test_eval_processes_read_their_rows_of_each_global_batch(data_dir):
  # 256 examples, global batch 60 over 3 processes: 5 global batches (300 rows), in split
  # order, each process reading its 20 rows of each.
  kwargs = dict(global_batch_size=60, seed=0, train=False, data_dir=data_dir)
  shards = [input_pipeline.create_iterator(DATASET, 'test', shard_index=i, shard_count=3,
                                           **kwargs) for i in range(3)]
  lengths = [len(list(input_pipeline.create_iterator(DATASET, 'test', shard_index=i,
                                                     shard_count=3, **kwargs)))
             for i in range(3)]
  assert lengths == [5, 5, 5]
  together = _global_batches(shards, 5)
  assert all(b['label'].shape == (60, 2) for b in together)
  _assert_batches_equal(list(input_pipeline.create_iterator(DATASET, 'test', **kwargs)),
                        together)
  mask = np.concatenate([b['mask'] for b in together])
  np.testing.assert_array_equal(mask, np.arange(300) < 256)


@pytest.mark.parametrize('cache', [True, False])
def test_global_batches_do_not_depend_on_the_process_count(data_dir, cache):
  # 20 global batches of 32 (16 per epoch: across an epoch boundary), flips on: the rows that
  # P processes read together are the rows one process reads, flipped alike.
  one = _global_batches([_train(data_dir)], 20)
  for count in (2, 4):
    together = _global_batches(
        [_train(data_dir, shard_index=i, shard_count=count, cache=cache) for i in range(count)],
        20)
    _assert_batches_equal(one, together)


def test_train_is_deterministic_given_the_seed(data_dir):
  first = [next(it) for it in [_train(data_dir)] for _ in range(3)]
  again = [next(it) for it in [_train(data_dir)] for _ in range(3)]
  other = next(_train(data_dir, seed=1))
  for a, b in zip(first, again):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(first[0]['label'], other['label'])


def test_train_repeats_and_reshuffles(data_dir):
  it = _train(data_dir, augment=False)
  epochs = [np.concatenate([next(it)['label'] for _ in range(16)]) for _ in range(2)]
  assert len(np.unique(epochs[0][:, 0])) == 512
  np.testing.assert_array_equal(np.sort(epochs[0][:, 0]), np.sort(epochs[1][:, 0]))
  assert not np.array_equal(epochs[0], epochs[1])


def test_resumed_iterator_sees_the_same_batches_on_any_process_count(data_dir):
  it = _train(data_dir)
  for _ in range(5):
    next(it)
  state = it.get_state()
  assert state['next_batch'] == 5
  state = json.loads(json.dumps(state))  # As a checkpoint stores it.
  expected = [next(it) for _ in range(20)]  # crosses an epoch boundary (16 per epoch)
  resumed = _train(data_dir)
  resumed.set_state(state)
  _assert_batches_equal(expected, [next(resumed) for _ in range(20)])
  # Elastic: the position taken by two processes, each reading its half of every batch.
  halves = [_train(data_dir, shard_index=i, shard_count=2) for i in range(2)]
  for half in halves:
    next(half)  # Moved on before: set_state starts over from the position.
    half.set_state(state)
  _assert_batches_equal(expected, _global_batches(halves, 20))


@pytest.mark.parametrize('change', [dict(seed=1), dict(global_batch_size=16)])
def test_a_position_counted_in_other_data_is_refused(data_dir, change):
  state = _train(data_dir).get_state()
  with pytest.raises(ValueError, match=r'The input position \(global batch 0\) was counted in '
                                       r'other data \((seed 0 there, 1 here|global_batch_size '
                                       r'32 there, 16 here)\)'):
    _train(data_dir, **change).set_state(state)
  other_size = input_pipeline.create_iterator(DATASET, 'train[:256]', global_batch_size=32,
                                              seed=0, train=True, data_dir=data_dir)
  with pytest.raises(ValueError, match='num_examples 512 there, 256 here'):
    other_size.set_state(dict(state, split='train[:256]'))


def test_flip_augmentation_keeps_labels_right(data_dir, info):
  records = _records(data_dir, 'train')
  stored_azimuth = np.array([r['label'][0] for r in records])
  it = _train(data_dir, global_batch_size=64)
  flipped = kept = 0
  for _ in range(4):
    batch = next(it)
    labels = info.labels.to_degrees(batch['label'])
    for image, label, equivalents in zip(batch['image'], labels, batch['equivalent_labels']):
      same = np.abs(stored_azimuth - label[0]).min()
      mirrored = np.abs(stored_azimuth + label[0]).min()
      if same < mirrored:
        kept += 1
        record = records[np.abs(stored_azimuth - label[0]).argmin()]
        np.testing.assert_array_equal(image, record['image'] / np.float32(255))
        np.testing.assert_allclose(label, record['label'], atol=1e-4)
      else:
        # Mirrored: by the renderer's symmetry, a mirrored right hand at (φ, ψ)
        # is a left hand at (-φ, ψ) (tests/synthetic_hands_test.py).
        flipped += 1
        record = records[np.abs(stored_azimuth + label[0]).argmin()]
        np.testing.assert_array_equal(image, record['image'][:, ::-1] / np.float32(255))
        np.testing.assert_allclose(label, record['label'] * [-1, 1], atol=1e-4)
      np.testing.assert_allclose(
          info.labels.to_degrees(equivalents),
          np.stack([label, -label]), atol=1e-4)
  # Each row flips with probability 1/2: 256 rows give 128 ± 8 flips.
  assert abs(flipped - 128) < 32, flipped


def test_augment_off_yields_stored_images(data_dir, info):
  records = _records(data_dir, 'train')
  stored_azimuth = np.array([r['label'][0] for r in records])
  batch = next(_train(data_dir, augment=False))
  for image, label in zip(batch['image'],
                          info.labels.to_degrees(batch['label'])):
    record = records[np.abs(stored_azimuth - label[0]).argmin()]
    np.testing.assert_array_equal(image, record['image'] / np.float32(255))


@pytest.mark.parametrize('cache', [True, False])
def test_image_size_resizes_bilinearly(data_dir, cache):
  batch = next(_train(data_dir, image_size=16, cache=cache))
  assert batch['image'].shape == (32, 16, 16, 1)
  info = input_pipeline.get_dataset_info(DATASET, data_dir=data_dir, image_size=16)
  assert info.image_shape == (16, 16, 1)
  first = next(input_pipeline.create_iterator(DATASET, 'test', global_batch_size=8, seed=0,
                                              train=False, data_dir=data_dir, image_size=16,
                                              cache=cache))
  # PIL's antialiased bilinear resize of the stored images is the reference.
  for image, record in zip(first['image'], _records(data_dir, 'test')):
    resized = Image.fromarray(record['image'][..., 0]).resize((16, 16), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(image[..., 0], np.asarray(resized) / np.float32(255))


class _Records:
  """A stand-in for a TFDS data source: record i has a 1x1 image and label i."""

  def __init__(self, size, bad=None):
    self._size = size
    self._bad = bad

  def __len__(self):
    return self._size

  def __getitems__(self, indices):
    return [{'image': np.full((1, 1, 1), i % 256, np.uint8),
             'label': np.float32([np.nan if i == self._bad else i, 0]),
             'equivalent_labels': np.float32([[i, 0]])} for i in indices]


def test_reads_over_a_thousand_records_at_once_in_order():
  # The reader fetches records in chunks: every record once, in order, across
  # the chunk boundaries.
  indices = np.arange(2500)[::-1]
  records = input_pipeline._read_records(_Records(2500), indices, None, 'fake train')
  np.testing.assert_array_equal(records['label'][:, 0], indices)
  np.testing.assert_array_equal(records['image'][:, 0, 0, 0], indices % 256)
  assert records['equivalent_labels'].shape == (2500, 1, 2)


def test_non_finite_labels_name_dataset_split_and_record():
  with pytest.raises(ValueError, match=r'fake test: record 1500 has a non-finite label '
                                       r'\[nan, 0.0\]'):
    input_pipeline._read_records(_Records(2000, bad=1500), np.arange(2000), None, 'fake test')


@pytest.mark.parametrize('cache', [True, False])
def test_non_finite_labels_in_a_built_dataset_stop_the_pipeline(tmp_path, monkeypatch, cache):
  # A dataset whose stored labels include a NaN (the CSV check is bypassed to
  # build one, as an older build or another builder could hold).
  (tmp_path / 'imgs').mkdir()
  lines = ['filename,x,split']
  for i in range(8):
    Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(tmp_path / 'imgs' / f'{i}.png')
    lines.append(f'imgs/{i}.png,{i},{"train" if i < 6 else "test"}')
  (tmp_path / 'labels.csv').write_text('\n'.join(lines) + '\n')
  image_folder.register('nan_label', csv_path=tmp_path / 'labels.csv', image_size=4)
  read_csv = image_folder.read_csv

  def with_nan(path):
    names, files, targets, splits = read_csv(path)
    targets[3, 0] = np.nan
    return names, files, targets, splits
  monkeypatch.setattr(image_folder, 'read_csv', with_nan)
  input_pipeline.prepare_builder('image_folder/nan_label', tmp_path / 'data')
  with pytest.raises(ValueError, match=r'image_folder/nan_label train: record \d has a '
                                       r'non-finite label \[nan\]'):
    next(input_pipeline.create_iterator('image_folder/nan_label', 'train', global_batch_size=6,
                                        seed=0, train=True, data_dir=tmp_path / 'data',
                                        cache=cache))


def test_worker_and_streaming_give_the_same_batches(data_dir):
  # Batches are formed before Grain hands them to worker processes, and the
  # in-memory cache holds exactly what streaming reads: neither changes them.
  in_process = _train(data_dir, cache=True)
  streamed = _train(data_dir, cache=False, worker_count=1)
  for _ in range(3):
    a, b = next(in_process), next(streamed)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_streamed_eval_equals_cached_eval(data_dir):
  kwargs = dict(global_batch_size=100, seed=0, train=False, data_dir=data_dir)
  cached = list(input_pipeline.create_iterator(DATASET, 'test', cache=True, **kwargs))
  streamed = list(input_pipeline.create_iterator(DATASET, 'test', cache=False, **kwargs))
  assert len(cached) == len(streamed) == 3
  for a, b in zip(cached, streamed):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_bad_arguments_raise_clear_errors(data_dir):
  with pytest.raises(ValueError, match='not divisible'):
    _train(data_dir, global_batch_size=33, shard_count=2, shard_index=0)
  with pytest.raises(ValueError, match='512 examples, fewer than the global batch of 600'):
    _train(data_dir, global_batch_size=600)
  with pytest.raises(ValueError, match='augment=True applies to training only'):
    input_pipeline.create_iterator(DATASET, 'test', global_batch_size=8, seed=0, train=False,
                                   data_dir=data_dir, augment=True)
  with pytest.raises(ValueError, match='Unknown dataset'):
    input_pipeline.get_dataset_info('no_such_dataset/x', data_dir=data_dir)
  with pytest.raises(ValueError, match='not one of the orientation datasets'):
    input_pipeline.get_dataset_info('mnist', data_dir=data_dir)


def test_shard_cache_is_reused_and_never_modified(data_dir, info):
  # Flip augmentation must work on copies: after flipped epochs, the shared
  # cache still holds the stored images.
  flipping = _train(data_dir, cache=True)
  for _ in range(32):
    next(flipping)
  hits = input_pipeline._load_split.cache_info().hits
  batch = next(_train(data_dir, cache=True, augment=False))
  assert input_pipeline._load_split.cache_info().hits == hits + 1
  records = _records(data_dir, 'train')
  stored_azimuth = np.array([r['label'][0] for r in records])
  for image, label in zip(batch['image'],
                          info.labels.to_degrees(batch['label'])):
    record = records[np.abs(stored_azimuth - label[0]).argmin()]
    np.testing.assert_array_equal(image, record['image'] / np.float32(255))
