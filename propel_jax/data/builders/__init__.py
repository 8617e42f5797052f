"""Orientation datasets as TFDS builders (array_record; no TensorFlow needed).

Importing this package registers the builders with TFDS, so that
`tfds.builder('synthetic_hands/ambiguous')` and the input pipeline find them.
"""

from propel_jax.data.builders import aflw2000
from propel_jax.data.builders import biwi
from propel_jax.data.builders import image_folder
from propel_jax.data.builders import symmetric_shapes
from propel_jax.data.builders import symmetric_solids
from propel_jax.data.builders import synthetic_hands
from propel_jax.data.builders import the300w_lp

# The TFDS names of the builders above.
DATASET_NAMES = ('synthetic_hands', 'symmetric_shapes', 'symmetric_solids', 'biwi',
                 'the300w_lp_pose', 'aflw2000', 'image_folder')

__all__ = ['DATASET_NAMES', 'aflw2000', 'biwi', 'image_folder',
           'symmetric_shapes', 'symmetric_solids', 'synthetic_hands', 'the300w_lp']
