"""The von Mises-Fisher components' numerics behind `propel_jax.directional` (private).

The log normaliser, the overlap of every pair of components with its
derivative, a component's log density and one draw from each component. The
public module checks the inputs and prepares them (unit mean directions,
concentrations, normalised log weights, one compute dtype); these functions
take the prepared arrays. The notation (C_d, G, G_s, antipodal symmetry) is
that of `propel_jax.directional`.

Numerics. Everything is in log space, with log C_d written as
log C_d(κ) = -(d/2) log 2π - κ - h(κ), h(κ) = log(I_ν(κ) / κ^ν) - κ, which
varies slowly (like -(ν + ½) log κ): h comes from exponentially scaled Bessel
functions for κ ≥ ½ and from the power series of I_ν(κ)/κ^ν in κ² below,
where it is smooth and has no 0/0. The large exponents cancel analytically:

    log G(a, b) = -(d/2) log 2π - Δ - h(κ_a) - h(κ_b) + h(r),
    r = ‖κ_a μ_a + κ_b μ_b‖,  Δ = κ_a + κ_b - r = κ_a κ_b ‖μ_a - μ_b‖² / (κ_a + κ_b + r),

so float32 keeps its accuracy at κ = 1e5, where κ_a + κ_b - r would lose
everything to rounding. Where r < ½ (including r = 0: equal κ, opposite
means) log G is instead evaluated from the series in r², which is smooth in
κ_a μ_a + κ_b μ_b, and both branches see safe inputs (the double-where trick),
so gradients stay finite there.

Structure. `pairwise_log_overlap` is the overlap matrix of one set of
components; `propel_jax.directional` reads ∫p², ∫q² and ∫pq as blocks of one
such matrix over the components of p and q together, which keeps the
compiled program small. Its derivative is written out (d log C(κ) =
-A_d(κ) dκ with A_d = I_{d/2}/I_{d/2-1}) as a custom JVP, which reuses the
value's terms where autodiff would differentiate both branches of the
two-branch evaluation (docs/benchmarks.md). Plain jnp: jit is the caller's.
"""

import functools
import math

import jax
from jax import lax
import jax.numpy as jnp
from jax.scipy import special

from propel_jax import _common

_LOG_2 = _common.LOG_2

# Below this value of κ² (κ < ½) the power series is used; at and above it
# the Bessel-function forms lose at most a few ulps to cancellation, also in
# their derivatives. The k-th term of the series is at most 16^-k / (k!)²
# there, so 4 terms leave a truncation error of 7e-11 (float32) and 7 terms
# one of 1e-19 (float64).
_SERIES_MAX = 0.25


def _series_terms(dtype):
  return 7 if jnp.finfo(dtype).bits > 32 else 4


# ---------------------------------------------------------------------------
# Bessel-function pieces, one scalar function of κ each (elementwise).
# ---------------------------------------------------------------------------


def _order(dim):
  return dim / 2.0 - 1.0


def _series_coefficients(dim, dtype):
  """c_k = 4^-k / (k! (ν+1)_k), k = 1..K: I_ν(κ)/κ^ν ∝ 1 + Σ_k c_k κ^{2k}."""
  nu = _order(dim)
  coefficients, c = [], 1.0
  for k in range(1, _series_terms(dtype) + 1):
    c /= 4.0 * k * (nu + k)
    coefficients.append(c)
  return coefficients


def _log_series(s, dim):
  """log(1 + Σ_k c_k s^k), s = κ², by Horner's rule (s in [0, ¼))."""
  poly = jnp.zeros_like(s)
  for c in reversed(_series_coefficients(dim, s.dtype)):
    poly = poly * s + c
  return jnp.log1p(s * poly)


def _log_bessel_at_zero(dim):
  """log(I_ν(κ)/κ^ν) at κ = 0: -ν log 2 - log Γ(ν + 1)."""
  nu = _order(dim)
  return -nu * _LOG_2 - math.lgamma(nu + 1.0)


def _log_scaled_bessel_large(r, dim):
  """h(r) = log(I_ν(r)/r^ν) - r for r ≥ ½, from exponentially scaled forms."""
  if dim == 2:
    return jnp.log(special.i0e(r))
  if dim == 3:
    # I_½(r) = √(2/(πr)) sinh r, and e^{-r} sinh r = -expm1(-2r) / 2.
    return -0.5 * _common.LOG_2PI - jnp.log(r) + jnp.log(-jnp.expm1(-2.0 * r))
  return jnp.log(special.i1e(r)) - jnp.log(r)


def _log_scaled_bessel(kappa, dim):
  """h(κ) = log(I_ν(κ)/κ^ν) - κ for κ ≥ 0, smooth down to κ = 0."""
  small = kappa * kappa < _SERIES_MAX
  kappa_small = jnp.where(small, kappa, 0.0)
  kappa_large = jnp.where(small, 1.0, kappa)
  from_series = (_log_bessel_at_zero(dim) + _log_series(kappa_small * kappa_small, dim)
                 - kappa_small)
  return jnp.where(small, from_series, _log_scaled_bessel_large(kappa_large, dim))


def _resultant_ratio_over_radius(s, dim):
  """A_d(r)/r for s = r², with A_d = I_{d/2}/I_{d/2-1}; it tends to 1/d as r → 0.

  A_d is the derivative of log(I_ν(r)/r^ν), so below the series threshold
  A_d(r)/r = 2 S'(s)/S(s) for the series S(s) = 1 + Σ_k c_k s^k: smooth in s.
  """
  small = s < _SERIES_MAX
  s_small = jnp.where(small, s, 0.0)
  r = jnp.sqrt(jnp.where(small, 1.0, s))
  value, slope = jnp.zeros_like(s), jnp.zeros_like(s)
  for k, c in reversed(list(enumerate(_series_coefficients(dim, s.dtype), start=1))):
    value = value * s_small + c
    slope = slope * s_small + k * c
  from_series = 2.0 * slope / (1.0 + s_small * value)
  if dim == 2:
    ratio = special.i1e(r) / special.i0e(r)
  elif dim == 3:  # coth r - 1/r.
    ratio = 1.0 / jnp.tanh(r) - 1.0 / r
  else:  # I_2 = I_0 - (2/r) I_1.
    ratio = special.i0e(r) / special.i1e(r) - 2.0 / r
  return jnp.where(small, from_series, ratio / r)


def resultant_ratio_over_kappa(kappa, dim):
  """A_d(κ)/κ."""
  return _resultant_ratio_over_radius(kappa * kappa, dim)


# ---------------------------------------------------------------------------
# Overlaps between components, and their derivative.
# ---------------------------------------------------------------------------


def _log_overlap(kappa_a, h_a, kappa_b, h_b, sum_sq, diff_sq, dim):
  """log G(a, b) for vMF components, elementwise.

  Args:
    kappa_a, kappa_b: concentrations.
    h_a, h_b: `_log_scaled_bessel` of them (computed once per component).
    sum_sq: ‖μ_a + μ_b‖².
    diff_sq: ‖μ_a - μ_b‖².
    dim: d.

  Returns:
    (log G(a, b), r² = ‖κ_a μ_a + κ_b μ_b‖²); see the module docstring.
  """
  # r² written as a sum of non-negative terms, accurate near 0 (equal
  # concentrations, opposite means).
  r_sq = jnp.square(kappa_a - kappa_b) + kappa_a * kappa_b * sum_sq
  small = r_sq < _SERIES_MAX
  r_sq_small = jnp.where(small, r_sq, 0.0)
  r_large = jnp.sqrt(jnp.where(small, 1.0, r_sq))
  excess_small = (kappa_a + h_a + kappa_b + h_b - _log_bessel_at_zero(dim)
                  - _log_series(r_sq_small, dim))
  excess_large = (kappa_a * kappa_b * diff_sq / (kappa_a + kappa_b + r_large)
                  + h_a + h_b - _log_scaled_bessel_large(r_large, dim))
  return -0.5 * dim * _common.LOG_2PI - jnp.where(small, excess_small, excess_large), r_sq


def _pairwise_terms(mu, kappa, antipodal):
  """log G between all components, and the pieces the derivative needs.

  Returns:
    (log G or log G_s [..., K, K], log G [S, ..., K, K], r² [S, ..., K, K])
    with S = 1, or S = 2 for the pairs (μ_a, μ_b) and (μ_a, -μ_b).
  """
  dim = mu.shape[-1]
  h = _log_scaled_bessel(kappa, dim)  # once per component, not per pair
  h_a, h_b = h[..., :, None], h[..., None, :]
  kappa_a, kappa_b = kappa[..., :, None], kappa[..., None, :]
  mu_a, mu_b = mu[..., :, None, :], mu[..., None, :, :]
  # Squared distances from the differences, not 2 ± 2 μ_aᵀμ_b, which would
  # lose Δ's accuracy for nearly equal directions. Summed coordinate by
  # coordinate: XLA:CPU vectorises the [..., K, K] slabs, not a short last
  # axis of [..., K, K, d] (docs/benchmarks.md).
  sum_sq = sum(jnp.square(mu_a[..., c] + mu_b[..., c]) for c in range(dim))
  diff_sq = sum(jnp.square(mu_a[..., c] - mu_b[..., c]) for c in range(dim))
  if not antipodal:
    log_g, r_sq = _log_overlap(kappa_a, h_a, kappa_b, h_b, sum_sq, diff_sq, dim)
    return log_g, log_g[None], r_sq[None]
  # G(μ_a, -μ_b): the sums and differences swap roles. Both evaluated in one
  # stacked call, which keeps the compiled program (and compile time) small.
  log_g, r_sq = _log_overlap(kappa_a, h_a, kappa_b, h_b, jnp.stack([sum_sq, diff_sq]),
                             jnp.stack([diff_sq, sum_sq]), dim)
  return jnp.logaddexp(log_g[0], log_g[1]) - _LOG_2, log_g, r_sq


# The derivative is written out (a custom JVP, so forward mode works too and
# reverse mode transposes it): it needs one Bessel ratio per pair, where
# autodiff through the two-branch evaluation above differentiates both
# branches and, with the symmetry, both pairs of every log-sum-exp.
@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def pairwise_log_overlap(mu, kappa, antipodal):
  """log G (or log G_s) between all components: [..., K, d], [..., K] -> [..., K, K].

  mu must hold unit vectors: the derivative is that of the exact overlap
  log G = log C(κ_a) + log C(κ_b) - log C(‖κ_a μ_a + κ_b μ_b‖), which equals
  the computed one on the sphere (and so in every tangent direction).
  """
  return _pairwise_terms(mu, kappa, antipodal)[0]


@pairwise_log_overlap.defjvp
def _pairwise_log_overlap_jvp(antipodal, primals, tangents):
  """d log G from d log C(κ) = -A(κ) dκ and d log C(r) = -(A(r)/r) vᵀdv.

  With v = κ_a μ_a + κ_b μ_b, vᵀdv = P + Q where
  P = dκ_a κ_a |μ_a|² + dκ_b κ_b |μ_b|² + κ_a² μ_aᵀdμ_a + κ_b² μ_bᵀdμ_b and
  Q = (dκ_a κ_b + dκ_b κ_a) μ_aᵀμ_b + κ_a κ_b (μ_bᵀdμ_a + μ_aᵀdμ_b);
  for the pair (μ_a, -μ_b) it is P - Q. With the symmetry, log G_s is a
  log-sum-exp of the two, so its differential is their softmax-weighted sum.
  """
  mu, kappa = primals
  d_mu, d_kappa = tangents
  dim = mu.shape[-1]
  out, log_g, r_sq = _pairwise_terms(mu, kappa, antipodal)
  ratio = _resultant_ratio_over_radius(r_sq, dim)  # A(r)/r, [S, ..., K, K]
  d_log_c = kappa * resultant_ratio_over_kappa(kappa, dim) * d_kappa  # A(κ) dκ
  gram = jnp.einsum('...id,...jd->...ij', mu, mu)
  cross = jnp.einsum('...id,...jd->...ij', mu, d_mu)  # μ_iᵀdμ_j
  norm_sq = jnp.diagonal(gram, axis1=-2, axis2=-1)
  own = jnp.diagonal(cross, axis1=-2, axis2=-1)  # μ_iᵀdμ_i
  per_component = d_kappa * kappa * norm_sq + kappa * kappa * own
  p = per_component[..., :, None] + per_component[..., None, :]
  kappa_a, kappa_b = kappa[..., :, None], kappa[..., None, :]
  q = ((d_kappa[..., :, None] * kappa_b + d_kappa[..., None, :] * kappa_a) * gram
       + kappa_a * kappa_b * (cross + jnp.swapaxes(cross, -1, -2)))
  base = -(d_log_c[..., :, None] + d_log_c[..., None, :])
  if not antipodal:
    return out, base + ratio[0] * (p + q)
  # Softmax weights of the two pairs: e^{log G±} / (e^{log G+} + e^{log G-}).
  weights = jnp.exp(log_g - (out + _LOG_2))
  return out, base + weights[0] * ratio[0] * (p + q) + weights[1] * ratio[1] * (p - q)


# ---------------------------------------------------------------------------
# One component's density and draws.
# ---------------------------------------------------------------------------


def log_peak_density(kappa, dim):
  """log f(μ; μ, κ) = log C(κ) + κ = -(d/2) log 2π - h(κ), the density at the mean."""
  return -0.5 * dim * _common.LOG_2PI - _log_scaled_bessel(kappa, dim)


def component_log_prob(x, mu, kappa, log_peak, antipodal):
  """log f_i(x) for unit x [..., d] against [..., I, d] components -> [..., I].

  log C(κ) + κ μᵀx = log_peak - κ ‖x - μ‖²/2 for unit vectors, which avoids
  the large cancellation between -κ and κ μᵀx.
  """
  x = x[..., None, :]
  log_f = log_peak - 0.5 * kappa * jnp.sum(jnp.square(x - mu), axis=-1)
  if not antipodal:
    return log_f
  log_f_flipped = log_peak - 0.5 * kappa * jnp.sum(jnp.square(x + mu), axis=-1)
  return jnp.logaddexp(log_f, log_f_flipped) - _LOG_2


def _symmetric_beta(g):
  """Beta((d-1)/2, (d-1)/2) draws from normal vectors g [..., d], as (1 + g_1/‖g‖)/2.

  g_1/‖g‖ is the first coordinate of a uniform point on S^{d-1}, whose
  density ∝ (1 - s²)^{(d-3)/2} is exactly that law on [-1, 1]: no rejection
  loop (unlike jax.random.beta). Where g_1 < 0 the form
  ‖g_rest‖² / (2‖g‖(‖g‖ - g_1)) keeps small values accurate.
  """
  first, rest_sq = g[..., 0], jnp.sum(jnp.square(g[..., 1:]), axis=-1)
  norm = jnp.sqrt(first * first + rest_sq)
  return jnp.where(first < 0, rest_sq / (2.0 * norm * (norm - first)),
                   (norm + first) / (2.0 * norm))


def sample_components(key, mu, kappa, tangent_normals):
  """One draw from each vMF(μ, κ) ([..., d], [...]), by Wood's (1994) algorithm.

  The cosine w = μᵀx is drawn by rejection from an envelope built on a Beta
  variable, then x = w μ + √(1 - w²) v with v uniform among unit vectors
  orthogonal to μ. Everything is written in t = 1 - w, which keeps its
  relative accuracy in float32 when κ is large and w rounds to 1. The
  normal vectors for v come from the caller.
  """
  dim = mu.shape[-1]
  shape, dtype = kappa.shape, kappa.dtype
  m1 = dim - 1.0
  # b = (-2κ + √(4κ² + (d-1)²)) / (d-1), without the cancellation.
  b = m1 / (2.0 * kappa + jnp.sqrt(4.0 * kappa * kappa + m1 * m1))
  one_minus_x0 = 2.0 * b / (1.0 + b)  # 1 - x0, x0 = (1 - b)/(1 + b)
  x0 = 1.0 - one_minus_x0
  one_minus_x0_sq = one_minus_x0 * 2.0 / (1.0 + b)  # 1 - x0²

  def cond(state):
    return ~jnp.all(state[2])

  def body(state):
    key, t, done = state
    key, sub = jax.random.split(key)
    g = jax.random.normal(sub, shape + (dim + 1,), dtype)
    z = _symmetric_beta(g[..., :dim])
    log_u = jnp.log(special.ndtr(g[..., dim]))
    new_t = 2.0 * b * z / (1.0 - (1.0 - b) * z)
    # Wood's test κw + (d-1) log(1 - x0 w) - c ≥ log u, c = κx0 + (d-1) log(1 - x0²).
    accept = (kappa * (one_minus_x0 - new_t)
              + m1 * jnp.log((one_minus_x0 + x0 * new_t) / one_minus_x0_sq)) >= log_u
    return key, jnp.where(done, t, new_t), done | accept

  # Made like b (from κ and the drawn component), so that under shard_map
  # the state varies wherever the inputs do, as the body's outputs do.
  _, t, _ = lax.while_loop(cond, body, (key, jnp.zeros_like(b),
                                        jnp.zeros_like(b, bool)))
  t = jnp.clip(t, 0.0, 2.0)
  g = tangent_normals
  # Gram-Schmidt twice: one pass leaves a component along μ of the order of
  # the rounding error times |gᵀμ| / |g - (gᵀμ)μ|, large when g is nearly
  # parallel to μ (often, for d = 2).
  for _ in range(2):
    g = g - jnp.sum(g * mu, axis=-1, keepdims=True) * mu
  return _common.normalize((1.0 - t)[..., None] * mu
                           + jnp.sqrt(t * (2.0 - t))[..., None] * _common.normalize(g))
