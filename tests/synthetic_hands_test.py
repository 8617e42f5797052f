"""Tests of the synthetic hands renderer and its TFDS builder."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from propel_jax.data.builders import synthetic_hands


def _random_nuisances(rng):
  return dict(scale=rng.uniform(0.75, 0.95), offset=tuple(rng.uniform(-0.1, 0.1, 2)),
              finger_spread=rng.uniform(), left_hand=bool(rng.integers(2)))


def test_ambiguous_renders_opposite_orientations_identically():
  rng = np.random.default_rng(0)
  for azimuth, elevation in synthetic_hands.sample_labels(rng, 20):
    kwargs = _random_nuisances(rng)
    image = synthetic_hands.render_hand(azimuth, elevation, ambiguous=True, **kwargs)
    opposite = synthetic_hands.render_hand(-azimuth, -elevation, ambiguous=True, **kwargs)
    assert image.max() > 0.3  # a hand is visible
    np.testing.assert_array_equal(image, opposite)


def test_unambiguous_renders_opposite_orientations_differently():
  rng = np.random.default_rng(1)
  # Opposite orientations at least 10° apart must differ visibly (a pixel that
  # changes by more than 0.05 on average over the hand).
  labels = synthetic_hands.sample_labels(rng, 40)
  labels = labels[np.linalg.norm(labels, axis=1) > 5.0][:20]
  for azimuth, elevation in labels:
    kwargs = _random_nuisances(rng)
    image = synthetic_hands.render_hand(azimuth, elevation, ambiguous=False, **kwargs)
    opposite = synthetic_hands.render_hand(-azimuth, -elevation, ambiguous=False, **kwargs)
    hand = (image > 0) | (opposite > 0)
    assert np.abs(image - opposite)[hand].mean() > 0.05, (azimuth, elevation)


@pytest.mark.parametrize('ambiguous', [True, False])
def test_mirror_is_the_other_hand_at_negated_azimuth(ambiguous):
  rng = np.random.default_rng(2)
  for azimuth, elevation in synthetic_hands.sample_labels(rng, 10):
    kwargs = _random_nuisances(rng)
    mirrored = synthetic_hands.render_hand(azimuth, elevation, ambiguous=ambiguous,
                                           **kwargs)[:, ::-1]
    kwargs['offset'] = (-kwargs['offset'][0], kwargs['offset'][1])
    kwargs['left_hand'] = not kwargs['left_hand']
    other = synthetic_hands.render_hand(-azimuth, elevation, ambiguous=ambiguous, **kwargs)
    np.testing.assert_allclose(mirrored, other, atol=1e-5)


def _moments(image):
  """Area, centroid [2] and central second moments [2, 2] in image units (x right, y up)."""
  size = image.shape[0]
  u = (2.0 * np.arange(size) + 1.0 - size) / size
  xx, yy = np.meshgrid(u, -u)
  w = image[..., 0].astype(np.float64)
  w = w / w.max()  # shading is uniform over the hand: coverage in [0, 1]
  area = w.sum() * (2.0 / size) ** 2
  pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
  mean = (w.ravel()[:, None] * pts).sum(0) / w.sum()
  centred = pts - mean
  second = (w.ravel()[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0) / w.sum()
  return area, mean, second


@pytest.mark.parametrize('azimuth,elevation', [(30.0, 0.0), (0.0, -35.0), (25.0, 30.0),
                                               (-40.0, 15.0)])
def test_orthographic_silhouette_follows_the_projection_formula(azimuth, elevation):
  # Independent of the renderer's inverse mapping: the silhouette of the
  # rotated plane is the frontal one pushed through the forward map
  # A = [[cos φ, 0], [sin φ sin ψ, cos ψ]] (x right, y up), so the area scales by
  # det A, the centroid maps by A and the second moments by A M Aᵀ.
  kwargs = dict(ambiguous=True, image_size=128, scale=0.7, finger_spread=0.7)
  area0, mean0, second0 = _moments(synthetic_hands.render_hand(0.0, 0.0, **kwargs))
  area, mean, second = _moments(synthetic_hands.render_hand(azimuth, elevation, **kwargs))
  phi, psi = np.deg2rad(azimuth), np.deg2rad(elevation)
  a = np.array([[np.cos(phi), 0.0], [np.sin(phi) * np.sin(psi), np.cos(psi)]])
  np.testing.assert_allclose(area / area0, np.linalg.det(a), rtol=0.01)
  np.testing.assert_allclose(mean, a @ mean0, atol=0.005)
  np.testing.assert_allclose(second, a @ second0 @ a.T, rtol=0.02, atol=2e-4)


def test_equivalent_labels():
  labels = np.array([[10.0, -20.0], [0.0, 5.0]])
  np.testing.assert_array_equal(synthetic_hands.equivalent_labels(labels, True),
                                [[[10.0, -20.0], [-10.0, 20.0]], [[0.0, 5.0], [-0.0, -5.0]]])
  np.testing.assert_array_equal(synthetic_hands.equivalent_labels(labels, False),
                                labels[:, None])


def test_generate_is_deterministic_and_labels_lie_in_the_disc():
  first = synthetic_hands.generate(np.random.default_rng(7), 64, ambiguous=True, image_size=32,
                                   chunk=20)
  again = synthetic_hands.generate(np.random.default_rng(7), 64, ambiguous=True, image_size=32)
  other = synthetic_hands.generate(np.random.default_rng(8), 64, ambiguous=True, image_size=32)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(first[0], other[0])
  images, labels, equivalents, left_hand = first
  assert images.shape == (64, 32, 32, 1) and images.dtype == np.uint8
  assert np.all(np.linalg.norm(labels, axis=1) <= synthetic_hands.MAX_RADIUS_DEG)
  np.testing.assert_array_equal(equivalents[:, 0], labels)
  np.testing.assert_array_equal(equivalents[:, 1], -labels)
  assert 0 < left_hand.sum() < 64


def test_generated_images_are_noisy_renderings_of_their_labels():
  rng = np.random.default_rng(3)
  images, labels, _, _ = synthetic_hands.generate(rng, 8, ambiguous=False, image_size=32,
                                                  noise_std=0.0)
  # Nuisances are drawn from the same stream: replay them to re-render.
  replay = np.random.default_rng(3)
  synthetic_hands.sample_labels(replay, 8)
  scale = replay.uniform(0.75, 0.95, size=8)
  offset = replay.uniform(-0.1, 0.1, size=(8, 2))
  spread = replay.uniform(0.0, 1.0, size=8)
  left_hand = replay.uniform(size=8) < 0.5
  clean = synthetic_hands.render_hands(labels[:, 0], labels[:, 1], ambiguous=False,
                                       image_size=32, scale=scale, offset=offset,
                                       finger_spread=spread, left_hand=left_hand)
  np.testing.assert_allclose(images[..., 0] / 255.0, clean, atol=0.5 / 255 + 1e-6)


def test_builder_writes_array_record_splits(tmp_path):
  builder = synthetic_hands.build(tmp_path, 'unambiguous_small')
  assert builder.info.splits['train'].num_examples == 512
  assert builder.info.splits['test'].num_examples == 256
  source = builder.as_data_source('test')
  example = source[3]
  assert example['image'].shape == (32, 32, 1) and example['image'].dtype == np.uint8
  assert example['label'].shape == (2,)
  assert example['equivalent_labels'].shape == (1, 2)
  np.testing.assert_array_equal(example['equivalent_labels'][0], example['label'])
  # Train and test are drawn from different streams.
  train_labels = np.stack([builder.as_data_source('train')[i]['label'] for i in range(256)])
  test_labels = np.stack([source[i]['label'] for i in range(256)])
  assert not np.isin(test_labels[:, 0], train_labels[:, 0]).any()
  # Rebuilding in another directory gives the same data.
  again = tfds.builder('synthetic_hands/unambiguous_small', data_dir=tmp_path / 'again',
                       file_format='array_record')
  again.download_and_prepare()
  np.testing.assert_array_equal(again.as_data_source('test')[3]['image'], example['image'])


def test_render_hand_rejects_mismatched_labels():
  with pytest.raises(ValueError, match='same shape'):
    synthetic_hands.render_hands([1.0, 2.0], [1.0], ambiguous=True)
