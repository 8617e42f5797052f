"""Angles, unit vectors, quaternions and rotation matrices, and the angles between them.

Conventions: angles in radians unless a name ends in `_deg`; unit
quaternions (w, x, y, z), scalar first, with q and -q one rotation; rotation
matrices act on column vectors (R v rotates v). Pure jnp (and NumPy for
`hopf_to_quaternion` and `euler_zyx`, which build grids and read datasets).
"""

import jax
import jax.numpy as jnp
import numpy as np

from propel_jax import _common


def angle_to_vector(angles) -> jax.Array:
  """Angles in radians [...] -> unit vectors (cos θ, sin θ) [..., 2].

  References:
    Prokudin, Gehler and Nowozin, "Deep Directional Statistics: Pose
    Estimation with Uncertainty Quantification", ECCV 2018.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import rotations
    >>> rotations.angle_to_vector(jnp.array([0.0, jnp.pi])).round(4).tolist()
    [[1.0, 0.0], [-1.0, -0.0]]
  """
  angles = jnp.asarray(angles)
  return jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def vector_to_angle(vectors) -> jax.Array:
  """Vectors [..., 2] -> angles atan2(y, x) in radians, in (-π, π].

  References:
    Prokudin, Gehler and Nowozin, "Deep Directional Statistics: Pose
    Estimation with Uncertainty Quantification", ECCV 2018.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import rotations
    >>> angles = rotations.vector_to_angle(jnp.array([[0.0, 2.0]]))
    >>> [round(v, 4) for v in angles.tolist()]
    [1.5708]
  """
  vectors = jnp.asarray(vectors)
  if vectors.ndim < 1 or vectors.shape[-1] != 2:
    raise ValueError(f'vectors shape {vectors.shape} must be [..., 2].')
  return jnp.arctan2(vectors[..., 1], vectors[..., 0])


def quaternion_to_rotation_matrix(quaternions) -> jax.Array:
  """Unit quaternions (w, x, y, z), scalar first, [..., 4] -> rotations [..., 3, 3].

  The quaternion is normalised first; q and -q give the same matrix. The
  matrix rotates vectors actively: R v is v rotated, i.e. q v q*.

  Args:
    quaternions: [..., 4] in (w, x, y, z) order.

  Returns:
    [..., 3, 3] rotation matrices.

  References:
    Shoemake, "Animating rotation with quaternion curves", SIGGRAPH 1985.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import rotations
    >>> half = jnp.sqrt(0.5)  # 90° about z
    >>> r = rotations.quaternion_to_rotation_matrix(
    ...     jnp.array([half, 0.0, 0.0, half]))
    >>> (r @ jnp.array([1.0, 0.0, 0.0])).round(4).tolist()
    [0.0, 1.0, 0.0]
  """
  quaternions = jnp.asarray(quaternions)
  if quaternions.ndim < 1 or quaternions.shape[-1] != 4:
    raise ValueError(f'quaternions shape {quaternions.shape} must be [..., 4] '
                     '(w, x, y, z).')
  return _quaternion_to_rotation_matrix(quaternions)


def _quaternion_to_rotation_matrix(quaternions):
  w, x, y, z = jnp.moveaxis(_common.normalize(quaternions), -1, 0)
  rows = [
      [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
  ]
  return jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)


def rotation_matrix_to_quaternion(matrices) -> jax.Array:
  """Rotation matrices [..., 3, 3] -> unit quaternions (w, x, y, z) [..., 4], w ≥ 0.

  Of q and -q (one rotation) the one with w ≥ 0 is returned. Each of the four
  rows of the symmetric matrix 4 q qᵀ can be read off R; the one with the
  largest diagonal entry is normalised, which avoids dividing by a small
  component (Shepperd's method).

  Args:
    matrices: [..., 3, 3] rotation matrices (orthogonal, determinant 1).

  Returns:
    [..., 4] the inverse of `quaternion_to_rotation_matrix`.

  References:
    Shepperd, "Quaternion from rotation matrix", Journal of Guidance and
    Control 1(3), 1978.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import rotations
    >>> half = jnp.sqrt(0.5)
    >>> r = rotations.quaternion_to_rotation_matrix(
    ...     jnp.array([-half, 0.0, 0.0, -half]))
    >>> q = rotations.rotation_matrix_to_quaternion(r)  # w ≥ 0
    >>> [round(v, 4) + 0.0 for v in q.tolist()]
    [0.7071, 0.0, 0.0, 0.7071]
  """
  matrices = jnp.asarray(matrices)
  if matrices.ndim < 2 or matrices.shape[-2:] != (3, 3):
    raise ValueError(f'matrices shape {matrices.shape} must be [..., 3, 3].')
  return _rotation_matrix_to_quaternion(matrices)


def _rotation_matrix_to_quaternion(matrices):
  r = lambda i, j: matrices[..., i, j]
  trace = r(0, 0) + r(1, 1) + r(2, 2)
  rows = jnp.stack([  # Row k is 4 q_k q.
      jnp.stack([1 + trace, r(2, 1) - r(1, 2), r(0, 2) - r(2, 0),
                 r(1, 0) - r(0, 1)], axis=-1),
      jnp.stack([r(2, 1) - r(1, 2), 1 + r(0, 0) - r(1, 1) - r(2, 2),
                 r(0, 1) + r(1, 0), r(0, 2) + r(2, 0)], axis=-1),
      jnp.stack([r(0, 2) - r(2, 0), r(0, 1) + r(1, 0),
                 1 - r(0, 0) + r(1, 1) - r(2, 2), r(1, 2) + r(2, 1)], axis=-1),
      jnp.stack([r(1, 0) - r(0, 1), r(0, 2) + r(2, 0), r(1, 2) + r(2, 1),
                 1 - r(0, 0) - r(1, 1) + r(2, 2)], axis=-1),
  ], axis=-2)  # [..., 4, 4]
  diagonal = jnp.diagonal(rows, axis1=-2, axis2=-1)
  best = jnp.argmax(diagonal, axis=-1)
  q = _common.normalize(jnp.take_along_axis(rows, best[..., None, None], axis=-2)[..., 0, :])
  return jnp.where(q[..., :1] < 0, -q, q)


def angle_between_deg(a, b) -> jax.Array:
  """Angle in degrees between vectors [..., 2] (of any nonzero length), in [0, 180].

  References:
    Prokudin, Gehler and Nowozin, "Deep Directional Statistics: Pose
    Estimation with Uncertainty Quantification", ECCV 2018.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import rotations
    >>> float(rotations.angle_between_deg(jnp.array([1.0, 0.0]),
    ...                                             jnp.array([0.0, 3.0])))
    90.0
  """
  cross = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
  dot = jnp.sum(a * b, axis=-1)
  return jnp.rad2deg(jnp.abs(jnp.arctan2(cross, dot)))


def geodesic_angle_deg(a, b) -> jax.Array:
  """Rotation angle (degrees, [0, 180]) between quaternions [..., 4] (any nonzero length).

  With b's sign chosen so that aᵀb ≥ 0 and both normalised, the angle φ
  between them is half the rotation angle, and φ/2 = atan2(‖a − b‖, ‖a + b‖)
  keeps its accuracy near 0, unlike arccos.

  References:
    Huynh, "Metrics for 3D rotations: comparison and analysis", Journal of
    Mathematical Imaging and Vision 35(2), 2009.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import rotations
    >>> half = jnp.sqrt(0.5)  # 90° about z
    >>> float(rotations.geodesic_angle_deg(
    ...     jnp.array([1.0, 0.0, 0.0, 0.0]), jnp.array([half, 0.0, 0.0, half])))
    90.0
  """
  a = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
  b = b / jnp.linalg.norm(b, axis=-1, keepdims=True)
  b = jnp.where(jnp.sum(a * b, axis=-1, keepdims=True) < 0, -b, b)
  half = jnp.arctan2(jnp.linalg.norm(a - b, axis=-1), jnp.linalg.norm(a + b, axis=-1))
  return jnp.rad2deg(4.0 * half)


def hopf_to_quaternion(theta, phi, psi) -> np.ndarray:
  """Quaternions (w, x, y, z) [..., 4] of Rz(φ) Ry(θ) Rz(ψ), float64 (module docstring).

  References:
    Yershova, Jain, LaValle and Mitchell, "Generating uniform incremental
    grids on SO(3) using the Hopf fibration", IJRR 29(7), 2010.

  Examples:
    >>> import numpy as np
    >>> from propel_jax import rotations
    >>> # θ = π: the half turn about y.
    >>> rotations.hopf_to_quaternion(np.pi, 0.0, 0.0).round(4).tolist()
    [0.0, 0.0, 1.0, 0.0]
  """
  c, s = np.cos(np.asarray(theta) / 2.0), np.sin(np.asarray(theta) / 2.0)
  total, difference = (phi + psi) / 2.0, (psi - phi) / 2.0
  return np.stack([c * np.cos(total), s * np.sin(difference), s * np.cos(difference),
                   c * np.sin(total)], axis=-1)


def euler_zyx(matrix):
  """Angles (α, β, γ) in radians with matrix = Rz(γ) Ry(β) Rx(α).

  Rx, Ry, Rz are the right-handed rotations about the x, y, z axes. β is in
  [−π/2, π/2]; at β = ±π/2 (gimbal lock) α absorbs the shared rotation.

  Args:
    matrix: [..., 3, 3] rotation matrices.

  Returns:
    [..., 3] array of (α, β, γ).
  """
  m = np.asarray(matrix, np.float64)
  alpha = np.arctan2(m[..., 2, 1], m[..., 2, 2])
  beta = np.arctan2(-m[..., 2, 0], np.hypot(m[..., 2, 1], m[..., 2, 2]))
  gamma = np.arctan2(m[..., 1, 0], m[..., 0, 0])
  return np.stack([alpha, beta, gamma], axis=-1)
