"""propel_jax: PROPEL, a probabilistic parametric regression loss, in JAX.

`import propel_jax` pulls in only jax, numpy and chex: the loss, baseline
losses and the Gaussian-mixture tools (`propel_jax.mixtures`). Models, data
and training live in submodules that are imported explicitly
(`propel_jax.models`, `propel_jax.train`, ...).
"""

from propel_jax import mixtures
from propel_jax.losses import check_inputs
from propel_jax.losses import l1_loss
from propel_jax.losses import mixture_distance
from propel_jax.losses import mixture_nll
from propel_jax.losses import mse_loss
from propel_jax.losses import propel_loss

__all__ = [
    'check_inputs',
    'l1_loss',
    'mixture_distance',
    'mixture_nll',
    'mixtures',
    'mse_loss',
    'propel_loss',
]
__version__ = '0.1.0'
