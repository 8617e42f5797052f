"""The data a run will read, resolved and checked before any work.

`check_data` builds (if needed) and inspects the training and test datasets
and every split a run reads, so that a wrong name, an empty split or a test
set in another label space fails with a message naming the config key
before a model is built.
"""

from typing import Any

import ml_collections

from propel_jax.data import input_pipeline
from propel_jax.data.builders import image_folder


def register_image_folder(config: ml_collections.ConfigDict) -> None:
  """Registers `config.image_folder` (if the config has one) as 'image_folder/<name>'.

  The registration lives only in this program, so every program that reads
  the run (training, evaluation) does it from the config.
  """
  folder = config.get('image_folder')
  if folder is None:
    return
  name = f'image_folder/{folder.name}'
  if name not in (config.dataset, config.test_dataset):
    raise ValueError(f'config.image_folder.name={folder.name!r} registers {name!r}, but '
                     f'config.dataset={config.dataset!r}: set --config.dataset={name}.')
  image_folder.register(folder.name, **{k: v for k, v in folder.items() if k != 'name'})


def _dataset_info(config: ml_collections.ConfigDict, key: str) -> input_pipeline.DatasetInfo:
  """The DatasetInfo of config.<key> ('dataset' or 'test_dataset'), naming the key that fails."""
  dataset = config[key]
  try:
    return input_pipeline.get_dataset_info(dataset, data_dir=config.data_dir,
                                           image_size=config.image_size)
  except OSError as e:
    if e.filename is None:  # The builders' own messages (a missing download or image).
      raise
    where = config.data_dir or "TFDS's default (~/tensorflow_datasets)"
    raise type(e)(f'{e}. The data directory {where} cannot hold {dataset}: set '
                  f'--config.data_dir (experiments.evaluate: --data_dir) to a directory '
                  f'that can.') from e
  except ValueError as e:
    raise ValueError(f'config.{key}={dataset!r}: {e}') from e


def _label_space(info: input_pipeline.DatasetInfo) -> tuple[Any, ...]:
  return info.labels.names, info.labels.low, info.labels.high


def check_data(config: ml_collections.ConfigDict,
               splits: tuple[str, ...] = ()) -> input_pipeline.DatasetInfo:
  """Resolves everything a run will read, before any work.

  The training dataset and the test dataset (building them if needed), the
  test dataset's label space and image shape against the training one's, and
  the size of every split: train_split, eval_split, test_split and `splits`.

  Returns:
    The training dataset's info.

  Raises:
    ValueError: naming the config key (or 'split' for one of `splits`).
  """
  info = _dataset_info(config, 'dataset')
  test_info = info
  if config.test_dataset and config.test_dataset != config.dataset:
    test_info = _dataset_info(config, 'test_dataset')
    # The evaluation reads test labels in [0, 1] back to degrees with the
    # training dataset's ranges.
    if _label_space(test_info) != _label_space(info):
      raise ValueError(
          f'config.test_dataset={config.test_dataset!r} has labels {test_info.labels.names} in '
          f'[{test_info.labels.low}, {test_info.labels.high}], config.dataset='
          f'{config.dataset!r} has {info.labels.names} in [{info.labels.low}, '
          f'{info.labels.high}]: a model is tested in the label space it was trained in.')
    if test_info.image_shape != info.image_shape:
      raise ValueError(
          f'config.test_dataset={config.test_dataset!r} has images of shape '
          f'{test_info.image_shape}, config.dataset={config.dataset!r} '
          f'{info.image_shape}: set config.image_size to resize both.')
  test_dataset = config.test_dataset or config.dataset
  needed = [('config.train_split', config.train_split, config.dataset, config.batch_size),
            ('config.eval_split', config.eval_split, test_dataset, 1),
            ('config.test_split', config.test_split, test_dataset, 1)]
  needed += [('split', split, test_dataset, 1) for split in splits]
  for name, split, dataset, minimum in needed:
    try:
      size = input_pipeline.split_size(dataset, split, data_dir=config.data_dir)
    except ValueError as e:
      raise ValueError(f'{name}={split!r}: {e}') from e
    if size < minimum:
      raise ValueError(f'{name}={split!r} of {dataset} has {size} examples; it needs at '
                       f'least {minimum}.')
  return info
