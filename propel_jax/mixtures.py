"""Mixtures of diagonal Gaussians: the `Mixture` type and what to do with one.

A mixture over R^n with I components is `means` and `scales` (standard
deviations), both [..., I, n], and `log_weights` [..., I]: logits, normalised
over I by every function here (None means equal weights). Leading axes are
batch axes. The functions take these arrays positionally, so for a `Mixture`
`m`, `log_prob(x, *m)` is `m.log_prob(x)`. All are pure jnp, so they jit, vmap
and differentiate; shapes are checked at trace time, values never.
"""

from collections.abc import Mapping
import math
from typing import Any, NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
from jax.scipy import special
from jax.typing import ArrayLike

_LOG_2PI = math.log(2.0 * math.pi)


class Mixture(NamedTuple):
  """A batch of mixtures of diagonal Gaussians; a pytree.

  Every method delegates to the module function of the same name, which does
  the work. Other component families (full covariance, von Mises-Fisher) are
  types of their own with the same methods.

  Attributes:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations (> 0).
    log_weights: [..., I] mixture weights as logits (normalised over I
      wherever they are used).

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures
    >>> m = mixtures.Mixture.uniform(jnp.array([[-1.0], [1.0]]),
    ...                              jnp.ones((2, 1)))
    >>> m.num_components, m.num_dims, m.batch_shape
    (2, 1, ())
    >>> round(float(m.log_prob(jnp.array([0.0]))), 4)
    -1.4189
    >>> m.covariance().tolist()
    [[2.0]]
  """

  means: jax.Array
  scales: jax.Array
  log_weights: jax.Array

  @classmethod
  def uniform(cls, means: ArrayLike, scales: ArrayLike) -> 'Mixture':
    """The mixture with equal weights 1/I (the paper's choice)."""
    means, scales = jnp.asarray(means), jnp.asarray(scales)
    check_shapes(means, scales)
    return cls(means, scales, normalized_log_weights(means))

  @property
  def num_components(self) -> int:
    """I."""
    return self.means.shape[-2]

  @property
  def num_dims(self) -> int:
    """n, the dimension of the space the mixture lives in."""
    return self.means.shape[-1]

  @property
  def batch_shape(self) -> tuple[int, ...]:
    """The leading (batch) axes: means.shape[:-2]."""
    return self.means.shape[:-2]

  def log_prob(self, x: ArrayLike) -> jax.Array:
    """`log_prob(x, *self)`."""
    return log_prob(x, *self)

  def mean(self) -> jax.Array:
    """`mean(*self)`."""
    return mean(*self)

  def covariance(self) -> jax.Array:
    """`covariance(*self)`."""
    return covariance(*self)

  def modes(self, **kwargs: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`modes(*self, **kwargs)`."""
    return modes(*self, **kwargs)

  def most_likely_mode(self, **kwargs: Any) -> jax.Array:
    """`most_likely_mode(*self, **kwargs)`."""
    return most_likely_mode(*self, **kwargs)

  def sample(self, key: jax.Array,
             sample_shape: tuple[int, ...] = ()) -> jax.Array:
    """`sample(key, *self, sample_shape=sample_shape)`."""
    return sample(key, *self, sample_shape=sample_shape)

  def marginal_cdf(self, x: ArrayLike) -> jax.Array:
    """`marginal_cdf(x, *self)`."""
    return marginal_cdf(x, *self)

  def affine(self, shift: ArrayLike, scale: ArrayLike) -> 'Mixture':
    """`affine(*self, shift=shift, scale=scale)`."""
    return affine(*self, shift=shift, scale=scale)


# ----------------------------------------------------------------------------
# Validation: shapes and dtypes only, so it costs nothing under jit.

_ROLES = ('x', 'means', 'scales', 'log_weights')


def _point_axes_error(x_shape, means_shape, x_name, means_name, scales_name):
  """The ValueError for points whose axes do not line up with the means'."""
  got = (f'got {x_name} {x_shape} and {means_name} {means_shape}')
  rule = (f'{means_name} must have exactly one more axis than {x_name} '
          f'({means_name} [..., I, n] for {x_name} [..., n]; leading axes '
          f'broadcast, size 1 included); {got}.')
  if len(x_shape) == len(means_shape):
    hint = (f' Probably: add the component axis I with '
            f'{means_name}[..., None, :] and {scales_name}[..., None, :] (one '
            f'Gaussian per example); or, to share one mixture across the '
            f'batch, use {means_name}[None] and {scales_name}[None].')
  elif len(means_shape) < 2:
    hint = (f' {means_name} needs the component axis I and as many leading '
            f'axes as {x_name} has ({len(x_shape) - 1}); size-1 axes '
            f'broadcast.')
  elif len(x_shape) > len(means_shape):
    hint = (f' To share one mixture across the leading axes of {x_name}, add '
            f'size-1 axes in front of {means_name} and {scales_name}, e.g. '
            f'{means_name}[None].')
  else:
    hint = (f' To evaluate the same {x_name} under every mixture, add size-1 '
            f'axes in front of {x_name}, e.g. {x_name}[None].')
  return ValueError(rule + hint)


def check_shapes(means: ArrayLike, scales: ArrayLike,
                 log_weights: ArrayLike | None = None,
                 x: ArrayLike | None = None, *,
                 names: Mapping[str, str] | None = None) -> None:
  """Raises ValueError unless the arrays form a mixture (and points for it).

  Requires real dtypes, means [..., I, n] with I ≥ 1 and n ≥ 1, scales of the
  same shape, log_weights [..., I] with means' leading shape, and points x
  [..., n] with exactly one axis fewer than means, whose leading axes
  broadcast with means'. The one-more-axis rule catches a forgotten component
  axis: means [B, n] with x [B, n] would otherwise read as one B-component
  mixture shared by the batch. Shape-only, so it is free under `jit`.

  Args:
    means: [..., I, n].
    scales: [..., I, n].
    log_weights: optional [..., I].
    x: optional [..., n] points.
    names: the caller's argument names for the roles 'x', 'means', 'scales'
      and 'log_weights', used in the messages (default: the role names).

  Raises:
    ValueError: naming the arguments, their shapes and the likely fix.

  Examples:
    >>> import numpy as np
    >>> from propel_jax import mixtures
    >>> mixtures.check_shapes(np.zeros((4, 2, 3)), np.ones((4, 2, 3)),
    ...                       x=np.zeros((4, 3)))
    >>> try:
    ...   mixtures.check_shapes(np.zeros((4, 3)), np.ones((4, 3)),
    ...                         x=np.zeros((4, 3)), names={'x': 'targets'})
    ... except ValueError as e:
    ...   print(str(e)[:50])
    means must have exactly one more axis than targets
  """
  name = {role: role for role in _ROLES}
  name.update(names or {})
  arrays = {'x': x, 'means': means, 'scales': scales,
            'log_weights': log_weights}
  for role, array in arrays.items():
    if array is not None and jnp.iscomplexobj(array):
      raise ValueError(f'{name[role]} must be real; got dtype '
                       f'{jnp.result_type(array)}.')
  means_shape, scales_shape = jnp.shape(means), jnp.shape(scales)
  m, s, w = name['means'], name['scales'], name['log_weights']
  if x is not None:
    x_shape = jnp.shape(x)
    if not x_shape:
      raise ValueError(f'{name["x"]} must be [..., n] (n the last axis of '
                       f'{m} {means_shape}); got a scalar. For n = 1 pass '
                       f'{name["x"]}[..., None].')
    if len(means_shape) != len(x_shape) + 1:
      raise _point_axes_error(x_shape, means_shape, name['x'], m, s)
  if len(means_shape) < 2:
    raise ValueError(f'{m} must be [..., I, n] (I components, n dimensions); '
                     f'got shape {means_shape}. For one Gaussian use '
                     f'{m}[..., None, :].')
  if scales_shape != means_shape:
    raise ValueError(f'{s} shape {scales_shape} must equal {m} shape '
                     f'{means_shape} ([..., I, n]).')
  if log_weights is not None and jnp.shape(log_weights) != means_shape[:-1]:
    raise ValueError(f'{w} shape {jnp.shape(log_weights)} must be '
                     f'{means_shape[:-1]} ([..., I]) for {m} of shape '
                     f'{means_shape}.')
  if means_shape[-2] == 0:
    raise ValueError(f'{m} {means_shape} has no components (I = 0); a mixture '
                     'needs at least one.')
  if means_shape[-1] == 0:
    raise ValueError(f'{m} {means_shape} has no dimensions (n = 0).')
  if x is not None:
    if x_shape[-1] != means_shape[-1]:
      raise ValueError(f'{name["x"]} shape {x_shape} must be [..., n] with n = '
                       f'{means_shape[-1]} from {m} shape {means_shape}.')
    try:
      jnp.broadcast_shapes(x_shape[:-1], means_shape[:-2])
    except ValueError:
      raise ValueError(
          f'The leading (batch) axes of {name["x"]} {x_shape} and {m} '
          f'{means_shape} do not broadcast: {x_shape[:-1]} and '
          f'{means_shape[:-2]}.') from None


def normalized_log_weights(means: ArrayLike,
                           log_weights: ArrayLike | None = None) -> jax.Array:
  """Normalised log weights: log_softmax of the logits, or log(1/I) each.

  The one place where mixture weights are made: every function here and in
  `propel_jax.losses` goes through it, so logits and normalised log weights
  are interchangeable everywhere (adding a constant over I changes nothing).

  Args:
    means: [..., I, n]; its shape gives I and its dtype the default's.
    log_weights: optional [..., I] logits; None means equal weights.

  Returns:
    [..., I] log weights with logsumexp 0 over I, in at least float32.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures
    >>> means = jnp.zeros((2, 3))
    >>> [round(v, 4) for v in mixtures.normalized_log_weights(means).tolist()]
    [-0.6931, -0.6931]
    >>> logits = jnp.array([5.0, 7.0])
    >>> lw = mixtures.normalized_log_weights(means, logits)
    >>> [round(v, 4) for v in lw.tolist()]
    [-2.1269, -0.1269]
  """
  if log_weights is None:
    shape = jnp.shape(means)[:-1]
    if not shape or shape[-1] < 1:
      raise ValueError(f'means must be [..., I, n] with I >= 1; got shape '
                       f'{jnp.shape(means)}.')
    dtype = jnp.promote_types(jnp.result_type(means), jnp.float32)
    return jnp.full(shape, -math.log(shape[-1]), dtype)
  log_weights = jnp.asarray(log_weights)
  log_weights = log_weights.astype(
      jnp.promote_types(log_weights.dtype, jnp.float32))
  return jax.nn.log_softmax(log_weights, axis=-1)


# ----------------------------------------------------------------------------
# Densities, moments, modes, sampling.


def _component_log_prob(x, means, scales):
  z = (x[..., None, :] - means) / scales
  return -0.5 * jnp.sum(_LOG_2PI + jnp.square(z), axis=-1) - jnp.sum(
      jnp.log(scales), axis=-1)


def _log_prob(x, means, scales, log_weights):
  """log p(x) for validated arrays and normalised log weights."""
  return jax.nn.logsumexp(log_weights + _component_log_prob(x, means, scales),
                          axis=-1)


def component_log_prob(x: ArrayLike, means: ArrayLike,
                       scales: ArrayLike) -> jax.Array:
  """log N(x; μ_i, diag σ_i²) for every component i.

  Args:
    x: [..., n] points.
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations.

  Returns:
    [..., I] log-densities, the leading shapes broadcast.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures
    >>> means = jnp.array([[0.0], [1.0]])  # [I=2, n=1]
    >>> lp = mixtures.component_log_prob(jnp.zeros(1), means, jnp.ones((2, 1)))
    >>> [round(v, 4) for v in lp.tolist()]
    [-0.9189, -1.4189]
  """
  x, means, scales = map(jnp.asarray, (x, means, scales))
  check_shapes(means, scales, x=x)
  return _component_log_prob(x, means, scales)


def log_prob(x: ArrayLike, means: ArrayLike, scales: ArrayLike,
             log_weights: ArrayLike | None = None) -> jax.Array:
  """Mixture log-density log Σ_i w_i N(x; μ_i, diag σ_i²).

  Args:
    x: [..., n] points.
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations.
    log_weights: optional [..., I] logits (default: equal weights).

  Returns:
    [...] log p(x), the leading shapes broadcast.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures
    >>> means = jnp.array([[[-1.0], [1.0]]] * 4)  # [B=4, I=2, n=1]
    >>> x = jnp.zeros((4, 1))                     # [B, n]
    >>> lp = mixtures.log_prob(x, means, jnp.ones_like(means))
    >>> [round(v, 4) for v in lp.tolist()]
    [-1.4189, -1.4189, -1.4189, -1.4189]
  """
  x, means, scales = map(jnp.asarray, (x, means, scales))
  check_shapes(means, scales, log_weights, x)
  return _log_prob(x, means, scales,
                   normalized_log_weights(means, log_weights))


def mean(means: ArrayLike, scales: ArrayLike,
         log_weights: ArrayLike | None = None) -> jax.Array:
  """Mixture mean Σ_i w_i μ_i.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations.
    log_weights: optional [..., I] logits (default: equal weights).

  Returns:
    [..., n].

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures
    >>> means = jnp.array([[0.0, 0.0], [4.0, 2.0]])
    >>> logits = jnp.log(jnp.array([3.0, 1.0]))
    >>> mixtures.mean(means, jnp.ones_like(means), logits).tolist()
    [1.0, 0.5]
  """
  means, scales = jnp.asarray(means), jnp.asarray(scales)
  check_shapes(means, scales, log_weights)
  weights = jnp.exp(normalized_log_weights(means, log_weights))
  return jnp.sum(weights[..., None] * means, axis=-2)


def covariance(means: ArrayLike, scales: ArrayLike,
               log_weights: ArrayLike | None = None) -> jax.Array:
  """Mixture covariance Σ_i w_i [diag σ_i² + (μ_i - m)(μ_i - m)ᵀ], m the mean.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations.
    log_weights: optional [..., I] logits (default: equal weights).

  Returns:
    [..., n, n].

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures
    >>> means = jnp.array([[-1.0, 0.0], [1.0, 0.0]])
    >>> mixtures.covariance(means, jnp.full((2, 2), 0.5)).tolist()
    [[1.25, 0.0], [0.0, 0.25]]
  """
  means, scales = jnp.asarray(means), jnp.asarray(scales)
  check_shapes(means, scales, log_weights)
  weights = jnp.exp(normalized_log_weights(means, log_weights))
  centred = means - jnp.sum(weights[..., None] * means, axis=-2)[..., None, :]
  within = jnp.sum(weights[..., None] * jnp.square(scales), axis=-2)
  between = jnp.einsum('...i,...ij,...ik->...jk', weights, centred, centred)
  return between + within[..., None, :] * jnp.eye(means.shape[-1],
                                                 dtype=within.dtype)


def modes(means: ArrayLike, scales: ArrayLike,
          log_weights: ArrayLike | None = None, *, num_iters: int = 200,
          tol: float = 1e-6,
          merge_tol: float = 1e-2) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Modes of the mixture, by fixed-point (mean-shift) iteration.

  Starting from every component mean, iterates the stationarity condition of
  a diagonal Gaussian mixture, x_d ← Σ_i r_i μ_id / v_id / Σ_i r_i / v_id with
  responsibilities r_i ∝ w_i N(x; μ_i, σ_i²), which increases the density
  monotonically (Carreira-Perpiñán, 2000) and so converges to a mode in
  practice. Starting points that reach the same mode are merged. The output
  has fixed shapes (I slots), so it jits.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations.
    log_weights: optional [..., I] logits (default: equal weights).
    num_iters: most iterations.
    tol: stop when no point moves more than tol times the smallest component
      scale of its dimension.
    merge_tol: points closer than merge_tol times that scale (in every
      dimension) are one mode.

  Returns:
    (locations [..., I, n], log_density [..., I], valid [..., I] bool), sorted
    so that the valid (distinct) modes come first, by density descending;
    invalid slots hold duplicates and are to be ignored.

  References:
    Carreira-Perpiñán, "Mode-finding for mixtures of Gaussian
    distributions", IEEE TPAMI 22(11), 2000.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures
    >>> means = jnp.array([[-2.0], [2.0]])
    >>> logits = jnp.log(jnp.array([0.3, 0.7]))
    >>> x, log_p, valid = mixtures.modes(means, jnp.full((2, 1), 0.5), logits)
    >>> x.round(3).tolist(), valid.tolist()
    ([[2.0], [-2.0]], [True, True])
  """
  means = jnp.asarray(means)
  check_shapes(means, scales, log_weights)
  dtype = jnp.promote_types(means.dtype, jnp.float32)
  means = means.astype(dtype)
  scales = jnp.asarray(scales, dtype)
  log_weights = normalized_log_weights(means, log_weights).astype(dtype)
  precisions = 1.0 / jnp.square(scales)  # [..., I, n]
  unit = jnp.min(scales, axis=-2, keepdims=True)  # [..., 1, n]

  def responsibilities(x):  # x [..., K, n] -> [..., K, I]
    log_r = log_weights[..., None, :] + _component_log_prob(
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

  _, points, _ = lax.while_loop(cond, body,
                                (0, means, jnp.array(jnp.inf, dtype)))
  log_density = _log_prob(points, means[..., None, :, :],
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


def most_likely_mode(means: ArrayLike, scales: ArrayLike,
                     log_weights: ArrayLike | None = None,
                     **modes_kwargs: Any) -> jax.Array:
  """The mode with the highest density, a point estimate of the mixture.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations.
    log_weights: optional [..., I] logits (default: equal weights).
    **modes_kwargs: passed to `modes`.

  Returns:
    [..., n].

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures
    >>> means = jnp.array([[-2.0], [2.0]])
    >>> logits = jnp.array([0.0, 1.0])
    >>> mixtures.most_likely_mode(means, jnp.full((2, 1), 0.5),
    ...                           logits).round(3).tolist()
    [2.0]
  """
  return modes(means, scales, log_weights, **modes_kwargs)[0][..., 0, :]


def sample(key: jax.Array, means: ArrayLike, scales: ArrayLike,
           log_weights: ArrayLike | None = None,
           sample_shape: tuple[int, ...] = ()) -> jax.Array:
  """Draws samples: a component by its weight, then a point from it.

  Args:
    key: a JAX PRNG key.
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations.
    log_weights: optional [..., I] logits (default: equal weights).
    sample_shape: leading shape of the samples.

  Returns:
    [*sample_shape, ..., n] samples.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures
    >>> means = jnp.zeros((4, 2, 3))  # [B, I, n]
    >>> mixtures.sample(jax.random.key(0), means, jnp.ones_like(means),
    ...                 sample_shape=(10,)).shape
    (10, 4, 3)
  """
  means, scales = jnp.asarray(means), jnp.asarray(scales)
  check_shapes(means, scales, log_weights)
  log_weights = normalized_log_weights(means, log_weights)
  shape = tuple(sample_shape) + means.shape[:-2]
  component_key, noise_key = jax.random.split(key)
  component = jax.random.categorical(component_key, log_weights, shape=shape)
  pick = lambda a: jnp.take_along_axis(  # [..., I, n] -> [*sample_shape, ..., n]
      jnp.broadcast_to(a, shape + a.shape[-2:]), component[..., None, None],
      axis=-2)[..., 0, :]
  noise = jax.random.normal(noise_key, shape + means.shape[-1:],
                            jnp.result_type(means, jnp.float32))
  return pick(means) + pick(scales) * noise


def marginal_cdf(x: ArrayLike, means: ArrayLike, scales: ArrayLike,
                 log_weights: ArrayLike | None = None) -> jax.Array:
  """Per-dimension marginal CDF Σ_i w_i Φ((x_d - μ_id) / σ_id).

  Args:
    x: [..., n] points.
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations.
    log_weights: optional [..., I] logits (default: equal weights).

  Returns:
    [..., n] P(X_d ≤ x_d) for each dimension d, the leading shapes broadcast.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures
    >>> means = jnp.array([[-1.0, 0.0], [1.0, 0.0]])
    >>> mixtures.marginal_cdf(jnp.zeros(2), means,
    ...                       jnp.ones((2, 2))).round(4).tolist()
    [0.5, 0.5]
  """
  x, means, scales = map(jnp.asarray, (x, means, scales))
  check_shapes(means, scales, log_weights, x)
  weights = jnp.exp(normalized_log_weights(means, log_weights))
  cdf = special.ndtr((x[..., None, :] - means) / scales)
  return jnp.sum(weights[..., None] * cdf, axis=-2)


def affine(means: ArrayLike, scales: ArrayLike,
           log_weights: ArrayLike | None = None, *, shift: ArrayLike,
           scale: ArrayLike) -> Mixture:
  """The mixture of y = shift + scale x (per dimension) for x from a mixture.

  Each component maps to N(shift + scale μ_i, diag (|scale| σ_i)²) with its
  weight unchanged, so log p_y(shift + scale x) = log p_x(x) - Σ_d log|scale_d|.
  This is how a mixture moves between normalised label units and degrees.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations.
    log_weights: optional [..., I] logits (default: equal weights).
    shift: a scalar or [..., n] (per dimension; leading axes broadcast with
      the mixture's batch axes).
    scale: a scalar or [..., n], nonzero.

  Returns:
    The mapped `Mixture`, all fields broadcast to a common batch shape;
    log_weights are the given logits (uniform ones if None).

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures
    >>> m = mixtures.Mixture.uniform(jnp.array([[0.25, 0.5]]),
    ...                              jnp.array([[0.125, 0.25]]))
    >>> degrees = mixtures.affine(*m, shift=jnp.array([-90.0, -45.0]),
    ...                           scale=jnp.array([180.0, 90.0]))
    >>> degrees.means.tolist(), degrees.scales.tolist()
    ([[-45.0, 0.0]], [[22.5, 22.5]])
  """
  means, scales, shift, scale = map(jnp.asarray, (means, scales, shift, scale))
  check_shapes(means, scales, log_weights)
  points_shape = means.shape[:-2] + means.shape[-1:]
  for arg, value in (('shift', shift), ('scale', scale)):
    if jnp.iscomplexobj(value):
      raise ValueError(f'{arg} must be real; got dtype {value.dtype}.')
    try:
      jnp.broadcast_shapes(value.shape, points_shape)
    except ValueError:
      raise ValueError(
          f'{arg} shape {value.shape} must be a scalar or [..., n] and '
          f'broadcast against {points_shape}, the points of means '
          f'{means.shape}.') from None
  # Per dimension: the I axis goes in front of n.
  per_component = lambda a: a[..., None, :] if a.ndim else a
  new_means = per_component(shift) + per_component(scale) * means
  new_scales = jnp.abs(per_component(scale)) * scales
  shape = jnp.broadcast_shapes(new_means.shape, new_scales.shape)
  if log_weights is None:
    log_weights = normalized_log_weights(means)
  return Mixture(jnp.broadcast_to(new_means, shape),
                 jnp.broadcast_to(new_scales, shape),
                 jnp.broadcast_to(jnp.asarray(log_weights), shape[:-1]))
