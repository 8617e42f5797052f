"""Saves a grid of examples with their labels, to check a dataset by eye.

    python -m experiments.show_dataset --dataset=biwi/all --split=test \
        --out=/tmp/biwi.png [--data_dir=DIR] [--num=16]

Useful after building a real dataset: the face crops should be centred on
the face, and the labels should match the visible pose.
"""

from absl import app
from absl import flags
from matplotlib import figure
import numpy as np

from propel_jax.data import input_pipeline


def save_grid(dataset, split, out, *, data_dir=None, num=16):
  """Writes the first `num` examples of a split, titled with their labels.

  Args:
    dataset: TFDS name with config, e.g. 'synthetic_hands/ambiguous'.
    split: split name.
    out: path of the PNG to write.
    data_dir: TFDS data directory (None: TFDS's default).
    num: number of examples.
  """
  builder = input_pipeline.prepare_builder(dataset, data_dir)
  source = builder.as_data_source(split)
  names = builder.label_spec.names
  num = min(num, len(source))
  cols = int(np.ceil(np.sqrt(num)))
  rows = int(np.ceil(num / cols))
  fig = figure.Figure(figsize=(2.2 * cols, 2.4 * rows))
  axes = fig.subplots(rows, cols, squeeze=False)
  for ax in axes.flat:
    ax.axis('off')
  for i, ax in zip(range(num), axes.flat):
    example = source[i]
    image = example['image']
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap='gray',
              vmin=0, vmax=255)
    ax.set_title('\n'.join(f'{n} {v:+.1f}' for n, v in
                           zip(names, example['label'])), fontsize=7)
  fig.tight_layout()
  fig.savefig(out, dpi=100)


def main(argv):
  del argv
  save_grid(flags.FLAGS.dataset, flags.FLAGS.split, flags.FLAGS.out,
            data_dir=flags.FLAGS.data_dir, num=flags.FLAGS.num)
  print(f'wrote {flags.FLAGS.out}')


if __name__ == '__main__':
  flags.DEFINE_string('dataset', None, 'TFDS name/config, e.g. biwi/all.')
  flags.DEFINE_string('split', 'test', 'Split to show.')
  flags.DEFINE_string('out', 'examples.png', 'PNG file to write.')
  flags.DEFINE_string('data_dir', None, 'TFDS data directory.')
  flags.DEFINE_integer('num', 16, 'Number of examples.')
  flags.mark_flag_as_required('dataset')
  app.run(main)
