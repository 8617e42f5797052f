"""Tests of the symmetric solids: symmetry groups, rendering of equivalents, the builder."""

import numpy as np
import pytest

from propel_jax.data.builders import symmetric_solids

_ORDERS = {'tetrahedron': 12, 'cube': 24, 'icosahedron': 60}


@pytest.mark.parametrize('solid', symmetric_solids.SOLID_NAMES)
def test_symmetry_group_is_a_group_of_the_right_order(solid):
  group = symmetric_solids.symmetry_group(solid)
  assert group.shape == (_ORDERS[solid], 4)
  np.testing.assert_allclose(np.linalg.norm(group, axis=1), 1.0, atol=1e-6)
  # Closed under products (q and -q are one rotation).
  products = symmetric_solids.quaternion_multiply(group[:, None], group[None]).reshape(-1, 4)
  overlap = np.abs(products @ group.T).max(axis=1)
  np.testing.assert_allclose(overlap, 1.0, atol=1e-5)


@pytest.mark.parametrize('solid', symmetric_solids.SOLID_NAMES)
def test_equivalent_rotations_render_the_same_image(solid):
  rng = np.random.default_rng(0)
  label = symmetric_solids.random_quaternions(rng, 1)
  equivalents = symmetric_solids.equivalent_quaternions(label, solid, _ORDERS[solid])[0]
  np.testing.assert_allclose(equivalents[0], label[0], atol=1e-6)
  # Every 5th equivalent keeps the test fast.
  images = symmetric_solids.render_solids(solid, equivalents[::5], image_size=16)
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
