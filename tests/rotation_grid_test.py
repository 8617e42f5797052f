"""Tests of the SO(3) grid and its distributions, by float64 Monte Carlo over the Haar measure."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from propel_jax import rotation_grid


def _haar(rng, n):
  """[n, 4] float64 uniform rotations: normalised Gaussian 4-vectors are uniform on S³."""
  q = rng.standard_normal((n, 4))
  return q / np.linalg.norm(q, axis=1, keepdims=True)


def _nearest(q, cells, chunk=50_000):
  """(index [n], |qᵀg| [n]) of the nearest cell, brute force in float64."""
  cells = cells.astype(np.float64)
  index, closeness = [], []
  for start in range(0, len(q), chunk):
    dots = np.abs(q[start:start + chunk] @ cells.T)
    index.append(dots.argmax(1))
    closeness.append(dots.max(1))
  return np.concatenate(index), np.concatenate(closeness)


def _rotation_angle_deg(closeness):
  return np.degrees(2 * np.arccos(np.clip(closeness, -1.0, 1.0)))


@pytest.mark.parametrize('level', [0, 1, 2])
def test_grid_sizes_and_distinct_unit_quaternions(level):
  cells = rotation_grid.grid(level)
  assert cells.shape == (72 * 8**level, 4) == (rotation_grid.num_cells(level), 4)
  assert rotation_grid.level_of(len(cells)) == level
  np.testing.assert_allclose(np.linalg.norm(cells, axis=1), 1.0, atol=1e-6)
  assert np.all(cells[:, 0] >= 0)
  if level < 2:  # No two cells are one rotation (q and -q alike).
    overlap = np.abs(cells.astype(np.float64) @ cells.T.astype(np.float64))
    assert np.max(overlap - 2 * np.eye(len(cells))) < 0.999


def test_healpix_centres_have_equal_area_cells():
  # The nearest-centre cells of HEALPix centres are not exactly its pixels, but
  # close to them: each holds 1/12 nside² of the sphere within a few per cent.
  rng = np.random.default_rng(0)
  centres = rotation_grid.healpix_centres(4)
  assert centres.shape == (192, 3)
  np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1.0, atol=1e-12)
  x = rng.standard_normal((400_000, 3))
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  share = np.bincount((x @ centres.T).argmax(1), minlength=192) * 192 / len(x)
  assert np.abs(share - 1).max() < 0.2


@pytest.mark.parametrize('level,samples', [(1, 200_000), (2, 20_000)])
def test_grid_covers_so3(level, samples):
  # A rotation R is within α of the grid direction c nearest R e_z (α the
  # sphere's covering radius, measured here), and the rotation that moves
  # R e_z to c leaves a rotation about c within π/M of a grid angle: every
  # rotation lies within α + 180°/M of a cell centre.
  rng = np.random.default_rng(level)
  x = rng.standard_normal((samples, 3))
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  centres = rotation_grid.healpix_centres(2**level)
  alpha = np.degrees(np.arccos(np.clip((x @ centres.T).max(1).min(), -1, 1)))
  bound = alpha + 180.0 / (6 * 2**level)
  _, closeness = _nearest(_haar(rng, samples), rotation_grid.grid(level))
  worst = _rotation_angle_deg(closeness).max()
  assert worst < bound, (worst, bound)
  assert worst < {1: 30.0, 2: 15.0}[level]  # The measured radii: 27.4° and 13.7°.


def test_cells_have_near_equal_volumes():
  rng = np.random.default_rng(0)
  cells = rotation_grid.grid(1)
  count = len(cells)
  samples = 400_000
  index, _ = _nearest(_haar(rng, samples), cells)
  share = np.bincount(index, minlength=count) * count / samples
  # Poisson noise alone has std √(G/n) = 0.038 here; measured 0.048, so the
  # volumes themselves vary by about 3% (std) around 1/G.
  assert np.abs(share - 1).max() < 0.2
  assert share.std() < 1.5 * math.sqrt(count / samples)


def test_nearest_cell_is_the_geodesically_nearest_and_sign_blind():
  rng = np.random.default_rng(1)
  q = _haar(rng, 500)
  cells = rotation_grid.grid(1)
  expected, _ = _nearest(q, cells)
  found = rotation_grid.nearest_cell(jnp.asarray(q, jnp.float32), jnp.asarray(cells))
  np.testing.assert_array_equal(found, expected)
  np.testing.assert_array_equal(
      rotation_grid.nearest_cell(jnp.asarray(-q, jnp.float32), jnp.asarray(cells)), expected)


def test_uniform_logits_score_minus_log_pi_squared_and_density_integrates_to_one():
  # Densities w.r.t. the Haar measure of total volume π² (Implicit-PDF's).
  rng = np.random.default_rng(2)
  count = rotation_grid.num_cells(1)
  q = _haar(rng, 200_000).astype(np.float32)
  uniform = rotation_grid.GridDistribution(jnp.zeros((count,)))
  np.testing.assert_allclose(uniform.log_prob(jnp.asarray(q[:100])), -math.log(math.pi**2),
                             atol=1e-5)
  # A peaked distribution: ∫ p dμ = π² · mean over Haar draws, 1 up to the
  # Monte Carlo error and the cells' few-per-cent volume differences.
  logits = jnp.asarray(3.0 * rng.standard_normal(count), jnp.float32)
  density = np.exp(np.asarray(jax.jit(rotation_grid.GridDistribution(logits).log_prob)(q),
                              np.float64))
  assert abs(math.pi**2 * density.mean() - 1.0) < 0.04
  # Its value on a cell is p_g / (π² / G), the probability over the cell's volume.
  probability = np.exp(np.asarray(jax.nn.log_softmax(logits), np.float64))
  cells = rotation_grid.grid(1)
  np.testing.assert_allclose(
      density[:50], probability[_nearest(q[:50].astype(np.float64), cells)[0]] * count / math.pi**2,
      rtol=1e-4)


def test_modes_are_the_local_maxima():
  count = rotation_grid.num_cells(1)
  cells = rotation_grid.grid(1).astype(np.float64)
  peaks = [3, 400]
  # Two bumps of width ≈ 20° at two cells, on a floor.
  closeness = np.abs(cells @ cells[peaks].T)  # [G, 2]
  angle = 2 * np.arccos(np.clip(closeness, -1, 1))
  logits = jnp.asarray(np.log(np.exp(-(angle / 0.35)**2).sum(1) + 1e-3), jnp.float32)
  locations, log_density, valid = rotation_grid.GridDistribution(logits).modes()
  assert locations.shape == (count, 4) and log_density.shape == valid.shape == (count,)
  # At least twice the uniform density 1/π².
  strong = np.flatnonzero(np.asarray(valid) & (np.asarray(log_density) > math.log(2 / math.pi**2)))
  np.testing.assert_array_equal(np.sort(strong), peaks)
  probability = np.exp(np.asarray(jax.nn.log_softmax(logits), np.float64))
  np.testing.assert_allclose(np.exp(np.asarray(log_density, np.float64)),
                             probability * count / math.pi**2, rtol=1e-4)
  np.testing.assert_allclose(locations[peaks[0]], cells[peaks[0]], atol=1e-6)
  # Every cell has NUM_NEIGHBOURS distinct neighbours, itself excluded.
  neighbours = rotation_grid.neighbours(1)
  assert neighbours.shape == (count, rotation_grid.NUM_NEIGHBOURS)
  assert not np.any(neighbours == np.arange(count)[:, None])


def test_level_of_rejects_other_sizes():
  with pytest.raises(ValueError, match='72·8'):
    rotation_grid.level_of(100)
