"""Examples from the 3DDFA file format of 300W-LP and AFLW2000-3D.

Both datasets (Zhu et al., CVPR 2016) store each face as `NAME.jpg` (450×450)
and `NAME.mat`, a MATLAB file with `Pose_Para` (1×7: pitch, yaw, roll in
radians, translation, scale) and 68 facial landmarks in pixels (`pt2d`, 2×68,
in 300W-LP; `pt3d_68`, 3×68, in AFLW2000-3D). This module turns one such pair
into a labelled face crop, and `FaceCropBuilder` is the TFDS builder both
datasets share; the builders `the300w_lp` and `aflw2000` only list the files.
Faces with any angle beyond ±99° are dropped (the standard protocol; they are
mostly failed fits).
"""

import dataclasses
import sys

from etils import epath
import numpy as np
from PIL import Image
import scipy.io
import tensorflow_datasets as tfds

from propel_jax.data.builders import face_crops
from propel_jax.data import geometry
from propel_jax.data import labels as labels_lib

# Side of the face crop over the larger side of the landmarks' bounding box:
# the landmarks stop at the eyebrows, the margin keeps forehead and chin.
CROP_MARGIN = 1.5


def read_example(image_path, landmark_key, image_size):
  """Reads NAME.jpg and NAME.mat into an example, or None if out of range.

  Args:
    image_path: path of NAME.jpg; NAME.mat lies next to it.
    landmark_key: 'pt2d' (300W-LP) or 'pt3d_68' (AFLW2000-3D); its first two
      rows are the landmarks' x and y in pixels.
    image_size: side of the stored crop.

  Returns:
    A dict for `face_crops.features(image_size, 'name')`, or None when an angle exceeds the
    head-pose range.
  """
  image_path = epath.Path(image_path)
  mat_path = image_path.with_suffix('.mat')
  with mat_path.open('rb') as f:
    mat = scipy.io.loadmat(f)
  for key in ('Pose_Para', landmark_key):
    if key not in mat:
      raise ValueError(f'{mat_path} has no {key!r} (keys: '
                       f'{sorted(k for k in mat if not k.startswith("__"))}).')
  label = geometry.angles_from_pose_params(mat['Pose_Para'].reshape(-1))
  if np.abs(label).max() > labels_lib.HEAD_POSE.high[0]:
    return None
  landmarks = np.asarray(mat[landmark_key], np.float64)[:2].T  # [68, 2]
  with image_path.open('rb') as f, Image.open(f) as pil:
    image = np.asarray(pil.convert('RGB'))
  crop = geometry.crop_square(
      image, geometry.square_around_points(landmarks, CROP_MARGIN), image_size)
  return face_crops.example(crop, label, 'name', image_path.stem)


@dataclasses.dataclass(eq=False)
class FaceCropConfig(tfds.core.BuilderConfig):
  """Attributes: image_size: side of the stored face crops."""
  image_size: int = 128


class FaceCropBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A 3DDFA-format dataset as face crops labelled with yaw, pitch, roll.

  Subclasses set SPLIT (the one split the dataset provides), LANDMARK_KEY,
  MANUAL_DOWNLOAD_INSTRUCTIONS, and `find_images(manual_dir)` and
  `example_key(image_path)`.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [FaceCropConfig(name='default', description='128x128 face crops.')]
  label_spec = labels_lib.HEAD_POSE
  SPLIT = None
  LANDMARK_KEY = None

  @staticmethod
  def find_images(manual_dir):
    raise NotImplementedError

  @staticmethod
  def example_key(image_path):
    raise NotImplementedError

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, description=sys.modules[type(self).__module__].__doc__,
        features=face_crops.features(self.builder_config.image_size, 'name'),
        supervised_keys=('image', 'label'),
        homepage='http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm')

  def _split_generators(self, dl_manager):
    return {self.SPLIT: self._generate_examples(self.find_images(dl_manager.manual_dir))}

  def _generate_examples(self, images):
    for image_path in images:
      example = read_example(image_path, self.LANDMARK_KEY, self.builder_config.image_size)
      if example is not None:
        yield self.example_key(image_path), example
