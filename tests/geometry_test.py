"""Tests of the head-pose angle conventions and face crops (SciPy as reference)."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from propel_jax.data import geometry


def test_euler_zyx_inverts_scipy_composition():
  rng = np.random.default_rng(0)
  angles = rng.uniform([-np.pi, -1.5, -np.pi], [np.pi, 1.5, np.pi], size=(50, 3))
  # SciPy's intrinsic 'ZYX' with (γ, β, α) is Rz(γ) Ry(β) Rx(α).
  matrices = Rotation.from_euler('ZYX', angles[:, ::-1]).as_matrix()
  np.testing.assert_allclose(geometry.euler_zyx(matrices), angles, atol=1e-9)


def test_biwi_angles_follow_the_documented_convention():
  yaw, pitch, roll = 30.0, -20.0, 10.0
  # The file holds R with Rᵀ = Rz(-roll) Ry(-yaw) Rx(pitch).
  transposed = Rotation.from_euler('ZYX', [-roll, -yaw, pitch], degrees=True).as_matrix()
  np.testing.assert_allclose(geometry.angles_from_biwi_rotation(transposed.T),
                             [yaw, pitch, roll], atol=1e-9)
  np.testing.assert_allclose(geometry.angles_from_biwi_rotation(np.eye(3)), [0, 0, 0],
                             atol=1e-12)


def test_pure_yaw_turns_about_the_vertical_axis():
  # A pure yaw of the head is a rotation about the camera's vertical (y) axis.
  rotation = Rotation.from_euler('y', 25.0, degrees=True).as_matrix()
  yaw, pitch, roll = geometry.angles_from_biwi_rotation(rotation)
  assert abs(abs(yaw) - 25.0) < 1e-9 and abs(pitch) < 1e-9 and abs(roll) < 1e-9


def test_pose_params_are_pitch_yaw_roll_in_radians():
  params = np.array([0.1, -0.5, 0.25, 10.0, 20.0, 0.0, 1e-3])
  np.testing.assert_allclose(geometry.angles_from_pose_params(params),
                             np.rad2deg([-0.5, 0.1, 0.25]))


def test_square_boxes():
  assert geometry.square_around_centre((10.0, 20.0), 8.0) == (6.0, 16.0, 14.0, 24.0)
  box = geometry.square_around_points([[0.0, 0.0], [10.0, 4.0]], margin=1.5)
  assert box == pytest.approx((-2.5, -5.5, 12.5, 9.5))


def test_crop_square_cuts_resizes_and_pads_with_black():
  image = np.zeros((40, 60, 3), np.uint8)
  image[10:20, 30:40] = 200  # a 10×10 bright patch
  crop = geometry.crop_square(image, (25.0, 5.0, 45.0, 25.0), 40)  # 2× zoom on it
  assert crop.shape == (40, 40, 3)
  bright = crop[..., 0] > 100
  ys, xs = np.nonzero(bright)
  assert abs(ys.mean() - 19.5) < 1 and abs(xs.mean() - 19.5) < 1
  assert 350 < bright.sum() < 450  # 20×20 after the 2× zoom
  outside = geometry.crop_square(image, (-30.0, -30.0, -10.0, -10.0), 8)
  np.testing.assert_array_equal(outside, 0)
  gray = geometry.crop_square(image[..., :1], (25.0, 5.0, 45.0, 25.0), 10)
  assert gray.shape == (10, 10, 1)
