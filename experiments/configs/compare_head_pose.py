"""The paper's head-orientation comparison on real data (see README.md "Results").

    python -m experiments.compare --config=experiments/configs/compare_head_pose.py:PROTOCOL \
        --workdir=DIR [--config.data_dir=...]

PROTOCOL is one of experiments/configs/head_pose.py's (biwi: Biwi 70/30 by
recording; aflw2000: train on 300W-LP, test on AFLW2000-3D; biwi_all: train
on 300W-LP, test on every Biwi frame), whose training config every run starts
from; each method changes only the head.
"""

import ml_collections

from experiments.configs import compare_synthetic
from experiments.configs import head_pose

METHODS = 'propel_i1,propel_i2,propel_i4,mse,l1,heatmap,mdn_i2'


def get_config(protocol: str = 'biwi') -> ml_collections.ConfigDict:
  config = head_pose.get_config(protocol)
  config.num_plot_examples = compare_synthetic.NUM_DENSITY_EXAMPLES
  config.compare = compare_synthetic.comparison_section(methods=METHODS)
  return config
