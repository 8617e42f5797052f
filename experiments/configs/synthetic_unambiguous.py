"""Synthetic hand orientation, unambiguous: perspective and a light from above break the symmetry.

The control for `synthetic.py`: every image determines its label, so a point
estimate suffices and PROPEL should match MSE.

    --config=experiments/configs/synthetic_unambiguous.py[:small]
"""

import ml_collections

from experiments.configs import synthetic


def get_config(variant: str = 'full') -> ml_collections.ConfigDict:
  return synthetic.synthetic_config('unambiguous', variant or 'full')
