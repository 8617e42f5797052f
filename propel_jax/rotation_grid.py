"""An equivolumetric grid on SO(3) and the piecewise-constant densities over it.

The grid (Yershova et al.'s Hopf-fibration construction, written from its
idea): a rotation R = Rz(φ) Ry(θ) Rz(ψ) is the direction R e_z = (θ, φ) on
the sphere and an angle ψ about it. The Haar measure factors into the
uniform area on the sphere and the uniform angle ψ (each fibre {R : R e_z =
x} is a coset of the rotations about z), so equal-area sphere points times
equally spaced angles give near-equal Voronoi cells. The sphere points are
the HEALPix pixel centres (Górski et al. 2005, ring scheme: 12·4^L equal-area
pixels), the angles ψ_k = 2π(k + ½)/M with M = 6·2^L, so that steps along the
sphere and along the fibre have about the same length:

    level L   cells G = 72·8^L   covering radius (measured)
    1         576                27°
    2         4,608              14°
    3         36,864             ≈7° (not measured: half of level 2)

A cell is the set of rotations nearest to one grid point (q and −q one
rotation: the largest |qᵀg|). Monte Carlo in float64 puts every cell's volume
within a few per cent of 1/G of the whole (tests/rotation_grid_test.py).

Densities on SO(3) are taken with respect to the Haar measure of total volume
π² (`SO3_VOLUME`), Implicit-PDF's convention: SO(3) is the unit sphere S³ ⊂ R⁴
(area 2π²) with q and −q identified, so its volume is half the sphere's. A
distribution p over the cells then has the density p_g · G / π² on cell g
(each cell's volume is π²/G), and a uniform p scores log(1/π²) ≈ −2.29 nats.
An antipodally symmetric density f on S³ (∫ f = 1 over S³) is the density
2 f on SO(3) in this measure, since every rotation has two preimages.

In closed form, with c = cos(θ/2), s = sin(θ/2), the grid quaternion is

    (w, x, y, z) = (c cos((φ+ψ)/2), s sin((ψ−φ)/2), s cos((ψ−φ)/2), c sin((φ+ψ)/2)),

the Hamilton product of the quaternions of Rz(φ), Ry(θ) and Rz(ψ).
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Importable from here too.
from propel_jax.rotations import hopf_to_quaternion

# Cells compared with each cell to decide whether it is a local maximum (a
# mode): about the 3×3×3 neighbourhood of a cubic lattice.
NUM_NEIGHBOURS = 26
# The volume of SO(3) in the measure its densities are taken with (the module
# docstring), and its log.
SO3_VOLUME = math.pi**2
LOG_SO3_VOLUME = math.log(SO3_VOLUME)


def healpix_centres(nside: int) -> np.ndarray:
  """[12 nside², 3] unit vectors at the HEALPix pixel centres (ring scheme), float64.

  Ring i = 1 .. 4 nside − 1 from the north pole; in the polar caps ring i has
  4i pixels at z = ±(1 − i²/(3 nside²)), in the equatorial belt 4 nside
  pixels at z = 4/3 − 2i/(3 nside), alternate rings shifted by half a pixel.
  Every pixel has the area 4π / (12 nside²).

  References:
    Górski et al., "HEALPix: a framework for high-resolution
    discretization and fast analysis of data distributed on the sphere",
    ApJ 622, 2005.

  Examples:
    >>> import numpy as np
    >>> from propel_jax import rotation_grid
    >>> centres = rotation_grid.healpix_centres(1)
    >>> centres.shape, bool(np.allclose(np.linalg.norm(centres, axis=-1), 1.0))
    ((12, 3), True)
  """
  if nside < 1:
    raise ValueError(f'nside must be >= 1; got {nside}.')
  z, phi = [], []
  for ring in range(1, 4 * nside):
    cap = min(ring, 4 * nside - ring)  # Rings from the nearer pole.
    if cap < nside:
      height = 1.0 - cap * cap / (3.0 * nside * nside)
      ring_z = height if ring < nside else -height
      ring_phi = (np.arange(4 * cap) + 0.5) * (math.pi / (2 * cap))
    else:
      ring_z = 4.0 / 3.0 - 2.0 * ring / (3.0 * nside)
      shift = 0.5 * ((ring - nside + 1) % 2)
      ring_phi = (np.arange(4 * nside) + 1.0 - shift) * (math.pi / (2 * nside))
    z.append(np.full(ring_phi.shape, ring_z))
    phi.append(ring_phi)
  z, phi = np.concatenate(z), np.concatenate(phi)
  radius = np.sqrt(1.0 - z * z)
  return np.stack([radius * np.cos(phi), radius * np.sin(phi), z], axis=-1)


def num_cells(level: int) -> int:
  """G = 72 · 8^level.

  References:
    Yershova, Jain, LaValle and Mitchell, "Generating uniform incremental
    grids on SO(3) using the Hopf fibration", IJRR 29(7), 2010.

  Examples:
    >>> from propel_jax import rotation_grid
    >>> rotation_grid.num_cells(1), rotation_grid.num_cells(2)
    (576, 4608)
  """
  return 72 * 8**level


def level_of(cells: int) -> int:
  """The level whose grid has `cells` cells (the inverse of `num_cells`).

  References:
    Yershova, Jain, LaValle and Mitchell, "Generating uniform incremental
    grids on SO(3) using the Hopf fibration", IJRR 29(7), 2010.

  Examples:
    >>> from propel_jax import rotation_grid
    >>> rotation_grid.level_of(4608)
    2
  """
  level = round(math.log(max(cells, 1) / 72, 8))
  if level < 0 or num_cells(level) != cells:
    raise ValueError(f'{cells} is not a grid size 72·8^L.')
  return level


@functools.lru_cache(maxsize=None)
def grid(level: int) -> np.ndarray:
  """[72·8^level, 4] float32 unit quaternions, one per cell, w ≥ 0 (module docstring).

  References:
    Yershova, Jain, LaValle and Mitchell, "Generating uniform incremental
    grids on SO(3) using the Hopf fibration", IJRR 29(7), 2010.
    Murphy, Esteves, Sud, Manning and Wu, "Implicit-PDF: Non-parametric
    representation of probability distributions on the rotation manifold",
    ICML 2021.

  Examples:
    >>> from propel_jax import rotation_grid
    >>> cells = rotation_grid.grid(1)
    >>> cells.shape, bool((cells[:, 0] >= 0).all())
    ((576, 4), True)
  """
  if level < 0:
    raise ValueError(f'level must be >= 0; got {level}.')
  directions = healpix_centres(2**level)
  theta = np.arccos(np.clip(directions[:, 2], -1.0, 1.0))
  phi = np.arctan2(directions[:, 1], directions[:, 0])
  steps = 6 * 2**level
  psi = (np.arange(steps) + 0.5) * (2.0 * math.pi / steps)
  q = hopf_to_quaternion(theta[:, None], phi[:, None], psi[None, :]).reshape(-1, 4)
  q = np.where(q[:, :1] < 0, -q, q)
  q.flags.writeable = False
  return q.astype(np.float32)


@functools.lru_cache(maxsize=None)
def neighbours(level: int, count: int = NUM_NEIGHBOURS) -> np.ndarray:
  """[G, count] int32: each cell's `count` nearest other cells (geodesically).

  References:
    Yershova, Jain, LaValle and Mitchell, "Generating uniform incremental
    grids on SO(3) using the Hopf fibration", IJRR 29(7), 2010.

  Examples:
    >>> import numpy as np
    >>> from propel_jax import rotation_grid
    >>> near = rotation_grid.neighbours(1)
    >>> near.shape, bool((near != np.arange(576)[:, None]).all())
    ((576, 26), True)
  """
  points = grid(level).astype(np.float64)
  rows = []
  for start in range(0, len(points), 2048):  # [chunk, G] at a time.
    closeness = np.abs(points[start:start + 2048] @ points.T)
    closeness[np.arange(closeness.shape[0]), np.arange(start, start + closeness.shape[0])] = -1
    nearest = np.argpartition(-closeness, count, axis=1)[:, :count]
    rows.append(nearest)
  result = np.concatenate(rows).astype(np.int32)
  result.flags.writeable = False
  return result


def nearest_cell(quaternions: jax.Array, cells: jax.Array) -> jax.Array:
  """[..., 4] quaternions -> [...] int32 index of the nearest of `cells` [G, 4] (±q alike).

  References:
    Murphy, Esteves, Sud, Manning and Wu, "Implicit-PDF: Non-parametric
    representation of probability distributions on the rotation manifold",
    ICML 2021.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import rotation_grid
    >>> cells = jnp.asarray(rotation_grid.grid(1))
    >>> rotation_grid.nearest_cell(-cells[:3], cells).tolist()  # -q is q
    [0, 1, 2]
  """
  return jnp.argmax(jnp.abs(quaternions @ cells.T), axis=-1).astype(jnp.int32)


def _cell_log_density(log_p: jax.Array, count: int) -> jax.Array:
  """log(p_g · G / π²): a cell's log-probability as the log density on it (module docstring)."""
  return log_p + (math.log(count) - LOG_SO3_VOLUME)


class GridDistribution(NamedTuple):
  """A distribution over the cells of `grid(level)`, as a pytree of logits.

  The level is read from the number of logits, so the type holds arrays only
  (it passes through jit and saves as one array).

  Attributes:
    logits: [..., G] unnormalised log-probabilities of the cells.

  References:
    Murphy, Esteves, Sud, Manning and Wu, "Implicit-PDF: Non-parametric
    representation of probability distributions on the rotation manifold",
    ICML 2021.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import rotation_grid
    >>> uniform = rotation_grid.GridDistribution(jnp.zeros(576))
    >>> round(float(uniform.log_prob(jnp.array([1.0, 0.0, 0.0, 0.0]))), 4)
    -2.2895
  """
  logits: jax.Array

  @property
  def level(self) -> int:
    return level_of(self.logits.shape[-1])

  def cells(self) -> jax.Array:
    """[G, 4] the cells' centre quaternions."""
    return jnp.asarray(grid(self.level))

  def log_probs(self) -> jax.Array:
    """[..., G] log-probabilities of the cells."""
    return jax.nn.log_softmax(self.logits, axis=-1)

  def log_prob(self, quaternions: jax.Array) -> jax.Array:
    """log density at quaternions [..., 4] w.r.t. the Haar measure of volume π².

    log(p_g · G / π²) for the cell g holding each rotation (Implicit-PDF's
    log-likelihood); uniform logits give −log π². The leading axes of
    quaternions and logits broadcast.

    Examples:
      >>> uniform = GridDistribution(jnp.zeros(576))
      >>> round(float(uniform.log_prob(jnp.array([1.0, 0.0, 0.0, 0.0]))), 4)
      -2.2895
    """
    cell = nearest_cell(quaternions, self.cells())
    log_p = jnp.take_along_axis(
        jnp.broadcast_to(self.log_probs(), cell.shape + self.logits.shape[-1:]),
        cell[..., None], axis=-1)[..., 0]
    return _cell_log_density(log_p, self.logits.shape[-1])

  def most_likely_cell(self) -> jax.Array:
    """[..., 4] the centre of the most probable cell."""
    return self.cells()[jnp.argmax(self.logits, axis=-1)]

  def modes(self):
    """The cells that are local maxima among their NUM_NEIGHBOURS nearest cells.

    Returns:
      (locations [..., G, 4], log density [..., G], valid [..., G]): every
      cell, its log density (as `log_prob`: w.r.t. the Haar measure of volume
      π²), and whether it is a local maximum (ties count: a plateau's cells
      are all maxima).
    """
    log_p = self.log_probs()
    around = log_p[..., jnp.asarray(neighbours(self.level))]  # [..., G, count]
    valid = log_p >= jnp.max(around, axis=-1)
    locations = jnp.broadcast_to(self.cells(), log_p.shape + (4,))
    return locations, _cell_log_density(log_p, log_p.shape[-1]), valid
