"""Private pieces that both mixture families (Gaussian, von Mises-Fisher) share.

The distance's final combination and the merge of mode-search results are the
same for `propel_jax.losses` / `propel_jax.mixtures` and
`propel_jax.directional`; each family supplies only its own integrals and its
own notion of "the same point".
"""

from collections.abc import Callable
import math

import jax
from jax import lax
import jax.numpy as jnp

LOG_2 = math.log(2.0)
LOG_2PI = math.log(2.0 * math.pi)
LOG_4PI = math.log(4.0 * math.pi)


def normalize(x: jax.Array) -> jax.Array:
  """x / ‖x‖ over the last axis (NaN for a zero vector)."""
  return x * lax.rsqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))


def distance(log_pp: jax.Array, log_qq: jax.Array,
             log_pq: jax.Array) -> jax.Array:
  """D(p, q) = -log[2∫pq / ∫(p² + q²)] from log ∫p², log ∫q² and log ∫pq."""
  return jnp.logaddexp(log_pp, log_qq) - LOG_2 - log_pq


def merge_modes(
    points: jax.Array, log_density: jax.Array,
    close: Callable[[jax.Array], jax.Array],
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Sorts the ends of a mode search by density and marks the distinct ones.

  A point is a duplicate if a denser one is close to it; a point of
  non-finite density is invalid too. The output keeps the fixed K slots (so
  it jits): valid modes first, each group by density descending.

  Args:
    points: [..., K, n] where the K starts ended.
    log_density: [..., K] the log density there.
    close: sorted points [..., K, n] -> [..., K, K] bool, whether two points
      are one mode.

  Returns:
    (points [..., K, n], log_density [..., K], valid [..., K] bool), sorted.
  """
  order = jnp.argsort(-log_density, axis=-1)
  points = jnp.take_along_axis(points, order[..., None], axis=-2)
  log_density = jnp.take_along_axis(log_density, order, axis=-1)
  num = points.shape[-2]
  denser = jnp.tril(jnp.ones((num, num), bool), k=-1)  # j < k
  valid = ~jnp.any(close(points) & denser, axis=-1) & jnp.isfinite(log_density)
  # Stable re-sort: valid modes first, each group still by density.
  order = jnp.argsort(~valid, axis=-1, stable=True)
  return (jnp.take_along_axis(points, order[..., None], axis=-2),
          jnp.take_along_axis(log_density, order, axis=-1),
          jnp.take_along_axis(valid, order, axis=-1))
