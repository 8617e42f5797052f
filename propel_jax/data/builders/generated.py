"""What the builders of generated orientation data share: features, examples, build.

`symmetric_shapes` and `symmetric_solids` render every example from a seeded
generator: an image, its label (a unit vector), all its equivalent labels and
one integer naming the kind of example. Only the generator and the names
differ; these functions are the rest.
"""

import numpy as np
import tensorflow_datasets as tfds


def dataset_info(builder: tfds.core.GeneratorBasedBuilder, *, description: str,
                 image_size: int, label_dim: int, num_equivalents: int,
                 kind_key: str) -> tfds.core.DatasetInfo:
  """Grayscale [S, S, 1] images, a [d] label, [K, d] equivalent labels, an int kind."""
  return tfds.core.DatasetInfo(
      builder=builder,
      description=description,
      features=tfds.features.FeaturesDict({
          'image': tfds.features.Tensor(shape=(image_size, image_size, 1), dtype=np.uint8,
                                        encoding=tfds.features.Encoding.BYTES),
          'label': tfds.features.Tensor(shape=(label_dim,), dtype=np.float32),
          'equivalent_labels': tfds.features.Tensor(shape=(num_equivalents, label_dim),
                                                    dtype=np.float32),
          kind_key: tfds.features.Tensor(shape=(), dtype=np.int32),
      }),
      supervised_keys=('image', 'label'),
  )


def examples(seed: int, split_id: int, num_examples: int, generate, kind_key: str):
  """(key, example) pairs of one split from `generate(rng, num_examples)`.

  Each split has its own generator seeded by (seed, split id), so the test
  images do not depend on the training set's size.
  """
  rng = np.random.default_rng([seed, split_id])
  images, labels, equivalents, kinds = generate(rng, num_examples)
  for i in range(num_examples):
    yield i, {'image': images[i], 'label': labels[i],
              'equivalent_labels': equivalents[i], kind_key: kinds[i]}


def build(name: str, data_dir: str, config_name: str) -> tfds.core.DatasetBuilder:
  """Builds `name/config_name` as array_record into data_dir (for tests and demos)."""
  builder = tfds.builder(f'{name}/{config_name}', data_dir=data_dir,
                         file_format='array_record')
  builder.download_and_prepare()
  return builder
