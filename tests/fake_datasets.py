"""Tiny fakes of the real head-pose databases in their original formats, for tests.

Shared by the datasets' own tests (tests/biwi_test.py, tests/threeddfa_test.py)
and the comparison's recipe smoke test. Each writer produces what the
builders read from `<data_dir>/downloads/manual/`.
"""

import numpy as np
from PIL import Image
import scipy.io
from scipy.spatial.transform import Rotation

# The fake Kinect RGB camera: focal length and principal point (pixels).
_FOCAL, _CX, _CY = 500.0, 320.0, 240.0

# Biwi recordings: per frame (yaw, pitch, roll) in degrees and the head
# centre (x, y, z) in mm in the depth camera.
BIWI_POSES = {
    '01': [(10.0, -5.0, 2.0, (30.0, -20.0, 900.0)), (-40.0, 15.0, -8.0, (-50.0, 10.0, 1000.0))],
    '02': [(0.0, 0.0, 0.0, (0.0, 0.0, 800.0))],
    '03': [(60.0, 30.0, 20.0, (80.0, 40.0, 1100.0)), (-5.0, -25.0, 0.0, (0.0, 0.0, 950.0))],
}

# 3DDFA faces: (yaw, pitch, roll) in degrees and the landmarks' centre (x, y)
# in pixels.
FACES = [((20.0, -10.0, 5.0), (200.0, 220.0)),
         ((-60.0, 30.0, -15.0), (260.0, 180.0)),
         ((120.0, 0.0, 0.0), (225.0, 225.0))]  # beyond ±99°: dropped


def write_biwi_recording(folder, poses):
  """Writes rgb.cal and, per (yaw, pitch, roll, centre_mm), a pose file and a
  640×480 frame with a bright disc (the 'face') at the projected centre."""
  folder.mkdir(parents=True)
  # Intrinsics, 4 distortion coefficients, depth->RGB rotation, translation.
  (folder / 'rgb.cal').write_text(
      f'{_FOCAL} 0 {_CX}\n0 {_FOCAL} {_CY}\n0 0 1\n\n0 0 0 0\n\n'
      '1 0 0\n0 1 0\n0 0 1\n\n-25 0 0\n')
  for i, (yaw, pitch, roll, centre) in enumerate(poses):
    transposed = Rotation.from_euler('ZYX', [-roll, -yaw, pitch], degrees=True).as_matrix()
    rows = '\n'.join(' '.join(f'{v:.9f}' for v in row) for row in transposed.T)
    (folder / f'frame_{i:05d}_pose.txt').write_text(
        rows + '\n\n' + ' '.join(f'{v:.6f}' for v in centre) + '\n')
    x, y, z = centre[0] - 25.0, centre[1], centre[2]  # in the RGB camera
    u, v = _FOCAL * x / z + _CX, _FOCAL * y / z + _CY
    yy, xx = np.mgrid[:480, :640]
    image = np.full((480, 640, 3), 30, np.uint8)
    image[(xx - u) ** 2 + (yy - v) ** 2 < (_FOCAL * 60.0 / z) ** 2] = 220
    Image.fromarray(image).save(folder / f'frame_{i:05d}_rgb.png')
  # A pose without an RGB frame is skipped, as in the real database.
  (folder / 'frame_09999_pose.txt').write_text('1 0 0\n0 1 0\n0 0 1\n\n0 0 900\n')


def write_biwi_database(manual_dir):
  """Every recording of BIWI_POSES under `manual_dir`/hpdb/ (the download's layout)."""
  for name, poses in BIWI_POSES.items():
    write_biwi_recording(manual_dir / 'hpdb' / name, poses)


def write_3ddfa_face(folder, name, angles, centre, landmark_key):
  """NAME.jpg (450×450, a bright square on the landmarks) and NAME.mat.

  Args:
    folder: a pathlib.Path, created if missing.
    name: the file stem, e.g. 'AFW_1_0' or 'image00000'.
    angles: (yaw, pitch, roll) in degrees.
    centre: the landmarks' centre (x, y) in pixels.
    landmark_key: 'pt2d' (300W-LP) or 'pt3d_68' (AFLW2000-3D).
  """
  folder.mkdir(parents=True, exist_ok=True)
  yaw, pitch, roll = np.deg2rad(angles)
  t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
  x, y = centre[0] + 50 * np.cos(t), centre[1] + 50 * np.sin(t)  # a 100 px box
  landmarks = np.stack([x, y, np.zeros(68)])  # 3×68; pt2d uses the first 2 rows
  mat = {'Pose_Para': np.array([[pitch, yaw, roll, 10.0, 20.0, 0.0, 1e-3]]),
         landmark_key: landmarks if landmark_key == 'pt3d_68' else landmarks[:2]}
  scipy.io.savemat(folder / f'{name}.mat', mat)
  image = np.full((450, 450, 3), 20, np.uint8)
  image[int(centre[1]) - 50:int(centre[1]) + 50, int(centre[0]) - 50:int(centre[0]) + 50] = 230
  Image.fromarray(image).save(folder / f'{name}.jpg', quality=95)
