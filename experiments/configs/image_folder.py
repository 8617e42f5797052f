"""Your own images: a folder of images and a CSV of targets (any number of them).

    python -m experiments.train --config=experiments/configs/image_folder.py:/data/hands/labels.csv \
        --workdir=DIR [--config.image_folder.label_low="(-45., -45.)" \
        --config.image_folder.label_high="(45., 45.)" --config.model.hidden_units=50 ...]

The CSV format is `propel_jax.data.builders.image_folder`'s: a header
`filename,target1,...[,split]`. The folder is registered as the dataset
'image_folder/<config.image_folder.name>' in every program that reads the run
(training and `experiments.evaluate`, from the saved config), and built into
data_dir on first use. The label range (what maps to [0, 1]) defaults to
the smallest and largest value of each target in the CSV.

Orientation targets: `--config.image_folder.targets=angle` (one column of
in-plane angles in degrees), `unit_vector` or `quaternion`, with a directional
head, e.g. `--config.head=vmfpropel --config.target_concentration=400`
(docs/orientation.md).
"""

import ml_collections

from experiments.configs import default


def get_config(csv_path: str = '') -> ml_collections.ConfigDict:
  if not csv_path:
    raise ValueError('Name the CSV of targets after the config file, e.g. '
                     '--config=experiments/configs/image_folder.py:/data/hands/labels.csv.')
  config = default.get_config()
  # The keyword arguments of propel_jax.data.builders.image_folder.register.
  config.image_folder = ml_collections.ConfigDict({
      'name': 'custom',
      'csv_path': csv_path,
      'image_dir': ml_collections.config_dict.placeholder(str),  # Default: the CSV's folder.
      'label_low': ml_collections.config_dict.placeholder(tuple),  # Default: the CSV's min.
      'label_high': ml_collections.config_dict.placeholder(tuple),  # Default: the CSV's max.
      'flip_negates': ml_collections.config_dict.placeholder(tuple),  # None: never flip.
      'image_size': 128,
      'channels': 3,
      'test_fraction': 0.3,
      'seed': 0,
      # 'interval' (degrees in a range), or orientation targets for the directional
      # heads: 'angle' (one column, degrees), 'unit_vector' (x, y), 'quaternion' (w, x, y, z).
      'targets': 'interval',
  })
  config.dataset = 'image_folder/custom'
  return config
