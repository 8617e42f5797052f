"""What the builders of generated orientation data share: features, splits, build.

`symmetric_shapes` and `symmetric_solids` render every example from a seeded
generator: an image, its label (a unit vector), all its equivalent labels and
one integer naming the kind of example. Only the generator and the names
differ; `GeneratedSplits` is the rest of the builder.
"""

import os
import sys

import numpy as np
import tensorflow_datasets as tfds

from propel_jax.data.builders import locked_build

# Every builder's sizes: (config-name suffix, image size, train, test). The
# full size; `_small`, the CPU comparisons' and tests'; `_medium`, the CPU
# comparisons' that train long enough to converge (more images, same size).
SIZES = (('', 64, 10_000, 3_000), ('_small', 32, 2_048, 512), ('_medium', 32, 16_384, 2_048))


class GeneratedSplits:
  """Mixin for a `tfds.core.GeneratorBasedBuilder` of generated examples.

  The builder sets `label_dim` (d) and `kind_key` (the name of the int
  feature) and defines `_num_equivalents()` (K for its config) and
  `_generate(rng, num_examples)` -> (images [N, S, S, 1] uint8, labels [N, d],
  equivalents [N, K, d], kinds [N]). Its configs have `image_size`, `seed`,
  `num_train` and `num_test`.
  """

  label_dim: int
  kind_key: str

  def _num_equivalents(self) -> int:
    raise NotImplementedError

  def _generate(self, rng: np.random.Generator, num_examples: int):
    raise NotImplementedError

  def _info(self):
    size = self.builder_config.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=sys.modules[type(self).__module__].__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(size, size, 1), dtype=np.uint8,
                                          encoding=tfds.features.Encoding.BYTES),
            'label': tfds.features.Tensor(shape=(self.label_dim,), dtype=np.float32),
            'equivalent_labels': tfds.features.Tensor(
                shape=(self._num_equivalents(), self.label_dim), dtype=np.float32),
            self.kind_key: tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    return {'train': self._generate_examples(cfg.num_train, 0),
            'test': self._generate_examples(cfg.num_test, 1)}

  def _generate_examples(self, num_examples, split_id):
    # Each split has its own generator seeded by (seed, split id), so the test
    # images do not depend on the training set's size.
    rng = np.random.default_rng([self.builder_config.seed, split_id])
    images, labels, equivalents, kinds = self._generate(rng, num_examples)
    for i in range(num_examples):
      yield i, {'image': images[i], 'label': labels[i],
                'equivalent_labels': equivalents[i], self.kind_key: kinds[i]}


def build(name: str, data_dir: str, config_name: str) -> tfds.core.DatasetBuilder:
  """Builds `name/config_name` as array_record into data_dir (for tests and demos)."""
  return locked_build.prepare(f'{name}/{config_name}', os.fspath(data_dir))
