"""PROPEL and mixture tools for von Mises-Fisher mixtures on spheres.

A von Mises-Fisher (vMF) density on the unit sphere S^{d-1} ⊂ R^d is

    f(x; μ, κ) = C_d(κ) exp(κ μᵀx),
    C_d(κ) = κ^ν / ((2π)^{d/2} I_ν(κ)),  ν = d/2 - 1,  C_d(0) = 1 / area(S^{d-1}),

with mean direction μ (a unit vector) and concentration κ ≥ 0, a density
with respect to the surface measure of the sphere. d = 2 is the circle (von
Mises), d = 3 the sphere and d = 4 the unit quaternions. The product of two
vMF densities is an unnormalised vMF density, so the overlap of two is

    G(a, b) = ∫ f_a f_b dx = C_d(κ_a) C_d(κ_b) / C_d(‖κ_a μ_a + κ_b μ_b‖),

and the distance of Sfikas et al. -log[2∫pq / ∫(p² + q²)] between two vMF
mixtures, PROPEL among them, has the same closed form as for Gaussians
(propel_jax.losses), with this G in place of the Gaussian overlap.

Antipodal symmetry. Where x and -x are one value (an axis; a unit quaternion,
q and -q being one rotation), `antipodal=True` replaces every density, on both
sides of the distance, by f_s(x) = ½[f(x) + f(-x)]. Expanding the four terms
of ∫f_s,a f_s,b and using G(-μ_a, -μ_b) = G(μ_a, μ_b) gives

    G_s(a, b) = ½[G(μ_a, μ_b) + G(μ_a, -μ_b)],

self terms included (G_s(a, a) = ½[G(μ_a, μ_a) + G(μ_a, -μ_a)]).

Conventions.
- Mixtures are `mean_directions` [..., I, d], `concentrations` [..., I] and
  optional `log_weights` [..., I], which are logits: they are normalised with
  log_softmax, so adding a constant changes nothing (default: equal weights).
- Direction vectors (mean_directions, targets, points) are normalised inside,
  so a network head may pass raw vectors; the gradient then has no component
  along the vector. A zero vector gives NaN.
- Concentrations must be ≥ 0 (e.g. a softplus output). Like the Gaussian
  loss, values are not checked: a negative κ gives a wrong value or NaN.
- Shapes follow the rule of both mixture families (`propel_jax._shapes`,
  docs/loss.md): axes match by rank, sizes broadcast. Points and targets
  [..., d] have exactly one axis fewer than mean_directions; a
  target_concentration is a scalar, [...] or [..., 1]. Array-likes (lists
  included) are accepted wherever arrays are.
- Only d = 2, 3 and 4 are supported (the Bessel functions JAX provides).
- Inputs in bfloat16/float16 are computed in float32 (float64 stays float64).

Numerics. Everything is in log space: the loss and its gradient keep their
float32 accuracy from κ = 0 (where the normaliser's series is used) to
κ = 1e5, and stay finite where two components' resultant vanishes (equal κ,
opposite means). The derivative of the overlaps is written out as a custom
JVP. How: `propel_jax/_von_mises_fisher.py`; speed: docs/benchmarks.md. The
functions are plain jnp, as in `propel_jax.mixtures`: jit is the caller's (an
eager call runs op by op).
"""

from typing import NamedTuple, Sequence

import jax
from jax import lax
import jax.numpy as jnp
from jax.scipy import special
from jax.typing import ArrayLike

from propel_jax import _common
from propel_jax import _linalg
from propel_jax import _shapes
from propel_jax import _von_mises_fisher
from propel_jax import mixtures
# The conversions live in `propel_jax.rotations`; importable from here too.
from propel_jax.rotations import angle_to_vector
from propel_jax.rotations import quaternion_to_rotation_matrix
from propel_jax.rotations import rotation_matrix_to_quaternion
from propel_jax.rotations import vector_to_angle

_SUPPORTED_DIMS = (2, 3, 4)
_LOG_2 = _common.LOG_2


# ---------------------------------------------------------------------------
# Input handling.
# ---------------------------------------------------------------------------


def _check_mixture(mean_directions, concentrations, log_weights, prefix=''):
  """Checks a mixture's shapes, naming the public arguments; returns d."""
  md, conc, lw = (f'{prefix}mean_directions', f'{prefix}concentrations',
                  f'{prefix}log_weights')
  _shapes.reject_complex(**{md: mean_directions, conc: concentrations, lw: log_weights})
  shape = jnp.shape(mean_directions)
  if len(shape) < 2:
    raise ValueError(f'{md} must be [..., I, d]; got shape {shape}. For a single '
                     f'component add the I axis: {md}[..., None, :].')
  dim, num = shape[-1], shape[-2]
  if dim not in _SUPPORTED_DIMS:
    raise ValueError(f'{md} shape {shape}: the last axis d = {dim} must be one '
                     f'of {_SUPPORTED_DIMS} (circle, sphere, unit quaternions).')
  if num < 1:
    raise ValueError(f'{md} shape {shape} must have at least one component '
                     '(I = shape[-2] ≥ 1).')
  if jnp.shape(concentrations) != shape[:-1]:
    raise ValueError(f'{conc} shape {jnp.shape(concentrations)} must be '
                     f'{shape[:-1]} ([..., I]) for {md} of shape {shape}.')
  if log_weights is not None and jnp.shape(log_weights) != shape[:-1]:
    raise ValueError(f'{lw} shape {jnp.shape(log_weights)} must be {shape[:-1]} '
                     f'([..., I]) for {md} of shape {shape}.')
  return dim


def _prepare(mean_directions, concentrations, log_weights, dtype):
  """Unit mean directions, concentrations, normalised log weights, all in dtype."""
  mu = _common.normalize(jnp.asarray(mean_directions).astype(dtype))
  kappa = jnp.asarray(concentrations).astype(dtype)
  log_w = mixtures.normalized_log_weights(mu, log_weights).astype(dtype)
  return mu, kappa, log_w


# ---------------------------------------------------------------------------
# The distance and PROPEL.
# ---------------------------------------------------------------------------


def _distance(p, q, antipodal):
  """D(p, q) for prepared (unit μ, κ, normalised log w) mixtures.

  All three integrals come from one overlap matrix of the I + J components
  of p and q together: ∫p² is its top-left block, ∫q² the bottom-right one,
  ∫pq the top-right one. That computes I·J pairs twice (the bottom-left
  block) but compiles a single copy of the overlap and its gradient.
  """
  batch = jnp.broadcast_shapes(p[0].shape[:-2], q[0].shape[:-2])
  p_mu, p_kappa, p_log_w = (jnp.broadcast_to(a, batch + a.shape[len(a.shape) - n:])
                            for a, n in zip(p, (2, 1, 1)))
  q_mu, q_kappa, q_log_w = (jnp.broadcast_to(a, batch + a.shape[len(a.shape) - n:])
                            for a, n in zip(q, (2, 1, 1)))
  num = p_kappa.shape[-1]
  log_w = jnp.concatenate([p_log_w, q_log_w], axis=-1)
  terms = (log_w[..., :, None] + log_w[..., None, :] + _von_mises_fisher.pairwise_log_overlap(
      jnp.concatenate([p_mu, q_mu], axis=-2),
      jnp.concatenate([p_kappa, q_kappa], axis=-1), antipodal))
  block_lse = lambda block: jax.nn.logsumexp(block, axis=(-2, -1))
  log_pp = block_lse(terms[..., :num, :num])
  log_qq = block_lse(terms[..., num:, num:])
  log_pq = block_lse(terms[..., :num, num:])
  return _common.distance(log_pp, log_qq, log_pq)


def mixture_distance(p_mean_directions, p_concentrations, q_mean_directions,
                     q_concentrations, *, p_log_weights=None, q_log_weights=None,
                     antipodal: bool = False) -> jax.Array:
  """Closed-form distance -log[2∫pq / ∫(p² + q²)] between two vMF mixtures.

  Each mixture has its own number of components and weights; `propel_loss` is
  the case where p is one vMF centred on the label.

  Args:
    p_mean_directions: [..., I, d] component mean directions of p (normalised
      inside).
    p_concentrations: [..., I] concentrations κ ≥ 0 of p.
    q_mean_directions: [..., J, d] component mean directions of q.
    q_concentrations: [..., J] concentrations of q.
    p_log_weights: optional [..., I] logits of p's weights (log_softmax is
      applied; default equal weights).
    q_log_weights: optional [..., J] logits of q's weights.
    antipodal: treat x and -x as one point: every density, on both sides, is
      symmetrised to ½[f(x) + f(-x)]. A Python bool (static under jit).

  Returns:
    [...] the distance (batch shapes broadcast), ≥ 0 and 0 iff p = q as
    densities, in natural log; float32 (float64 for float64 inputs).

  Raises:
    ValueError: if a shape does not fit, d is not 2, 3 or 4, I or J is 0, the
      two d differ, or an input is complex; the message names the arguments.

  References:
    Sfikas, Constantinopoulos, Likas and Galatsanos, "An analytic distance
    metric for Gaussian mixture models with application in image
    retrieval", ICANN 2005.
    Mardia and Jupp, "Directional Statistics", Wiley, 2000.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import directional
    >>> mu, kappa = jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([8.0, 8.0])
    >>> float(directional.mixture_distance(mu, kappa, mu, kappa))
    0.0
    >>> round(float(directional.mixture_distance(mu[:1], kappa[:1], mu[1:],
    ...                                          kappa[1:])), 4)
    4.5095
  """
  (p_mean_directions, p_concentrations, p_log_weights, q_mean_directions,
   q_concentrations, q_log_weights) = _shapes.as_arrays(
       p_mean_directions, p_concentrations, p_log_weights, q_mean_directions,
       q_concentrations, q_log_weights)
  p_dim = _check_mixture(p_mean_directions, p_concentrations, p_log_weights, 'p_')
  q_dim = _check_mixture(q_mean_directions, q_concentrations, q_log_weights, 'q_')
  p_shape, q_shape = p_mean_directions.shape, q_mean_directions.shape
  if len(p_shape) != len(q_shape):
    fewer = 'p' if len(p_shape) < len(q_shape) else 'q'
    raise ValueError(
        f'p_mean_directions {p_shape} and q_mean_directions {q_shape} must '
        'have the same number of axes ([..., I, d] and [..., J, d]; leading '
        'axes broadcast, size 1 included). If {0} is one component per '
        'example, add its component axis with {0}_mean_directions[..., None, '
        ':] and {0}_concentrations[..., None]; to share one {0} across the '
        'batch, use {0}_mean_directions[None] and {0}_concentrations[None].'
        .format(fewer))
  if p_dim != q_dim:
    raise ValueError(f'p_mean_directions {p_shape} and q_mean_directions '
                     f'{q_shape} must have the same d (last axis).')
  _shapes.batch_shape(p_mean_directions=(p_shape, p_shape[:-2]),
                      q_mean_directions=(q_shape, q_shape[:-2]))
  return _mixture_distance(p_mean_directions, p_concentrations, p_log_weights,
                           q_mean_directions, q_concentrations, q_log_weights,
                           antipodal)


def _mixture_distance(p_mean_directions, p_concentrations, p_log_weights,
                      q_mean_directions, q_concentrations, q_log_weights, antipodal):
  dtype = _shapes.compute_dtype(p_mean_directions, p_concentrations, q_mean_directions,
                         q_concentrations)
  p = _prepare(p_mean_directions, p_concentrations, p_log_weights, dtype)
  q = _prepare(q_mean_directions, q_concentrations, q_log_weights, dtype)
  return _distance(p, q, antipodal)


def _check_points(x, mean_directions, name):
  """The rule of both families: mean_directions has one more axis than x."""
  md_shape, x_shape = mean_directions.shape, x.shape
  _shapes.reject_complex(**{name: x})
  if len(x_shape) < 1:
    raise ValueError(f'{name} must be [..., d]; got shape {x_shape}.')
  if len(md_shape) != len(x_shape) + 1:
    raise _shapes.point_axes_error(
        x_shape, md_shape, x=name, means='mean_directions',
        one_component=('mean_directions[..., None, :] and '
                       'concentrations[..., None] (one component per example)'),
        shared='mean_directions[None] and concentrations[None]', n='d')
  if md_shape[-1] != x_shape[-1]:
    raise ValueError(f'{name} shape {x_shape} must be [..., d] with d = '
                     f'{md_shape[-1]}, the same d (last axis) as mean_directions '
                     f'shape {md_shape}.')
  _shapes.batch_shape(**{name: (x_shape, x_shape[:-1])},
                      mean_directions=(md_shape, md_shape[:-2]))


def propel_loss(mean_directions, concentrations, targets, *, target_concentration,
                log_weights=None, antipodal: bool = False) -> jax.Array:
  """PROPEL between vMF(targets, target_concentration) and a vMF mixture.

  L = -log[2∫P_gt P_m / ∫(P_gt² + P_m²)] on the sphere S^{d-1}, natural log.

  Args:
    mean_directions: [..., I, d] component mean directions (raw vectors are
      fine: they are normalised inside; a zero vector gives NaN).
    concentrations: [..., I] component concentrations κ ≥ 0.
    targets: [..., d] label directions (normalised inside), with exactly one
      axis fewer than mean_directions; the batch axes broadcast, size 1
      included.
    target_concentration: κ of the ground-truth vMF: a scalar, or one per
      example: [...] with the batch axes of targets or [..., 1] with all of
      their axes (sizes broadcast, size 1 included).
    log_weights: optional [..., I] logits of the mixture weights (log_softmax
      is applied inside; default equal weights, the paper's choice).
    antipodal: treat x and -x as one point (axes; unit quaternions): every
      density, target included, is symmetrised. A Python bool.

  Returns:
    [...] per-example loss ≥ 0; float32 (float64 for float64 inputs).

  Raises:
    ValueError: if mean_directions does not have exactly one more axis than
      targets (the message says what was probably meant), another shape does
      not fit, d is not 2, 3 or 4, I is 0, or an input is complex.

  References:
    Asad, Basaru, Arif and Slabaugh, "PROPEL: Probabilistic Parametric
    Regression Loss for Convolutional Neural Networks", ICPR 2020.
    Sfikas, Constantinopoulos, Likas and Galatsanos, "An analytic distance
    metric for Gaussian mixture models with application in image
    retrieval", ICANN 2005.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import directional
    >>> mu = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])  # one example, I = 2
    >>> loss = directional.propel_loss(mu, jnp.array([[8.0, 8.0]]),
    ...                                jnp.array([[1.0, 0.0]]),
    ...                                target_concentration=50.0)
    >>> [round(v, 4) for v in loss.tolist()]
    [0.8371]
  """
  (mean_directions, concentrations, targets, target_concentration,
   log_weights) = _shapes.as_arrays(mean_directions, concentrations, targets,
                                    target_concentration, log_weights)
  _check_mixture(mean_directions, concentrations, log_weights)
  _check_points(targets, mean_directions, 'targets')
  target_concentration = _shapes.target_width(
      target_concentration, targets.shape, name='target_concentration',
      per_dimension=False)
  return _propel_loss(mean_directions, concentrations, targets,
                      target_concentration, log_weights, antipodal)


def _propel_loss(mean_directions, concentrations, targets, target_concentration,
                 log_weights, antipodal):
  dtype = _shapes.compute_dtype(mean_directions, concentrations, targets)
  # target_concentration is () or [..., 1], the rank of targets.
  batch = jnp.broadcast_shapes(targets.shape[:-1],
                               target_concentration.shape[:-1])
  p = _prepare(jnp.broadcast_to(targets, batch + targets.shape[-1:])[..., None, :],
               jnp.broadcast_to(target_concentration, batch + (1,)), None, dtype)
  q = _prepare(mean_directions, concentrations, log_weights, dtype)
  return _distance(p, q, antipodal)


# ---------------------------------------------------------------------------
# Mixture helpers.
# ---------------------------------------------------------------------------


def log_prob(x, mean_directions, concentrations, log_weights=None, *,
             antipodal: bool = False) -> jax.Array:
  """Mixture log-density with respect to the surface measure of S^{d-1}.

  Args:
    x: [..., d] points (normalised inside), with exactly one axis fewer than
      mean_directions; the batch axes broadcast, size 1 included (a grid
      [N, d] against one mixture: mean_directions [1, I, d]).
    mean_directions: [..., I, d] (normalised inside).
    concentrations: [..., I].
    log_weights: optional [..., I] logits.
    antipodal: use the symmetrised density ½[f(x) + f(-x)].

  Returns:
    [...] log p(x).

  Raises:
    ValueError: if the shapes do not fit or an input is complex.

  References:
    Mardia and Jupp, "Directional Statistics", Wiley, 2000.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import directional
    >>> # κ = 0 is the uniform density on the circle, 1/2π.
    >>> round(float(directional.log_prob(jnp.array([1.0, 0.0]),
    ...                                  jnp.array([[1.0, 0.0]]),
    ...                                  jnp.array([0.0]))), 4)
    -1.8379
  """
  x, mean_directions, concentrations, log_weights = _shapes.as_arrays(
      x, mean_directions, concentrations, log_weights)
  _check_mixture(mean_directions, concentrations, log_weights)
  _check_points(x, mean_directions, 'x')
  return _log_prob(x, mean_directions, concentrations, log_weights, antipodal)


def _log_prob(x, mean_directions, concentrations, log_weights, antipodal):
  dtype = _shapes.compute_dtype(x, mean_directions, concentrations)
  mu, kappa, log_w = _prepare(mean_directions, concentrations, log_weights, dtype)
  x = _common.normalize(x.astype(dtype))
  log_peak = _von_mises_fisher.log_peak_density(kappa, mu.shape[-1])
  return jax.nn.logsumexp(
      log_w + _von_mises_fisher.component_log_prob(x, mu, kappa, log_peak, antipodal), axis=-1)


def mean_direction(mean_directions, concentrations, log_weights=None, *,
                   antipodal: bool = False) -> jax.Array:
  """The mixture's mean direction.

  Without symmetry: the normalised first moment Σ_i w_i A_d(κ_i) μ_i, where
  A_d = I_{d/2}/I_{d/2-1} is a component's mean resultant length; NaN where
  it is zero (e.g. all κ = 0). With `antipodal` the first moment is zero, so
  the mean axis is returned instead: the principal eigenvector of the second
  moment Σ_i w_i [(A_i/κ_i) 1 + (1 - d A_i/κ_i) μ_i μ_iᵀ], with the sign that
  makes its first coordinate ≥ 0 (for quaternions (w, x, y, z): w ≥ 0).

  Args:
    mean_directions: [..., I, d].
    concentrations: [..., I].
    log_weights: optional [..., I] logits.
    antipodal: return the mean axis of the symmetrised mixture.

  Returns:
    [..., d] a unit vector.

  References:
    Mardia and Jupp, "Directional Statistics", Wiley, 2000.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import directional
    >>> mu, kappa = jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([8.0, 8.0])
    >>> [round(v, 4) for v in directional.mean_direction(mu, kappa).tolist()]
    [0.7071, 0.7071]
  """
  mean_directions, concentrations, log_weights = _shapes.as_arrays(
      mean_directions, concentrations, log_weights)
  _check_mixture(mean_directions, concentrations, log_weights)
  return _mean_direction(mean_directions, concentrations, log_weights, antipodal)


def _mean_direction(mean_directions, concentrations, log_weights, antipodal):
  dim = mean_directions.shape[-1]
  dtype = _shapes.compute_dtype(mean_directions, concentrations)
  mu, kappa, log_w = _prepare(mean_directions, concentrations, log_weights, dtype)
  weights = jnp.exp(log_w)
  ratio = _von_mises_fisher.resultant_ratio_over_kappa(kappa, dim)  # A/κ
  if not antipodal:
    return _common.normalize(jnp.sum((weights * kappa * ratio)[..., None] * mu, axis=-2))
  # The isotropic part of the second moment does not move its eigenvectors.
  coefficient = weights * (1.0 - dim * ratio)
  scatter = jnp.einsum('...i,...ij,...ik->...jk', coefficient, mu, mu)
  _, vectors = jnp.linalg.eigh(scatter)
  axis = vectors[..., :, -1]  # eigh sorts eigenvalues ascending.
  return jnp.where(axis[..., :1] < 0, -axis, axis)


def modes(mean_directions, concentrations, log_weights=None, *,
          antipodal: bool = False, num_iters: int = 100, tol: float = 1e-4,
          merge_tol: float = 1e-2):
  """Modes of the mixture on the sphere, by safeguarded Newton ascent.

  The density p(x) = Σ_i w_i C_i exp(κ_i μ_iᵀx) is convex in x ∈ R^d, so the
  fixed-point step x ← normalise(∇p(x)) = normalise(Σ_i r_i κ_i μ_i), with
  responsibilities r_i ∝ w_i f_i(x), never decreases it on the sphere (the
  maximiser of the linear lower bound at x); its fixed points are the
  stationary points. It converges only linearly, slowly at shallow modes, so
  each iteration also tries a Newton step on the sphere and takes it where
  the local model is concave and the density ends up no lower. It starts
  from every component mean; points that reach the same mode are merged.
  With `antipodal` the symmetrised density is used (each component also at
  -μ_i, with half its weight) and x and -x count as one mode: either of the
  two is returned.

  Args:
    mean_directions: [..., I, d].
    concentrations: [..., I].
    log_weights: optional [..., I] logits.
    antipodal: find the modes of the symmetrised density.
    num_iters: most iterations.
    tol: stop when no point moves further than tol times the angular scale
      1/√max(κ_max, 1) of the sharpest component.
    merge_tol: points closer than merge_tol times that scale are one mode.

  Returns:
    (locations [..., I, d], log_density [..., I], valid [..., I] bool),
    sorted so that valid (distinct) modes come first, by density descending;
    invalid slots hold duplicates and are to be ignored.

  References:
    Carreira-Perpiñán, "Mode-finding for mixtures of Gaussian
    distributions", IEEE TPAMI 22(11), 2000 (the fixed-point iteration).
    Absil, Mahony and Sepulchre, "Optimization Algorithms on Matrix
    Manifolds", Princeton, 2008 (Newton's method on the sphere).

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import directional
    >>> mu, kappa = jnp.array([[1.0, 0.0], [-1.0, 0.0]]), jnp.array([8.0, 8.0])
    >>> x, log_p, valid = directional.modes(mu, kappa, jnp.array([0.0, 1.0]))
    >>> x.round(4).tolist(), valid.tolist()
    ([[-1.0, 0.0], [1.0, 0.0]], [True, True])
    >>> _, _, valid = directional.modes(mu, kappa, antipodal=True)
    >>> valid.tolist()  # ±(1, 0) is one axis
    [True, False]
  """
  mean_directions, concentrations, log_weights = _shapes.as_arrays(
      mean_directions, concentrations, log_weights)
  _check_mixture(mean_directions, concentrations, log_weights)
  return _modes(mean_directions, concentrations, log_weights, antipodal=antipodal,
                num_iters=num_iters, tol=tol, merge_tol=merge_tol)


def _modes(mean_directions, concentrations, log_weights, *, antipodal, num_iters,
           tol, merge_tol):
  dtype = _shapes.compute_dtype(mean_directions, concentrations)
  mu, kappa, log_w = _prepare(mean_directions, concentrations, log_weights, dtype)
  # The density's components: with the symmetry, each μ_i is also at -μ_i
  # with half its weight. The log weights and peak densities do not change
  # in the loop: computed once.
  log_w_peak = log_w + _von_mises_fisher.log_peak_density(kappa, mu.shape[-1])
  if antipodal:
    comp_mu = jnp.concatenate([mu, -mu], axis=-2)
    comp_kappa = jnp.concatenate([kappa, kappa], axis=-1)
    comp_log_w_peak = jnp.concatenate([log_w_peak, log_w_peak], axis=-1) - _LOG_2
  else:
    comp_mu, comp_kappa, comp_log_w_peak = mu, kappa, log_w_peak
  unit = lax.rsqrt(jnp.maximum(jnp.max(kappa, axis=-1), 1.0))[..., None]  # [..., 1]

  eye = jnp.eye(mu.shape[-1], dtype=dtype)

  def log_density_at(x):  # [..., K, d] -> ([..., K], log r [..., K, I'])
    log_r = _von_mises_fisher.component_log_prob(x, comp_mu[..., None, :, :], comp_kappa[..., None, :],
                                comp_log_w_peak[..., None, :], False)
    return jax.nn.logsumexp(log_r, axis=-1), log_r

  def step(x):  # [..., K, d] -> [..., K, d]
    _, log_r = log_density_at(x)
    r = jax.nn.softmax(log_r, axis=-1)  # [..., K, I']
    a = r * comp_kappa[..., None, :]
    grad = jnp.einsum('...ki,...id->...kd', a, comp_mu)  # ∇ log p
    norm_sq = jnp.sum(jnp.square(grad), axis=-1, keepdims=True)
    # The fixed-point step; a zero gradient (e.g. all κ = 0) stays put.
    safe = jnp.where(norm_sq > 0, norm_sq, 1.0)
    fixed_point = jnp.where(norm_sq > 0, grad * lax.rsqrt(safe), x)
    # Newton's step on the sphere: the Riemannian Hessian of log p is
    # P ∇² log p P - (xᵀ∇ log p) P with P = 1 - xxᵀ; adding -xxᵀ makes it
    # invertible without changing the tangent solution.
    outer = x[..., :, None] * x[..., None, :]
    proj = eye - outer
    hessian = (jnp.einsum('...ki,...id,...ie->...kde', a * comp_kappa[..., None, :],
                          comp_mu, comp_mu)
               - grad[..., :, None] * grad[..., None, :])
    radial = jnp.sum(x * grad, axis=-1)[..., None, None]
    riemannian = proj @ hessian @ proj - radial * proj - outer
    tangent_grad = jnp.einsum('...de,...e->...d', proj, grad)
    # Newton only where the model is concave (at a maximum: -riemannian is
    # positive definite, so the solve is finite), the step short and the
    # density no lower than after the fixed-point step, which keeps the
    # ascent monotone; near a mode it converges quadratically where the
    # fixed-point iteration may crawl. The d × d systems are solved by
    # unrolled scalar code, as the Gaussian modes' are (docs/benchmarks.md).
    move = _linalg.positive_definite_solve(-riemannian, tangent_grad)
    concave = jnp.all(jnp.isfinite(move), axis=-1)
    newton = _common.normalize(x + move)
    short = jnp.sum(jnp.square(move), axis=-1) < 0.25
    better = log_density_at(newton)[0] >= log_density_at(fixed_point)[0]
    use_newton = concave & short & better
    return jnp.where(use_newton[..., None], newton, fixed_point)

  def cond(state):
    i, _, change = state
    return (i < num_iters) & (change > tol)

  def body(state):
    i, x, _ = state
    new_x = step(x)
    moved = jnp.sqrt(jnp.sum(jnp.square(new_x - x), axis=-1)) / unit
    # The initial 0 ends the search at once for an empty batch.
    return i + 1, new_x, jnp.max(moved, initial=0.0)

  # The starts are typed like every input (the peak densities carry κ and
  # the weights), so that under shard_map they vary over the mesh axes
  # wherever the inputs do, as the body's outputs do: the loop needs the
  # same types.
  start = mu + jnp.zeros_like(log_w_peak)[..., None]
  _, points, _ = lax.while_loop(
      cond, body, (0, start, jnp.full_like(start, jnp.inf, shape=())))
  log_density = log_density_at(points)[0]

  def close(x):  # One mode: within merge_tol times the scale (x or -x).
    gap = jnp.sum(jnp.square(x[..., :, None, :] - x[..., None, :, :]), -1)
    if antipodal:
      gap = jnp.minimum(gap, jnp.sum(jnp.square(
          x[..., :, None, :] + x[..., None, :, :]), -1))
    return gap <= jnp.square(merge_tol * unit)[..., None]

  return _common.merge_modes(points, log_density, close)


def most_likely_mode(mean_directions, concentrations, log_weights=None, *,
                     antipodal: bool = False, **modes_kwargs) -> jax.Array:
  """The mode with the highest density, a point estimate on the sphere.

  Args:
    mean_directions: [..., I, d].
    concentrations: [..., I].
    log_weights: optional [..., I] logits.
    antipodal: of the symmetrised density (the sign is then arbitrary).
    **modes_kwargs: passed to `modes`.

  Returns:
    [..., d] a unit vector.

  References:
    Carreira-Perpiñán, "Mode-finding for mixtures of Gaussian
    distributions", IEEE TPAMI 22(11), 2000.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import directional
    >>> mu, kappa = jnp.array([[1.0, 0.0], [-1.0, 0.0]]), jnp.array([8.0, 8.0])
    >>> directional.most_likely_mode(mu, kappa,
    ...                              jnp.array([0.0, 1.0])).round(4).tolist()
    [-1.0, 0.0]
  """
  return modes(mean_directions, concentrations, log_weights, antipodal=antipodal,
               **modes_kwargs)[0][..., 0, :]


def sample(key, mean_directions, concentrations, log_weights=None,
           sample_shape: Sequence[int] = (), *, antipodal: bool = False) -> jax.Array:
  """Draws unit vectors: a component by its weight, then a point from it.

  Args:
    key: a JAX PRNG key.
    mean_directions: [..., I, d].
    concentrations: [..., I].
    log_weights: optional [..., I] logits.
    sample_shape: leading shape of the samples.
    antipodal: sample the symmetrised density (each draw's sign flipped with
      probability ½).

  Returns:
    [*sample_shape, ..., d] samples (not differentiable: rejection sampling).

  References:
    Wood, "Simulation of the von Mises Fisher distribution", Communications
    in Statistics - Simulation and Computation 23(1), 1994.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from propel_jax import directional
    >>> mu, kappa = jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([8.0, 8.0])
    >>> draws = directional.sample(jax.random.key(0), mu, kappa,
    ...                            sample_shape=(3,))
    >>> draws.shape, jnp.linalg.norm(draws, axis=-1).round(4).tolist()
    ((3, 2), [1.0, 1.0, 1.0])
  """
  mean_directions, concentrations, log_weights = _shapes.as_arrays(
      mean_directions, concentrations, log_weights)
  _check_mixture(mean_directions, concentrations, log_weights)
  return _sample(key, mean_directions, concentrations, log_weights,
                 tuple(sample_shape), antipodal)


def _sample(key, mean_directions, concentrations, log_weights, sample_shape,
            antipodal):
  dtype = _shapes.compute_dtype(mean_directions, concentrations)
  mu, kappa, log_w = _prepare(mean_directions, concentrations, log_weights, dtype)
  shape = tuple(sample_shape) + mu.shape[:-2]
  dim = mu.shape[-1]
  # Every random number outside the rejection loop comes from one normal
  # array (uniforms as Φ(g)): each call of the counter-based generator is a
  # sizeable part of the compiled program.
  loop_key, key = jax.random.split(key)
  g = jax.random.normal(key, shape + (dim + 2,), dtype)
  # The component by inverting the weights' CDF.
  u = special.ndtr(g[..., 0])
  cdf = jnp.cumsum(jnp.exp(log_w), axis=-1)[..., :-1]
  component = jnp.sum(u[..., None] > cdf, axis=-1)
  pick_mu = jnp.take_along_axis(jnp.broadcast_to(mu, shape + mu.shape[-2:]),
                                component[..., None, None], axis=-2)[..., 0, :]
  pick_kappa = jnp.take_along_axis(jnp.broadcast_to(kappa, shape + kappa.shape[-1:]),
                                   component[..., None], axis=-1)[..., 0]
  x = _von_mises_fisher.sample_components(loop_key, pick_mu, pick_kappa, g[..., 1:dim + 1])
  if antipodal:  # ½[f(x) + f(-x)]: a fair coin for the sign.
    x = jnp.where(g[..., dim + 1:] < 0, -x, x)
  return x


# ---------------------------------------------------------------------------
# The mixture type.
# ---------------------------------------------------------------------------


class VonMisesFisherMixture(NamedTuple):
  """A vMF mixture as a pytree: mean directions, concentrations, weight logits.

  Its leaves are arrays only, so it passes through jit, vmap and grad. Whether
  the density is antipodally symmetric is not a field (jit would trace it):
  it is an argument of each method and of the module's functions, which the
  methods call.

  Attributes:
    mean_directions: [..., I, d] (normalised where used).
    concentrations: [..., I], κ ≥ 0.
    log_weights: [..., I] mixture weights as logits (normalised over I
      wherever they are used); `uniform` makes equal ones.

  Examples:
    >>> import jax.numpy as jnp
    >>> from propel_jax import directional
    >>> m = directional.VonMisesFisherMixture.uniform(
    ...     jnp.array([[1.0, 0.0], [-1.0, 0.0]]), jnp.array([4.0, 4.0]))
    >>> m.num_components, m.num_dims, m.batch_shape
    (2, 2, ())
    >>> m.most_likely_mode(antipodal=True).round(4).tolist()
    [1.0, 0.0]
  """
  mean_directions: jax.Array
  concentrations: jax.Array
  log_weights: jax.Array

  @classmethod
  def uniform(cls, mean_directions: ArrayLike,
              concentrations: ArrayLike) -> 'VonMisesFisherMixture':
    """The mixture with equal weights 1/I."""
    mean_directions, concentrations = _shapes.as_arrays(mean_directions,
                                                        concentrations)
    _check_mixture(mean_directions, concentrations, None)
    return cls(mean_directions, concentrations,
               mixtures.normalized_log_weights(mean_directions))

  @property
  def num_components(self) -> int:
    """I."""
    return self.mean_directions.shape[-2]

  @property
  def num_dims(self) -> int:
    """d, the dimension of the space around the sphere S^(d-1)."""
    return self.mean_directions.shape[-1]

  @property
  def batch_shape(self) -> tuple[int, ...]:
    """The leading (batch) axes: mean_directions.shape[:-2]."""
    return self.mean_directions.shape[:-2]

  def log_prob(self, x, *, antipodal: bool = False) -> jax.Array:
    """See `log_prob`."""
    return log_prob(x, *self, antipodal=antipodal)

  def modes(self, *, antipodal: bool = False, **kwargs):
    """See `modes`."""
    return modes(*self, antipodal=antipodal, **kwargs)

  def most_likely_mode(self, *, antipodal: bool = False, **kwargs) -> jax.Array:
    """See `most_likely_mode`."""
    return most_likely_mode(*self, antipodal=antipodal, **kwargs)

  def sample(self, key, sample_shape: Sequence[int] = (), *,
             antipodal: bool = False) -> jax.Array:
    """See `sample`."""
    return sample(key, *self, sample_shape=sample_shape, antipodal=antipodal)

  def mean_direction(self, *, antipodal: bool = False) -> jax.Array:
    """See `mean_direction`."""
    return mean_direction(*self, antipodal=antipodal)
