"""Synthetic hand orientation, ambiguous: a flat hand seen from the front or the back.

The two orientations (φ, ψ) and (−φ, −ψ) render identical images, so the
label is bimodal: PROPEL with two components can find both modes where MSE
settles between them. Targets: azimuth and elevation within 45°, as in the
paper's hand experiment (hidden layer of 50 units).

    python -m experiments.train --config=experiments/configs/synthetic.py --workdir=DIR
    --config=experiments/configs/synthetic.py:small   the 32×32 small dataset (tests)
    --config=experiments/configs/synthetic.py:demo    the full dataset at 32×32, a few
                                                      minutes on a CPU (`make demo`)
"""

import ml_collections

from experiments.configs import default

VARIANTS = ('full', 'small', 'demo')


def synthetic_config(kind: str, variant: str) -> ml_collections.ConfigDict:
  """The config for `synthetic_hands/<kind>` ('ambiguous' or 'unambiguous')."""
  if variant not in VARIANTS:
    raise ValueError(f'Unknown variant {variant!r} of the synthetic config; use one of '
                     f'{VARIANTS} (e.g. --config=experiments/configs/synthetic.py:small).')
  config = default.get_config()
  config.model.hidden_units = 50
  if variant == 'full':
    config.dataset = f'synthetic_hands/{kind}'
  elif variant == 'demo':
    config.dataset = f'synthetic_hands/{kind}'
    config.image_size = 32  # A quarter of the pixels: about 4x faster steps.
    config.model.channels = (16, 32, 32)  # Three pools leave 4×4.
    config.num_train_steps = 1500
    config.log_every_steps = 50
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500
  else:
    config.dataset = f'synthetic_hands/{kind}_small'
    config.batch_size = 32
    config.num_train_steps = 600
    config.log_every_steps = 50
    config.eval_every_steps = 200
    config.checkpoint_every_steps = 200
    config.model.channels = (16, 32, 32)  # 32×32 input: three pools leave 4×4.
  return config


def get_config(variant: str = 'full') -> ml_collections.ConfigDict:
  return synthetic_config('ambiguous', variant or 'full')
