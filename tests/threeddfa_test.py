"""Tests of the 300W-LP and AFLW2000-3D builders on tiny fakes in the 3DDFA format."""

import numpy as np
from PIL import Image
import pytest
import scipy.io

from propel_jax.data import input_pipeline
from propel_jax.data.builders import threeddfa
from fake_datasets import FACES as _FACES
from fake_datasets import write_3ddfa_face as _write_face


def _check_examples(source, expected_names):
  assert len(source) == len(expected_names)
  names = set()
  for i in range(len(source)):
    example = source[i]
    names.add(example['name'].decode())
    angles = next(a for a, _ in _FACES if np.allclose(a, example['label'], atol=1e-4))
    np.testing.assert_array_equal(example['equivalent_labels'], example['label'][None])
    assert abs(angles[0]) <= 99
    image = example['image']
    assert image.shape == (128, 128, 3)
    # The 100 px face in a 150 px square crop: centred, 2/3 of the side.
    ys, xs = np.nonzero(image[..., 0] > 125)
    assert abs(ys.mean() - 63.5) < 1.5 and abs(xs.mean() - 63.5) < 1.5
    np.testing.assert_allclose(len(ys) / 128 ** 2, (1 / threeddfa.CROP_MARGIN) ** 2, rtol=0.06)
  assert names == set(expected_names)


def test_aflw2000(tmp_path):
  manual = tmp_path / 'manual'
  for i, (angles, centre) in enumerate(_FACES):
    _write_face(manual / 'AFLW2000', f'image{i:05d}', angles, centre, 'pt3d_68')
  builder = input_pipeline.prepare_builder('aflw2000', tmp_path / 'data', manual)
  assert list(builder.info.splits) == ['test']
  _check_examples(builder.as_data_source('test'), ['image00000', 'image00001'])


def test_300w_lp_reads_the_four_subsets_without_flipped_copies(tmp_path):
  root = tmp_path / 'manual' / '300W_LP'
  _write_face(root / 'AFW', 'AFW_1_0', *_FACES[0], 'pt2d')
  _write_face(root / 'HELEN', 'HELEN_2_0', *_FACES[1], 'pt2d')
  _write_face(root / 'IBUG', 'IBUG_3_0', *_FACES[2], 'pt2d')
  _write_face(root / 'AFW_Flip', 'AFW_1_0', *_FACES[0], 'pt2d')  # mirror copies: skipped
  builder = input_pipeline.prepare_builder('the300w_lp_pose', tmp_path / 'data', tmp_path / 'manual')
  assert list(builder.info.splits) == ['train']
  _check_examples(builder.as_data_source('train'), ['AFW_1_0', 'HELEN_2_0'])
  info = input_pipeline.get_dataset_info('the300w_lp_pose', data_dir=tmp_path / 'data')
  assert info.labels.low == (-99.0,) * 3 and info.image_shape == (128, 128, 3)
  batch = next(input_pipeline.create_iterator(
      'the300w_lp_pose', 'train', global_batch_size=2, seed=0, train=True,
      data_dir=tmp_path / 'data'))
  assert batch['image'].shape == (2, 128, 128, 3)


def test_missing_downloads_say_what_and_where(tmp_path):
  (tmp_path / 'manual').mkdir()
  (tmp_path / 'manual' / 'unrelated.txt').write_text('x')
  with pytest.raises(FileNotFoundError, match='AFLW2000-3D.zip'):
    input_pipeline.prepare_builder('aflw2000', tmp_path / 'data', tmp_path / 'manual')
  with pytest.raises(FileNotFoundError, match='300W-LP.zip'):
    input_pipeline.prepare_builder('the300w_lp_pose', tmp_path / 'data', tmp_path / 'manual')


def test_mat_without_pose_is_named(tmp_path):
  scipy.io.savemat(tmp_path / 'face.mat', {'pt2d': np.zeros((2, 68))})
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / 'face.jpg')
  with pytest.raises(ValueError, match="face.mat has no 'Pose_Para'"):
    threeddfa.read_example(tmp_path / 'face.jpg', 'pt2d', 32)
