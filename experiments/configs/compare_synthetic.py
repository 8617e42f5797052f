"""Comparison of every head on the synthetic hands (see propel_jax/comparison.py).

    python -m experiments.compare --config=experiments/configs/compare_synthetic.py:KIND \
        --workdir=DIR [--config.compare.seeds="(0, 1)" --config.compare.methods=mse,propel_i2 \
        --config.num_train_steps=2000 ...]

KIND names the dataset synthetic_hands/KIND: ambiguous_small, unambiguous_small
(32×32, 512 train / 256 test: the CPU-sized comparison), ambiguous,
unambiguous (64×64, 10k / 3k), ambiguous_128, unambiguous_128 (the paper's
input size). Every key but `compare` is the training config every run starts
from (experiments/configs/synthetic.py); each method changes only the head.
"""

import ml_collections

from experiments.configs import synthetic

KINDS = ('ambiguous_small', 'unambiguous_small', 'ambiguous', 'unambiguous', 'ambiguous_128',
         'unambiguous_128')
# PROPEL with I ∈ {1, 2, 4, 8}, then I = 4 with learned weights and with
# full-covariance components, the direct MSE / L1 regressions, the heatmap,
# and a mixture density network (NLL) with PROPEL's default I.
METHODS = ('propel_i1,propel_i2,propel_i4,propel_i8,propel_i4_lw,propel_i4_full,mse,l1,'
           'heatmap,mdn_i2')
# Sensitivity of PROPEL to σ_gt (the base is 0.02 of the label range, 1.8°).
SWEEP = 'propel_i2_s0.005,propel_i2_s0.01,propel_i2_s0.05,propel_i2_s0.1'
# Test images every run saves with its outputs (num_plot_examples): the
# columns of the comparison's density grid.
NUM_DENSITY_EXAMPLES = 6


def comparison_section(methods: str = METHODS, sweep: str = '',
                       seeds=(0, 1, 2)) -> ml_collections.ConfigDict:
  """The `compare` keys (see propel_jax.comparison): what to run and how often."""
  return ml_collections.ConfigDict({
      'methods': methods,  # Comma-separated method names.
      'sweep': sweep,  # More methods, reported in the sensitivity table only.
      'seeds': seeds,
  })


def get_config(kind: str = 'ambiguous_small') -> ml_collections.ConfigDict:
  kind = kind or 'ambiguous_small'
  if kind not in KINDS:
    raise ValueError(f'Unknown synthetic dataset {kind!r} for the comparison; use one of {KINDS}, '
                     f'e.g. --config=experiments/configs/compare_synthetic.py:ambiguous_small.')
  family, _, size = kind.partition('_')
  config = synthetic.synthetic_config(family, 'small' if size == 'small' else 'full')
  if size == '128':
    config.dataset = f'synthetic_hands/{kind}'
  config.num_plot_examples = NUM_DENSITY_EXAMPLES
  config.compare = comparison_section(sweep=SWEEP if family == 'ambiguous' else '')
  return config
