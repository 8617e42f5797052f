"""Tests of the image-folder + CSV builder on images the test writes."""

import os

import numpy as np
from PIL import Image
import pytest

from propel_jax.data import input_pipeline
from propel_jax.data.builders import image_folder


def _write_folder(root, rows, header='filename,a,b,c'):
  """Images whose brightness encodes their first target; a CSV of targets."""
  (root / 'imgs').mkdir(parents=True)
  lines = [header]
  for name, targets, extra in rows:
    image = np.full((30, 40, 3), int(targets[0]), np.uint8)  # 4:3, centre-cropped
    image[:, :2] = 255  # left border: cut away by the centre crop
    Image.fromarray(image).save(root / 'imgs' / name)
    lines.append(','.join([f'imgs/{name}', *map(str, targets), *extra]))
  (root / 'targets.csv').write_text('\n'.join(lines) + '\n')
  return root / 'targets.csv'


def test_random_split_targets_and_images(tmp_path):
  rows = [(f'{i}.png', (10.0 * i, -i, 0.5 * i), ()) for i in range(10)]
  csv_path = _write_folder(tmp_path / 'src', rows)
  image_folder.register('three_targets', csv_path=csv_path, image_size=16)
  builder = input_pipeline.prepare_builder('image_folder/three_targets', tmp_path / 'data')
  assert builder.info.splits['train'].num_examples == 7
  assert builder.info.splits['test'].num_examples == 3
  seen = []
  for split in ('train', 'test'):
    source = builder.as_data_source(split)
    for i in range(len(source)):
      example = source[i]
      index = int(example['filename'].decode().split('/')[1].split('.')[0])
      np.testing.assert_array_equal(example['label'], np.float32([10.0 * index, -index,
                                                                  0.5 * index]))
      assert example['image'].shape == (16, 16, 3)
      assert np.all(example['image'] == 10 * index)  # border cropped away
      seen.append(index)
  assert sorted(seen) == list(range(10))
  info = input_pipeline.get_dataset_info('image_folder/three_targets', data_dir=tmp_path / 'data')
  assert info.labels.names == ('a', 'b', 'c')
  assert info.labels.low == (0.0, -9.0, 0.0) and info.labels.high == (90.0, 0.0, 4.5)
  assert info.labels.flip_negates is None
  batch = next(input_pipeline.create_iterator(
      'image_folder/three_targets', 'train', global_batch_size=4, seed=0, train=True,
      data_dir=tmp_path / 'data'))
  assert batch['label'].shape == (4, 3) and batch['image'].shape == (4, 16, 16, 3)
  assert 0 <= batch['label'].min() and batch['label'].max() <= 1


def test_split_column_and_grayscale(tmp_path):
  rows = [(f'{i}.png', (float(i),), ('test' if i < 2 else 'train',)) for i in range(5)]
  csv_path = _write_folder(tmp_path / 'src', rows, header='filename,angle,split')
  image_folder.register('with_split', csv_path=csv_path, image_size=8, channels=1,
                        label_low=(-10,), label_high=(10,), flip_negates=(True,))
  builder = input_pipeline.prepare_builder('image_folder/with_split', tmp_path / 'data')
  test = builder.as_data_source('test')
  assert sorted(test[i]['label'][0] for i in range(len(test))) == [0.0, 1.0]
  assert test[0]['image'].shape == (8, 8, 1)
  info = input_pipeline.get_dataset_info('image_folder/with_split', data_dir=tmp_path / 'data')
  assert info.labels.low == (-10.0,) and info.labels.flip_negates == (True,)


def test_clear_errors(tmp_path):
  with pytest.raises(ValueError, match='not registered'):
    input_pipeline.prepare_builder('image_folder/never_registered', tmp_path / 'data')
  csv_path = _write_folder(tmp_path / 'src', [('0.png', (1.0,), ())], header='filename,x')
  (tmp_path / 'src' / 'targets.csv').write_text('filename,x\nimgs/0.png,1\nimgs/missing.png,2\n')
  image_folder.register('missing_file', csv_path=csv_path, test_fraction=0.0)
  with pytest.raises(FileNotFoundError, match='missing.png'):
    input_pipeline.prepare_builder('image_folder/missing_file', tmp_path / 'data')
  (tmp_path / 'bad.csv').write_text('filename,x\na.png,not_a_number\n')
  with pytest.raises(ValueError, match='bad.csv:2'):
    image_folder.register('bad', csv_path=tmp_path / 'bad.csv')


def _labels(dataset, data_dir, split):
  source = input_pipeline.prepare_builder(dataset, data_dir).as_data_source(split)
  return sorted(float(source[i]['label'][0]) for i in range(len(source)))


def test_a_changed_csv_images_or_settings_build_anew(tmp_path):
  rows = [(f'{i}.png', (float(i),), ('train' if i < 4 else 'test',)) for i in range(5)]
  csv_path = _write_folder(tmp_path / 'src', rows, header='filename,x,split')
  data_dir = tmp_path / 'data'
  image_folder.register('custom', csv_path=csv_path, image_size=8)
  assert _labels('image_folder/custom', data_dir, 'train') == [0.0, 1.0, 2.0, 3.0]

  # Other labels in the same CSV file, same name, same data_dir.
  csv_path.write_text(csv_path.read_text().replace(',3.0,', ',30.0,'))
  image_folder.register('custom', csv_path=csv_path, image_size=8)
  assert _labels('image_folder/custom', data_dir, 'train') == [0.0, 1.0, 2.0, 30.0]
  info = input_pipeline.get_dataset_info('image_folder/custom', data_dir=data_dir)
  assert info.labels.high == (30.0,)

  # Another image_size.
  image_folder.register('custom', csv_path=csv_path, image_size=4)
  source = input_pipeline.prepare_builder('image_folder/custom', data_dir).as_data_source('train')
  assert source[0]['image'].shape == (4, 4, 3)

  # A replaced image (other content and size): its build has the new pixels.
  Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(tmp_path / 'src' / 'imgs' / '0.png')
  image_folder.register('custom', csv_path=csv_path, image_size=4)
  source = input_pipeline.prepare_builder('image_folder/custom', data_dir).as_data_source('train')
  assert sorted(int(source[i]['image'].max()) for i in range(4))[-1] == 200

  # A missing image: the new build fails naming it, rather than reusing the old one.
  os.remove(tmp_path / 'src' / 'imgs' / '1.png')
  image_folder.register('custom', csv_path=csv_path, image_size=4)
  with pytest.raises(FileNotFoundError, match='1.png'):
    input_pipeline.prepare_builder('image_folder/custom', data_dir)

  # The same inputs again reuse their build.
  Image.fromarray(np.full((30, 40, 3), 1, np.uint8)).save(tmp_path / 'src' / 'imgs' / '1.png')
  config = image_folder.register('custom', csv_path=csv_path, image_size=4)
  assert config.name.startswith('custom-')
  built = input_pipeline.prepare_builder('image_folder/custom', data_dir).data_path
  assert input_pipeline.prepare_builder('image_folder/custom', data_dir).data_path == built


@pytest.mark.parametrize('value', ['nan', 'inf', '-Infinity'])
def test_non_finite_targets_are_refused_naming_file_and_line(tmp_path, value):
  (tmp_path / 'labels.csv').write_text(f'filename,x,y\na.png,1,2\nb.png,3,{value}\n')
  with pytest.raises(ValueError, match=rf'labels.csv:3: targets must be finite numbers, got '
                                       rf"\['3', '{value}'\]"):
    image_folder.register('non_finite', csv_path=tmp_path / 'labels.csv')


def test_angle_targets_become_unit_vectors(tmp_path):
  # 190° and -170° are one angle; the label is (cos θ, sin θ).
  angles = [0.0, 90.0, 190.0, -170.0, 45.0, 720.0]
  (tmp_path / 'src').mkdir()
  lines = ['filename,angle,split']
  for i, angle in enumerate(angles):
    Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(tmp_path / 'src' / f'{i}.png')
    lines.append(f'{i}.png,{angle},{"test" if i < 4 else "train"}')
  csv_path = tmp_path / 'src' / 'targets.csv'
  csv_path.write_text('\n'.join(lines) + '\n')
  image_folder.register('angles', csv_path=csv_path, image_size=8, targets='angle',
                        flip_negates=(True,))
  info = input_pipeline.get_dataset_info('image_folder/angles', data_dir=tmp_path / 'data')
  assert info.labels.kind == 'circle' and info.labels.names == ('cos', 'sin')
  assert info.labels.flip_negates == (False, True)
  source = input_pipeline.prepare_builder('image_folder/angles',
                                          tmp_path / 'data').as_data_source('test')
  by_file = {int(source[i]['filename'].decode()[0]): source[i]['label'] for i in range(4)}
  # The pipeline passes them unchanged.
  batch = next(input_pipeline.create_iterator(
      'image_folder/angles', 'test', global_batch_size=4, seed=0, train=False,
      data_dir=tmp_path / 'data'))
  np.testing.assert_array_equal(batch['label'][0], source[0]['label'])
  np.testing.assert_allclose(by_file[1], [0.0, 1.0], atol=1e-6)
  np.testing.assert_allclose(by_file[2], by_file[3], atol=1e-6)
  np.testing.assert_allclose(by_file[2], [np.cos(np.deg2rad(190)), np.sin(np.deg2rad(190))],
                             atol=1e-6)


def test_quaternion_targets_are_normalised_with_w_positive():
  labels = image_folder.to_labels([[-2.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]], 'quaternion')
  np.testing.assert_allclose(labels, [[1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]])
  np.testing.assert_allclose(image_folder.to_labels([[3.0, 4.0]], 'unit_vector'), [[0.6, 0.8]])


def test_orientation_targets_need_their_number_of_columns(tmp_path):
  csv_path = _write_folder(tmp_path / 'src', [('0.png', (1.0, 2.0), ())], header='filename,a,b')
  with pytest.raises(ValueError, match='needs 4 target column'):
    image_folder.register('bad', csv_path=csv_path, targets='quaternion')
  with pytest.raises(ValueError, match='targets='):
    image_folder.register('bad', csv_path=csv_path, targets='degrees')
