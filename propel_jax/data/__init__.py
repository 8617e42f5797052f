"""Label specs, TFDS builders and the Grain input pipeline (extra `experiments`)."""

from propel_jax import _extras

_extras.require('propel_jax.data', 'experiments',
                ('tensorflow_datasets', 'grain', 'array_record', 'PIL', 'etils', 'scipy'))
