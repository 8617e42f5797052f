"""Output heads: output ranges, losses against float64 references, decoders on hand-made outputs."""

import math

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from propel_jax import mixtures
from propel_jax.nn import heads

RNG = np.random.default_rng(0)


def _propel_reference(means, scales, label, target_scale, weights):
  """PROPEL from its definition: -log[2∫P_gt P_m / ∫(P_gt² + P_m²)], float64.

  Each ∫ N_a N_b over R^n of diagonal Gaussians is Π_d N(μ_ad; μ_bd, σ_ad² + σ_bd²).
  """
  def overlap(m1, s1, m2, s2):
    return np.prod(stats.norm.pdf(m1, m2, np.sqrt(s1 ** 2 + s2 ** 2)))
  gt_scale = np.broadcast_to(target_scale, label.shape)
  cross = sum(w * overlap(label, gt_scale, m, s) for w, m, s in zip(weights, means, scales))
  self_gt = overlap(label, gt_scale, label, gt_scale)
  self_m = sum(wi * wj * overlap(mi, si, mj, sj)
               for wi, mi, si in zip(weights, means, scales)
               for wj, mj, sj in zip(weights, means, scales))
  return -math.log(2 * cross / (self_gt + self_m))


def _mixture_outputs(means, scales, weights):
  return mixtures.Mixture(jnp.asarray(means, jnp.float32), jnp.asarray(scales, jnp.float32),
                          jnp.log(jnp.asarray(weights, jnp.float32)))


@pytest.mark.parametrize('activation', ['softplus', 'sigmoid'])
@pytest.mark.parametrize('learn_weights', [False, True])
def test_mixture_head_output_ranges(activation, learn_weights):
  head = heads.PropelHead(7, 3, 4, target_scale=0.05, scale_activation=activation,
                          min_scale=0.01, learn_weights=learn_weights, rngs=nnx.Rngs(0))
  out = head(jnp.asarray(RNG.normal(size=(5, 7)) * 10, jnp.float32))
  assert isinstance(out, mixtures.Mixture) and head.mixture(out) is out
  assert out.means.shape == out.scales.shape == (5, 4, 3)
  assert out.log_weights.shape == (5, 4)
  assert np.all((out.means >= 0) & (out.means <= 1))
  assert np.all(out.scales >= 0.01)
  if activation == 'sigmoid':
    assert np.all(out.scales <= 1.01)
  np.testing.assert_allclose(np.exp(out.log_weights).sum(-1), 1, rtol=1e-5)
  if not learn_weights:
    np.testing.assert_allclose(out.log_weights, -math.log(4), rtol=1e-6)
  for decoded in jax.jit(head.decode)(out).values():
    assert decoded.shape == (5, 3)


@pytest.mark.parametrize('learn_weights', [False, True])
def test_propel_head_loss_matches_definition(learn_weights):
  b, i, n, target_scale = 4, 3, 2, 0.07
  means = RNG.uniform(0.2, 0.8, (b, i, n))
  scales = RNG.uniform(0.03, 0.2, (b, i, n))
  weights = RNG.dirichlet(np.ones(i), b) if learn_weights else np.full((b, i), 1 / i)
  labels = RNG.uniform(0, 1, (b, n))
  head = heads.PropelHead(5, n, i, target_scale=target_scale, learn_weights=learn_weights,
                          rngs=nnx.Rngs(0))
  got = jax.jit(head.loss)(_mixture_outputs(means, scales, weights),
                           {'label': jnp.asarray(labels)})
  want = [_propel_reference(means[k], scales[k], labels[k], target_scale, weights[k])
          for k in range(b)]
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)


def test_propel_head_equivalent_targets():
  """With target='equivalents' a mixture sitting on every equivalent label scores 0."""
  sigma = 0.05
  equivalents = np.array([[[0.2, 0.3], [0.7, 0.6]]])
  head = heads.PropelHead(5, 2, 2, target_scale=sigma, target='equivalents',
                          rngs=nnx.Rngs(0))
  batch = {'label': jnp.asarray(equivalents[:, 0]), 'equivalent_labels': jnp.asarray(equivalents)}
  exact = _mixture_outputs(equivalents, np.full((1, 2, 2), sigma), [[0.5, 0.5]])
  np.testing.assert_allclose(jax.jit(head.loss)(exact, batch), 0, atol=1e-5)
  # Against only the first label, the same bimodal mixture is far from optimal.
  label_head = heads.PropelHead(5, 2, 2, target_scale=sigma, rngs=nnx.Rngs(0))
  assert jax.jit(label_head.loss)(exact, batch)[0] > 0.3
  # Identical equivalents reduce to the single-label loss.
  same = {'label': batch['label'],
          'equivalent_labels': jnp.repeat(batch['label'][:, None], 3, axis=1)}
  off = _mixture_outputs([[[0.25, 0.3], [0.5, 0.5]]], [[[0.1, 0.05], [0.02, 0.2]]], [[0.5, 0.5]])
  np.testing.assert_allclose(jax.jit(head.loss)(off, same),
                             jax.jit(label_head.loss)(off, same), rtol=1e-5)


def test_mdn_head_loss_is_negative_log_likelihood():
  b, i, n = 3, 2, 3
  means = RNG.uniform(0, 1, (b, i, n))
  scales = RNG.uniform(0.05, 0.3, (b, i, n))
  weights = RNG.dirichlet(np.ones(i), b)
  labels = RNG.uniform(0, 1, (b, n))
  head = heads.MDNHead(4, n, i, rngs=nnx.Rngs(0))
  assert head.learn_weights
  got = jax.jit(head.loss)(_mixture_outputs(means, scales, weights),
                           {'label': jnp.asarray(labels)})
  want = [-np.log(sum(weights[k, c] * np.prod(stats.norm.pdf(labels[k], means[k, c],
                                                                 scales[k, c]))
                      for c in range(i))) for k in range(b)]
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_mixture_decoders_on_hand_made_outputs():
  """Two separated components: the mode is the heavier one, the mean the weighted average."""
  means = [[[0.2, 0.8], [0.7, 0.3]]]
  scales = [[[0.05, 0.05], [0.05, 0.05]]]
  head = heads.PropelHead(4, 2, 2, target_scale=0.05, learn_weights=True, rngs=nnx.Rngs(0))
  for heavy, weights in ((1, [[0.3, 0.7]]), (0, [[0.8, 0.2]])):
    decoded = jax.jit(head.decode)(_mixture_outputs(means, scales, weights))
    np.testing.assert_allclose(decoded['mode'][0], means[0][heavy], atol=1e-3)
    np.testing.assert_allclose(decoded['mean'][0], np.dot(weights[0], means[0]), atol=1e-6)
  got_means, got_scales, got_log_weights = head.mixture(
      _mixture_outputs(means, scales, [[0.3, 0.7]]))
  np.testing.assert_allclose(got_means, means)
  np.testing.assert_allclose(got_scales, scales)
  np.testing.assert_allclose(np.exp(got_log_weights), [[0.3, 0.7]], rtol=1e-6)


@pytest.mark.parametrize('loss', ['mse', 'l1'])
def test_direct_head(loss):
  head = heads.DirectHead(6, 3, loss=loss, rngs=nnx.Rngs(0))
  out = head(jnp.asarray(RNG.normal(size=(4, 6)), jnp.float32))
  assert out.shape == (4, 3)
  assert np.all((out > 0) & (out < 1))
  labels = RNG.uniform(0, 1, (4, 3))
  diff = np.asarray(out, np.float64) - labels
  want = np.mean(diff ** 2 if loss == 'mse' else np.abs(diff), axis=-1)
  np.testing.assert_allclose(jax.jit(head.loss)(out, {'label': jnp.asarray(labels)}), want,
                             rtol=1e-5)
  np.testing.assert_array_equal(jax.jit(head.decode)(out)['direct'], out)
  assert head.mixture(out) is None


def test_heatmap_joint_target_and_loss():
  bins, sigma = 20, 0.1
  head = heads.HeatmapHead(4, 2, bins=bins, sigma=sigma, rngs=nnx.Rngs(0))
  assert head.layout == 'joint' and head.grid_shape == (bins, bins)
  out = head(jnp.asarray(RNG.normal(size=(3, 4)), jnp.float32))
  assert out.shape == (3, bins, bins)
  labels = RNG.uniform(0, 1, (3, 2))
  centres = (np.arange(bins) + 0.5) / bins
  # Written out cell by cell: exp(-|c - y|² / 2σ²) with c = (centres[j], centres[k]).
  want_target = np.exp(-((centres[None, :, None] - labels[:, 0, None, None]) ** 2 +
                         (centres[None, None, :] - labels[:, 1, None, None]) ** 2)
                       / (2 * sigma ** 2))
  np.testing.assert_allclose(head.target_heatmap(jnp.asarray(labels)), want_target,
                             rtol=1e-5, atol=1e-7)
  want_loss = np.mean((np.asarray(out, np.float64) - want_target) ** 2,
                      axis=(1, 2))
  np.testing.assert_allclose(jax.jit(head.loss)(out, {'label': jnp.asarray(labels)}), want_loss,
                             rtol=1e-4)
  assert head.mixture(out) is None


@pytest.mark.parametrize('num_targets,layout', [(2, 'joint'), (3, 'marginal'),
                                                (2, 'marginal')])
def test_heatmap_decoders_recover_label_from_its_target(num_targets, layout):
  bins = 50
  head = heads.HeatmapHead(4, num_targets, bins=bins, layout=layout, sigma=0.03,
                           rngs=nnx.Rngs(0))
  labels = jnp.asarray(RNG.uniform(0.25, 0.75, (4, num_targets)), jnp.float32)
  decoded = jax.jit(head.decode)(head.target_heatmap(labels))
  centres = (np.arange(bins) + 0.5) / bins
  nearest_centre = centres[np.argmin(np.abs(centres - np.asarray(labels)[..., None]), -1)]
  np.testing.assert_allclose(decoded['argmax'], nearest_centre, atol=1e-6)
  # Soft-argmax is not quantised: far closer than half a bin (0.01) in the interior.
  np.testing.assert_allclose(decoded['soft_argmax'], labels, atol=2e-3)


def test_heatmap_decoders_on_hand_made_scores():
  # sigma 0.05 -> window 0.15: the argmax cell and its neighbours (bin width 0.1).
  head = heads.HeatmapHead(4, 2, bins=10, sigma=0.05, rngs=nnx.Rngs(0))
  scores = np.zeros((2, 10, 10), np.float32)
  scores[0, 7, 2] = 1.0
  scores[0, 7, 3] = 0.5
  scores[0, 6, 2] = -1.0  # Negative scores carry no weight.
  scores[0, 0, 9] = 0.9  # Outside the window: ignored by the soft-argmax.
  scores[1] = -1.0  # No positive score anywhere: soft-argmax falls back to argmax.
  scores[1, 2, 4] = -0.5
  decoded = jax.jit(head.decode)(jnp.asarray(scores))
  np.testing.assert_allclose(decoded['argmax'], [[0.75, 0.25], [0.25, 0.45]], atol=1e-6)
  np.testing.assert_allclose(decoded['soft_argmax'],
                             [[0.75, (0.25 * 1 + 0.35 * 0.5) / 1.5], [0.25, 0.45]], atol=1e-6)


def test_invalid_head_arguments_name_the_problem():
  with pytest.raises(ValueError, match='scale_activation'):
    heads.PropelHead(4, 2, 2, target_scale=0.1, scale_activation='relu', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='target_scale'):
    heads.PropelHead(4, 2, 2, target_scale=[0.1, 0.1, 0.1], rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='layout'):
    heads.HeatmapHead(4, 2, layout='spiral', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='loss'):
    heads.DirectHead(4, 2, loss='huber', rngs=nnx.Rngs(0))


def _full_propel_reference(means, factors, label, target_scale, weights):
  """PROPEL from its definition with full covariances Σ = L Lᵀ, float64."""
  def overlap(m1, c1, m2, c2):
    return stats.multivariate_normal.pdf(m1, m2, c1 + c2)
  cov = [f @ f.T for f in factors]
  gt = np.diag(np.broadcast_to(target_scale, label.shape) ** 2)
  cross = sum(w * overlap(label, gt, m, c) for w, m, c in zip(weights, means, cov))
  self_m = sum(wi * wj * overlap(mi, ci, mj, cj)
               for wi, mi, ci in zip(weights, means, cov)
               for wj, mj, cj in zip(weights, means, cov))
  return -math.log(2 * cross / (overlap(label, gt, label, gt) + self_m))


@pytest.mark.parametrize('learn_weights', [False, True])
def test_full_covariance_head_outputs_and_loss(learn_weights):
  """Cholesky factors [B, I, n, n]: lower triangular, diagonal ≥ min_scale; loss by definition."""
  b, i, n, f = 4, 3, 3, 7
  head = heads.PropelHead(f, n, i, target_scale=0.05, min_scale=0.01, covariance='full',
                          learn_weights=learn_weights, rngs=nnx.Rngs(0))
  diagonal_head = heads.PropelHead(f, n, i, target_scale=0.05, learn_weights=learn_weights,
                                   rngs=nnx.Rngs(0))
  # n(n-1)/2 = 3 more outputs per component, weights and biases.
  assert (head.dense.kernel.shape[1] - diagonal_head.dense.kernel.shape[1]) == i * 3
  out = jax.jit(lambda x: head(x))(jnp.asarray(RNG.normal(size=(b, f)), jnp.float32))
  assert out.is_full_covariance and out.scales.shape == (b, i, n, n)
  assert out.means.shape == (b, i, n) and out.log_weights.shape == (b, i)
  np.testing.assert_array_equal(np.triu(out.scales, k=1), 0.0)
  assert np.all(np.diagonal(out.scales, axis1=-2, axis2=-1) >= 0.01)
  assert np.any(np.abs(np.tril(out.scales, k=-1)) > 0.1)  # tilted
  labels = RNG.uniform(0, 1, (b, n))
  got = jax.jit(head.loss)(out, {'label': jnp.asarray(labels, jnp.float32)})
  weights = np.exp(np.asarray(out.log_weights, np.float64))
  want = [_full_propel_reference(np.asarray(out.means[k], np.float64),
                                 np.asarray(out.scales[k], np.float64), labels[k], 0.05,
                                 weights[k]) for k in range(b)]
  np.testing.assert_allclose(got, want, rtol=2e-4)
  decoded = jax.jit(head.decode)(out)
  assert decoded['mode'].shape == decoded['mean'].shape == (b, n)
  # The same outputs through the MDN loss and the equivalents target.
  mdn = heads.MDNHead(f, n, i, covariance='full', rngs=nnx.Rngs(0))
  nll = jax.jit(mdn.loss)(out, {'label': jnp.asarray(labels, jnp.float32)})
  np.testing.assert_allclose(nll, -mixtures.log_prob(labels, *out), rtol=1e-5)
  equivalents = heads.PropelHead(f, n, i, target_scale=0.05, covariance='full',
                                 target='equivalents', learn_weights=learn_weights,
                                 rngs=nnx.Rngs(0))
  batch = {'label': jnp.asarray(labels, jnp.float32),
           'equivalent_labels': jnp.asarray(labels[:, None], jnp.float32)}
  np.testing.assert_allclose(jax.jit(equivalents.loss)(out, batch), got, rtol=1e-5)


def test_full_covariance_head_rejects_unknown_covariance():
  with pytest.raises(ValueError, match=r"covariance must be one of \('diagonal', 'full'\)"):
    heads.PropelHead(4, 2, 2, target_scale=0.1, covariance='spherical', rngs=nnx.Rngs(0))
