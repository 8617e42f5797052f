"""The shared base configuration; every experiment config starts from it.

Every key `propel_jax.training.train` reads is here, so `--config.KEY=VALUE`
can override any of them from the command line; `propel_jax.training.config`
reads the deprecated names and checks every key before any work starts.
"""

import ml_collections

from propel_jax.nn import models
from propel_jax.training import config as config_lib


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Data (see propel_jax.data.input_pipeline). image_size None keeps the dataset's.
  config.dataset = 'synthetic_hands/ambiguous'
  config.data_dir = ml_collections.config_dict.placeholder(str)  # None: TFDS default.
  config.image_size = ml_collections.config_dict.placeholder(int)
  config.augment = ml_collections.config_dict.placeholder(bool)  # None: the dataset's default.
  config.worker_count = 0  # Grain worker processes; 0 reads in the main process.
  config.train_split = 'train'  # A TFDS split or slice, e.g. 'train[:90%]'.
  # Which split the periodic evaluation uses, and which the final one (written
  # to eval_metrics.json); test_dataset reads them from another dataset with
  # the same label space (e.g. train on 300W-LP, test on AFLW2000).
  config.eval_split = 'test'
  config.test_split = 'test'
  config.test_dataset = ml_collections.config_dict.placeholder(str)

  # Loop.
  config.batch_size = 64  # Global, over all devices and processes.
  config.num_train_steps = 5000
  config.log_every_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.max_checkpoints_to_keep = 3

  # Optimiser: clip the global gradient norm, then Adam on the schedule.
  config.optimizer = 'adam'
  config.learning_rate = 1e-3
  config.lr_schedule = 'cosine'
  config.warmup_steps = 0
  config.weight_decay = 0.0  # Used by 'adamw' only.
  config.grad_clip_norm = 10.0  # 0: no clipping.

  # Model: the paper's CNN and an output head (propel_jax.nn.models, registry).
  config.head = 'propel'  # A name in propel_jax.nn.registry.HEADS.
  config.num_components = 2  # I, the components of a mixture head.
  # The ground truth's width, per head (registry.Head.target_width):
  # propel: σ of the Gaussian in normalised label units ([0, 1] spans the
  # dataset's label range; 0.02 of 90° is 1.8°), for unit-vector labels in
  # the vector's units (≈ radians).
  config.target_scale = 0.02
  # vmfpropel: κ of the von Mises-Fisher density (≈ 1/σ², σ in radians: 400 ≈
  # 2.9°). None reads 1/target_scale², the deprecated former meaning.
  config.target_concentration = ml_collections.config_dict.placeholder(float)
  config.model = models.default_model_config()
  # Deprecated names, still read (with a warning): loss (now head),
  # num_gaussians (now num_components). See propel_jax.training.config.
  config.update(config_lib.deprecated_keys())

  # Outputs.
  config.num_plot_examples = 6
  return config
