"""propel_jax: PROPEL, a probabilistic parametric regression loss, in JAX.

`import propel_jax` pulls in only jax, numpy and chex: the loss and the
Gaussian-mixture tools. Models, data and training live in submodules that are
imported explicitly (`propel_jax.models`, `propel_jax.train`, ...).
"""

from propel_jax.losses import mixture_distance
from propel_jax.losses import propel_loss

__all__ = ['mixture_distance', 'propel_loss']
__version__ = '0.1.0'
