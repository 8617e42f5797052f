"""Tests of the Biwi builder on a tiny fake database in the original layout."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from propel_jax.data import input_pipeline
from propel_jax.data.builders import biwi
from fake_datasets import BIWI_POSES as _POSES
from fake_datasets import write_biwi_recording as _write_recording


@pytest.fixture(scope='module')
def manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('biwi_manual')
  for name, poses in _POSES.items():
    _write_recording(root / 'hpdb' / name, poses)
  return root


def test_all_frames_with_labels_and_centred_face_crops(manual_dir, tmp_path):
  builder = input_pipeline.prepare_builder('biwi/all', tmp_path, manual_dir)
  assert list(builder.info.splits) == ['test']
  source = builder.as_data_source('test')
  assert len(source) == 5
  by_key = {}
  for i in range(len(source)):
    example = source[i]
    by_key[(example['recording'], tuple(np.round(example['label'], 3)))] = example
  for name, poses in _POSES.items():
    for yaw, pitch, roll, _ in poses:
      example = by_key[(name.encode(), tuple(np.round([yaw, pitch, roll], 3)))]
      image = example['image']
      assert image.shape == (128, 128, 3)
      # The face disc (diameter 120 mm in a 220 mm crop) sits in the middle.
      ys, xs = np.nonzero(image[..., 0] > 125)
      assert abs(ys.mean() - 63.5) < 2 and abs(xs.mean() - 63.5) < 2
      np.testing.assert_allclose(len(ys) / 128 ** 2, np.pi * (60 / 220) ** 2, rtol=0.1)
      np.testing.assert_array_equal(example['equivalent_labels'], example['label'][None])


def test_split_by_recording(manual_dir, tmp_path):
  builder = input_pipeline.prepare_builder('biwi/split_70_30', tmp_path, manual_dir)
  train = builder.as_data_source('train')
  test = builder.as_data_source('test')
  # 3 recordings: round(2.1) = 2 train (01, 02), 1 test (03).
  assert {train[i]['recording'] for i in range(len(train))} == {b'01', b'02'}
  assert {test[i]['recording'] for i in range(len(test))} == {b'03'}
  assert (len(train), len(test)) == (3, 2)


def test_pipeline_reads_biwi_with_flip(manual_dir, tmp_path):
  input_pipeline.prepare_builder('biwi/split_70_30', tmp_path, manual_dir)
  info = input_pipeline.get_dataset_info('biwi/split_70_30', data_dir=tmp_path)
  assert info.labels.names == ('yaw', 'pitch', 'roll') and info.num_equivalents == 1
  assert info.labels.flip_negates == (True, False, True)
  batch = next(input_pipeline.create_iterator(
      'biwi/split_70_30', 'train', global_batch_size=3, seed=0, train=True,
      data_dir=tmp_path, image_size=64))
  assert batch['image'].shape == (3, 64, 64, 3)
  degrees = info.labels.to_degrees(batch['label'])
  stored = [(10.0, -5.0, 2.0), (-40.0, 15.0, -8.0), (0.0, 0.0, 0.0)]
  for yaw, pitch, roll in degrees:
    assert any(np.allclose([yaw, pitch, roll], s, atol=1e-3) or
               np.allclose([-yaw, pitch, -roll], s, atol=1e-3) for s in stored)


def test_missing_download_says_what_and_where(tmp_path):
  with pytest.raises(Exception, match='kinect_head_pose_db'):
    input_pipeline.prepare_builder('biwi/all', tmp_path / 'data', tmp_path / 'empty_manual')
  (tmp_path / 'not_biwi').mkdir()
  (tmp_path / 'not_biwi' / 'readme.txt').write_text('x')
  with pytest.raises(FileNotFoundError, match='No Biwi recordings'):
    input_pipeline.prepare_builder('biwi/all', tmp_path / 'data', tmp_path / 'not_biwi')


def test_readers_reject_malformed_files(tmp_path):
  (tmp_path / 'pose.txt').write_text('1 2 3')
  with pytest.raises(ValueError, match='pose.txt'):
    biwi.read_pose(tmp_path / 'pose.txt')
  (tmp_path / 'rgb.cal').write_text('1 2 3')
  with pytest.raises(ValueError, match='rgb.cal'):
    biwi.read_calibration(tmp_path / 'rgb.cal')
