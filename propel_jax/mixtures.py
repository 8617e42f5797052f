"""Mixtures of diagonal Gaussians: density, moments, modes, sampling, CDF.

A mixture over R^n with I components is given, as everywhere in propel_jax,
by `means` and `scales` (standard deviations) of shape [..., I, n] and optional
normalised `log_weights` [..., I] (default: equal weights 1/I). Leading axes
are batch axes and broadcast. All functions are pure jnp, so they jit, vmap
and differentiate; `modes` has fixed output shapes for the same reason.
"""

import math

import jax
from jax import lax
import jax.numpy as jnp
from jax.scipy import special

_LOG_2PI = math.log(2.0 * math.pi)


def check_shapes(means, scales, log_weights=None, *, name=''):
  """Raises ValueError unless means, scales are [..., I, n] and log_weights [..., I].

  Args:
    means: [..., I, n].
    scales: [..., I, n].
    log_weights: None or [..., I].
    name: prefix of the argument names in the message (e.g. 'p_').
  """
  means_shape, scales_shape = jnp.shape(means), jnp.shape(scales)
  if len(means_shape) < 2:
    raise ValueError(f'{name}means must be [..., I, n]; got shape {means_shape}.')
  if scales_shape != means_shape:
    raise ValueError(f'{name}scales shape {scales_shape} must equal '
                     f'{name}means shape {means_shape} ([..., I, n]).')
  if log_weights is not None and jnp.shape(log_weights) != means_shape[:-1]:
    raise ValueError(f'{name}log_weights shape {jnp.shape(log_weights)} must be '
                     f'{means_shape[:-1]} ([..., I]) for {name}means of shape '
                     f'{means_shape}.')


def _check_points(x, means, what='x'):
  if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != jnp.shape(means)[-1]:
    raise ValueError(f'{what} shape {jnp.shape(x)} must be [..., n] with n = '
                     f'{jnp.shape(means)[-1]} from means shape {jnp.shape(means)}.')


def _log_weights_or_uniform(means, log_weights):
  """[..., I] log weights, 1/I each if none are given."""
  if log_weights is None:
    return jnp.full(jnp.shape(means)[:-1], -math.log(jnp.shape(means)[-2]),
                    jnp.result_type(means, jnp.float32))
  return jnp.asarray(log_weights)


def component_log_prob(x, means, scales):
  """log N(x; μ_i, diag σ_i²) for every component.

  Args:
    x: [..., n] points.
    means, scales: [..., I, n].

  Returns:
    [..., I] log-densities.
  """
  z = (x[..., None, :] - means) / scales
  return -0.5 * jnp.sum(_LOG_2PI + jnp.square(z), axis=-1) - jnp.sum(
      jnp.log(scales), axis=-1)


def log_prob(x, means, scales, log_weights=None):
  """Mixture log-density at points.

  Args:
    x: [..., n] points.
    means, scales: [..., I, n] component means and standard deviations.
    log_weights: optional [..., I] normalised log weights.

  Returns:
    [...] log p(x), the leading shapes broadcast.
  """
  check_shapes(means, scales, log_weights)
  _check_points(x, means)
  log_weights = _log_weights_or_uniform(means, log_weights)
  return jax.nn.logsumexp(log_weights + component_log_prob(x, means, scales),
                          axis=-1)


def mean(means, scales, log_weights=None):
  """Mixture mean Σ_i w_i μ_i.

  Args:
    means, scales: [..., I, n].
    log_weights: optional [..., I].

  Returns:
    [..., n].
  """
  check_shapes(means, scales, log_weights)
  weights = jnp.exp(_log_weights_or_uniform(means, log_weights))
  return jnp.sum(weights[..., None] * means, axis=-2)


def covariance(means, scales, log_weights=None):
  """Mixture covariance Σ_i w_i [diag σ_i² + (μ_i - m)(μ_i - m)ᵀ], m the mean.

  Args:
    means, scales: [..., I, n].
    log_weights: optional [..., I].

  Returns:
    [..., n, n].
  """
  check_shapes(means, scales, log_weights)
  weights = jnp.exp(_log_weights_or_uniform(means, log_weights))
  centred = means - mean(means, scales, log_weights)[..., None, :]
  within = jnp.sum(weights[..., None] * jnp.square(scales), axis=-2)
  between = jnp.einsum('...i,...ij,...ik->...jk', weights, centred, centred)
  return between + within[..., None, :] * jnp.eye(means.shape[-1],
                                                 dtype=within.dtype)


def modes(means, scales, log_weights=None, *, num_iters=200, tol=1e-6,
          merge_tol=1e-2):
  """Modes of the mixture, by fixed-point (mean-shift) iteration.

  Starting from every component mean, iterates the stationarity condition of
  a diagonal Gaussian mixture, x_d ← Σ_i r_i μ_id / v_id / Σ_i r_i / v_id with
  responsibilities r_i ∝ w_i N(x; μ_i, σ_i²), which increases the density
  monotonically (Carreira-Perpiñán, 2000) and so converges to a mode in
  practice. Starting points that reach the same mode are merged.

  Args:
    means, scales: [..., I, n] component means and standard deviations.
    log_weights: optional [..., I] normalised log weights.
    num_iters: most iterations.
    tol: stop when no point moves more than tol times the smallest component
      scale of its dimension.
    merge_tol: points closer than merge_tol times that scale (in every
      dimension) are one mode.

  Returns:
    (locations [..., I, n], log_density [..., I], valid [..., I] bool), sorted
    so that the valid (distinct) modes come first, by density descending;
    invalid slots hold duplicates and are to be ignored.
  """
  check_shapes(means, scales, log_weights)
  means = jnp.asarray(means)
  dtype = jnp.promote_types(means.dtype, jnp.float32)
  means = means.astype(dtype)
  scales = jnp.asarray(scales, dtype)
  log_weights = _log_weights_or_uniform(means, log_weights).astype(dtype)
  precisions = 1.0 / jnp.square(scales)  # [..., I, n]
  unit = jnp.min(scales, axis=-2, keepdims=True)  # [..., 1, n]

  def responsibilities(x):  # x [..., K, n] -> [..., K, I]
    log_r = log_weights[..., None, :] + component_log_prob(
        x, means[..., None, :, :], scales[..., None, :, :])
    return jax.nn.softmax(log_r, axis=-1)

  def step(x):
    r = responsibilities(x)
    return (jnp.einsum('...ki,...in->...kn', r, precisions * means)
            / jnp.einsum('...ki,...in->...kn', r, precisions))

  def cond(state):
    i, _, change = state
    return (i < num_iters) & (change > tol)

  def body(state):
    i, x, _ = state
    new_x = step(x)
    return i + 1, new_x, jnp.max(jnp.abs(new_x - x) / unit)

  _, points, _ = lax.while_loop(cond, body, (0, means, jnp.array(jnp.inf, dtype)))
  log_density = log_prob(points, means[..., None, :, :],
                         scales[..., None, :, :], log_weights[..., None, :])

  # Sort by density; a point is a duplicate if a denser one is within merge_tol.
  order = jnp.argsort(-log_density, axis=-1)
  points = jnp.take_along_axis(points, order[..., None], axis=-2)
  log_density = jnp.take_along_axis(log_density, order, axis=-1)
  close = jnp.all(jnp.abs(points[..., :, None, :] - points[..., None, :, :])
                  <= merge_tol * unit[..., None, :, :], axis=-1)  # [..., K, K]
  num = means.shape[-2]
  denser = jnp.tril(jnp.ones((num, num), bool), k=-1)  # j < k
  valid = ~jnp.any(close & denser, axis=-1) & jnp.isfinite(log_density)
  # Stable re-sort: valid modes first, each group still by density.
  order = jnp.argsort(~valid, axis=-1, stable=True)
  return (jnp.take_along_axis(points, order[..., None], axis=-2),
          jnp.take_along_axis(log_density, order, axis=-1),
          jnp.take_along_axis(valid, order, axis=-1))


def most_likely_mode(means, scales, log_weights=None, **modes_kwargs):
  """The mode with the highest density (a point estimate of the mixture).

  Args:
    means, scales: [..., I, n].
    log_weights: optional [..., I].
    **modes_kwargs: passed to `modes`.

  Returns:
    [..., n].
  """
  return modes(means, scales, log_weights, **modes_kwargs)[0][..., 0, :]


def sample(key, means, scales, log_weights=None, sample_shape=()):
  """Draws samples: a component by its weight, then a point from it.

  Args:
    key: a JAX PRNG key.
    means, scales: [..., I, n].
    log_weights: optional [..., I].
    sample_shape: leading shape of the samples.

  Returns:
    [*sample_shape, ..., n] samples.
  """
  check_shapes(means, scales, log_weights)
  means, scales = jnp.asarray(means), jnp.asarray(scales)
  log_weights = _log_weights_or_uniform(means, log_weights)
  shape = tuple(sample_shape) + means.shape[:-2]
  component_key, noise_key = jax.random.split(key)
  component = jax.random.categorical(component_key, log_weights, shape=shape)
  pick = lambda a: jnp.take_along_axis(  # [..., I, n] -> [*sample_shape, ..., n]
      jnp.broadcast_to(a, shape + a.shape[-2:]), component[..., None, None],
      axis=-2)[..., 0, :]
  noise = jax.random.normal(noise_key, shape + means.shape[-1:],
                            jnp.result_type(means, jnp.float32))
  return pick(means) + pick(scales) * noise


def marginal_cdf(x, means, scales, log_weights=None):
  """Per-dimension marginal CDF Σ_i w_i Φ((x_d - μ_id) / σ_id).

  Args:
    x: [..., n] points.
    means, scales: [..., I, n].
    log_weights: optional [..., I].

  Returns:
    [..., n] P(X_d ≤ x_d) for each dimension d.
  """
  check_shapes(means, scales, log_weights)
  _check_points(x, means)
  weights = jnp.exp(_log_weights_or_uniform(means, log_weights))
  cdf = special.ndtr((x[..., None, :] - means) / scales)
  return jnp.sum(weights[..., None] * cdf, axis=-2)
