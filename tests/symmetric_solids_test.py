"""Tests of the symmetric solids: symmetry groups, rendering of equivalents, the builder."""

import math
import os

import numpy as np
import pytest

from propel_jax.data.builders import symmetric_solids

# The cone's and the cylinder's continuous symmetries, sampled every degree.
_ORDERS = {'tetrahedron': 12, 'cube': 24, 'icosahedron': 60, 'cone': 360, 'cylinder': 720}


@pytest.mark.parametrize('solid', symmetric_solids.SOLID_NAMES)
def test_symmetry_group_is_a_group_of_the_right_order(solid):
  group = symmetric_solids.symmetry_group(solid)
  assert group.shape == (_ORDERS[solid], 4)
  np.testing.assert_allclose(np.linalg.norm(group, axis=1), 1.0, atol=1e-6)
  # Closed under products (q and -q are one rotation).
  # (For the 360 and 720 sampled rotations of the cone and cylinder, the
  # products of every 13th with all.)
  left = group if len(group) <= 60 else group[::13]
  products = symmetric_solids.quaternion_multiply(left[:, None], group[None]).reshape(-1, 4)
  overlap = np.abs(products @ group.T).max(axis=1)
  np.testing.assert_allclose(overlap, 1.0, atol=1e-5)


@pytest.mark.parametrize('solid', symmetric_solids.SOLID_NAMES)
def test_equivalent_rotations_render_the_same_image(solid):
  rng = np.random.default_rng(0)
  label = symmetric_solids.random_quaternions(rng, 1)
  equivalents = symmetric_solids.equivalent_quaternions(label, solid, _ORDERS[solid])[0]
  np.testing.assert_allclose(equivalents[0], label[0], atol=1e-6)
  # Every 5th (cone, cylinder: 23rd) equivalent keeps the test fast.
  step = 5 if _ORDERS[solid] < 100 else 23
  images = symmetric_solids.render_solids(solid, equivalents[::step], image_size=16)
  assert images[0].max() > 0.5
  difference = np.abs(images - images[0])
  # Float rounding may flip a sample that lies on an edge: at most one of the
  # 16 samples of a pixel, in a handful of pixels.
  assert difference.max() <= 1.0 / 16 + 1e-6
  assert difference.mean() < 1e-3
  others = symmetric_solids.render_solids(
      solid, symmetric_solids.random_quaternions(rng, 3), image_size=16)
  assert np.all(np.abs(others - images[0]).max(axis=(1, 2)) > 0.2)


def test_builder_and_pipeline_pass_quaternions_through(tmp_path):
  config = symmetric_solids.SymmetricSolidsConfig(
      name='cube_tiny', solids=('cube',), image_size=16, num_train=16, num_test=8)
  builder = symmetric_solids.SymmetricSolids(config=config, data_dir=str(tmp_path),
                                             file_format='array_record')
  builder.download_and_prepare()
  record = builder.as_data_source('test')[0]
  assert record['image'].shape == (16, 16, 1)
  assert record['equivalent_labels'].shape == (24, 4)
  np.testing.assert_allclose(np.linalg.norm(record['equivalent_labels'], axis=-1), 1.0,
                             atol=1e-6)
  # Kind 'rotation': the pipeline's label mapping leaves quaternions unchanged.
  assert symmetric_solids.LABEL_SPEC.to_unit(record['label']) is record['label']


def test_curved_solids_have_the_expected_silhouettes():
  # Seen along its axis, the cylinder is a disc of radius ρ (area πρ² of the
  # image's 2 × 2 square); from the side, a 2h × 2ρ rectangle; the cone from
  # below a disc of its base radius, from the side a triangle of base 2ρ and
  # height h + b. Pixels on the outline count as covered, which adds on
  # average half a pixel (2/size wide) along the perimeter.
  size = 256
  band = 1.0 / size
  # The axis turned to -y, then 20° in the image plane (so that no edge runs along pixels).
  side = symmetric_solids.quaternion_multiply(
      [math.cos(math.pi / 18), 0.0, 0.0, math.sin(math.pi / 18)],
      [math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0])[None]
  for solid, (top, bottom, radius) in symmetric_solids.CURVED.items():
    end_on = symmetric_solids.render_solids(solid, np.array([[1.0, 0, 0, 0]]), image_size=size)
    sideways = symmetric_solids.render_solids(solid, side, image_size=size)
    area = lambda image: (image > 0).mean() * 4.0  # Share of samples hit, in image units².
    np.testing.assert_allclose(area(end_on[0]), math.pi * radius**2 + band * 2 * math.pi * radius,
                               rtol=0.01)
    height = top + bottom
    if solid == 'cylinder':
      expected = 2 * radius * height + band * 2 * (2 * radius + height)
    else:
      expected = radius * height + band * (2 * radius + 2 * math.hypot(radius, height))
    np.testing.assert_allclose(area(sideways[0]), expected, rtol=0.01)


@pytest.mark.parametrize('render_elements', [None, 1])
def test_generated_images_match_the_reference_renders(monkeypatch, render_elements):
  # tests/data/symmetric_solids_reference.npz: generate()'s images rendered in
  # one batch per chunk, before the renderer split batches by memory; seeds as
  # a config's test split. render_elements=1 renders one image at a time.
  if render_elements is not None:
    monkeypatch.setattr(symmetric_solids, '_RENDER_ELEMENTS', render_elements)
  with np.load(os.path.join(os.path.dirname(__file__), 'data',
                            'symmetric_solids_reference.npz')) as data:
    reference = {k: data[k] for k in data.files}
  for solid in symmetric_solids.SOLID_NAMES:
    for size, count in ((32, 6), (64, 2)):
      images, labels, _, _ = symmetric_solids.generate(
          np.random.default_rng([0, 1]), count, solids=(solid,), image_size=size)
      np.testing.assert_array_equal(labels, reference[f'{solid}/{size}/labels'])
      # Bit for bit (within one grey level would allow float rounding).
      np.testing.assert_array_equal(images, reference[f'{solid}/{size}'], err_msg=solid)
  images, _, _, _ = symmetric_solids.generate(
      np.random.default_rng([0, 0]), 8, solids=symmetric_solids.PLATONIC_NAMES, image_size=32)
  np.testing.assert_array_equal(images, reference['mixed/32'])
