"""Builds (prepares) a dataset of `propel_jax.datasets` as array_record.

    python -m propel_jax.datasets.build --dataset=synthetic_hands/ambiguous \
        [--data_dir=~/tensorflow_datasets] [--manual_dir=DIR]

The input pipeline builds missing datasets on first use; this command does it
ahead of time, and takes the folder of a manual download (Biwi, 300W-LP,
AFLW2000-3D, your own images) if it is not in TFDS's default place,
<data_dir>/downloads/manual/.
"""

from absl import app
from absl import flags
import tensorflow_datasets as tfds


def build(dataset, data_dir=None, manual_dir=None):
  """Prepares `dataset` in data_dir as array_record (no-op if already built).

  Args:
    dataset: TFDS name with config, e.g. 'biwi/all'.
    data_dir: TFDS data directory (None: TFDS's default).
    manual_dir: where a manual download was extracted (None: TFDS's default,
      <data_dir>/downloads/manual/).

  Returns:
    The prepared `tfds.core.DatasetBuilder`.
  """
  builder = tfds.builder(dataset, data_dir=data_dir,
                         file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def main(argv):
  del argv
  builder = build(flags.FLAGS.dataset, flags.FLAGS.data_dir,
                  flags.FLAGS.manual_dir)
  print(f'{flags.FLAGS.dataset} is ready in {builder.data_dir}: '
        f'{ {k: v.num_examples for k, v in builder.info.splits.items()} }')


if __name__ == '__main__':
  flags.DEFINE_string('dataset', None, 'TFDS name/config, e.g. biwi/all.')
  flags.DEFINE_string('data_dir', None, 'TFDS data directory.')
  flags.DEFINE_string('manual_dir', None, 'Folder of a manual download.')
  flags.mark_flag_as_required('dataset')
  app.run(main)
