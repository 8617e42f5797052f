"""propel_jax: PROPEL, a probabilistic parametric regression loss, in JAX.

`import propel_jax` needs only jax and numpy: the losses, the Gaussian-mixture
type and tools (`propel_jax.mixtures`), the von Mises-Fisher ones on circles,
spheres and rotations (`propel_jax.directional`, `propel_jax.rotation_grid`)
and the scores of both (`propel_jax.scoring`, `propel_jax.scoring_directional`).
Models (`propel_jax.nn`), data (`propel_jax.data`) and training
(`propel_jax.training`) are subpackages imported explicitly; they need the
extra `pip install 'propel-jax[experiments]'`.
"""

from propel_jax import directional
from propel_jax import mixtures
from propel_jax import rotation_grid
from propel_jax import rotations
from propel_jax import scoring
from propel_jax import scoring_directional
from propel_jax.directional import VonMisesFisherMixture
from propel_jax.losses import check_inputs
from propel_jax.losses import l1_loss
from propel_jax.losses import mixture_distance
from propel_jax.losses import mixture_nll
from propel_jax.losses import mse_loss
from propel_jax.losses import propel_loss
from propel_jax.mixtures import Mixture

__all__ = [
    'Mixture',
    'VonMisesFisherMixture',
    'check_inputs',
    'directional',
    'l1_loss',
    'mixture_distance',
    'mixture_nll',
    'mixtures',
    'mse_loss',
    'propel_loss',
    'rotation_grid',
    'rotations',
    'scoring',
    'scoring_directional',
]
__version__ = '0.2.0'
