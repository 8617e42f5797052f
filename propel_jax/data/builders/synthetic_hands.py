"""Synthetic hand orientation: the paper's ambiguity, built in seconds.

A flat hand (a palm and five fingers, as signed-distance shapes in the hand's
own plane) is rotated by Rx(elevation) Ry(azimuth) and rendered as a grayscale
image. Under orthographic projection a planar point (x, y, 0) lands at

    (x cos φ, y cos ψ + x sin φ sin ψ),

which is the same for (φ, ψ) and (−φ, −ψ); with the light along the view axis
the shading (the normal's z-component cos φ cos ψ) is the same too. So the
`ambiguous` configs render *identical* images for the two orientations and the
label is truly bimodal. The `unambiguous` configs break the symmetry twice:
a perspective camera (the nearer half of the hand looks bigger) and a light
from above (brightness cos φ cos(ψ + 35°) differs between ψ and −ψ).

Labels are (azimuth φ, elevation ψ) in degrees, uniform in the disc of radius
45° (the paper's range). Nuisances make it more than a lookup table: in-plane
scale and translation, finger spread, left or right hand, pixel noise. A left
hand is the mirror image of a right hand, so mirroring an image maps it to a
valid example with the azimuth negated (the flip augmentation of the input
pipeline relies on this).

Rendering is vectorised NumPy: a full config (10k train / 3k test, 64×64)
builds in 10-20 s on two (shared) CPU cores, about half of it rendering.
`render_hand` renders one noise-free image from a label so that tests can
check the symmetry exactly.

Usage:
  from propel_jax.data import builders  # registers the builders with TFDS
  synthetic_hands.build(data_dir, 'ambiguous_small')
  # or: python -m experiments.build_dataset --dataset=synthetic_hands/ambiguous
"""

import dataclasses
import math
import os

import numpy as np
import tensorflow_datasets as tfds

from propel_jax.data import labels as labels_lib
from propel_jax.data.builders import locked_build

# Rendering precision: float32 halves the build time; the symmetries below
# hold exactly in any precision.
_DTYPE = np.float32

# Hand geometry in the hand's plane (units: image half-width at scale 1).
# Palm: rounded box (centre, half-size, corner radius).
_PALM_CENTRE = (0.0, -0.2)
_PALM_HALF_SIZE = (0.26, 0.28)
_PALM_CORNER = 0.08
# Fingers, index to little, then the thumb: base, length, radius and the tilt
# from vertical (degrees, towards +x) at full spread; the thumb's tilt is
# _THUMB_TILT_DEG plus spread times its own entry.
_FINGER_BASE = np.array([[-0.2, 0.08], [-0.067, 0.08], [0.067, 0.08],
                         [0.2, 0.08], [0.3, -0.28]], np.float32)
_FINGER_LENGTH = np.array([0.42, 0.5, 0.46, 0.36, 0.38], np.float32)
_FINGER_RADIUS = np.array([0.065, 0.065, 0.065, 0.06, 0.08], np.float32)
_FINGER_SPREAD_DEG = np.array([-15.0, -5.0, 5.0, 15.0, 25.0], np.float32)
_THUMB_TILT_DEG = 40.0

# Camera distance for the perspective camera of the unambiguous configs
# (in the same units; the hand is about 1.3 long), and the elevation of its
# light above the view axis.
_CAMERA_DISTANCE = 3.0
_LIGHT_ELEVATION_DEG = 35.0
# Shading: ambient + diffuse * cos(angle between normal and light).
_AMBIENT, _DIFFUSE = 0.25, 0.75

MAX_RADIUS_DEG = 45.0
LABEL_SPEC = labels_lib.LabelSpec(
    names=('azimuth', 'elevation'),
    low=(-MAX_RADIUS_DEG, -MAX_RADIUS_DEG),
    high=(MAX_RADIUS_DEG, MAX_RADIUS_DEG),
    # Mirroring swaps left and right hand and negates the azimuth (see above).
    flip_negates=(True, False))


def _pixel_centres(image_size):
  """Pixel-centre coordinates in (-1, 1), x to the right, y up.

  Symmetric about 0 exactly (2j + 1 - W is an exact small integer), so that a
  mirrored image is an exact re-rendering.

  Returns:
    (u [W], v [H]) arrays.
  """
  j = np.arange(image_size, dtype=_DTYPE)
  u = (2.0 * j + 1.0 - image_size) / image_size
  return u, -u


def _sdf_rounded_box(x, y, centre, half_size, corner):
  qx = np.abs(x - centre[0]) - (half_size[0] - corner)
  qy = np.abs(y - centre[1]) - (half_size[1] - corner)
  mx, my = np.maximum(qx, 0.0), np.maximum(qy, 0.0)
  outside = np.sqrt(mx * mx + my * my)
  inside = np.minimum(np.maximum(qx, qy), 0.0)
  return outside + inside - corner


def _sdf_capsule(x, y, ax, ay, bx, by, radius):
  """Signed distance to the segment a-b thickened by radius (broadcasting)."""
  px, py = x - ax, y - ay
  dx, dy = bx - ax, by - ay
  h = np.clip((px * dx + py * dy) / (dx * dx + dy * dy), 0.0, 1.0)
  ex, ey = px - h * dx, py - h * dy
  return np.sqrt(ex * ex + ey * ey) - radius


def _hand_sdf(x, y, finger_spread):
  """Signed distance to a right hand in its own plane.

  Args:
    x, y: [N, H, W] plane coordinates.
    finger_spread: [N] in [0, 1].

  Returns:
    [N, H, W] signed distance (negative inside).
  """
  sdf = _sdf_rounded_box(x, y, _PALM_CENTRE, _PALM_HALF_SIZE, _PALM_CORNER)
  tilt = np.deg2rad(finger_spread[:, None] * _FINGER_SPREAD_DEG)  # [N, 5]
  tilt[:, -1] += math.radians(_THUMB_TILT_DEG)
  tip_x = _FINGER_BASE[:, 0] + _FINGER_LENGTH * np.sin(tilt)
  tip_y = _FINGER_BASE[:, 1] + _FINGER_LENGTH * np.cos(tilt)
  for k in range(len(_FINGER_LENGTH)):
    finger = _sdf_capsule(x, y, _FINGER_BASE[k, 0], _FINGER_BASE[k, 1],
                          tip_x[:, k, None, None], tip_y[:, k, None, None],
                          _FINGER_RADIUS[k])
    sdf = np.minimum(sdf, finger)
  return sdf


def render_hands(azimuth_deg, elevation_deg, *, ambiguous, image_size=64,
                 scale=0.85, offset=(0.0, 0.0), finger_spread=0.5,
                 left_hand=False):
  """Renders a batch of noise-free hand images (vectorised).

  Args:
    azimuth_deg: [N] rotation about the vertical axis (degrees).
    elevation_deg: [N] rotation about the horizontal axis (degrees).
    ambiguous: True for the orthographic camera with the light on the view
      axis (identical images for (φ, ψ) and (−φ, −ψ)); False for the
      perspective camera with a light from above.
    image_size: output height and width.
    scale: [N] or scalar, size of the hand in the image.
    offset: [N, 2] or [2], translation of the hand in the image (x, y), in
      units of the image half-width.
    finger_spread: [N] or scalar in [0, 1].
    left_hand: [N] or scalar bool; a left hand is a mirrored right hand.

  Returns:
    [N, image_size, image_size] float32 intensities in [0, 1].
  """
  phi = np.deg2rad(np.atleast_1d(np.asarray(azimuth_deg, _DTYPE)))
  psi = np.deg2rad(np.atleast_1d(np.asarray(elevation_deg, _DTYPE)))
  if phi.shape != psi.shape or phi.ndim != 1:
    raise ValueError(f'azimuth_deg {phi.shape} and elevation_deg {psi.shape} '
                     'must be scalars or [N] arrays of the same shape.')
  n = phi.shape[0]
  scale = np.broadcast_to(np.asarray(scale, _DTYPE), (n,))
  offset = np.broadcast_to(np.asarray(offset, _DTYPE), (n, 2))
  finger_spread = np.broadcast_to(np.asarray(finger_spread, _DTYPE), (n,))
  left_hand = np.broadcast_to(np.asarray(left_hand, bool), (n,))

  u, v = _pixel_centres(image_size)
  # Image plane -> camera coordinates at depth 0 (undo scale and offset).
  big_x = (u[None, None, :] - offset[:, 0, None, None]) / scale[:, None, None]
  big_y = (v[None, :, None] - offset[:, 1, None, None]) / scale[:, None, None]
  big_x, big_y = np.broadcast_arrays(big_x, big_y)
  sin_phi, cos_phi = np.sin(phi)[:, None, None], np.cos(phi)[:, None, None]
  sin_psi, cos_psi = np.sin(psi)[:, None, None], np.cos(psi)[:, None, None]
  if ambiguous:
    # Invert (x, y) -> (x cos φ, y cos ψ + x sin φ sin ψ). Written so that
    # (−φ, −ψ) gives bit-identical plane coordinates: sin φ sin ψ is the same
    # product of the same two magnitudes.
    x = big_x / cos_phi
    y = (big_y - x * (sin_phi * sin_psi)) / cos_psi
    normal_dot_light = cos_phi * cos_psi
  else:
    # Perspective camera at (0, 0, D) looking down -z: the ray through (X, Y)
    # is (X (D - Z) / D, Y (D - Z) / D, Z). Intersect it with the hand's plane
    # n . p = 0, n = R (0, 0, 1), then read the plane coordinates along
    # e1 = R (1, 0, 0), e2 = R (0, 1, 0), with R = Rx(ψ) Ry(φ).
    n_x, n_y, n_z = sin_phi, -cos_phi * sin_psi, cos_phi * cos_psi
    d = _CAMERA_DISTANCE
    a = (n_x * big_x + n_y * big_y) / d
    z = a * d / (a - n_z)
    p_x, p_y = big_x * (d - z) / d, big_y * (d - z) / d
    x = cos_phi * p_x + sin_phi * sin_psi * p_y - sin_phi * cos_psi * z
    y = cos_psi * p_y + sin_psi * z
    light = math.radians(_LIGHT_ELEVATION_DEG)
    normal_dot_light = np.maximum(
        n_y * math.sin(light) + n_z * math.cos(light), 0.0)
  x = np.where(left_hand[:, None, None], -x, x)
  sdf = _hand_sdf(x, y, finger_spread)
  # Anti-aliased coverage: a one-pixel ramp across the edge (pixel size in
  # plane units is about 2 / (image_size * scale)).
  pixel = 2.0 / (image_size * scale[:, None, None])
  coverage = np.clip(0.5 - sdf / pixel, 0.0, 1.0)
  return coverage * (_AMBIENT + _DIFFUSE * normal_dot_light)


def render_hand(azimuth_deg, elevation_deg, *, ambiguous, image_size=64,
                scale=0.85, offset=(0.0, 0.0), finger_spread=0.5,
                left_hand=False):
  """Renders one noise-free hand image from its label.

  Args:
    azimuth_deg, elevation_deg: the label (degrees).
    ambiguous, image_size, scale, offset, finger_spread, left_hand: see
      `render_hands` (scalars here; offset is (x, y)).

  Returns:
    [image_size, image_size, 1] float32 in [0, 1].
  """
  image = render_hands(
      [azimuth_deg], [elevation_deg], ambiguous=ambiguous,
      image_size=image_size, scale=[scale], offset=[offset],
      finger_spread=[finger_spread], left_hand=[left_hand])[0]
  return image[..., None]


def equivalent_labels(labels_deg, ambiguous):
  """All labels that render the same image distribution.

  Args:
    labels_deg: [N, 2] (azimuth, elevation).
    ambiguous: whether (φ, ψ) and (−φ, −ψ) are indistinguishable.

  Returns:
    [N, K, 2] with row 0 the label itself; K = 2 if ambiguous else 1.
  """
  labels_deg = np.asarray(labels_deg)
  if not ambiguous:
    return labels_deg[:, None, :]
  return np.stack([labels_deg, -labels_deg], axis=1)


def sample_labels(rng, n):
  """[n, 2] labels in degrees, uniform in the disc of radius 45°."""
  radius = MAX_RADIUS_DEG * np.sqrt(rng.uniform(size=n))
  angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
  return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def generate(rng, n, *, ambiguous, image_size, noise_std=0.03, chunk=512):
  """Samples n labelled examples with random nuisances (vectorised).

  Args:
    rng: np.random.Generator; the output is a deterministic function of it.
    n: number of examples.
    ambiguous: see `render_hands`.
    image_size: height and width.
    noise_std: std of the Gaussian pixel noise on [0, 1] intensities.
    chunk: examples rendered at once (bounds memory: chunk * H * W * 8 B per
      temporary).

  Returns:
    images [n, H, W, 1] uint8, labels [n, 2] float32 (degrees),
    equivalent_labels [n, K, 2] float32, left_hand [n] bool.
  """
  labels = sample_labels(rng, n)
  scale = rng.uniform(0.75, 0.95, size=n)
  offset = rng.uniform(-0.1, 0.1, size=(n, 2))
  spread = rng.uniform(0.0, 1.0, size=n)
  left_hand = rng.uniform(size=n) < 0.5
  images = np.empty((n, image_size, image_size, 1), np.uint8)
  for start in range(0, n, chunk):
    sl = slice(start, min(start + chunk, n))
    clean = render_hands(
        labels[sl, 0], labels[sl, 1], ambiguous=ambiguous,
        image_size=image_size, scale=scale[sl], offset=offset[sl],
        finger_spread=spread[sl], left_hand=left_hand[sl])
    noisy = clean + noise_std * rng.standard_normal(clean.shape, _DTYPE)
    images[sl, ..., 0] = np.round(np.clip(noisy, 0.0, 1.0) * 255.0)
  return (images, labels.astype(np.float32),
          equivalent_labels(labels, ambiguous).astype(np.float32), left_hand)


@dataclasses.dataclass(eq=False)
class SyntheticHandsConfig(tfds.core.BuilderConfig):
  """A synthetic hands variant.

  Attributes:
    ambiguous: identical images for (φ, ψ) and (−φ, −ψ).
    image_size: height and width of the stored images.
    num_train, num_test: split sizes.
    seed: base seed; each split draws from its own stream.
  """
  ambiguous: bool = True
  image_size: int = 64
  num_train: int = 10_000
  num_test: int = 3_000
  seed: int = 0


def _config(name, ambiguous, image_size, num_train, num_test, what):
  return SyntheticHandsConfig(
      name=name, ambiguous=ambiguous, image_size=image_size,
      num_train=num_train, num_test=num_test,
      description=f'{what}; {image_size}x{image_size} grayscale, '
                  f'{num_train} train / {num_test} test.')


_AMBIGUOUS = '(φ, ψ) and (−φ, −ψ) render identically (bimodal label)'
_UNAMBIGUOUS = 'perspective camera and a light from above (one mode)'


class SyntheticHands(tfds.core.GeneratorBasedBuilder):
  """Synthetic flat-hand orientation (azimuth, elevation) dataset."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      _config('ambiguous', True, 64, 10_000, 3_000, _AMBIGUOUS),
      _config('unambiguous', False, 64, 10_000, 3_000, _UNAMBIGUOUS),
      _config('ambiguous_small', True, 32, 512, 256, _AMBIGUOUS),
      _config('unambiguous_small', False, 32, 512, 256, _UNAMBIGUOUS),
      # The paper's input size.
      _config('ambiguous_128', True, 128, 10_000, 3_000, _AMBIGUOUS),
      _config('unambiguous_128', False, 128, 10_000, 3_000, _UNAMBIGUOUS),
  ]
  label_spec = LABEL_SPEC

  def _info(self):
    size = self.builder_config.image_size
    k = 2 if self.builder_config.ambiguous else 1
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            # Raw bytes: writing and reading are a copy (as an integer list,
            # TFDS's default, they cost ~0.5 ms per image each way;
            # docs/benchmarks.md#input-pipeline).
            'image': tfds.features.Tensor(
                shape=(size, size, 1), dtype=np.uint8,
                encoding=tfds.features.Encoding.BYTES),
            'label': tfds.features.Tensor(shape=(2,), dtype=np.float32),
            'equivalent_labels': tfds.features.Tensor(shape=(k, 2),
                                                      dtype=np.float32),
            'left_hand': tfds.features.Tensor(shape=(), dtype=np.bool_),
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    return {
        'train': self._generate_examples(cfg.num_train, 0),
        'test': self._generate_examples(cfg.num_test, 1),
    }

  def _generate_examples(self, num_examples, split_id):
    cfg = self.builder_config
    rng = np.random.default_rng([cfg.seed, split_id])
    images, labels, equivalents, left_hand = generate(
        rng, num_examples, ambiguous=cfg.ambiguous,
        image_size=cfg.image_size)
    for i in range(num_examples):
      yield i, {'image': images[i], 'label': labels[i],
                'equivalent_labels': equivalents[i],
                'left_hand': left_hand[i]}


def build(data_dir, config_name='ambiguous_small'):
  """Builds a config as array_record into data_dir (for tests and demos).

  Args:
    data_dir: TFDS data directory.
    config_name: one of the `SyntheticHands.BUILDER_CONFIGS` names.

  Returns:
    The prepared `tfds.core.DatasetBuilder`.
  """
  return locked_build.prepare(f'synthetic_hands/{config_name}', os.fspath(data_dir))
