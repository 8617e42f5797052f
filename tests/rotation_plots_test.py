"""Tests of the Mollweide rotation plots: the coordinates drawn, and the files written."""

import math

import jax.numpy as jnp
import numpy as np

from experiments import rotation_plots
from propel_jax import directional
from propel_jax import rotation_grid
from propel_jax.training import evaluation


def _zyz(theta, phi, psi):
  """Rz(φ) Ry(θ) Rz(ψ) as matrices [n, 3, 3], float64, from the elementary rotations."""
  def rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])

  def ry(b):
    c, s = np.cos(b), np.sin(b)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])

  return np.stack([rz(f) @ ry(t) @ rz(p) for t, f, p in zip(theta, phi, psi)])


def test_hopf_coordinates_of_known_rotations():
  rng = np.random.default_rng(0)
  theta = rng.uniform(0.05, math.pi - 0.05, 50)
  phi = rng.uniform(-math.pi + 0.01, math.pi - 0.01, 50)
  psi = rng.uniform(0.01, 2 * math.pi - 0.01, 50)
  matrices = _zyz(theta, phi, psi)
  q = np.asarray(directional.rotation_matrix_to_quaternion(jnp.asarray(matrices, jnp.float32)))
  for sign in (1, -1):
    longitude, latitude, angle = rotation_plots.hopf_coordinates(sign * q)
    # Longitude and latitude are those of R e_z, the last column.
    np.testing.assert_allclose(np.cos(latitude) * np.cos(longitude), matrices[:, 0, 2],
                               atol=1e-5)
    np.testing.assert_allclose(np.cos(latitude) * np.sin(longitude), matrices[:, 1, 2],
                               atol=1e-5)
    np.testing.assert_allclose(latitude, math.pi / 2 - theta, atol=1e-4)
    np.testing.assert_allclose(longitude, phi, atol=1e-4)
    np.testing.assert_allclose(angle, psi, atol=1e-4)


def test_density_points_sit_on_the_modes():
  # A sharp two-component mixture: its draws plot where its means do.
  modes = np.asarray(directional.rotation_matrix_to_quaternion(jnp.asarray(
      _zyz([0.6, 2.0], [1.0, -2.5], [0.5, 4.0]), jnp.float32)))
  mixture = directional.VonMisesFisherMixture(
      jnp.asarray(modes[None]), jnp.full((1, 2), 5000.0), jnp.zeros((1, 2)))
  points, weights = rotation_plots.density_points(mixture, 0)
  assert points.shape == (rotation_plots.NUM_DRAWS, 4) and np.all(weights == 1)
  drawn = np.stack(rotation_plots.hopf_coordinates(points), -1)  # [P, 3]
  expected = np.array([[1.0, math.pi / 2 - 0.6, 0.5], [-2.5, math.pi / 2 - 2.0, 4.0]])
  distance = np.abs(drawn[:, None, :] - expected[None])  # [P, 2, 3]
  distance = np.minimum(distance, 2 * math.pi - distance)  # ψ and longitude wrap.
  nearest = distance.max(-1).min(-1)
  assert nearest.max() < 0.2  # σ of a rotation angle at κ = 5000: 2/√κ ≈ 1.6°.
  # A grid distribution: its heaviest cells and their probabilities.
  logits = np.full((1, rotation_grid.num_cells(1)), -20.0)
  logits[0, [7, 90]] = [0.0, math.log(0.5)]
  points, weights = rotation_plots.density_points(
      rotation_grid.GridDistribution(jnp.asarray(logits, jnp.float32)), 0)
  np.testing.assert_allclose(points, rotation_grid.grid(1)[[7, 90]])
  np.testing.assert_allclose(weights, [2 / 3, 1 / 3], rtol=1e-5)


def test_write_all_draws_every_file(tmp_path):
  rng = np.random.default_rng(1)
  q = rng.standard_normal((3, 4)).astype(np.float32)
  q /= np.linalg.norm(q, axis=1, keepdims=True)
  outputs = evaluation.Outputs(
      loss=np.zeros(3), predictions={'mode': q}, label=q,
      equivalent_labels=np.stack([q, -q], 1),
      images=rng.uniform(size=(2, 8, 8, 1)).astype(np.float32),
      mixture=directional.VonMisesFisherMixture(q[:, None], np.full((3, 1), 50.0, np.float32),
                                                np.zeros((3, 1), np.float32)))
  rotation_plots.write_all(outputs, str(tmp_path), num_examples=5)
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      'density_0.png', 'density_1.png', 'predicted_vs_true.png']
