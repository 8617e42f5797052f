"""300W-LP head pose as a TFDS builder (manual download).

122k faces of 300W synthesised at large poses by 3DDFA (Zhu et al., CVPR
2016), the standard training set of the protocol "train on 300W-LP, test on
AFLW2000-3D / BIWI". TFDS has `the300w_lp`, but its generator reads files
with TensorFlow and keeps `pose_params` raw; this builder reads the same
original files with the same selection (the subset folders AFW, HELEN, IBUG,
LFPW, without their *_Flip mirror copies, which the input pipeline's flip
augmentation replaces), takes (yaw, pitch, roll) from `Pose_Para` and stores
face crops around the 68 landmarks `pt2d` (`threeddfa`). Faces with an angle
beyond ±99° are dropped.

Layout read (300W-LP.zip extracted):

    <manual_dir>/300W_LP/AFW/AFW_134212_1_0.jpg
    <manual_dir>/300W_LP/AFW/AFW_134212_1_0.mat   (Pose_Para, pt2d, ...)
    <manual_dir>/300W_LP/HELEN/...  IBUG/...  LFPW/...
"""

from etils import epath

from propel_jax.data.builders import threeddfa

_INSTRUCTIONS = """\
Download 300W-LP.zip from the 3DDFA page
(http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm) and
extract it into the manual folder, so that <manual_dir>/300W_LP/AFW/*.jpg and
*.mat exist (<manual_dir> is <data_dir>/downloads/manual/ unless you pass
--manual_dir to `python -m experiments.build_dataset
--dataset=the300w_lp_pose`).
"""

_SUBSETS = ('AFW', 'HELEN', 'IBUG', 'LFPW')


def find_images(manual_dir):
  """Sorted face images of the four 300W-LP subsets under manual_dir."""
  root = epath.Path(manual_dir)
  if (root / '300W_LP').is_dir():
    root = root / '300W_LP'
  images = []
  for subset in _SUBSETS:
    if (root / subset).is_dir():
      images += sorted((root / subset).glob('*.jpg'))
  if not images:
    raise FileNotFoundError(
        f'No 300W-LP images in {root}/{{{",".join(_SUBSETS)}}}/.\n'
        + _INSTRUCTIONS)
  return images


class The300wLpPose(threeddfa.FaceCropBuilder):
  """300W-LP: face crops labelled with yaw, pitch, roll (train only)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  SPLIT = 'train'
  LANDMARK_KEY = 'pt2d'
  find_images = staticmethod(find_images)

  @staticmethod
  def example_key(image_path):
    return f'{image_path.parent.name}/{image_path.stem}'
