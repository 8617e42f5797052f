"""Tests of the heads for unit-vector labels, against NumPy references."""

import dataclasses
import math

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from propel_jax import directional
from propel_jax.data import labels as labels_lib
from propel_jax.nn import directional_heads
from propel_jax.nn import models

B, F = 6, 5


def _features(seed=0):
  return jax.random.normal(jax.random.key(seed), (B, F))


def _batch(seed=1, k=3):
  angles = np.random.default_rng(seed).uniform(0, 2 * np.pi, B)
  equivalents = angles[:, None] + 2 * np.pi * np.arange(k) / k
  return {'label': jnp.asarray(np.stack([np.cos(angles), np.sin(angles)], -1), jnp.float32),
          'equivalent_labels': jnp.asarray(
              np.stack([np.cos(equivalents), np.sin(equivalents)], -1), jnp.float32)}


def _angles(vectors):
  return np.arctan2(vectors[..., 1], vectors[..., 0])


def _von_mises_log_density(theta, mu, kappa, log_w):
  """log Σ_i w_i exp(κ_i cos(θ − μ_i)) / (2π I0(κ_i)), float64 NumPy."""
  theta, mu, kappa = (np.asarray(a, np.float64) for a in (theta, mu, kappa))
  log_terms = (np.asarray(log_w, np.float64) + kappa * np.cos(theta[..., None] - mu)
               - np.log(2 * np.pi * np.i0(kappa)))
  top = log_terms.max(-1, keepdims=True)
  return (top + np.log(np.exp(log_terms - top).sum(-1, keepdims=True)))[..., 0]


@pytest.mark.parametrize('learn_weights', [False, True])
def test_vmf_head_outputs(learn_weights):
  head = directional_heads.DirectionalPropelHead(
      F, 2, 3, target_concentration=100.0, learn_weights=learn_weights,
      min_concentration=2.0, rngs=nnx.Rngs(0))
  mixture = head(_features())
  assert mixture.mean_directions.shape == (B, 3, 2)
  np.testing.assert_allclose(np.linalg.norm(mixture.mean_directions, axis=-1), 1.0, rtol=1e-6)
  assert mixture.concentrations.shape == (B, 3) and np.all(mixture.concentrations >= 2.0)
  np.testing.assert_allclose(np.exp(mixture.log_weights).sum(-1), 1.0, rtol=1e-6)
  if not learn_weights:
    np.testing.assert_allclose(mixture.log_weights, -math.log(3), rtol=1e-6)
  assert head.mixture(mixture) is mixture


def test_propel_head_loss_is_directional_propel():
  head = directional_heads.DirectionalPropelHead(F, 2, 3, target_concentration=50.0,
                                                 rngs=nnx.Rngs(0))
  mixture, batch = head(_features()), _batch()
  expected = directional.propel_loss(mixture.mean_directions, mixture.concentrations,
                                     batch['label'], target_concentration=50.0)
  np.testing.assert_allclose(head.loss(mixture, batch), expected, rtol=1e-6)
  head.target = 'equivalents'
  expected = directional.mixture_distance(
      batch['equivalent_labels'], jnp.full((B, 3), 50.0), mixture.mean_directions,
      mixture.concentrations)
  np.testing.assert_allclose(head.loss(mixture, batch), expected, rtol=1e-6)


def test_mdn_loss_is_the_von_mises_nll():
  head = directional_heads.VonMisesFisherMDNHead(F, 2, 3, rngs=nnx.Rngs(0))
  mixture, batch = head(_features()), _batch()
  expected = -_von_mises_log_density(_angles(np.asarray(batch['label'])),
                                     _angles(np.asarray(mixture.mean_directions)),
                                     mixture.concentrations, mixture.log_weights)
  np.testing.assert_allclose(head.loss(mixture, batch), expected, rtol=1e-4)


@pytest.mark.parametrize('antipodal', [False, True])
def test_unit_vector_head_loss(antipodal):
  head = directional_heads.UnitVectorHead(F, 2, antipodal=antipodal, rngs=nnx.Rngs(0))
  outputs, batch = head(_features()), _batch()
  r, y = np.asarray(outputs), np.asarray(batch['label'])
  expected = ((r - y) ** 2).mean(-1)
  if antipodal:
    expected = np.minimum(expected, ((r + y) ** 2).mean(-1))
  np.testing.assert_allclose(head.loss(outputs, batch), expected, rtol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(head.decode(outputs)['direct'], axis=-1), 1.0,
                             rtol=1e-6)
  assert head.mixture(outputs) is None


def test_classifier_bins_loss_and_density():
  head = directional_heads.AngleClassifierHead(F, bins=8, rngs=nnx.Rngs(0))
  head.dense.kernel[...] = jax.random.normal(jax.random.key(3), (F, 8))
  logits, batch = head(_features()), _batch()
  theta = np.mod(_angles(np.asarray(batch['label'])), 2 * np.pi)
  bins = np.floor(theta / (np.pi / 4)).astype(int)
  log_p = np.asarray(jax.nn.log_softmax(logits))
  np.testing.assert_allclose(head.loss(logits, batch), -log_p[np.arange(B), bins], rtol=1e-5)
  argmax = np.asarray(head.decode(logits)['argmax'])
  np.testing.assert_allclose(np.mod(_angles(argmax), 2 * np.pi),
                             (np.argmax(log_p, -1) + 0.5) * np.pi / 4, atol=1e-5)
  # The density is normalised on the circle (midpoint rule, 0.1° steps).
  grid = np.arange(3600) * (2 * np.pi / 3600)
  points = np.stack([np.cos(grid), np.sin(grid)], -1)[:, None]
  shared = jax.tree.map(lambda a: a[None], head.mixture(logits))  # one per grid point
  density = np.exp(np.asarray(shared.log_prob(jnp.asarray(points))))
  np.testing.assert_allclose(density.sum(0) * (2 * np.pi / 3600), 1.0, rtol=1e-4)


def test_euclidean_propel_head_means_span_the_unit_square():
  head = directional_heads.EuclideanPropelHead(F, 2, 2, target_scale=0.05, rngs=nnx.Rngs(0))
  mixture = head(_features() * 100.0)
  assert mixture.means.shape == (B, 2, 2)
  assert np.all(np.abs(mixture.means) <= 1.0) and np.any(mixture.means < -0.5)


@dataclasses.dataclass(frozen=True)
class _Info:
  labels: labels_lib.LabelSpec
  image_shape: tuple[int, int, int] = (16, 16, 1)


_CIRCLE = _Info(labels_lib.LabelSpec(('cos', 'sin'), (-1.0, -1.0), (1.0, 1.0), kind='circle'))


def _config(head):
  return ml_collections.ConfigDict({
      'head': head, 'num_components': 3, 'target_scale': 0.1, 'target_concentration': 100.0,
      'model': {'channels': (4,), 'hidden_units': 8}})


@pytest.mark.parametrize('loss,head_type', [
    ('vmfpropel', directional_heads.DirectionalPropelHead),
    ('vmfmdn', directional_heads.VonMisesFisherMDNHead),
    ('propel', directional_heads.EuclideanPropelHead),
    ('mse', directional_heads.UnitVectorHead),
    ('classifier', directional_heads.AngleClassifierHead)])
def test_create_model_picks_the_directional_head(loss, head_type):
  model = nnx.eval_shape(lambda: models.create_model(_config(loss), _CIRCLE, rngs=nnx.Rngs(0)))
  assert type(model.head) is head_type
  if loss == 'vmfpropel':
    assert model.head.target_concentration == 100.0


def test_create_model_refuses_a_loss_of_the_other_label_kind():
  with pytest.raises(ValueError, match='does not fit'):
    models.create_model(_config('heatmap'), _CIRCLE, rngs=nnx.Rngs(0))
  interval = _Info(labels_lib.LabelSpec(('a', 'b'), (0.0, 0.0), (1.0, 1.0)))
  with pytest.raises(ValueError, match='does not fit'):
    models.create_model(_config('vmfpropel'), interval, rngs=nnx.Rngs(0))


@pytest.mark.parametrize('make_head', [
    lambda: directional_heads.DirectionalPropelHead(
        F, 2, 3, target_concentration=400.0, learn_weights=True, rngs=nnx.Rngs(0)),
    lambda: directional_heads.VonMisesFisherMDNHead(F, 2, 3, rngs=nnx.Rngs(0)),
    lambda: directional_heads.UnitVectorHead(F, 2, rngs=nnx.Rngs(0)),
    lambda: directional_heads.AngleClassifierHead(F, bins=36, rngs=nnx.Rngs(0)),
], ids=['vmfpropel', 'vmfmdn', 'mse', 'classifier'])
def test_a_tiny_batch_overfits(make_head):
  # Fixed features, the head alone trained: its decoded angle must reach the
  # labels (within 5°: the classifier's bins are 10° wide).
  head, features, batch = make_head(), _features(), _batch()
  graph, params = nnx.split(head)
  tx = optax.adam(0.05)

  def loss_fn(p):
    h = nnx.merge(graph, p)
    return h.loss(h(features), batch).mean()

  @jax.jit
  def step(p, opt_state):
    grads = jax.grad(loss_fn)(p)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state

  opt_state = tx.init(params)
  for _ in range(300):
    params, opt_state = step(params, opt_state)
  trained = nnx.merge(graph, params)
  prediction = next(iter(trained.decode(trained(features)).values()))
  error = np.rad2deg(np.abs(np.angle(np.exp(1j * (_angles(np.asarray(prediction))
                                                  - _angles(np.asarray(batch['label'])))))))
  assert prediction.shape == (B, 2)
  assert error.max() < 5.0, error


_ROTATION = _Info(labels_lib.LabelSpec(('w', 'x', 'y', 'z'), (-1.0,) * 4, (1.0,) * 4,
                                       kind='rotation'))


def test_rotation_classifier_loss_decoder_and_density():
  from propel_jax import rotation_grid  # pylint: disable=g-import-not-at-top
  config = _config('classifier')
  config.model.rotation_grid_level = 1
  model = models.create_model(config, _ROTATION, rngs=nnx.Rngs(0))
  head = model.head
  assert type(head) is directional_heads.RotationClassifierHead
  cells = rotation_grid.grid(1).astype(np.float64)
  head.dense.kernel[...] = jax.random.normal(jax.random.key(3), (8, len(cells)))
  features = jax.random.normal(jax.random.key(0), (B, 8))
  logits = head(features)
  assert logits.shape == (B, 576)
  q = np.random.default_rng(4).standard_normal((B, 4))
  q /= np.linalg.norm(q, axis=1, keepdims=True)
  q[0] *= -1  # The sign of a quaternion does not matter.
  batch = {'label': jnp.asarray(q, jnp.float32)}
  # The class of a label is the cell with the largest |qᵀg|.
  label_cells = np.abs(q @ cells.T).argmax(1)
  log_p = np.asarray(jax.nn.log_softmax(logits), np.float64)
  np.testing.assert_allclose(head.loss(logits, batch), -log_p[np.arange(B), label_cells],
                             rtol=1e-5)
  np.testing.assert_allclose(head.decode(logits)['argmax'], cells[log_p.argmax(1)], atol=1e-6)
  # Density w.r.t. the Haar measure of volume π²: p_cell over the cell's volume π²/G.
  np.testing.assert_allclose(head.mixture(logits).log_prob(batch['label']),
                             log_p[np.arange(B), label_cells] + math.log(576 / math.pi**2),
                             rtol=1e-5)
