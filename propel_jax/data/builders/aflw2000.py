"""AFLW2000-3D head pose as a TFDS builder (manual download).

2,000 faces of AFLW refitted with 3DDFA (Zhu et al., CVPR 2016); the standard
test set of the head-pose protocol "train on 300W-LP, test on AFLW2000-3D".
TFDS's own `aflw2k3d` keeps the landmarks but not the pose; this builder reads
the same files, takes (yaw, pitch, roll) from `Pose_Para` and stores face
crops around the 68 landmarks (`threeddfa`). Faces with an angle beyond ±99°
are dropped, as in the literature (which reports 1,969 of 2,000 remaining).

Layout read (AFLW2000-3D.zip extracted):

    <manual_dir>/AFLW2000/image00002.jpg
    <manual_dir>/AFLW2000/image00002.mat   (Pose_Para, pt3d_68, ...)
"""

from etils import epath

from propel_jax.data.builders import threeddfa

_INSTRUCTIONS = """\
Download AFLW2000-3D.zip from the 3DDFA page
(http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm) and
extract it into the manual folder, so that
<manual_dir>/AFLW2000/image00002.jpg and image00002.mat exist (<manual_dir>
is <data_dir>/downloads/manual/ unless you pass --manual_dir to
`python -m experiments.build_dataset --dataset=aflw2000`).
"""


def find_images(manual_dir):
  """Sorted image*.jpg files of AFLW2000-3D under manual_dir."""
  root = epath.Path(manual_dir)
  if (root / 'AFLW2000').is_dir():
    root = root / 'AFLW2000'
  images = sorted(root.glob('image*.jpg')) if root.is_dir() else []
  if not images:
    raise FileNotFoundError(f'No AFLW2000-3D images (image*.jpg) in {root}.\n'
                            + _INSTRUCTIONS)
  return images


class Aflw2000(threeddfa.FaceCropBuilder):
  """AFLW2000-3D: face crops labelled with yaw, pitch, roll (test only)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  SPLIT = 'test'
  LANDMARK_KEY = 'pt3d_68'
  find_images = staticmethod(find_images)

  @staticmethod
  def example_key(image_path):
    return image_path.stem
