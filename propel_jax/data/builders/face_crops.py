"""What every head-pose builder stores: a JPEG face crop and its yaw, pitch, roll.

Biwi, 300W-LP and AFLW2000-3D are compared with each other (train on one, test
on another), so their examples share one layout: the image, the label in
degrees (`labels.HEAD_POSE`), its only equivalent (itself: a head pose is not
ambiguous) and a text field saying where the crop came from (a Biwi recording,
a 3DDFA file name).
"""

import io

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

# High enough that the crops' JPEG artefacts are far below the sensor noise.
JPEG_QUALITY = 95


def features(image_size, source_field):
  """TFDS features of a face-crop example.

  Args:
    image_size: side of the stored RGB crops.
    source_field: name of the text field saying where each crop came from.
  """
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(image_size, image_size, 3),
                                   encoding_format='jpeg'),
      'label': tfds.features.Tensor(shape=(3,), dtype=np.float32),
      'equivalent_labels': tfds.features.Tensor(shape=(1, 3),
                                                dtype=np.float32),
      source_field: tfds.features.Text(),
  })


def example(crop, label, source_field, source):
  """One example for `features(crop side, source_field)`.

  Args:
    crop: [S, S, 3] uint8 RGB face crop.
    label: [3] yaw, pitch, roll in degrees.
    source_field: as given to `features`.
    source: its value for this crop.
  """
  buffer = io.BytesIO()
  Image.fromarray(crop).save(buffer, format='JPEG', quality=JPEG_QUALITY)
  label = np.asarray(label, np.float32)
  return {'image': buffer.getvalue(), 'label': label,
          'equivalent_labels': label[None], source_field: source}
