"""The paper's CNN and create_model: parameter counts, shapes, BatchNorm modes, a tiny overfit."""

import dataclasses

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from propel_jax.data import labels as labels_lib
from propel_jax.nn import models
from propel_jax.nn import registry


@dataclasses.dataclass(frozen=True)
class Info:
  """The two DatasetInfo fields create_model reads."""
  names: dataclasses.InitVar[tuple[str, ...]]
  image_shape: tuple[int, int, int]
  labels: labels_lib.LabelSpec = dataclasses.field(init=False)

  def __post_init__(self, names):
    ones = (1.0,) * len(names)
    object.__setattr__(self, 'labels', labels_lib.LabelSpec(names, (0.0,) * len(names), ones))


HAND = Info(('azimuth', 'elevation'), (128, 128, 3))
HEAD = Info(('yaw', 'pitch', 'roll'), (128, 128, 3))


def _config(head, num_components=2, **model):
  return ml_collections.ConfigDict({'head': head, 'num_components': num_components,
                                    'target_scale': 0.05, 'model': model})


def _expected_params(image_shape, channels, hidden, outputs):
  """The arithmetic, layer by layer: 3×3 conv 9·cin·cout (no bias), BatchNorm 2·cout, dense."""
  height, width, cin = image_shape
  total = 0
  for cout in channels:
    total += 3 * 3 * cin * cout + 2 * cout
    cin, height, width = cout, height // 2, width // 2
  flat = height * width * cin
  return total + flat * hidden + hidden + hidden * outputs + outputs


@pytest.mark.parametrize('info,config,outputs,paper_value', [
    # Hand: FC 50, n = 2, I = 2 -> 2·n·I = 8 outputs.
    (HAND, _config('propel', 2), 8, 126_554),
    # I = 8: the paper's ≈ 1.28·10⁵.
    (HAND, _config('propel', 8), 32, 127_778),
    # Head: FC 20, n = 3, I = 2 -> 12 outputs (the paper's figure).
    (HEAD, _config('propel', 2, hidden_units=20), 12, 64_928),
    # The MSE baseline on the same backbone.
    (HAND, _config('mse'), 2, 126_146 + 102),
    # Learned weights add I logits.
    (HAND, _config('propel', 2, learn_weights=True), 10, 126_656),
    (HEAD, _config('mdn', 2, hidden_units=20), 14, 64_970),
    # Full covariance adds n(n-1)/2 = 3 Cholesky entries per component.
    (HEAD, _config('propel', 2, hidden_units=20, covariance='full'), 18, 65_054),
    # HEATMAP-MSE on a 100×100 grid: the output layer dominates.
    (HAND, _config('heatmap'), 100 * 100, 636_146),
    # For n = 3 the default is three 1-D heatmaps.
    (HEAD, _config('heatmap', hidden_units=20), 3 * 100, 64_676 + 20 * 300 + 300),
])
def test_param_counts_match_the_arithmetic(info, config, outputs, paper_value):
  # Abstract: shapes only, nothing initialised (fast).
  model = nnx.eval_shape(lambda: models.create_model(config, info, rngs=nnx.Rngs(0)))
  hidden = config.model.get('hidden_units', 50)
  expected = _expected_params(info.image_shape, (16, 32, 32, 32), hidden, outputs)
  assert expected == paper_value
  assert models.count_params(model) == expected
  assert model.backbone.num_flat_features == 8 * 8 * 32 == 2048


def test_batch_norm_statistics_are_not_counted():
  model = nnx.eval_shape(lambda: models.create_model(_config('mse'), HAND, rngs=nnx.Rngs(0)))
  stats = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
  assert stats == 2 * (16 + 32 + 32 + 32)
  total = sum(x.size for x in jax.tree.leaves(nnx.state(model)) if hasattr(x, 'size'))
  assert models.count_params(model) == total - stats


SMALL = Info(('a', 'b', 'c'), (32, 24, 1))


@pytest.mark.parametrize('loss,keys', [
    ('propel', {'means': (5, 3, 3), 'scales': (5, 3, 3), 'log_weights': (5, 3)}),
    ('mdn', {'means': (5, 3, 3), 'scales': (5, 3, 3), 'log_weights': (5, 3)}),
    ('propel_full', {'means': (5, 3, 3), 'scales': (5, 3, 3, 3), 'log_weights': (5, 3)}),
    ('mse', (5, 3)),
    ('l1', (5, 3)),
    ('heatmap', (5, 3, 100)),
])
def test_output_shapes(loss, keys):
  loss, _, covariance = loss.partition('_')
  model = models.create_model(_config(loss, 3, covariance=covariance or 'diagonal'), SMALL,
                              rngs=nnx.Rngs(0))
  # 32×24 -> 2×1 after four pools.
  assert model.backbone.num_flat_features == 2 * 1 * 32
  graph, state = nnx.split(model)

  def forward(state, images):
    model = nnx.merge(graph, state)
    outputs = model(images)
    return outputs, model.head.decode(outputs)
  # Shapes by tracing alone: compiling would add seconds and test nothing more.
  outputs, decoded = jax.eval_shape(forward, state, jax.ShapeDtypeStruct((5, 32, 24, 1),
                                                                         jnp.float32))
  if isinstance(keys, dict):  # A mixture.
    assert {k: v.shape for k, v in outputs._asdict().items()} == keys
  else:
    assert outputs.shape == keys
  for value in decoded.values():
    assert value.shape == (5, 3)


def test_eval_mode_uses_running_statistics():
  model = models.create_model(_config('mse'), SMALL, rngs=nnx.Rngs(0))
  images = jnp.asarray(np.random.default_rng(0).uniform(size=(6, 32, 24, 1)), jnp.float32)
  def batch_stats():
    return [np.array(x) for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat))]
  before = batch_stats()
  nnx.jit(lambda model, images: model(images))(model, images)  # Train mode: stats move.
  after = batch_stats()
  assert not any(np.array_equal(a, b) for a, b in zip(before, after))
  model.eval()
  predict = nnx.jit(lambda model, images: model(images))
  # Full float32 products: on GPUs, TF32 rounding differs between batch sizes.
  with jax.default_matmul_precision('highest'):
    alone = predict(model, images[:1])
    in_batch = predict(model, images)[:1]
  np.testing.assert_allclose(alone, in_batch, rtol=1e-5)  # No dependence on the batch.
  assert all(np.array_equal(a, b) for a, b in zip(after, batch_stats()))


def test_bad_inputs_name_the_problem():
  with pytest.raises(ValueError, match="Unknown head 'hinge'"):
    models.create_model(_config('hinge'), SMALL, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='filters'):
    models.create_model(_config('mse', filters=3), SMALL, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='num_components'):
    models.create_model(_config('propel', 0), SMALL, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='too small'):
    models.create_model(_config('mse'), Info(('a',), (8, 8, 1)), rngs=nnx.Rngs(0))
  model = nnx.eval_shape(lambda: models.create_model(_config('mse'), SMALL, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match=r'\(2, 32, 32, 1\)'):
    model(jnp.zeros((2, 32, 32, 1)))


@nnx.jit
def _adam_step(model, optimizer, batch):
  """One optimiser step on the mean head loss; returns the loss before the step."""
  def loss_fn(model):
    return model.head.loss(model(batch['image']), batch).mean()
  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads)
  return loss


@pytest.mark.parametrize('loss', registry.names('interval') + ('propel_full',))
def test_every_head_overfits_a_tiny_batch(loss):
  """A few Adam steps on six random images: the loss is finite and goes down."""
  info = Info(('a', 'b'), (16, 16, 1))
  loss, _, covariance = loss.partition('_')
  config = _config(loss, 2, channels=(4, 8), hidden_units=16, heatmap_bins=20,
                   covariance=covariance or 'diagonal')
  model = models.create_model(config, info, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(1)
  labels = jnp.asarray(rng.uniform(0.1, 0.9, (6, 2)), jnp.float32)
  batch = {'image': jnp.asarray(rng.uniform(size=(6, 16, 16, 1)), jnp.float32),
           'label': labels, 'equivalent_labels': labels[:, None]}
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

  history = [float(_adam_step(model, optimizer, batch)) for _ in range(40)]
  assert np.all(np.isfinite(history))
  assert np.mean(history[-5:]) < 0.7 * np.mean(history[:5]), history


def _blob_images(labels, size):
  """[B, size, size, 1] images of one bright Gaussian spot whose centre is the label."""
  grid = (np.arange(size) + 0.5) / size
  return np.exp(-((grid[None, :, None] - labels[:, 0, None, None]) ** 2 +
                  (grid[None, None, :] - labels[:, 1, None, None]) ** 2)
                / (2 * 0.08 ** 2))[..., None].astype(np.float32)


def test_heatmap_head_localises_with_the_default_grid():
  """The full model on images that show their label: decoded points land near the labels.

  Guards against the background plateau (features dead, one cell for every
  image), on which the loss still drops; the default 100×100 grid is the
  setting where it shows. A head with a random output kernel and σ 0.02 sits
  on it: a mean argmax error of about 0.2 per axis (few distinct points).
  """
  size = 16
  info = Info(('a', 'b'), (size, size, 1))
  # The heatmap keys stay at their defaults (100 bins per axis).
  model = models.create_model(_config('heatmap', channels=(8, 8), hidden_units=32), info,
                              rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

  for _ in range(100):
    labels = rng.uniform(0.15, 0.85, (16, 2))
    _adam_step(model, optimizer, {'image': jnp.asarray(_blob_images(labels, size)),
                                  'label': jnp.asarray(labels, jnp.float32)})
  model.eval()
  labels = rng.uniform(0.15, 0.85, (64, 2))
  decoded = model.head.decode(model(jnp.asarray(_blob_images(labels, size))))
  for name, points in decoded.items():
    error = np.abs(np.asarray(points, np.float64) - labels)
    # Predicting the centre (0.5) would give a mean error of 0.175 per axis;
    # the fixed head reaches about 0.02.
    assert error.mean() < 0.06, (name, error.mean(axis=0))
    assert np.unique(np.asarray(points).round(3), axis=0).shape[0] > 20, name
