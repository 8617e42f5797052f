"""Solids with exact rotational symmetry, rendered by a small NumPy ray caster.

A Platonic solid centred at the origin is the intersection of half-spaces
n_fᵀx ≤ a_f (unit face normals n_f). Rotated by R it has normals R n_f. A
rotation g of the solid's symmetry group permutes its faces, so R and R g
give the same solid and, with one face colour and a fixed light, the same
image: the label R has |G| equivalent readings

    tetrahedron 12, cube 24, icosahedron 60.

The cone and the cylinder (SYMSOL's continuous symmetries, axis z) are the
intersection of the slab −b ≤ z ≤ h with a quadric side, x² + y² ≤ ρ² (the
cylinder, b = h) or x² + y² ≤ k²(z − h)² (the cone, apex at z = h). Every
rotation about the axis is a symmetry (and for the cylinder every half turn
about an axis in the plane z = 0 as well); like SYMSOL, `equivalent_labels`
stores a dense sample of them, one per degree about the axis:

    cone 360, cylinder 720.

Rendering: an orthographic camera on the +z axis looking down −z. The ray
through image point (u, v) is (u, v, t); it is inside the solid for t in
[max over back faces, min over front faces] of (a_f − n_x u − n_y v)/n_z, so
it hits the solid when that interval is non-empty, and the face seen is the
front face where the minimum is reached. For a convex solid no depth buffer
is needed. Flat Lambertian shading from a fixed light (ambient + diffuse ·
max(nᵀl, 0)); 4×4 samples per pixel anti-alias the edges. Every sample is
computed the same way for R and R g, so equivalent images agree to float
rounding (tested).

Labels: unit quaternions (w, x, y, z) with w ≥ 0, of kind 'rotation' (q and
−q are one rotation; the pipeline passes them unchanged). `equivalent_labels`
holds the |G| quaternions of R g (K = |G|; 120 = lcm(12, 24, 60) for 'mixed',
the three Platonic solids, each repeated equally often). The Platonic
symmetry groups are found from the face normals (every rotation that maps
the set of normals onto itself), not typed in.
"""

import dataclasses
import functools
import itertools
import math

import jax
import numpy as np
import tensorflow_datasets as tfds

from propel_jax import directional
from propel_jax.data import labels as labels_lib
from propel_jax.data.builders import generated

# Compiled, as the images were made: op by op, XLA rounds a few rotations an ulp
# differently, and a pixel on a silhouette's edge can flip by one grey level.
_to_matrix = jax.jit(directional.quaternion_to_rotation_matrix)
_to_quaternion = jax.jit(directional.rotation_matrix_to_quaternion)

_DTYPE = np.float32
_SUPERSAMPLING = 4
# Most elements (images × arrays per image × samples) rendered at once: the
# ray caster is bound by memory traffic, and arrays past the CPU's caches made
# it 3-5× slower per image at 64×64 (docs/datasets.md). Every image is
# computed alone (no sum across images), so the batching does not change it.
_RENDER_ELEMENTS = 2**22
_AMBIENT, _DIFFUSE = 0.25, 0.75
# Light from the upper right, in front of the solid (unit vector).
_LIGHT = np.array([0.4, 0.5, 0.77]) / np.linalg.norm([0.4, 0.5, 0.77])
_GOLDEN = (1.0 + math.sqrt(5.0)) / 2.0


def _unit(rows):
  rows = np.asarray(rows, np.float64)
  return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def _dodecahedron_vertices():
  """The 20 vertices of a dodecahedron: the face normals of the icosahedron."""
  cube = list(itertools.product((-1, 1), repeat=3))
  rest = []
  for s1, s2 in itertools.product((-1, 1), repeat=2):
    a, b = s1 / _GOLDEN, s2 * _GOLDEN
    rest += [(0, a, b), (a, b, 0), (b, 0, a)]
  return _unit(cube + rest)


# name -> unit face normals [F, 3]; every face is at distance `_INRADIUS` from
# the centre, chosen so that each solid fits the image at scale 1.
SOLIDS = {
    'tetrahedron': _unit([(1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)]),
    'cube': _unit(np.concatenate([np.eye(3), -np.eye(3)])),
    'icosahedron': _dodecahedron_vertices(),
}
PLATONIC_NAMES = tuple(SOLIDS)
_INRADIUS = {'tetrahedron': 0.3, 'cube': 0.45, 'icosahedron': 0.6}
# name -> (top h, bottom b, radius ρ: of the cylinder, or of the cone's base);
# each fits the image at scale 1 (every point within 0.5 of the centre).
CURVED = {'cone': (0.5, 0.3, 0.4), 'cylinder': (0.35, 0.35, 0.35)}
SOLID_NAMES = PLATONIC_NAMES + tuple(CURVED)
# The continuous symmetries are sampled every 1° about the axis.
_AXIAL_STEPS = 360

LABEL_SPEC = labels_lib.LabelSpec(
    names=('w', 'x', 'y', 'z'), low=(-1.0,) * 4, high=(1.0,) * 4, kind='rotation')


# ----------------------------------------------------------------------------
# Rotations.


def quaternion_multiply(a, b):
  """Hamilton products a b of quaternions [..., 4] (the rotation b, then a)."""
  aw, ax, ay, az = np.moveaxis(np.asarray(a, np.float64), -1, 0)
  bw, bx, by, bz = np.moveaxis(np.asarray(b, np.float64), -1, 0)
  return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                   aw * bx + ax * bw + ay * bz - az * by,
                   aw * by - ax * bz + ay * bw + az * bx,
                   aw * bz + ax * by - ay * bx + az * bw], -1)


def _frame(a, b):
  """The orthonormal frame [3, 3] (columns) of two non-parallel vectors."""
  e1 = a / np.linalg.norm(a)
  e2 = b - (b @ e1) * e1
  e2 /= np.linalg.norm(e2)
  return np.stack([e1, e2, np.cross(e1, e2)], axis=1)


@functools.lru_cache(maxsize=None)
def symmetry_group(solid: str) -> np.ndarray:
  """[|G|, 4] the quaternions (w ≥ 0) of every rotation mapping the solid onto itself.

  Platonic solids: a rotation is fixed by where it sends two non-parallel
  face normals; every choice of images with the same angle between them is
  tried, and kept when it maps the whole set of normals onto itself. The cone
  and the cylinder: the rotations about z by whole degrees (the cylinder's
  also composed with the half turn about x, which swaps its caps).
  """
  if solid in CURVED:
    half = np.arange(_AXIAL_STEPS) * (math.pi / _AXIAL_STEPS)  # Half of each angle.
    about_z = np.stack([np.cos(half), 0 * half, 0 * half, np.sin(half)], -1)
    if solid == 'cone':
      return about_z
    flipped = quaternion_multiply(about_z, [0.0, 1.0, 0.0, 0.0])
    return np.concatenate([about_z, np.where(flipped[:, :1] < 0, -flipped, flipped)])
  normals = SOLIDS[solid]
  first = normals[0]
  second = next(n for n in normals[1:] if abs(n @ first) < 1 - 1e-6)
  source = _frame(first, second)
  quaternions = []
  for a, b in itertools.permutations(normals, 2):
    if abs(a @ b - first @ second) > 1e-9:
      continue
    rotation = _frame(a, b) @ source.T
    mapped = normals @ rotation.T
    if np.all(np.min(np.linalg.norm(mapped[:, None] - normals[None], axis=-1), 1) < 1e-9):
      quaternions.append(rotation)
  return np.asarray(_to_quaternion(np.array(quaternions)), np.float64)


# ----------------------------------------------------------------------------
# Rendering.


def _quadric_interval(origin, direction, solid, scale):
  """The interval [low, high] of t where the ray origin + t·direction is inside the side.

  Args:
    origin: [N, S, S, 3] ray origins in the solid's frame.
    direction: [N, 1, 1, 3] ray directions in the solid's frame (unit).
    solid: 'cone' or 'cylinder'.
    scale: [N, 1, 1] the solid's size.

  Returns:
    (low, high) [N, S, S], ±inf where unbounded; low > high where missed.
  The side is q(p) = x² + y² − r(z)² ≤ 0, with r ≡ ρ (cylinder) or
  r = k (z − h) (cone: the nappe below the apex, the only one in the slab);
  along the ray q = A t² + 2 B t + C.
  """
  top, _, radius = (value * scale for value in CURVED[solid])
  slope = 0.0 if solid == 'cylinder' else radius / (top + CURVED[solid][1] * scale)
  ox, oy, oz = (origin[..., k] for k in range(3))
  dx, dy, dz = (direction[..., k] for k in range(3))
  rz_o = oz - top  # The cone's r(z)/k at the origin.
  a = dx * dx + dy * dy - slope**2 * dz * dz
  b = ox * dx + oy * dy - slope**2 * rz_o * dz
  c = ox * ox + oy * oy - (radius**2 if solid == 'cylinder' else slope**2 * rz_o * rz_o)
  discriminant = b * b - a * c
  root = np.sqrt(np.maximum(discriminant, 0.0))
  flat = np.abs(a) < 1e-6
  safe_a = np.where(flat, 1.0, a)
  first, second = (-b - root) / safe_a, (-b + root) / safe_a
  inf = np.inf
  # A > 0: inside between the roots. A < 0 (a cone, the ray steeper than its
  # side): inside before the smaller or after the larger root; the piece in
  # the lower nappe is the one below the apex, i.e. t → −∞ when dz > 0.
  small, large = np.minimum(first, second), np.maximum(first, second)
  low = np.where(a > 0, small, np.where(dz > 0, -inf, large))
  high = np.where(a > 0, large, np.where(dz > 0, small, inf))
  missed = (discriminant < 0) & (a > 0)
  # A ≈ 0 (parallel to the axis or a generator): 2 B t + C ≤ 0 is a half-line.
  safe_b = np.where(np.abs(b) > 1e-9, b, 1.0)
  edge = -c / (2 * safe_b)
  linear_low = np.where(b < 0, edge, -inf)
  linear_high = np.where(b > 0, edge, inf)
  linear_missed = (np.abs(b) <= 1e-9) & (c > 0)
  low = np.where(flat, linear_low, low)
  high = np.where(flat, linear_high, high)
  missed = np.where(flat, linear_missed, missed)
  return np.where(missed, inf, low), np.where(missed, -inf, high)


def _visible_normals(solid, rotations, scale, u, v):
  """Where each sample ray hits the solid and the unit normal (camera frame) seen there.

  Returns:
    hit [N, S, S] bool, normal [N, S, S, 3] (meaningless where not hit).
  """
  if solid in SOLIDS:
    normals = np.einsum('nij,fj->nfi', rotations, SOLIDS[solid]).astype(_DTYPE)  # [N, F, 3]
    offsets = (_INRADIUS[solid] * scale).astype(_DTYPE)[:, None]  # [N, F]
  else:
    top, bottom, _ = CURVED[solid]
    normals = (rotations[:, :, 2:] * np.array([1.0, -1.0], _DTYPE)).transpose(0, 2, 1)
    offsets = (np.array([top, bottom]) * scale[:, None]).astype(_DTYPE)  # The caps.
  nx, ny, nz = (normals[..., k][:, :, None, None] for k in range(3))  # [N, F, 1, 1]
  # Where each face's plane cuts the ray; n_z = 0 faces bound the ray only by sign.
  numerator = offsets[:, :, None, None] - nx * u - ny * v  # [N, F, S, S]
  front, back = nz > 1e-6, nz < -1e-6
  safe_nz = np.where(front | back, nz, 1.0)
  t = numerator / safe_nz
  t_front = np.where(front, t, np.inf)
  t_near = t_front.min(axis=1)  # [N, S, S]
  t_far = np.where(back, t, -np.inf).max(axis=1)
  side_ok = np.all(np.where(front | back, True, numerator >= 0), axis=1)
  face = np.argmin(t_front, axis=1)  # [N, S, S]
  normal = np.take_along_axis(normals[:, None, None], face[..., None, None], axis=3)[..., 0, :]
  if solid in SOLIDS:
    return (t_far <= t_near) & side_ok, normal
  # The quadric side, in the solid's frame: p = Rᵀ(u, v, t).
  scale = scale[:, None, None].astype(_DTYPE)
  camera = np.stack(np.broadcast_arrays(u, v, np.zeros_like(u * v)), -1)  # [S, S, 3]
  origin = np.einsum('nji,abj->nabi', rotations, camera)
  direction = rotations[:, 2][:, None, None, :]  # Rᵀ e_z: row 2 of R.
  low, high = _quadric_interval(origin, direction, solid, scale)
  on_side = high < t_near
  t_seen = np.minimum(high, t_near)
  t_seen = np.where(np.isfinite(t_seen), t_seen, 0.0)  # Misses: any finite point.
  point = origin + t_seen[..., None] * direction  # Solid frame.
  top, bottom, radius = CURVED[solid]
  slope = 0.0 if solid == 'cylinder' else radius / (top + bottom)
  gradient = point * np.array([1.0, 1.0, 0.0], _DTYPE)
  gradient[..., 2] = -slope**2 * (point[..., 2] - top * scale)
  gradient /= np.maximum(np.linalg.norm(gradient, axis=-1, keepdims=True), 1e-12)
  side_normal = np.einsum('nij,nabj->nabi', rotations, gradient)
  hit = (np.maximum(t_far, low) <= np.minimum(t_near, high)) & side_ok
  return hit, np.where(on_side[..., None], side_normal, normal)


def render_solids(solid, quaternions, *, image_size=64, scale=1.0):
  """Renders noise-free images of one solid in the given orientations (vectorised).

  Args:
    solid: one of SOLID_NAMES.
    quaternions: [N, 4] (w, x, y, z) rotations of the solid (active: the solid's
      face normals n go to R n).
    image_size: output height and width.
    scale: [N] or scalar, size of the solid in the image.

  Returns:
    [N, image_size, image_size] float32 intensities in [0, 1].
  """
  if solid not in SOLID_NAMES:
    raise ValueError(f'Unknown solid {solid!r}; use one of {SOLID_NAMES}.')
  rotations = np.asarray(_to_matrix(
      np.atleast_2d(np.asarray(quaternions, np.float32)))).astype(_DTYPE)  # [N, 3, 3]
  n = rotations.shape[0]
  scale = np.broadcast_to(np.asarray(scale, np.float64), (n,))
  # Sample points: a regular s × s grid inside each pixel, x right and y up.
  samples = image_size * _SUPERSAMPLING
  coords = ((2.0 * np.arange(samples) + 1.0 - samples) / samples).astype(_DTYPE)
  u, v = coords[None, :], -coords[:, None]  # [1, S] and [S, 1]
  # [N, S, S] arrays per image: one per face, or for the quadric side about
  # sixteen (its roots, intervals and normals, the [N, S, S, 3] ones thrice).
  arrays = len(SOLIDS[solid]) if solid in SOLIDS else 16
  batch = max(1, _RENDER_ELEMENTS // (arrays * samples * samples))
  images = np.empty((n, image_size, image_size), _DTYPE)
  for start in range(0, n, batch):
    part = slice(start, start + batch)
    hit, normal = _visible_normals(solid, rotations[part], scale[part], u, v)
    shade = _AMBIENT + _DIFFUSE * np.maximum(normal @ _LIGHT.astype(_DTYPE), 0.0)
    intensity = np.where(hit, shade, 0.0)
    images[part] = intensity.reshape(-1, image_size, _SUPERSAMPLING, image_size,
                                     _SUPERSAMPLING).mean(axis=(2, 4))
  return images


def render_solid(solid, quaternion, *, image_size=64, scale=1.0):
  """Renders one noise-free image from its label quaternion: [H, W, 1] float32 in [0, 1]."""
  return render_solids(solid, np.asarray(quaternion)[None], image_size=image_size,
                       scale=[scale])[0][..., None]


def equivalent_quaternions(quaternions, solid, num_equivalents):
  """[N, 4] labels -> [N, K, 4] the rotations q g for g in the solid's group (w ≥ 0).

  Row 0 is the label itself (the group's identity comes first); the |G| rows
  repeat cyclically up to K, which must be a multiple of |G|.
  """
  group = symmetry_group(solid)
  identity = np.argmax(group[:, 0])
  group = np.roll(group, -identity, axis=0)
  if num_equivalents % len(group):
    raise ValueError(f'num_equivalents={num_equivalents} is not a multiple of |G| = '
                     f'{len(group)} ({solid}).')
  products = quaternion_multiply(np.asarray(quaternions)[:, None], group[None])
  products = np.where(products[..., :1] < 0, -products, products)
  return np.tile(products, (1, num_equivalents // len(group), 1))


def random_quaternions(rng, n):
  """[n, 4] rotations uniform on SO(3) (normalised Gaussian 4-vectors), w ≥ 0."""
  q = rng.standard_normal((n, 4))
  q /= np.linalg.norm(q, axis=1, keepdims=True)
  return np.where(q[:, :1] < 0, -q, q)


def generate(rng, n, *, solids, image_size, noise_std=0.03, chunk=128):
  """Samples n labelled examples, solids chosen uniformly from `solids`.

  Returns:
    images [n, H, W, 1] uint8, labels [n, 4] float32, equivalent_labels
    [n, K, 4] float32 (K = lcm of the groups' orders), solid index [n] int32.
  """
  num_equivalents = math.lcm(*(len(symmetry_group(s)) for s in solids))
  which = rng.integers(len(solids), size=n)
  labels = random_quaternions(rng, n)
  scale = rng.uniform(0.85, 1.0, size=n)
  images = np.empty((n, image_size, image_size, 1), np.uint8)
  equivalents = np.empty((n, num_equivalents, 4), np.float32)
  for index, solid in enumerate(solids):
    rows = np.flatnonzero(which == index)
    equivalents[rows] = equivalent_quaternions(labels[rows], solid, num_equivalents)
    for start in range(0, rows.size, chunk):
      sl = rows[start:start + chunk]
      clean = render_solids(solid, labels[sl], image_size=image_size, scale=scale[sl])
      noisy = clean + noise_std * rng.standard_normal(clean.shape, _DTYPE)
      images[sl, ..., 0] = np.round(np.clip(noisy, 0.0, 1.0) * 255.0)
  return images, labels.astype(np.float32), equivalents, which.astype(np.int32)


@dataclasses.dataclass(eq=False)
class SymmetricSolidsConfig(tfds.core.BuilderConfig):
  """A symmetric solids variant: which solids, image size, split sizes, seed."""
  solids: tuple[str, ...] = PLATONIC_NAMES
  image_size: int = 64
  num_train: int = 10_000
  num_test: int = 3_000
  seed: int = 0


def _configs():
  configs = []
  for name, solids in [('mixed', PLATONIC_NAMES)] + [(s, (s,)) for s in SOLID_NAMES]:
    for suffix, size, num_train, num_test in generated.SIZES:
      configs.append(SymmetricSolidsConfig(
          name=name + suffix, solids=solids, image_size=size, num_train=num_train,
          num_test=num_test,
          description=f'{", ".join(solids)}; {size}x{size} grayscale, {num_train} train / '
                      f'{num_test} test.'))
  return configs


class SymmetricSolids(generated.GeneratedSplits, tfds.core.GeneratorBasedBuilder):
  """3-D rotations of Platonic solids (label: a unit quaternion with all its equivalents)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release: tetrahedron, cube, icosahedron (cone and '
                            'cylinder added as their own configs).'}
  BUILDER_CONFIGS = _configs()
  label_spec = LABEL_SPEC
  label_dim = 4
  kind_key = 'solid'

  def _num_equivalents(self):
    return math.lcm(*(len(symmetry_group(s)) for s in self.builder_config.solids))

  def _generate(self, rng, num_examples):
    return generate(rng, num_examples, solids=self.builder_config.solids,
                    image_size=self.builder_config.image_size)


def build(data_dir, config_name='mixed_small'):
  """Builds a config as array_record into data_dir (for tests and demos)."""
  return generated.build('symmetric_solids', data_dir, config_name)
