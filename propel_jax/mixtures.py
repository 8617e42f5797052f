"""Gaussian mixtures: the `Mixture` type and what to do with one.

A mixture over R^n with I components is `means` [..., I, n], `scales` and
`log_weights` [..., I]: logits, normalised over I by every function here (None
means equal weights). `scales` is one of two things, told apart by its rank
(as scipy's `multivariate_normal` tells its `cov` apart):

  [..., I, n]     per-dimension standard deviations: diagonal covariances;
  [..., I, n, n]  lower-triangular Cholesky factors L of full covariances
                  Σ = L Lᵀ (distrax's `scale_tril`); only the lower triangle
                  is read.

Leading axes are batch axes. The functions take these arrays positionally, so
for a `Mixture` `m`, `log_prob(x, *m)` is `m.log_prob(x)`. All are pure jnp,
so they jit, vmap and differentiate; shapes are checked at trace time, values
never.
"""

from collections.abc import Mapping
from collections.abc import Sequence
import math
from typing import Any, NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
from jax.scipy import special
from jax.typing import ArrayLike
import numpy as np

from propel_jax import _common
from propel_jax import _linalg
from propel_jax import _shapes

_LOG_2PI = math.log(2.0 * math.pi)


class Mixture(NamedTuple):
  """A batch of Gaussian mixtures, diagonal or full covariance; a pytree.

  Every method delegates to the module function of the same name, which does
  the work. Other component families (von Mises-Fisher) are types of their
  own with the same methods.

  Attributes:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations (> 0), or
      [..., I, n, n] lower-triangular Cholesky factors of the covariances.
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
    >>> tilted = mixtures.Mixture.uniform(jnp.zeros((1, 2)),
    ...                                   jnp.array([[[1.0, 0.0], [1.0, 1.0]]]))
    >>> tilted.is_full_covariance, tilted.covariance().tolist()
    (True, [[1.0, 1.0], [1.0, 2.0]])
  """

  means: jax.Array
  scales: jax.Array
  log_weights: jax.Array

  @classmethod
  def uniform(cls, means: ArrayLike, scales: ArrayLike) -> 'Mixture':
    """The mixture with equal weights 1/I (the paper's choice)."""
    means, scales = _shapes.as_arrays(means, scales)
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

  @property
  def is_full_covariance(self) -> bool:
    """`is_full_covariance(self.means, self.scales)`."""
    return is_full_covariance(self.means, self.scales)

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

  def marginal(self, dims: Sequence[int]) -> 'Mixture':
    """`marginal(*self, dims=dims)`."""
    return marginal(*self, dims=dims)


# ----------------------------------------------------------------------------
# Validation: shapes and dtypes only, so it costs nothing under jit.

_ROLES = ('x', 'means', 'scales', 'log_weights')


def check_shapes(means: ArrayLike, scales: ArrayLike,
                 log_weights: ArrayLike | None = None,
                 x: ArrayLike | None = None, *,
                 names: Mapping[str, str] | None = None) -> None:
  """Raises ValueError unless the arrays form a mixture (and points for it).

  Requires real dtypes, means [..., I, n] with I ≥ 1 and n ≥ 1, scales of the
  same shape or [..., I, n, n] (Cholesky factors), log_weights [..., I] with
  means' leading shape, and points x [..., n] with exactly one axis fewer
  than means, whose leading axes broadcast with means' (size 1 included).
  This is the shape rule of both mixture families (axes match by rank, sizes
  broadcast; docs/loss.md): it catches a forgotten component axis, since
  means [B, n] with x [B, n] would otherwise read as one B-component mixture
  shared by the batch. Shape-only, so it is free under `jit`. Accepts
  array-likes (lists included).

  Args:
    means: [..., I, n].
    scales: [..., I, n] or [..., I, n, n].
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
  means, scales, log_weights, x = _shapes.as_arrays(means, scales, log_weights,
                                                    x)
  name = {role: role for role in _ROLES}
  name.update(names or {})
  arrays = {'x': x, 'means': means, 'scales': scales,
            'log_weights': log_weights}
  _shapes.reject_complex(**{name[role]: array for role, array in arrays.items()})
  means_shape, scales_shape = jnp.shape(means), jnp.shape(scales)
  m, s, w = name['means'], name['scales'], name['log_weights']
  if x is not None:
    x_shape = jnp.shape(x)
    if not x_shape:
      raise ValueError(f'{name["x"]} must be [..., n] (n the last axis of '
                       f'{m} {means_shape}); got a scalar. For n = 1 pass '
                       f'{name["x"]}[..., None].')
    if len(means_shape) != len(x_shape) + 1:
      raise _shapes.point_axes_error(
          x_shape, means_shape, x=name['x'], means=m,
          one_component=(f'{m}[..., None, :] and {s}[..., None, :] (one '
                         'Gaussian per example)'),
          shared=f'{m}[None] and {s}[None]')
  if len(means_shape) < 2:
    raise ValueError(f'{m} must be [..., I, n] (I components, n dimensions); '
                     f'got shape {means_shape}. For one Gaussian use '
                     f'{m}[..., None, :].')
  if scales_shape not in (means_shape, means_shape + means_shape[-1:]):
    raise ValueError(
        f'{s} shape {scales_shape} must equal {m} shape {means_shape} '
        f'([..., I, n]: standard deviations) or be '
        f'{means_shape + means_shape[-1:]} ([..., I, n, n]: lower-triangular '
        'Cholesky factors of full covariances).')
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
    if not _shapes.broadcasts(x_shape[:-1], means_shape[:-2]):
      raise ValueError(
          f'The leading (batch) axes of {name["x"]} {x_shape} and {m} '
          f'{means_shape} do not broadcast: {x_shape[:-1]} and '
          f'{means_shape[:-2]}.')


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
  means, log_weights = _shapes.as_arrays(means, log_weights)
  if log_weights is None:
    shape = means.shape[:-1]
    if not shape or shape[-1] < 1:
      raise ValueError(f'means must be [..., I, n] with I >= 1; got shape '
                       f'{means.shape}.')
    dtype = jnp.promote_types(jnp.result_type(means), jnp.float32)
    return jnp.full(shape, -math.log(shape[-1]), dtype)
  log_weights = log_weights.astype(
      jnp.promote_types(log_weights.dtype, jnp.float32))
  return jax.nn.log_softmax(log_weights, axis=-1)


# ----------------------------------------------------------------------------
# The two kinds of scales.


def is_full_covariance(means: ArrayLike, scales: ArrayLike) -> bool:
  """Whether scales are Cholesky factors [..., I, n, n] rather than [..., I, n].

  Decided by rank alone (static under jit); `check_shapes` validates the rest.

  Examples:
    >>> import numpy as np
    >>> from propel_jax import mixtures
    >>> means = np.zeros((4, 2, 3))
    >>> mixtures.is_full_covariance(means, np.ones((4, 2, 3)))
    False
    >>> mixtures.is_full_covariance(means, np.ones((4, 2, 3, 3)))
    True
  """
  return np.ndim(scales) == np.ndim(means) + 1


def _event_axes(means, scales):
  """How many trailing axes of scales describe one component: 1 or 2."""
  return 2 if is_full_covariance(means, scales) else 1


def component_covariances(means: ArrayLike, scales: ArrayLike) -> jax.Array:
  """Every component's covariance Σ_i: diag σ_i², or L_i L_iᵀ (lower triangle of L_i).

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] standard deviations or [..., I, n, n] Cholesky factors.

  Returns:
    [..., I, n, n].

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures
    >>> means = jnp.zeros((1, 2))
    >>> mixtures.component_covariances(means, jnp.array([[2.0, 3.0]])).tolist()
    [[[4.0, 0.0], [0.0, 9.0]]]
    >>> tril = jnp.array([[[2.0, 7.0], [1.0, 1.0]]])  # 7.0 is not read
    >>> mixtures.component_covariances(means, tril).tolist()
    [[[4.0, 2.0], [2.0, 2.0]]]
  """
  means, scales = _shapes.as_arrays(means, scales)
  check_shapes(means, scales)
  if is_full_covariance(means, scales):
    tril = jnp.tril(scales)
    return tril @ jnp.swapaxes(tril, -1, -2)
  return jnp.square(scales)[..., None] * jnp.eye(means.shape[-1], dtype=scales.dtype)


def marginal_scales(means: ArrayLike, scales: ArrayLike) -> jax.Array:
  """Every component's marginal standard deviations √Σ_i,dd.

  The scales themselves if diagonal; for Cholesky factors, the norms of the
  rows of their lower triangles.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] standard deviations or [..., I, n, n] Cholesky factors.

  Returns:
    [..., I, n], > 0 for valid scales.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures
    >>> tril = jnp.array([[[3.0, 0.0], [3.0, 4.0]]])
    >>> mixtures.marginal_scales(jnp.zeros((1, 2)), tril).tolist()
    [[3.0, 5.0]]
  """
  means, scales = _shapes.as_arrays(means, scales)
  check_shapes(means, scales)
  if is_full_covariance(means, scales):
    return jnp.sqrt(jnp.sum(jnp.square(jnp.tril(scales)), axis=-1))
  return scales


def _whiten(x, scales):
  """L⁻¹ x by forward substitution: x [..., n] against factors L [..., n, n]."""
  batch = jnp.broadcast_shapes(x.shape[:-1], scales.shape[:-2])
  tril = jnp.broadcast_to(scales, batch + scales.shape[-2:])
  column = jnp.broadcast_to(x, batch + x.shape[-1:])[..., None]
  return lax.linalg.triangular_solve(tril, column, left_side=True,
                                     lower=True)[..., 0]


def _precisions(scales):
  """Σ⁻¹ = L⁻ᵀ L⁻¹ from Cholesky factors L [..., n, n] (for the modes' iteration)."""
  identity = jnp.broadcast_to(jnp.eye(scales.shape[-1], dtype=scales.dtype),
                              scales.shape)
  inverse = lax.linalg.triangular_solve(scales, identity, left_side=True,
                                        lower=True)
  return jnp.swapaxes(inverse, -1, -2) @ inverse


def _log_det_scales(means, scales):
  """[..., I] Σ_d log σ_id, or log |det L_i| = Σ_d log |L_i,dd| for factors.

  A factor's diagonal may have either sign: flipping a column's sign leaves
  L Lᵀ unchanged.
  """
  if is_full_covariance(means, scales):
    return jnp.sum(jnp.log(jnp.abs(jnp.diagonal(scales, axis1=-2, axis2=-1))),
                   axis=-1)
  return jnp.sum(jnp.log(scales), axis=-1)


# ----------------------------------------------------------------------------
# Densities, moments, modes, sampling.


def _component_log_prob(x, means, scales):
  offset = x[..., None, :] - means
  if is_full_covariance(means, scales):
    z = _whiten(offset, scales)
  else:
    z = offset / scales
  return (-0.5 * jnp.sum(_LOG_2PI + jnp.square(z), axis=-1)
          - _log_det_scales(means, scales))


def _log_prob(x, means, scales, log_weights):
  """log p(x) for validated arrays and normalised log weights."""
  return jax.nn.logsumexp(log_weights + _component_log_prob(x, means, scales),
                          axis=-1)


def component_log_prob(x: ArrayLike, means: ArrayLike,
                       scales: ArrayLike) -> jax.Array:
  """log N(x; μ_i, Σ_i) for every component i.

  Args:
    x: [..., n] points.
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations, or [..., I, n, n]
      lower-triangular Cholesky factors of the covariances.

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
  x, means, scales = _shapes.as_arrays(x, means, scales)
  check_shapes(means, scales, x=x)
  return _component_log_prob(x, means, scales)


def log_prob(x: ArrayLike, means: ArrayLike, scales: ArrayLike,
             log_weights: ArrayLike | None = None) -> jax.Array:
  """Mixture log-density log Σ_i w_i N(x; μ_i, Σ_i).

  Args:
    x: [..., n] points.
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations, or [..., I, n, n]
      lower-triangular Cholesky factors of the covariances.
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

    With Cholesky factors [I, n, n]: Σ = [[1, 0.9], [0.9, 1]] is densest
    along the diagonal x_0 = x_1.

    >>> tril = jnp.array([[[1.0, 0.0], [0.9, 0.4359]]])
    >>> lp = mixtures.log_prob(jnp.array([[1.0, 1.0], [1.0, -1.0]]),
    ...                        jnp.zeros((1, 1, 2)), tril[None])
    >>> [round(v, 2) for v in lp.tolist()]
    [-1.53, -11.01]
  """
  x, means, scales, log_weights = _shapes.as_arrays(x, means, scales,
                                                   log_weights)
  check_shapes(means, scales, log_weights, x)
  return _log_prob(x, means, scales,
                   normalized_log_weights(means, log_weights))


def mean(means: ArrayLike, scales: ArrayLike,
         log_weights: ArrayLike | None = None) -> jax.Array:
  """Mixture mean Σ_i w_i μ_i.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations, or [..., I, n, n]
      lower-triangular Cholesky factors of the covariances.
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
  means, scales, log_weights = _shapes.as_arrays(means, scales, log_weights)
  check_shapes(means, scales, log_weights)
  weights = jnp.exp(normalized_log_weights(means, log_weights))
  return jnp.sum(weights[..., None] * means, axis=-2)


def covariance(means: ArrayLike, scales: ArrayLike,
               log_weights: ArrayLike | None = None) -> jax.Array:
  """Mixture covariance Σ_i w_i [Σ_i + (μ_i - m)(μ_i - m)ᵀ], m the mean.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations, or [..., I, n, n]
      lower-triangular Cholesky factors of the covariances.
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
  means, scales, log_weights = _shapes.as_arrays(means, scales, log_weights)
  check_shapes(means, scales, log_weights)
  weights = jnp.exp(normalized_log_weights(means, log_weights))
  centred = means - jnp.sum(weights[..., None] * means, axis=-2)[..., None, :]
  within = jnp.einsum('...i,...ijk->...jk', weights,
                      component_covariances(means, scales))
  between = jnp.einsum('...i,...ij,...ik->...jk', weights, centred, centred)
  return between + within


def modes(means: ArrayLike, scales: ArrayLike,
          log_weights: ArrayLike | None = None, *, num_iters: int = 100,
          tol: float = 1e-4,
          merge_tol: float = 1e-2) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Modes of the mixture, by safeguarded Newton ascent from every component mean.

  Every start climbs log p with Newton steps x ← x − H⁻¹ g (g, H the
  gradient and Hessian of log p at x), which converge quadratically, taken
  only where they are safe: H negative definite, a step of at most one local
  standard deviation (Mahalanobis length under A = Σ_i r_i Σ_i⁻¹) and a
  density that does not fall. Otherwise the start takes a fixed-point
  (mean-shift) step x ← x + A⁻¹ g = A⁻¹ Σ_i r_i Σ_i⁻¹ μ_i, with
  responsibilities r_i ∝ w_i N(x; μ_i, Σ_i), which never lowers the density
  (Carreira-Perpiñán, 2000) but converges only linearly, slowly where
  components nearly merge. So the starts end at local maxima, as the plain
  fixed-point iteration's do, in a few iterations instead of hundreds.
  Starting points that reach the same mode are merged. The output has fixed
  shapes (I slots), so it jits.

  Cost: each iteration weighs every start against every component, O(B I² n²)
  for B mixtures, and the search runs until the slowest start converges
  (typically 10 to 20 iterations). On a shared 2-core CPU (B = 16, n = 2) a
  jitted call took 0.04 to 0.08 s at I = 64 and 4 to 10 s at I = 512: for
  hundreds of components, evaluate on a subset of the batch.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations, or [..., I, n, n]
      lower-triangular Cholesky factors of the covariances.
    log_weights: optional [..., I] logits (default: equal weights).
    num_iters: most iterations.
    tol: stop when no start's proposed step is longer than tol times the
      smallest component (marginal) standard deviation of its dimension.
      After a Newton step of that length the error is of order tol² of it;
      much smaller tol than the default is out of float32's reach.
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
  means, scales, log_weights = _shapes.as_arrays(means, scales, log_weights)
  check_shapes(means, scales, log_weights)
  dtype = _shapes.compute_dtype(means, scales)
  means = means.astype(dtype)
  scales = scales.astype(dtype)
  log_weights = normalized_log_weights(means, log_weights).astype(dtype)
  unit = jnp.min(marginal_scales(means, scales), axis=-2,
                 keepdims=True)  # [..., 1, n]
  n = means.shape[-1]
  full = is_full_covariance(means, scales)
  # Every component against the K = I starts: a size-1 axis in front of I.
  means_k = means[..., None, :, :]
  log_norm = (log_weights - _log_det_scales(means, scales)
              - 0.5 * n * _LOG_2PI)[..., None, :]  # [..., 1, I]
  if full:
    precisions = _precisions(scales)  # [..., I, n, n]
    times_precision = lambda v: jnp.einsum('...inm,...kim->...kin', precisions, v)
  else:
    precisions = 1.0 / jnp.square(scales)  # [..., I, n]
    times_precision = lambda v: precisions[..., None, :, :] * v

  def evaluate(x):
    """x [..., K, n] -> (x, d_i = Σ_i⁻¹ (μ_i − x) [..., K, I, n], responsibilities
    r [..., K, I], the gradient g = Σ_i r_i d_i of log p [..., K, n], log p [..., K])."""
    offset = means_k - x[..., None, :]
    d = times_precision(offset)
    log_c = log_norm - 0.5 * jnp.sum(offset * d, axis=-1)
    log_p = jax.nn.logsumexp(log_c, axis=-1)
    r = jnp.exp(log_c - log_p[..., None])
    return x, d, r, jnp.einsum('...ki,...kin->...kn', r, d), log_p

  def mahalanobis2(v, a):  # vᵀ A v for v [..., K, n], A [..., K, n, n].
    return jnp.einsum('...kn,...knm,...km->...k', v, a, v)

  # Gains of log p below this are rounding noise.
  slack = 10.0 * jnp.finfo(dtype).eps

  def body(state):
    i, (x, d, r, g, log_p), allow_newton, stretch, _ = state
    if full:
      a = jnp.einsum('...ki,...inm->...knm', r, precisions)
      fixed_point_step = _linalg.positive_definite_solve(a, g)
    else:
      a_diagonal = jnp.einsum('...ki,...in->...kn', r, precisions)
      a = a_diagonal[..., None] * jnp.eye(n, dtype=dtype)
      fixed_point_step = g / a_diagonal
    # −H = A − Σ_i r_i d_i d_iᵀ + g gᵀ.
    neg_hessian = (a - jnp.einsum('...ki,...kin,...kim->...knm', r, d, d)
                   + g[..., :, None] * g[..., None, :])
    newton_step = _linalg.positive_definite_solve(neg_hessian, g)
    # Not finite where −H is not positive definite: then the comparison fails.
    use_newton = allow_newton & (mahalanobis2(newton_step, a) <= 1.0)
    # Fixed-point steps stretched by up to `stretch` but at most one local
    # standard deviation: where H is not negative definite they crawl.
    stretch = jnp.maximum(1.0, jnp.minimum(
        stretch, lax.rsqrt(mahalanobis2(fixed_point_step, a))))
    step = jnp.where(use_newton[..., None], newton_step,
                     stretch[..., None] * fixed_point_step)
    new = evaluate(x + step)
    _, _, _, new_g, new_log_p = new
    gain = new_log_p - log_p
    noise = slack * (1.0 + jnp.abs(log_p))
    # Only a plain fixed-point step is sure to be right. A Newton step must
    # gain at least half the gain its quadratic model predicts, ½ gᵀ(−H)⁻¹g,
    # and at most 1.5 times it unless the density still rises along the step
    # at its end; a stretched step must not lower the density nor have passed
    # a maximum along the way. Else it may have jumped past the start's mode
    # into another basin: it is undone, and a plain fixed-point step follows.
    predicted = 0.5 * jnp.sum(g * newton_step, axis=-1)
    rising = jnp.sum(new_g * step, axis=-1) >= 0.0
    accept = jnp.where(
        use_newton,
        (gain >= 0.5 * predicted - noise)
        & (rising | (gain <= 1.5 * predicted + noise)),
        (stretch == 1.0) | ((gain >= -noise) & rising))
    keep = lambda new, old: jnp.where(
        accept.reshape(accept.shape + (1,) * (new.ndim - accept.ndim)), new, old)
    stretch = jnp.where(accept & ~use_newton, 2.0 * stretch, 1.0)
    # nanmax: one example with NaN parameters must not stop the others; the
    # initial 0 ends the search at once for an empty batch.
    change = jnp.nanmax(jnp.abs(step) / unit, initial=0.0)
    return (i + 1, jax.tree.map(keep, new, (x, d, r, g, log_p)), accept,
            stretch, change)

  def cond(state):
    i, *_, change = state
    return (i < num_iters) & (change > tol)

  # The state is built from the density at the starts, which every input
  # enters, so that it varies wherever the inputs do (over the mesh axes of
  # shard_map), as the body's outputs do: the loop needs the same types.
  _, *start, log_p = evaluate(means)
  points = means + jnp.zeros_like(log_p)[..., None]
  state = (0, (points, *start, log_p), jnp.ones_like(log_p, bool),
           jnp.ones_like(log_p), jnp.full_like(log_p, jnp.inf, shape=()))
  points = lax.while_loop(cond, body, state)[1][0]
  scales_k = jnp.expand_dims(scales, -2 - _event_axes(means, scales))
  log_density = _log_prob(points, means_k, scales_k, log_weights[..., None, :])

  # One mode: within merge_tol times the scale in every dimension.
  close = lambda x: jnp.all(jnp.abs(x[..., :, None, :] - x[..., None, :, :])
                            <= merge_tol * unit[..., None, :, :], axis=-1)
  return _common.merge_modes(points, log_density, close)


def most_likely_mode(means: ArrayLike, scales: ArrayLike,
                     log_weights: ArrayLike | None = None,
                     **modes_kwargs: Any) -> jax.Array:
  """The mode with the highest density, a point estimate of the mixture.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations, or [..., I, n, n]
      lower-triangular Cholesky factors of the covariances.
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
    scales: [..., I, n] component standard deviations, or [..., I, n, n]
      lower-triangular Cholesky factors of the covariances.
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
  means, scales, log_weights = _shapes.as_arrays(means, scales, log_weights)
  check_shapes(means, scales, log_weights)
  log_weights = normalized_log_weights(means, log_weights)
  shape = tuple(sample_shape) + means.shape[:-2]
  component_key, noise_key = jax.random.split(key)
  component = jax.random.categorical(component_key, log_weights, shape=shape)

  def pick(a, event_axes):  # [..., I, *event] -> [*sample_shape, ..., *event]
    a = jnp.broadcast_to(a, shape + a.shape[-1 - event_axes:])
    index = component.reshape(component.shape + (1,) * (1 + event_axes))
    return jnp.squeeze(jnp.take_along_axis(a, index, axis=-1 - event_axes),
                       axis=-1 - event_axes)

  noise = jax.random.normal(noise_key, shape + means.shape[-1:],
                            jnp.result_type(means, jnp.float32))
  if is_full_covariance(means, scales):
    return pick(means, 1) + jnp.einsum('...nm,...m->...n',
                                       jnp.tril(pick(scales, 2)), noise)
  return pick(means, 1) + pick(scales, 1) * noise


def marginal_cdf(x: ArrayLike, means: ArrayLike, scales: ArrayLike,
                 log_weights: ArrayLike | None = None) -> jax.Array:
  """Per-dimension marginal CDF Σ_i w_i Φ((x_d - μ_id) / σ_id).

  σ_id is the marginal standard deviation √Σ_i,dd (`marginal_scales`): the
  marginals of a Gaussian are Gaussian.

  Args:
    x: [..., n] points.
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations, or [..., I, n, n]
      lower-triangular Cholesky factors of the covariances.
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
  x, means, scales, log_weights = _shapes.as_arrays(x, means, scales,
                                                   log_weights)
  check_shapes(means, scales, log_weights, x)
  weights = jnp.exp(normalized_log_weights(means, log_weights))
  cdf = special.ndtr((x[..., None, :] - means) / marginal_scales(means, scales))
  return jnp.sum(weights[..., None] * cdf, axis=-2)


def affine(means: ArrayLike, scales: ArrayLike,
           log_weights: ArrayLike | None = None, *, shift: ArrayLike,
           scale: ArrayLike) -> Mixture:
  """The mixture of y = shift + scale x (per dimension) for x from a mixture.

  Each component maps to N(shift + scale μ_i, D Σ_i D), D = diag(scale), with
  its weight unchanged, so log p_y(shift + scale x) = log p_x(x) -
  Σ_d log|scale_d|. Standard deviations become |scale| σ_i; a Cholesky factor
  L becomes D L with the sign of column d flipped where scale_d < 0, which
  keeps it lower triangular and its diagonal's signs (the same covariance:
  flipping a column's sign leaves L Lᵀ unchanged). This is how a mixture
  moves between normalised label units and degrees.

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations, or [..., I, n, n]
      lower-triangular Cholesky factors of the covariances.
    log_weights: optional [..., I] logits (default: equal weights).
    shift: a scalar, [n] (per dimension) or [..., n] with one axis fewer
      than means (per example and dimension; leading axes broadcast with the
      mixture's batch axes, size 1 included).
    scale: the same shapes, nonzero.

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
    >>> flipped = mixtures.affine(jnp.zeros((1, 2)),
    ...                           jnp.array([[[1.0, 0.0], [0.5, 1.0]]]),
    ...                           shift=0.0, scale=jnp.array([-2.0, 1.0]))
    >>> jnp.diagonal(flipped.scales[0]).tolist(), flipped.covariance().tolist()
    ([2.0, 1.0], [[4.0, -1.0], [-1.0, 1.25]])
  """
  means, scales, log_weights, shift, scale = _shapes.as_arrays(
      means, scales, log_weights, shift, scale)
  check_shapes(means, scales, log_weights)
  points_shape = means.shape[:-2] + means.shape[-1:]
  _shapes.reject_complex(shift=shift, scale=scale)
  for arg, value in (('shift', shift), ('scale', scale)):
    # The rule of the points, with [n] (one per dimension) allowed too.
    if value.ndim and not (
        value.ndim in (1, len(points_shape))
        and value.shape[-1] in (1, points_shape[-1])
        and _shapes.broadcasts(value.shape, points_shape)):
      raise ValueError(
          f'{arg} shape {value.shape} must be a scalar, [n] or [..., n] with '
          f'the rank of the points {points_shape} of means {means.shape} '
          '(leading axes broadcast, size 1 included).')
  # Per dimension: the I axis goes in front of n.
  per_component = lambda a: a[..., None, :] if a.ndim else a
  new_means = per_component(shift) + per_component(scale) * means
  if is_full_covariance(means, scales):
    # D L, then column d times sign(scale_d): rows [..., 1, n, 1], columns
    # [..., 1, 1, n].
    rows = scale[..., None, :, None] if scale.ndim else scale
    columns = jnp.sign(scale)[..., None, None, :] if scale.ndim else jnp.sign(scale)
    new_scales = rows * scales * columns
  else:
    new_scales = jnp.abs(per_component(scale)) * scales
  event_axes = _event_axes(means, scales)
  batch = jnp.broadcast_shapes(new_means.shape[:-2],
                               new_scales.shape[:-1 - event_axes])
  if log_weights is None:
    log_weights = normalized_log_weights(means)
  return Mixture(
      jnp.broadcast_to(new_means, batch + means.shape[-2:]),
      jnp.broadcast_to(new_scales, batch + scales.shape[-1 - event_axes:]),
      jnp.broadcast_to(log_weights, batch + means.shape[-2:-1]))


def marginal(means: ArrayLike, scales: ArrayLike,
             log_weights: ArrayLike | None = None, *,
             dims: Sequence[int]) -> Mixture:
  """The marginal mixture over the dimensions `dims`.

  The marginal of a Gaussian mixture is the mixture of its components'
  marginals, with the same weights: means μ_i[dims] and, for full covariance,
  the Cholesky factor of the sub-covariance Σ_i[dims, dims] (of the same
  kind as the input: a full mixture stays full).

  Args:
    means: [..., I, n] component means.
    scales: [..., I, n] component standard deviations, or [..., I, n, n]
      lower-triangular Cholesky factors of the covariances.
    log_weights: optional [..., I] logits (default: equal weights).
    dims: the k ≥ 1 distinct dimensions to keep, in the order wanted.

  Returns:
    A `Mixture` with means [..., I, k] and scales [..., I, k] or
    [..., I, k, k]; log_weights are the given logits (uniform ones if None).

  Raises:
    ValueError: if dims is empty, repeats a dimension or is out of range.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import mixtures
    >>> tril = jnp.array([[[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 2.0, 2.0]]])
    >>> m = mixtures.Mixture.uniform(jnp.array([[1.0, 2.0, 3.0]]), tril)
    >>> pair = m.marginal((2, 1))
    >>> pair.means.tolist(), pair.covariance().round(4).tolist()
    ([[3.0, 2.0]], [[8.0, 2.0], [2.0, 2.0]])
  """
  means, scales, log_weights = _shapes.as_arrays(means, scales, log_weights)
  check_shapes(means, scales, log_weights)
  num_dims = means.shape[-1]
  dims = [int(d) for d in dims]
  if not dims or len(set(dims)) != len(dims) or not all(
      0 <= d < num_dims for d in dims):
    raise ValueError(f'dims {dims} must name distinct dimensions in '
                     f'[0, {num_dims}) of means {means.shape}, at least one.')
  index = np.asarray(dims)
  if is_full_covariance(means, scales):
    covariances = component_covariances(means, scales)
    new_scales = jnp.linalg.cholesky(covariances[..., index[:, None], index])
  else:
    new_scales = scales[..., index]
  if log_weights is None:
    log_weights = normalized_log_weights(means)
  return Mixture(means[..., index], new_scales,
                 jnp.broadcast_to(log_weights, means.shape[:-1]))
