"""Head-pose geometry shared by the real datasets: angles and face crops.

Angle convention (degrees), the one of the head-pose literature (300W-LP,
AFLW2000-3D, BIWI as used by HopeNet, FSA-Net, 6DRepNet): with the camera
looking at a frontal face, yaw turns the head left-right, pitch nods it
up-down and roll tilts it towards a shoulder; all are 0 for a frontal face.

* 300W-LP and AFLW2000-3D store `Pose_Para` = [pitch, yaw, roll, tx, ty, tz,
  scale] with the angles in radians (`angles_from_pose_params`).
* BIWI stores the head's rotation matrix R (head frame -> depth-camera frame).
  With M = Rᵀ decomposed as M = Rz(γ) Ry(β) Rx(α) (`euler_zyx`), the
  literature's angles are pitch = α, yaw = −β, roll = −γ
  (`angles_from_biwi_rotation`).

Face crops are squares (`square_around_points`, `square_around_centre`) cut
out with zero padding beyond the image border and resized (`crop_square`).
"""

import numpy as np
from PIL import Image

# Importable from here too.
from propel_jax.rotations import euler_zyx


def angles_from_biwi_rotation(rotation):
  """(yaw, pitch, roll) in degrees from a BIWI pose-file rotation matrix.

  Args:
    rotation: [3, 3] (or [..., 3, 3]) as the three rows of the pose file.

  Returns:
    [3] (or [..., 3]) array of (yaw, pitch, roll).
  """
  rotation = np.asarray(rotation, np.float64)
  alpha, beta, gamma = np.moveaxis(
      euler_zyx(np.swapaxes(rotation, -1, -2)), -1, 0)
  return np.rad2deg(np.stack([-beta, alpha, -gamma], axis=-1))


def angles_from_pose_params(pose_params):
  """(yaw, pitch, roll) in degrees from a 3DDFA `Pose_Para` vector.

  Args:
    pose_params: [..., 7] (pitch, yaw, roll in radians, translation, scale),
      or any array whose last axis starts with those three.

  Returns:
    [..., 3] array of (yaw, pitch, roll).
  """
  p = np.asarray(pose_params, np.float64)
  return np.rad2deg(np.stack([p[..., 1], p[..., 0], p[..., 2]], axis=-1))


def square_around_points(points, margin):
  """A square box around 2-D points, enlarged by `margin`.

  Args:
    points: [N, 2] pixel coordinates (x, y), e.g. face landmarks.
    margin: side of the square over the larger side of the points' bounding
      box (landmarks end at the eyebrows, so > 1 keeps the forehead).

  Returns:
    (left, top, right, bottom) floats.
  """
  points = np.asarray(points, np.float64)
  low, high = points.min(axis=0), points.max(axis=0)
  return square_around_centre((low + high) / 2.0, margin * (high - low).max())


def square_around_centre(centre, side):
  """(left, top, right, bottom) of the square of `side` centred on (x, y)."""
  x, y = centre
  half = side / 2.0
  return (float(x - half), float(y - half), float(x + half), float(y + half))


def crop_square(image, box, size):
  """Cuts `box` out of `image` and resizes it to size × size.

  Parts of the box outside the image are black.

  Args:
    image: [H, W, C] uint8.
    box: (left, top, right, bottom) in pixels; may extend past the image.
    size: output height and width.

  Returns:
    [size, size, C] uint8.
  """
  channels = image.shape[-1]
  pil = Image.fromarray(image[..., 0] if channels == 1 else image)
  # Image.transform samples the box at any sub-pixel position and fills the
  # outside with zeros, unlike crop + resize, which rounds the box.
  crop = pil.transform((size, size), Image.Transform.EXTENT, box,
                       resample=Image.Resampling.BILINEAR)
  return np.asarray(crop).reshape(size, size, channels)
