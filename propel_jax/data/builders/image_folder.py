"""Your own images: a folder of images and a CSV of targets, as a TFDS builder.

The CSV has a header row; the first column holds image file names (relative
to the CSV's folder unless `image_dir` is given), every other column is one
target (any number n of them, e.g. azimuth and elevation in degrees):

    filename,azimuth,elevation
    person01/img_0001.png,12.5,-30.0
    ...

An optional column named `split` (values `train` / `test`) fixes the split;
otherwise a seeded random `test_fraction` of the rows is the test split (the
paper's hand data used a random 70/30 split).

Register the folder under a name, then use 'image_folder/<name>' like any
other dataset (in each program that uses it; registration is not stored):

    from propel_jax.data.builders import image_folder
    image_folder.register('my_hands', csv_path='/data/hands/labels.csv',
                          label_low=(-45, -45), label_high=(45, 45),
                          flip_negates=(True, False))
    input_pipeline.create_iterator('image_folder/my_hands', 'train', ...)

Images are centre-cropped to a square and resized to `image_size` (128 by
default), stored as PNG; grayscale if `channels` is 1.

A build is named by a fingerprint of what it reads: the CSV's content, each
listed image's size and modification time, and the build settings. It lives in
`<data_dir>/image_folder/<name>-<fingerprint>/`, so a changed CSV, image or
setting builds anew instead of reusing a build of other data (older builds
stay until deleted). Targets must be finite numbers.

Orientation targets (`targets=`): 'interval' (the default) maps each column's
range to [0, 1] as above. The others store unit vectors for the directional
heads (`LabelSpec` kinds 'circle' and 'rotation'; the range is not used):
'angle' reads one column of in-plane angles in degrees (any turn: 190 and
-170 are the same angle) as (cos θ, sin θ); 'unit_vector' two columns
(x, y), normalised; 'quaternion' four columns (w, x, y, z), normalised, sign
chosen with w ≥ 0 (q and -q are one rotation).
"""

import csv
import dataclasses
import hashlib
import io
import json
import math
import os

from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from propel_jax.data import labels as labels_lib


@dataclasses.dataclass(eq=False)
class ImageFolderConfig(tfds.core.BuilderConfig):
  """A registered image folder (see `register`)."""
  csv_path: str = ''
  image_dir: str = ''
  label_spec: labels_lib.LabelSpec | None = None
  image_size: int = 128
  channels: int = 3
  test_fraction: float = 0.3
  seed: int = 0
  targets: str = 'interval'


_REGISTERED = {}


def read_csv(csv_path):
  """Reads the targets CSV.

  Returns:
    (target names [n], file names [N], targets [N, n] float64, splits [N] or
    None when there is no 'split' column).
  """
  with epath.Path(csv_path).open() as f:
    rows = list(csv.reader(f))
  if len(rows) < 2 or len(rows[0]) < 2:
    raise ValueError(f'{csv_path}: need a header "filename,target1,..." and '
                     'at least one row.')
  header = [name.strip() for name in rows[0]]
  split_column = header.index('split') if 'split' in header else None
  target_columns = [i for i in range(1, len(header)) if i != split_column]
  if not target_columns:
    raise ValueError(f'{csv_path}: no target columns in header {header}.')
  files, targets, splits = [], [], []
  for line, row in enumerate(rows[1:], start=2):
    if not row:
      continue
    if len(row) != len(header):
      raise ValueError(f'{csv_path}:{line}: {len(row)} fields, header has '
                       f'{len(header)}.')
    files.append(row[0].strip())
    try:
      values = [float(row[i]) for i in target_columns]
    except ValueError as e:
      raise ValueError(f'{csv_path}:{line}: {e}') from e
    if not all(math.isfinite(v) for v in values):
      raise ValueError(f'{csv_path}:{line}: targets must be finite numbers, got '
                       f'{[row[i].strip() for i in target_columns]}.')
    targets.append(values)
    if split_column is not None:
      splits.append(row[split_column].strip())
  if split_column is not None and set(splits) - {'train', 'test'}:
    raise ValueError(f'{csv_path}: split values must be train or test, got '
                     f'{sorted(set(splits) - {"train", "test"})}.')
  return ([header[i] for i in target_columns], files,
          np.array(targets, np.float64), splits if split_column else None)


# targets= -> (LabelSpec kind, number of CSV target columns; None: any).
TARGETS = {'interval': ('interval', None), 'angle': ('circle', 1),
           'unit_vector': ('circle', 2), 'quaternion': ('rotation', 4)}


def to_labels(targets, kind):
  """[N, columns] CSV targets -> [N, n] stored labels for `targets=kind`."""
  targets = np.asarray(targets, np.float64)
  if kind == 'interval':
    return targets
  if kind == 'angle':
    angle = np.deg2rad(targets[:, 0])
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)
  vectors = targets / np.linalg.norm(targets, axis=1, keepdims=True)
  if kind == 'quaternion':
    vectors = np.where(vectors[:, :1] < 0, -vectors, vectors)
  return vectors


def _label_spec(names, targets, kind, label_low, label_high, flip_negates):
  """The LabelSpec of `targets=kind` for CSV target columns `names`."""
  spec_kind, columns = TARGETS[kind]
  if columns is not None and len(names) != columns:
    raise ValueError(f'targets={kind!r} needs {columns} target column(s); the CSV has '
                     f'{len(names)}: {names}.')
  flip = None if flip_negates is None else tuple(bool(f) for f in flip_negates)
  if spec_kind == 'interval':
    low = tuple(float(v) for v in (targets.min(0) if label_low is None else label_low))
    high = tuple(float(v) for v in (targets.max(0) if label_high is None else label_high))
    return labels_lib.LabelSpec(names=tuple(names), low=low, high=high, flip_negates=flip)
  if kind == 'angle':
    # A mirror that negates the angle negates its sine.
    names, flip = ('cos', 'sin'), None if flip is None else (False, flip[0])
  n = len(names)
  return labels_lib.LabelSpec(names=tuple(names), low=(-1.0,) * n, high=(1.0,) * n,
                              flip_negates=flip, kind=spec_kind)


def register(name, *, csv_path, image_dir=None, label_low=None,
             label_high=None, flip_negates=None, image_size=128, channels=3,
             test_fraction=0.3, seed=0, targets='interval'):
  """Makes 'image_folder/<name>' a dataset.

  Args:
    name: config name.
    csv_path: the targets CSV (format in the module docstring).
    image_dir: folder the file names are relative to (default: the CSV's).
    label_low, label_high: per-target values that normalise to 0 and 1;
      default: the smallest and largest value in the CSV.
    flip_negates: per target, whether mirroring an image left-right negates
      it (enables flip augmentation); None: never flip.
    image_size: side of the stored images.
    channels: 3 (RGB) or 1 (grayscale).
    test_fraction: share of rows in 'test' when the CSV has no split column.
    seed: seed of that random split.
    targets: what the target columns are: 'interval', 'angle', 'unit_vector'
      or 'quaternion' (see the module docstring). For 'angle', flip_negates
      has one entry, for the angle.

  Returns:
    The `ImageFolderConfig`; its TFDS config name (the build's folder) is
    `<name>-<fingerprint>`.
  """
  if targets not in TARGETS:
    raise ValueError(f'targets={targets!r} must be one of {tuple(TARGETS)}.')
  names, files, values, _ = read_csv(csv_path)
  image_dir = os.path.abspath(image_dir or epath.Path(csv_path).parent)
  digest = _fingerprint(csv_path, image_dir, files, {
      'image_dir': image_dir, 'image_size': image_size, 'channels': channels,
      'test_fraction': test_fraction, 'seed': seed, 'targets': targets})
  config = ImageFolderConfig(
      name=f'{name}-{digest[:16]}',
      description=f'Images and targets of {csv_path}.',
      csv_path=str(csv_path),
      image_dir=image_dir,
      label_spec=_label_spec(names, values, targets, label_low, label_high, flip_negates),
      image_size=image_size, channels=channels, test_fraction=test_fraction,
      seed=seed, targets=targets)
  _REGISTERED[name] = config
  return config


def _fingerprint(csv_path, image_dir, files, settings):
  """SHA-256 of what a build reads: the CSV, the images' sizes and times, settings.

  Images are identified by size and modification time (like `make`), not
  content, so that registering a large folder stays cheap; a missing image
  counts as missing (its build then fails naming it).
  """
  digest = hashlib.sha256(epath.Path(csv_path).read_bytes())
  for name in files:
    try:
      stat = os.stat(os.path.join(image_dir, name))
      entry = f'{name}\t{stat.st_size}\t{stat.st_mtime_ns}'
    except FileNotFoundError:
      entry = f'{name}\tmissing'
    digest.update(entry.encode() + b'\n')
  digest.update(json.dumps(settings, sort_keys=True).encode())
  return digest.hexdigest()


def _load_image(path, size, channels):
  """Centre square crop, resized; [size, size, channels] uint8."""
  with Image.open(path) as pil:
    pil = pil.convert('L' if channels == 1 else 'RGB')
    side = min(pil.size)
    left, top = (pil.width - side) // 2, (pil.height - side) // 2
    pil = pil.resize((size, size), Image.Resampling.BILINEAR,
                     box=(left, top, left + side, top + side))
    return np.asarray(pil).reshape(size, size, channels)


class ImageFolder(tfds.core.GeneratorBasedBuilder):
  """Images with a CSV of n regression targets."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}

  # The registered configs (TFDS reads this to decide between this code and
  # a read-only builder from the files, which would lack `label_spec`).
  @tfds.core.utils.classproperty
  @classmethod
  def builder_configs(cls):
    return dict(_REGISTERED)

  @classmethod
  def get_builder_config(cls, name, version=None):
    del version  # Registered configs have the builder's version.
    if name not in _REGISTERED:
      raise ValueError(
          f'image_folder/{name} is not registered in this program: call '
          'propel_jax.data.builders.image_folder.register(name, csv_path=...) '
          f'first (registered: {sorted(_REGISTERED)}).')
    return _REGISTERED[name]

  @property
  def label_spec(self):
    return self.builder_config.label_spec

  def _info(self):
    cfg = self.builder_config
    n = len(cfg.label_spec.names)
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(
                shape=(cfg.image_size, cfg.image_size, cfg.channels),
                encoding_format='png'),
            'label': tfds.features.Tensor(shape=(n,), dtype=np.float32),
            'equivalent_labels': tfds.features.Tensor(shape=(1, n),
                                                      dtype=np.float32),
            'filename': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'))

  def _split_generators(self, dl_manager):
    del dl_manager  # The files are where the config says.
    cfg = self.builder_config
    _, files, targets, splits = read_csv(cfg.csv_path)
    targets = to_labels(targets, cfg.targets)
    if splits is None:
      rng = np.random.default_rng(cfg.seed)
      is_test = np.zeros(len(files), bool)
      is_test[rng.permutation(len(files))[:round(cfg.test_fraction *
                                                 len(files))]] = True
    else:
      is_test = np.array([s == 'test' for s in splits])
    rows = np.arange(len(files))
    return {
        'train': self._generate_examples(files, targets, rows[~is_test]),
        'test': self._generate_examples(files, targets, rows[is_test]),
    }

  def _generate_examples(self, files, targets, rows):
    cfg = self.builder_config
    image_dir = epath.Path(cfg.image_dir)
    for row in rows:
      path = image_dir / files[row]
      if not path.exists():
        raise FileNotFoundError(f'{cfg.csv_path} lists {files[row]}, but '
                                f'{path} does not exist.')
      image = _load_image(path, cfg.image_size, cfg.channels)
      buffer = io.BytesIO()
      Image.fromarray(image[..., 0] if cfg.channels == 1 else image).save(
          buffer, format='PNG')
      label = targets[row].astype(np.float32)
      yield files[row], {'image': buffer.getvalue(), 'label': label,
                         'equivalent_labels': label[None],
                         'filename': files[row]}
