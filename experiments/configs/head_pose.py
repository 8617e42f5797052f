"""The paper's head-orientation experiment on real data: yaw, pitch and roll.

    python -m experiments.train --config=experiments/configs/head_pose.py:PROTOCOL \
        --workdir=DIR [--config.data_dir=...]

PROTOCOL:
  biwi       Biwi Kinect Head Pose, 70/30 train/test split by recording
             (`biwi/split_70_30`), as in the paper's head experiment.
  aflw2000   train on 300W-LP (`the300w_lp_pose`), test on AFLW2000-3D.
  biwi_all   train on 300W-LP, test on every Biwi frame (`biwi/all`).

The datasets are manual downloads: build them first (README.md "Datasets").
The network is the paper's head network: 128×128 input, four [conv, BN,
ReLU, pool] blocks of 16, 32, 32, 32 channels, FC 20, and PROPEL with I = 2.
"""

import ml_collections

from experiments.configs import default

PROTOCOLS = {
    # protocol: (training dataset, test dataset or None for the same one).
    'biwi': ('biwi/split_70_30', None),
    'aflw2000': ('the300w_lp_pose', 'aflw2000'),
    'biwi_all': ('the300w_lp_pose', 'biwi/all'),
}


def get_config(protocol: str = 'biwi') -> ml_collections.ConfigDict:
  protocol = protocol or 'biwi'
  if protocol not in PROTOCOLS:
    raise ValueError(f'Unknown head-pose protocol {protocol!r}; use one of {sorted(PROTOCOLS)}, '
                     f'e.g. --config=experiments/configs/head_pose.py:biwi.')
  config = default.get_config()
  config.dataset, test_dataset = PROTOCOLS[protocol]
  if test_dataset:
    config.test_dataset = test_dataset
  config.model.hidden_units = 20  # The paper's head network.
  config.num_components = 2
  config.batch_size = 64
  # Biwi's train split holds ~10k frames (20k steps ≈ 120 epochs); 300W-LP
  # ~61k faces (30k steps ≈ 31 epochs).
  config.num_train_steps = 20_000 if protocol == 'biwi' else 30_000
  config.eval_every_steps = 5_000
  config.checkpoint_every_steps = 5_000
  return config
