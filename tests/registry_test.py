"""The head registry: every entry builds and runs on the label kinds it takes, refuses the
others, and the programs that name heads (validation, models, the comparison) read it."""

import dataclasses
import pathlib

from flax import nnx
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments.comparison import report
from experiments.comparison import results as results_lib
from experiments.comparison import runner
from experiments.configs import compare_synthetic
from propel_jax.data import labels as labels_lib
from propel_jax.nn import heads
from propel_jax.nn import models
from propel_jax.nn import registry
from propel_jax.training import config as config_lib

B = 3
# One label spec per kind: n = 2 for intervals and the circle, 4 for quaternions.
SPECS = {
    'interval': labels_lib.LabelSpec(('a', 'b'), (0.0, 0.0), (1.0, 1.0)),
    'circle': labels_lib.LabelSpec(('cos', 'sin'), (-1.0, -1.0), (1.0, 1.0), kind='circle'),
    'rotation': labels_lib.LabelSpec(('w', 'x', 'y', 'z'), (-1.0,) * 4, (1.0,) * 4,
                                     kind='rotation'),
}


@dataclasses.dataclass(frozen=True)
class _Info:
  labels: labels_lib.LabelSpec
  image_shape: tuple[int, int, int] = (8, 8, 1)


def _config(head, **model):
  return ml_collections.ConfigDict({
      'head': head, 'num_components': 2, 'target_scale': 0.1, 'target_concentration': 100.0,
      'model': dict(dict(channels=(4,), hidden_units=8, heatmap_bins=10, classifier_bins=8,
                         rotation_grid_level=0), **model)})


def _labels(kind, rng):
  """[B, d] labels of `kind`: in [0, 1] for intervals, unit vectors otherwise."""
  if kind == 'interval':
    return rng.uniform(0.1, 0.9, (B, 2))
  vectors = rng.normal(size=(B, len(SPECS[kind].names)))
  return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def test_label_kinds_are_the_data_layers():
  # nn may not import data: the registry spells the kinds out, this test ties them.
  assert registry.LABEL_KINDS == labels_lib.KINDS


@pytest.mark.parametrize('kind', registry.LABEL_KINDS)
@pytest.mark.parametrize('name', registry.names())
def test_each_head_runs_on_the_label_kinds_it_takes_and_refuses_the_others(name, kind):
  info = _Info(SPECS[kind])
  if kind not in registry.get(name).label_kinds:
    with pytest.raises(ValueError, match=f"config.head='{name}' does not fit '{kind}' labels"):
      models.create_model(_config(name), info, rngs=nnx.Rngs(0))
    return
  model = models.create_model(_config(name), info, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  labels = jnp.asarray(_labels(kind, rng), jnp.float32)
  batch = {'image': jnp.asarray(rng.uniform(size=(B, 8, 8, 1)), jnp.float32), 'label': labels,
           'equivalent_labels': labels[:, None]}
  outputs = model(batch['image'])
  loss = model.head.loss(outputs, batch)
  assert loss.shape == (B,) and np.all(np.isfinite(loss))
  decoded = model.head.decode(outputs)
  assert decoded and all(v.shape == labels.shape for v in decoded.values())
  density = model.head.mixture(outputs)
  entry = registry.get(name)
  if entry.mixture:
    # The mixture has config.num_components components.
    assert jnp.shape(density.log_weights) == (B, 2)


@pytest.mark.parametrize('kind', registry.LABEL_KINDS)
@pytest.mark.parametrize('name', registry.names())
def test_full_covariance_only_where_the_entry_says(name, kind):
  head = registry.get(name)
  if kind not in head.label_kinds:
    return
  build = lambda: nnx.eval_shape(lambda: models.create_model(
      _config(name, covariance='full'), _Info(SPECS[kind]), rngs=nnx.Rngs(0)))
  # Point heads on intervals have no covariance and ignore the key.
  if kind in head.full_covariance or (not head.mixture and kind == 'interval'):
    build()
  else:
    with pytest.raises(ValueError, match="config.model.covariance='full'"):
      build()


def test_every_mixture_head_sizes_itself_from_num_components():
  for name in registry.names():
    head = registry.get(name)
    kind = head.label_kinds[0]
    if head.mixture:
      with pytest.raises(ValueError, match='num_components'):
        config = _config(name)
        config.num_components = 0
        models.create_model(config, _Info(SPECS[kind]), rngs=nnx.Rngs(0))


def _dummy_builder(args):
  return heads.PropelHead(args.in_features, args.num_targets, args.config.num_components,
                          target_scale=args.config.target_scale,
                          learn_weights=args.model.learn_weights, rngs=args.rngs)


DUMMY = registry.Head('dummy', {'interval': _dummy_builder}, 'a head registered by a test',
                      mixture=True, learned_weights='optional',
                      target_width=registry.TARGET_SCALE)


@pytest.fixture
def dummy_head():
  registry.register(DUMMY)
  try:
    yield DUMMY
  finally:
    registry.unregister(DUMMY.name)


def _comparison_config(methods):
  config = compare_synthetic.get_config('ambiguous_small')
  config.compare.methods = methods
  config.compare.sweep = ''
  return config


def test_a_registered_head_is_read_everywhere(dummy_head):
  config = _comparison_config('dummy_i3_s0.1_lw,mse')
  run = runner.run_config(config, runner.parse_method('dummy_i3_s0.1_lw'), 0)
  config_lib.validate(run)
  runner.validate(config)
  assert (run.head, run.num_components, run.target_scale, run.model.learn_weights) == (
      'dummy', 3, 0.1, True)
  model = nnx.eval_shape(lambda: models.create_model(run, _Info(SPECS['interval']),
                                                     rngs=nnx.Rngs(0)))
  assert isinstance(model.head, heads.PropelHead) and model.head.learn_weights
  with pytest.raises(ValueError, match="config.head='dummy' does not fit 'circle' labels"):
    models.create_model(run, _Info(SPECS['circle']), rngs=nnx.Rngs(0))

  methods = runner.all_methods(config)
  results = {'dataset': 'd', 'label_names': ['a', 'b'], 'split_sizes': {'test': 1},
             'config': config.to_dict(), 'seeds': [0], 'missing_runs': [], 'runs': {},
             'methods': [m.name for m in methods], 'sweep': [],
             'method_settings': {m.name: results_lib.method_settings(config, m) for m in methods},
             'summary': {}}
  table = report.markdown(results, command='cmd').split('## Methods')[1].split('##')[0]
  assert '| dummy_i3_s0.1_lw | dummy | 3 | target_scale=0.1 | learned | – |' in table
  assert 'dummy: a head registered by a test' in table


def test_an_unregistered_head_is_refused_everywhere():
  assert 'dummy' not in registry.names()
  config = _comparison_config('dummy_i3,mse')
  with pytest.raises(ValueError, match='Unknown method'):
    runner.validate(config)
  run = runner.run_config(config, runner.parse_method('mse'), 0)
  run.head = 'dummy'
  with pytest.raises(ValueError, match=r"config.head='dummy' is invalid: must be one of the "
                                       r"registered heads \('propel'"):
    config_lib.validate(run)
  with pytest.raises(ValueError, match="Unknown head 'dummy'"):
    models.create_model(run, _Info(SPECS['interval']), rngs=nnx.Rngs(0))


@pytest.mark.parametrize('change, message', [
    (dict(name='my_head'), 'lower-case letters and digits'),
    (dict(name='Dummy'), 'lower-case letters and digits'),
    (dict(build={'sphere': _dummy_builder}), 'one constructor per label kind'),
    (dict(build={}), 'one constructor per label kind'),
    (dict(mixture=False), 'only a mixture has weights to learn'),
    (dict(learned_weights='sometimes'), "learned_weights must be 'never'"),
    (dict(full_covariance=('circle',)), 'full_covariance'),
])
def test_a_bad_entry_is_refused(change, message):
  with pytest.raises(ValueError, match=message):
    dataclasses.replace(DUMMY, **change)


def test_register_refuses_a_taken_name(dummy_head):
  with pytest.raises(ValueError, match="'dummy' is registered already"):
    registry.register(dummy_head)
  with pytest.raises(ValueError, match="'propel' is registered already"):
    registry.register(dataclasses.replace(DUMMY, name='propel'))


def test_the_heads_table_in_docs_training_md_is_the_registry():
  text = (pathlib.Path(__file__).resolve().parent.parent / 'docs' / 'training.md').read_text()
  section = text.split('### Heads')[1].split('\n#')[0]
  rows = {}
  for line in section.splitlines():
    if line.startswith('| `'):
      cells = [c.strip() for c in line.strip('|').split('|')]
      rows[cells[0].strip('`')] = cells[1:]
  assert sorted(rows) == sorted(registry.names())
  for name, (kinds, _, weights, full, width) in rows.items():
    head = registry.get(name)
    assert kinds == ', '.join(head.label_kinds), name
    assert weights == ('–' if head.learned_weights == 'never' else head.learned_weights), name
    assert full == (', '.join(head.full_covariance) or '–'), name
    assert width.split(' ')[0] == (f'`{head.target_width.key}`' if head.target_width else '–')
