"""Flat shapes with k-fold rotational symmetry, rotated in the image plane.

Each image shows one flat, uniformly bright shape rotated by an angle θ drawn
uniformly over the full turn. A shape with k-fold rotational symmetry looks
the same at θ and θ + 2πj/k (j = 1..k-1), so its label has exactly k
equivalent readings:

    arrow (k = 1), bar (2), triangle (3), square (4), pentagon (5), hexagon (6).

The shapes are convex polygons (the arrow is the union of two) given by
their edges' unit normals n_e and offsets a_e; the signed distance used for
anti-aliasing is max_e(n_eᵀq − a_e). For a regular k-gon the set of normals
is invariant under rotation by 2π/k, so the rendering is too, up to float
rounding (tests compare the equivalents' images). Every shape is also
symmetric about its reference axis (+x at θ = 0), so mirroring an image
left-right maps θ to π − θ: cos θ changes sign, sin θ does not, and the
input pipeline's flip augmentation stays exact.

Label: the unit vector (cos θ, sin θ) (a `LabelSpec` of kind 'circle': the
pipeline passes it unchanged). `equivalent_labels` holds the k rotations
θ + 2πj/k, repeated cyclically to K = lcm of the configs' symmetry orders
(60 for 'mixed'), so that every equivalent appears equally often and
mixtures over the rows weigh them equally. `symmetry_order` stores k.

Nuisances: scale, translation, brightness and pixel noise. A full config
(10k train / 3k test, 64×64) renders in a few seconds. Sizes (`generated.SIZES`): full
(64×64, 10k / 3k), `_small` (32×32, 2,048 / 512) and `_medium` (32×32,
16,384 / 2,048).

Usage:
  from propel_jax.data.builders import symmetric_shapes
  symmetric_shapes.build(data_dir, 'mixed_small')
  # or: python -m experiments.build_dataset --dataset=symmetric_shapes/mixed
"""

import dataclasses
import math

import numpy as np
import tensorflow_datasets as tfds

from propel_jax.data import labels as labels_lib
from propel_jax.data.builders import generated

_DTYPE = np.float32
# Circumradius of the regular polygons (units: image half-width at scale 1).
_RADIUS = 0.7


def _regular_polygon(k):
  """Edges of the regular k-gon with a vertex on +x: normals at (2e + 1)π/k."""
  angles = (2.0 * np.arange(k) + 1.0) * np.pi / k
  normals = np.stack([np.cos(angles), np.sin(angles)], axis=1)
  return [(normals, np.full(k, _RADIUS * math.cos(math.pi / k)))]


def _box(x_low, x_high, half_height):
  normals = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
  return normals, np.array([x_high, -x_low, half_height, half_height])


def _triangle(vertices):
  """Outward normals and offsets of a counter-clockwise triangle."""
  vertices = np.asarray(vertices, np.float64)
  edges = np.roll(vertices, -1, axis=0) - vertices
  normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
  normals /= np.linalg.norm(normals, axis=1, keepdims=True)
  return normals, np.sum(normals * vertices, axis=1)


# name -> (symmetry order k, convex parts as (normals [E, 2], offsets [E])).
SHAPES = {
    'arrow': (1, [_box(-0.6, 0.2, 0.12),
                  _triangle([(0.7, 0.0), (0.15, 0.38), (0.15, -0.38)])]),
    'bar': (2, [_box(-0.7, 0.7, 0.2)]),
    'triangle': (3, _regular_polygon(3)),
    'square': (4, _regular_polygon(4)),
    'pentagon': (5, _regular_polygon(5)),
    'hexagon': (6, _regular_polygon(6)),
}
SHAPE_NAMES = tuple(SHAPES)

LABEL_SPEC = labels_lib.LabelSpec(
    names=('cos', 'sin'), low=(-1.0, -1.0), high=(1.0, 1.0),
    flip_negates=(True, False), kind='circle')


def _pixel_centres(image_size):
  """Pixel-centre coordinates in (-1, 1): u [W] to the right, v [H] up."""
  j = np.arange(image_size, dtype=_DTYPE)
  u = (2.0 * j + 1.0 - image_size) / image_size
  return u, -u


def _signed_distance(shape, x, y):
  """Signed distance-like field of a shape (negative inside) at [N, H, W] points."""
  _, parts = SHAPES[shape]
  sdf = None
  for normals, offsets in parts:
    part = None
    for (nx, ny), a in zip(normals.astype(_DTYPE), offsets.astype(_DTYPE)):
      edge = nx * x + ny * y - a
      part = edge if part is None else np.maximum(part, edge)
    sdf = part if sdf is None else np.minimum(sdf, part)
  return sdf


def render_shapes(shape, angles, *, image_size=64, scale=0.85, offset=(0.0, 0.0),
                  brightness=1.0):
  """Renders a batch of noise-free images of one shape (vectorised).

  Args:
    shape: one of SHAPE_NAMES.
    angles: [N] rotation angles θ in radians (counter-clockwise, 0: the
      shape's reference axis along +x).
    image_size: output height and width.
    scale: [N] or scalar, size of the shape in the image.
    offset: [N, 2] or [2], translation (x, y) in units of the image half-width.
    brightness: [N] or scalar intensity of the shape (background 0).

  Returns:
    [N, image_size, image_size] float32 intensities in [0, 1].
  """
  if shape not in SHAPES:
    raise ValueError(f'Unknown shape {shape!r}; use one of {SHAPE_NAMES}.')
  theta = np.atleast_1d(np.asarray(angles, np.float64))
  if theta.ndim != 1:
    raise ValueError(f'angles must be a scalar or an [N] array; got shape {theta.shape}.')
  n = theta.shape[0]
  scale = np.broadcast_to(np.asarray(scale, _DTYPE), (n,))[:, None, None]
  offset = np.broadcast_to(np.asarray(offset, _DTYPE), (n, 2))
  brightness = np.broadcast_to(np.asarray(brightness, _DTYPE), (n,))[:, None, None]
  u, v = _pixel_centres(image_size)
  big_x = (u[None, None, :] - offset[:, 0, None, None]) / scale
  big_y = (v[None, :, None] - offset[:, 1, None, None]) / scale
  cos, sin = (f(theta).astype(_DTYPE)[:, None, None] for f in (np.cos, np.sin))
  # Into the shape's frame: rotate the pixel by -θ.
  x = cos * big_x + sin * big_y
  y = cos * big_y - sin * big_x
  # Anti-aliased coverage: a one-pixel ramp across the edge.
  pixel = 2.0 / (image_size * scale)
  coverage = np.clip(0.5 - _signed_distance(shape, x, y) / pixel, 0.0, 1.0)
  return coverage * brightness


def render_shape(shape, angle_deg, *, image_size=64, scale=0.85, offset=(0.0, 0.0),
                 brightness=1.0):
  """Renders one noise-free image from its label angle in degrees.

  Returns:
    [image_size, image_size, 1] float32 in [0, 1].
  """
  image = render_shapes(shape, [math.radians(angle_deg)], image_size=image_size,
                        scale=[scale], offset=[offset], brightness=[brightness])[0]
  return image[..., None]


def equivalent_angles(angles, order, num_equivalents):
  """[N] angles (radians) and [N] symmetry orders k -> [N, K] equivalent angles.

  Column j is θ + 2π (j mod k)/k: the k rotations that look the same,
  repeated cyclically (K must be a multiple of every k, so each appears K/k
  times); column 0 is θ itself.
  """
  angles = np.asarray(angles, np.float64)
  order = np.asarray(order)
  if np.any(num_equivalents % order):
    raise ValueError(f'num_equivalents={num_equivalents} must be a multiple of every '
                     f'symmetry order; got {np.unique(order)}.')
  j = np.arange(num_equivalents)
  return angles[:, None] + 2.0 * np.pi * (j % order[:, None]) / order[:, None]


def angle_to_label(angles):
  """Radians [...] -> unit vectors (cos θ, sin θ) [..., 2] float32."""
  angles = np.asarray(angles, np.float64)
  return np.stack([np.cos(angles), np.sin(angles)], axis=-1).astype(np.float32)


def generate(rng, n, *, shapes, image_size, noise_std=0.03, chunk=512):
  """Samples n labelled examples, shapes chosen uniformly from `shapes`.

  Returns:
    images [n, H, W, 1] uint8, labels [n, 2] float32, equivalent_labels
    [n, K, 2] float32 (K = lcm of the shapes' orders), symmetry_order [n] int32.
  """
  orders = np.array([SHAPES[s][0] for s in shapes])
  num_equivalents = math.lcm(*orders.tolist())
  which = rng.integers(len(shapes), size=n)
  angles = rng.uniform(0.0, 2.0 * np.pi, size=n)
  scale = rng.uniform(0.75, 0.95, size=n)
  offset = rng.uniform(-0.1, 0.1, size=(n, 2))
  brightness = rng.uniform(0.6, 1.0, size=n)
  images = np.empty((n, image_size, image_size, 1), np.uint8)
  for index, shape in enumerate(shapes):
    rows = np.flatnonzero(which == index)
    for start in range(0, rows.size, chunk):
      sl = rows[start:start + chunk]
      clean = render_shapes(shape, angles[sl], image_size=image_size, scale=scale[sl],
                            offset=offset[sl], brightness=brightness[sl])
      noisy = clean + noise_std * rng.standard_normal(clean.shape, _DTYPE)
      images[sl, ..., 0] = np.round(np.clip(noisy, 0.0, 1.0) * 255.0)
  order = orders[which]
  equivalents = equivalent_angles(angles, order, num_equivalents)
  return (images, angle_to_label(angles), angle_to_label(equivalents),
          order.astype(np.int32))


@dataclasses.dataclass(eq=False)
class SymmetricShapesConfig(tfds.core.BuilderConfig):
  """A symmetric shapes variant.

  Attributes:
    shapes: names of the shapes drawn (uniformly).
    image_size: height and width of the stored images.
    num_train, num_test: split sizes.
    seed: base seed; each split draws from its own stream.
  """
  shapes: tuple[str, ...] = SHAPE_NAMES
  image_size: int = 64
  num_train: int = 10_000
  num_test: int = 3_000
  seed: int = 0


def _configs():
  variants = [('mixed', SHAPE_NAMES)] + [(f'k{SHAPES[s][0]}', (s,)) for s in SHAPE_NAMES]
  configs = []
  for name, shapes in variants:
    what = ', '.join(f'{s} (k = {SHAPES[s][0]})' for s in shapes)
    for suffix, size, num_train, num_test in generated.SIZES:
      configs.append(SymmetricShapesConfig(
          name=name + suffix, shapes=shapes, image_size=size, num_train=num_train,
          num_test=num_test,
          description=f'{what}; {size}x{size} grayscale, {num_train} train / '
                      f'{num_test} test.'))
  return configs


class SymmetricShapes(generated.GeneratedSplits, tfds.core.GeneratorBasedBuilder):
  """In-plane rotation of flat shapes with k-fold symmetry (label: a unit vector)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = _configs()
  label_spec = LABEL_SPEC
  label_dim = 2
  kind_key = 'symmetry_order'

  def _num_equivalents(self):
    return math.lcm(*(SHAPES[s][0] for s in self.builder_config.shapes))

  def _generate(self, rng, num_examples):
    return generate(rng, num_examples, shapes=self.builder_config.shapes,
                    image_size=self.builder_config.image_size)


def build(data_dir, config_name='mixed_small'):
  """Builds a config as array_record into data_dir (for tests and demos)."""
  return generated.build('symmetric_shapes', data_dir, config_name)
