"""Biwi Kinect Head Pose database as a TFDS builder (manual download).

Fanelli et al. (IJCV 2013): about 15k Kinect frames (640×480 RGB) of 20 people
in 24 recordings, each frame with the head's rotation and centre. The paper's
head-orientation experiment most likely used it.

Original layout read here (after extracting kinect_head_pose_db.tgz):

    <manual_dir>/hpdb/01/rgb.cal                 RGB camera calibration
    <manual_dir>/hpdb/01/frame_00003_rgb.png     RGB frame
    <manual_dir>/hpdb/01/frame_00003_pose.txt    3×3 rotation (rows), then the
                                                 head centre (mm, depth camera)
    <manual_dir>/hpdb/02/...

(`hpdb/` may be left out.) `rgb.cal` holds the intrinsic matrix (3×3), four
distortion coefficients (ignored), and the rotation (3×3) and translation (3)
from the depth camera to the RGB camera.

Each example is a face crop: a square of `_FACE_SIZE_MM` (the width of a head
with some margin) at the head centre's depth, centred on the head centre
projected into the RGB frame, resized to `image_size` (128 by default). The
label is (yaw, pitch, roll) in degrees (convention in `geometry`).

Configs:
  all          every frame in one 'test' split (cross-dataset testing, e.g.
               after training on 300W-LP);
  split_70_30  the first 70% of the recordings (sorted by folder name) for
               'train', the rest for 'test': no recording is in both. (Some
               people were recorded twice, so a person can be in both.)
"""

import dataclasses

from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from propel_jax.data.builders import face_crops
from propel_jax.data import geometry
from propel_jax.data import labels as labels_lib

# Side of the face crop in millimetres at the head centre's depth.
_FACE_SIZE_MM = 220.0
_TRAIN_FRACTION = 0.7

_INSTRUCTIONS = """\
Biwi Kinect Head Pose needs a registration, so it is a manual download:
get kinect_head_pose_db.tgz (https://data.vision.ee.ethz.ch/cvl/gfanelli/
head_pose/head_forest.html#db, or the copy on Kaggle) and extract it into
the manual folder, so that <manual_dir>/hpdb/01/frame_00003_rgb.png exists
(<manual_dir> is <data_dir>/downloads/manual/ unless you pass --manual_dir to
`python -m experiments.build_dataset --dataset=biwi/all`).
"""


@dataclasses.dataclass(eq=False)
class BiwiConfig(tfds.core.BuilderConfig):
  """Attributes: split_by_recording: 70/30 train/test split by recording
  (else one 'test' split); image_size: side of the stored face crops."""
  split_by_recording: bool = False
  image_size: int = 128


def read_calibration(path):
  """Reads an `rgb.cal` file.

  Returns:
    (intrinsics [3, 3], rotation [3, 3], translation [3]): depth camera ->
    RGB camera.
  """
  values = np.array(epath.Path(path).read_text().split(), np.float64)
  if values.size < 25:
    raise ValueError(f'{path}: expected 3x3 intrinsics, 4 distortion '
                     f'coefficients, 3x3 rotation, 3 translation; got '
                     f'{values.size} numbers.')
  return (values[:9].reshape(3, 3), values[13:22].reshape(3, 3),
          values[22:25])


def read_pose(path):
  """Reads a `frame_XXXXX_pose.txt` file.

  Returns:
    (rotation [3, 3] as written, head centre [3] in mm).
  """
  values = np.array(epath.Path(path).read_text().split(), np.float64)
  if values.size != 12:
    raise ValueError(f'{path}: expected a 3x3 rotation and a 3-vector, got '
                     f'{values.size} numbers.')
  return values[:9].reshape(3, 3), values[9:]


def face_box(centre_mm, calibration):
  """Square crop box (left, top, right, bottom) around the head, in pixels."""
  intrinsics, rotation, translation = calibration
  camera = rotation @ centre_mm + translation
  projected = intrinsics @ camera
  side = intrinsics[0, 0] * _FACE_SIZE_MM / camera[2]
  return geometry.square_around_centre(projected[:2] / projected[2], side)


def find_recordings(manual_dir):
  """Sorted recording folders (those holding an rgb.cal) under manual_dir."""
  root = epath.Path(manual_dir)
  if (root / 'hpdb').is_dir():
    root = root / 'hpdb'
  recordings = sorted(p for p in root.iterdir() if (p / 'rgb.cal').exists()) \
      if root.is_dir() else []
  if not recordings:
    raise FileNotFoundError(
        f'No Biwi recordings (folders with rgb.cal) in {root}.\n'
        + _INSTRUCTIONS)
  return recordings


class Biwi(tfds.core.GeneratorBasedBuilder):
  """Biwi Kinect Head Pose: face crops labelled with yaw, pitch, roll."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
      BiwiConfig(name='all', split_by_recording=False,
                 description='Every frame in one test split.'),
      BiwiConfig(name='split_70_30', split_by_recording=True,
                 description='70% of the recordings train, 30% test.'),
  ]
  label_spec = labels_lib.HEAD_POSE

  def _info(self):
    size = self.builder_config.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=face_crops.features(size, 'recording'),
        supervised_keys=('image', 'label'),
        homepage='https://data.vision.ee.ethz.ch/cvl/gfanelli/head_pose/'
                 'head_forest.html',
    )

  def _split_generators(self, dl_manager):
    recordings = find_recordings(dl_manager.manual_dir)
    if not self.builder_config.split_by_recording:
      return {'test': self._generate_examples(recordings)}
    num_train = int(round(_TRAIN_FRACTION * len(recordings)))
    return {'train': self._generate_examples(recordings[:num_train]),
            'test': self._generate_examples(recordings[num_train:])}

  def _generate_examples(self, recordings):
    size = self.builder_config.image_size
    for recording in recordings:
      calibration = read_calibration(recording / 'rgb.cal')
      for pose_path in sorted(recording.glob('frame_*_pose.txt')):
        frame = pose_path.name[:-len('_pose.txt')]
        image_path = recording / f'{frame}_rgb.png'
        if not image_path.exists():
          continue  # A few frames of the database have no RGB image.
        rotation, centre = read_pose(pose_path)
        label = geometry.angles_from_biwi_rotation(rotation)
        if np.abs(label).max() > labels_lib.HEAD_POSE.high[0]:
          continue
        with Image.open(image_path) as pil:
          image = np.asarray(pil.convert('RGB'))
        crop = geometry.crop_square(image, face_box(centre, calibration), size)
        yield f'{recording.name}/{frame}', face_crops.example(
            crop, label, 'recording', recording.name)
