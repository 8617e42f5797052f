"""Builds (prepares) one of propel_jax's datasets as array_record.

    python -m experiments.build_dataset --dataset=synthetic_hands/ambiguous \
        [--data_dir=~/tensorflow_datasets] [--manual_dir=DIR]

The input pipeline builds missing datasets on first use; this command does it
ahead of time, and takes the folder of a manual download (Biwi, 300W-LP,
AFLW2000-3D, your own images) if it is not in TFDS's default place,
<data_dir>/downloads/manual/.
"""

from absl import app
from absl import flags

from propel_jax.data import input_pipeline

_DATASET = flags.DEFINE_string('dataset', None, 'TFDS name/config, e.g. biwi/all.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data directory.')
_MANUAL_DIR = flags.DEFINE_string('manual_dir', None, 'Folder of a manual download.')
flags.mark_flag_as_required('dataset')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  builder = input_pipeline.prepare_builder(_DATASET.value, _DATA_DIR.value, _MANUAL_DIR.value)
  print(f'{_DATASET.value} is ready in {builder.data_dir}: '
        f'{ {k: v.num_examples for k, v in builder.info.splits.items()} }')


if __name__ == '__main__':
  app.run(main)
