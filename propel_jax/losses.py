"""PROPEL and the Gaussian-mixture distance it is built on.

The distance between two densities p and q of Sfikas et al. (ICANN 2005),

    D(p, q) = -log[ 2 ∫ p q dx / ∫ (p² + q²) dx ],

has a closed form when p and q are mixtures of diagonal Gaussians, since every
integral is a sum of Gaussian overlaps ∫ N_a N_b = N(μ_a; μ_b, V_a + V_b).
PROPEL (Asad et al., ICPR 2020) is D with p a single Gaussian centred on the
label and q the mixture a network predicts. Everything is computed in log
space so that the loss stays finite far from the target.

First version: straightforward log-space composition; see the loss issue for
the planned optimisations.
"""

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)


def _log_overlap(mean_a, var_a, mean_b, var_b):
  """log ∫ N(x; mean_a, diag var_a) N(x; mean_b, diag var_b) dx.

  Args:
    mean_a, var_a, mean_b, var_b: [n] arrays.

  Returns:
    A scalar.
  """
  var = var_a + var_b
  return -0.5 * jnp.sum(_LOG_2PI + jnp.log(var) + (mean_a - mean_b) ** 2 / var)


# [I, n] x [J, n] -> [I, J]: every component of one mixture against every
# component of the other.
_pairwise_log_overlap = jax.vmap(
    jax.vmap(_log_overlap, in_axes=(None, None, 0, 0)),
    in_axes=(0, 0, None, None))


def _log_self_and_cross(p_means, p_vars, p_logw, q_means, q_vars, q_logw):
  """log ∫p², log ∫q², log ∫pq for one pair of mixtures ([I, n], [J, n])."""
  def log_integral(m1, v1, w1, m2, v2, w2):
    log_g = _pairwise_log_overlap(m1, v1, m2, v2)
    return jax.nn.logsumexp(w1[:, None] + w2[None, :] + log_g)
  return (log_integral(p_means, p_vars, p_logw, p_means, p_vars, p_logw),
          log_integral(q_means, q_vars, q_logw, q_means, q_vars, q_logw),
          log_integral(p_means, p_vars, p_logw, q_means, q_vars, q_logw))


def _check_mixture(name, means, scales, log_weights):
  if means.ndim < 2:
    raise ValueError(f'{name}_means must be [..., I, n]; got shape {means.shape}.')
  if scales.shape != means.shape:
    raise ValueError(f'{name}_scales shape {scales.shape} must equal '
                     f'{name}_means shape {means.shape} ([..., I, n]).')
  if log_weights is not None and log_weights.shape != means.shape[:-1]:
    raise ValueError(f'{name}_log_weights shape {log_weights.shape} must be '
                     f'{means.shape[:-1]} ([..., I]) for {name}_means of shape '
                     f'{means.shape}.')


def mixture_distance(p_means, p_scales, q_means, q_scales, *,
                     p_log_weights=None, q_log_weights=None):
  """Closed-form distance -log[2∫pq / ∫(p² + q²)] between Gaussian mixtures.

  Args:
    p_means: [..., I, n] component means of p.
    p_scales: [..., I, n] component standard deviations of p (> 0).
    q_means: [..., J, n] component means of q.
    q_scales: [..., J, n] component standard deviations of q (> 0).
    p_log_weights: optional [..., I] normalised log weights (default 1/I each).
    q_log_weights: optional [..., J] normalised log weights (default 1/J each).

  Returns:
    [...] the distance, ≥ 0 and 0 iff p = q, in float32 or wider.
  """
  p_means, p_scales, q_means, q_scales = map(
      jnp.asarray, (p_means, p_scales, q_means, q_scales))
  _check_mixture('p', p_means, p_scales, p_log_weights)
  _check_mixture('q', q_means, q_scales, q_log_weights)
  if p_means.shape[-1] != q_means.shape[-1]:
    raise ValueError(f'p_means {p_means.shape} and q_means {q_means.shape} '
                     'must have the same target dimension n (last axis).')
  dtype = jnp.result_type(p_means, p_scales, q_means, q_scales, jnp.float32)
  batch = jnp.broadcast_shapes(p_means.shape[:-2], q_means.shape[:-2])

  def prepare(means, scales, log_weights):
    num = means.shape[-2]
    if log_weights is None:
      log_weights = jnp.full(means.shape[:-1], -math.log(num), dtype)
    shape = batch + means.shape[-2:]
    means = jnp.broadcast_to(means.astype(dtype), shape).reshape(-1, *shape[-2:])
    var = jnp.broadcast_to(jnp.square(scales.astype(dtype)), shape).reshape(
        -1, *shape[-2:])
    log_weights = jnp.broadcast_to(
        jnp.asarray(log_weights, dtype), shape[:-1]).reshape(-1, shape[-2])
    return means, var, log_weights

  p = prepare(p_means, p_scales, p_log_weights)
  q = prepare(q_means, q_scales, q_log_weights)
  log_pp, log_qq, log_pq = jax.vmap(_log_self_and_cross)(*p, *q)
  loss = jnp.logaddexp(log_pp, log_qq) - math.log(2.0) - log_pq
  return loss.reshape(batch)


def propel_loss(means, scales, targets, *, target_scale, log_weights=None):
  """PROPEL: the mixture distance between N(targets, target_scale²) and a mixture.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations (> 0).
    targets: [..., n] labels.
    target_scale: standard deviation of the ground-truth Gaussian, a scalar or [n].
    log_weights: optional [..., I] normalised log mixture weights (default 1/I).

  Returns:
    [...] per-example loss in natural log.
  """
  means, scales, targets = map(jnp.asarray, (means, scales, targets))
  if means.ndim < 2 or targets.shape != means.shape[:-2] + means.shape[-1:]:
    raise ValueError(f'targets shape {targets.shape} must be [..., n] matching '
                     f'means shape {means.shape} ([..., I, n]).')
  gt_scale = jnp.broadcast_to(jnp.asarray(target_scale, targets.dtype),
                              targets.shape)
  return mixture_distance(targets[..., None, :], gt_scale[..., None, :],
                          means, scales, q_log_weights=log_weights)
