"""Comparison of the orientation heads on the symmetric shapes (in-plane, labels on the circle).

    python -m experiments.compare --config=experiments/configs/compare_orientation.py:KIND \
        --workdir=DIR [--config.compare.seeds="(0, 1)" --config.num_train_steps=2000 ...]

KIND names the dataset symmetric_shapes/KIND: mixed_small (32×32, 2,048 train /
512 test, every shape: the CPU-sized comparison), mixed (64×64, 10k / 3k), or
one symmetry order k1 ... k6 (with or without _small). The methods: PROPEL
over von Mises mixtures (I = 6 ≥ every k), a von Mises MDN trained by NLL
(I = 6), Euclidean PROPEL on (cos θ, sin θ) (I = 6), MSE on the unit vector,
and a 72-bin angle classifier. Every key but `compare` is the training
config every run starts from; each method changes only the head.
"""

import ml_collections

from experiments.configs import compare_synthetic
from experiments.configs import default

SHAPE_KINDS = ('mixed',) + tuple(f'k{k}' for k in range(1, 7))
KINDS = SHAPE_KINDS + tuple(f'{kind}_small' for kind in SHAPE_KINDS)
METHODS = 'vmfpropel_i6,vmfmdn_i6,propel_i6,mse,classifier'


def get_config(kind: str = 'mixed_small') -> ml_collections.ConfigDict:
  kind = kind or 'mixed_small'
  if kind not in KINDS:
    raise ValueError(f'Unknown symmetric_shapes config {kind!r}; use one of {KINDS}, e.g. '
                     '--config=experiments/configs/compare_orientation.py:mixed_small.')
  config = default.get_config()
  config.dataset = f'symmetric_shapes/{kind}'
  config.model.hidden_units = 50
  # σ of the ground truth: 0.05 of the unit vector ≈ 2.9° (vmfpropel: κ_gt = 400).
  config.target_scale = 0.05
  config.num_gaussians = 6
  if kind.endswith('_small'):
    config.batch_size = 32
    config.num_train_steps = 1000
    config.log_every_steps = 50
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 500
    config.model.channels = (16, 32, 32)  # 32×32 input: three pools leave 4×4.
  config.num_plot_examples = compare_synthetic.NUM_DENSITY_EXAMPLES
  config.compare = compare_synthetic.comparison_section(methods=METHODS)
  return config
