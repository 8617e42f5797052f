"""The training loop, evaluation, checkpoints, parallelism and the metric writer.

Needs the extra `experiments`.
"""

from propel_jax import _extras

_extras.require('propel_jax.training', 'experiments',
                ('flax', 'optax', 'orbax', 'ml_collections', 'absl', 'tensorboardX'))
