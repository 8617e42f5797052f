"""Orientation datasets as TFDS builders (array_record; no TensorFlow needed).

Importing this package registers the builders with TFDS, so that
`tfds.builder('synthetic_hands/ambiguous')` and the input pipeline find them.
"""

from propel_jax.datasets import synthetic_hands

# The TFDS names of the builders above.
DATASET_NAMES = ('synthetic_hands',)

__all__ = ['DATASET_NAMES', 'synthetic_hands']
