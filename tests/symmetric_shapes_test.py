"""Tests of the symmetric shapes renderer and its TFDS builder."""

import math
import time

import numpy as np
import pytest

from propel_jax.data import input_pipeline
from propel_jax.data.builders import symmetric_shapes

# Float32 rounding of the rotated pixel coordinates moves an edge by ~1e-7 of
# the image, i.e. ~1e-5 of the one-pixel anti-aliasing ramp.
_ATOL = 1e-4


def _nuisances(rng):
  return dict(scale=rng.uniform(0.75, 0.95), offset=tuple(rng.uniform(-0.1, 0.1, 2)),
              brightness=rng.uniform(0.6, 1.0))


@pytest.mark.parametrize('shape', symmetric_shapes.SHAPE_NAMES)
def test_equivalent_rotations_render_the_same_image(shape):
  k = symmetric_shapes.SHAPES[shape][0]
  rng = np.random.default_rng(k)
  for angle in rng.uniform(0.0, 360.0, 3):
    kwargs = _nuisances(rng)
    image = symmetric_shapes.render_shape(shape, angle, image_size=32, **kwargs)
    assert image.max() > 0.5  # the shape is visible
    for j in range(1, k):
      other = symmetric_shapes.render_shape(shape, angle + 360.0 * j / k, image_size=32,
                                            **kwargs)
      np.testing.assert_allclose(image, other, atol=_ATOL)


@pytest.mark.parametrize('shape', symmetric_shapes.SHAPE_NAMES)
def test_other_rotations_render_different_images(shape):
  k = symmetric_shapes.SHAPES[shape][0]
  rng = np.random.default_rng(10 + k)
  period = 360.0 / k
  for angle in rng.uniform(0.0, 360.0, 3):
    kwargs = _nuisances(rng)
    image = symmetric_shapes.render_shape(shape, angle, image_size=32, **kwargs)
    # Half a period away is the most different; a tenth still differs visibly.
    for fraction in (0.1, 0.5):
      other = symmetric_shapes.render_shape(shape, angle + fraction * period,
                                            image_size=32, **kwargs)
      assert np.abs(image - other).max() > 0.3, (angle, fraction)


@pytest.mark.parametrize('shape', symmetric_shapes.SHAPE_NAMES)
def test_mirror_negates_the_cosine(shape):
  # Mirroring left-right maps θ to π − θ (with the x offset negated): the
  # flip rule (True, False) of the label spec.
  rng = np.random.default_rng(20)
  angle = rng.uniform(0.0, 360.0)
  kwargs = _nuisances(rng)
  mirrored = symmetric_shapes.render_shape(shape, angle, image_size=32, **kwargs)[:, ::-1]
  kwargs['offset'] = (-kwargs['offset'][0], kwargs['offset'][1])
  other = symmetric_shapes.render_shape(shape, 180.0 - angle, image_size=32, **kwargs)
  np.testing.assert_allclose(mirrored, other, atol=_ATOL)


def test_equivalent_labels_are_the_k_rotations_repeated():
  angles = np.array([0.3, 1.0, 2.0])
  order = np.array([1, 2, 3])
  equivalents = symmetric_shapes.equivalent_angles(angles, order, 6)
  assert equivalents.shape == (3, 6)
  np.testing.assert_allclose(equivalents[:, 0], angles)
  np.testing.assert_allclose(equivalents[0], 0.3)
  np.testing.assert_allclose(equivalents[1], 1.0 + np.pi * np.array([0, 1, 0, 1, 0, 1]))
  np.testing.assert_allclose(equivalents[2],
                             2.0 + 2 * np.pi / 3 * np.array([0, 1, 2, 0, 1, 2]))
  with pytest.raises(ValueError, match='multiple'):
    symmetric_shapes.equivalent_angles(angles, np.array([4, 4, 4]), 6)


def test_generated_labels_match_the_images():
  rng = np.random.default_rng(0)
  images, labels, equivalents, order = symmetric_shapes.generate(
      rng, 64, shapes=symmetric_shapes.SHAPE_NAMES, image_size=16)
  assert images.shape == (64, 16, 16, 1) and images.dtype == np.uint8
  assert equivalents.shape == (64, 60, 2)  # lcm(1, ..., 6)
  np.testing.assert_allclose(np.linalg.norm(labels, axis=-1), 1.0, atol=1e-6)
  np.testing.assert_allclose(equivalents[:, 0], labels)
  # Each example's rows hold exactly k distinct unit vectors, 360°/k apart.
  for row, k in zip(equivalents, order):
    angles = np.sort(np.round(np.rad2deg(np.arctan2(row[:, 1], row[:, 0])) % 360, 2))
    distinct = np.unique(angles)
    assert len(distinct) == k
    if k > 1:
      np.testing.assert_allclose(np.diff(distinct), 360.0 / k, atol=0.02)


def test_builder_and_pipeline_pass_unit_vectors_through(data_dir):
  start = time.perf_counter()
  builder = symmetric_shapes.build(data_dir, 'k3_small')
  seconds = time.perf_counter() - start
  assert seconds < 60
  assert builder.info.splits['train'].num_examples == 2048
  info = input_pipeline.get_dataset_info('symmetric_shapes/k3_small', data_dir=data_dir)
  assert info.labels.kind == 'circle' and info.num_equivalents == 3
  batch = next(input_pipeline.create_iterator(
      'symmetric_shapes/k3_small', 'test', global_batch_size=16, seed=0, train=False,
      data_dir=data_dir))
  assert batch['image'].shape == (16, 32, 32, 1)
  # Unchanged by the pipeline: unit vectors with both signs.
  np.testing.assert_allclose(np.linalg.norm(batch['equivalent_labels'], axis=-1), 1.0,
                             atol=1e-6)
  assert batch['label'].min() < -0.5
  record = builder.as_data_source('test')[0]
  np.testing.assert_array_equal(batch['label'][0], record['label'])
  assert int(record['symmetry_order']) == 3
  # Flipped training batches keep the labels consistent (unit vectors).
  train = next(input_pipeline.create_iterator(
      'symmetric_shapes/k3_small', 'train', global_batch_size=16, seed=0, train=True,
      data_dir=data_dir))
  np.testing.assert_allclose(np.linalg.norm(train['label'], axis=-1), 1.0, atol=1e-6)


def test_render_shape_rejects_unknown_shapes():
  with pytest.raises(ValueError, match='Unknown shape'):
    symmetric_shapes.render_shape('circle', 0.0)
  assert math.isclose(symmetric_shapes.render_shape('bar', 0.0).max(), 1.0)
