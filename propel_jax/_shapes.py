"""Input conversion and the shape rule that both mixture families follow.

The Gaussian family (`propel_jax.mixtures`, `propel_jax.losses`) and the von
Mises-Fisher one (`propel_jax.directional`) line their arguments up the same
way: **axes match by rank, sizes broadcast.**

- One mixture's arrays share their leading (batch) shape exactly: means or
  mean directions [..., I, n], scales [..., I, n] (or [..., I, n, n]),
  concentrations and log_weights [..., I].
- Points and labels (`x`, `targets`) [..., n] have exactly one axis fewer
  than the means; two mixtures (`mixture_distance`) have as many axes as each
  other.
- The label's width (`target_scale`, `target_concentration`) is a scalar; one
  per example, [...] with the batch axes of the targets or [..., 1] with all
  of their axes; or, for Gaussians, whose width may differ per dimension, [n]
  (shared by every example) or [..., n].

Where ranks match, the leading axes broadcast, size 1 included (so [1, I, n]
is one mixture shared by a batch). Missing leading axes are never added:
means [B, n] against targets [B, n] would otherwise read as one B-component
mixture shared by the batch, a silent error that a forgotten component axis
makes.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp



def reject_complex(**arrays) -> None:
  """Raises ValueError naming the first complex array (None values are skipped)."""
  for name, value in arrays.items():
    if value is not None and jnp.iscomplexobj(value):
      raise ValueError(f'{name} must be real; got dtype {jnp.result_type(value)}.')

def as_arrays(*values):
  """The public functions' one input conversion: array-likes to jax arrays.

  Lists, tuples, scalars and NumPy arrays become jax arrays (free for jax
  arrays and tracers); None stays None. Everything after it reads shapes
  from arrays, which `jnp.shape` of a list no longer allows.

  Returns:
    A tuple, one entry per argument.
  """
  return tuple(None if v is None else jnp.asarray(v) for v in values)


def compute_dtype(*arrays) -> jnp.dtype:
  """float32, or float64 if an input is float64 (under jax_enable_x64).

  Half-precision inputs are computed in float32: the overlaps' exponents
  and log-sum-exps need its range.
  """
  return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def batch_shape(**shapes: tuple[Sequence[int], Sequence[int]]) -> tuple[int, ...]:
  """Broadcasts leading (batch) shapes, naming the arguments if they clash.

  Args:
    **shapes: argument name -> (its full shape, its batch shape).

  Returns:
    The broadcast batch shape.
  """
  try:
    return jnp.broadcast_shapes(*(tuple(batch) for _, batch in shapes.values()))
  except ValueError:
    described = ', '.join(f'{name} {tuple(shape)} (batch {tuple(batch)})'
                          for name, (shape, batch) in shapes.items())
    raise ValueError('The leading (batch) axes do not broadcast: '
                     f'{described}.') from None


def broadcasts(*shapes: Sequence[int]) -> bool:
  """Whether the shapes broadcast together."""
  try:
    jnp.broadcast_shapes(*shapes)
    return True
  except ValueError:
    return False


def point_axes_error(x_shape, means_shape, *, x, means, one_component,
                     shared, n='n') -> ValueError:
  """The ValueError for points whose axes do not line up with the means'.

  Args:
    x_shape, means_shape: the two shapes.
    x, means: the caller's argument names.
    one_component: how to add the component axis to the mixture's arrays
      and what that means, e.g. "means[..., None, :] and scales[..., None, :]
      (one Gaussian per example)".
    shared: how to share one mixture across the batch, e.g. "means[None]
      and scales[None]".
    n: the name of the last axis (d on spheres).

  Returns:
    The error, naming the shapes and the likely fix.
  """
  rule = (f'{means} must have exactly one more axis than {x} ({means} '
          f'[..., I, {n}] for {x} [..., {n}]; leading axes broadcast, size 1 '
          f'included); got {x} {x_shape} and {means} {means_shape}.')
  if len(x_shape) == len(means_shape):
    hint = (f' Probably: add the component axis I with {one_component}; or, '
            f'to share one mixture across the batch, use {shared}.')
  elif len(means_shape) < 2:
    hint = (f' {means} needs the component axis I and as many leading axes '
            f'as {x} has ({len(x_shape) - 1}); size-1 axes broadcast.')
  elif len(x_shape) > len(means_shape):
    hint = (f' To share one mixture across the leading axes of {x}, add '
            f'size-1 axes in front of the mixture, e.g. {shared}.')
  else:
    hint = (f' To evaluate the same {x} under every mixture, add size-1 axes '
            f'in front of {x}, e.g. {x}[None].')
  return ValueError(rule + hint)


def target_width(width: jax.Array, targets_shape: tuple[int, ...], *,
                 name: str, per_dimension: bool) -> jax.Array:
  """A label width as an array that broadcasts against targets [..., n].

  By the rule of the module docstring: a scalar; [...] with the targets'
  batch axes (returned with a trailing axis added); [..., 1] with all of
  their axes; and if `per_dimension`, [n] or [..., n]. A 1-D width of length
  n against a batch whose only axis is also n fits two of these, and raises.

  Args:
    width: the width (a jax array).
    targets_shape: [..., n].
    name: the caller's argument name, for the messages.
    per_dimension: whether the width may differ per dimension (Gaussians).

  Returns:
    A scalar or an array with the rank of the targets (or [n]); its leading
    axes broadcast against the targets' batch axes.

  Raises:
    ValueError: naming the shapes and what was probably meant.
  """
  reject_complex(**{name: width})
  shape, batch, num_dims = width.shape, targets_shape[:-1], targets_shape[-1]
  if not shape:
    return width
  per_dim_shared = per_dimension and shape == (num_dims,)
  if len(shape) == len(batch) and broadcasts(shape, batch):
    if per_dim_shared and num_dims > 1 and batch == (num_dims,):
      raise ValueError(
          f'{name} shape {shape} is ambiguous for targets shape '
          f'{targets_shape}: it could be one per example or one per '
          f'dimension. Pass {name}[:, None] for one per example or '
          f'{name}[None, :] for one per dimension.')
    if not per_dim_shared:
      return width[..., None]
  if per_dim_shared:
    return width
  trailing = (1, num_dims) if per_dimension else (1,)
  if (len(shape) == len(targets_shape) and shape[-1] in trailing
      and broadcasts(shape[:-1], batch)):
    return width
  options = (f'a scalar, {batch} (the batch shape: one per example) or '
             f'{batch + (1,)} (the same with a trailing axis)')
  if per_dimension:
    options += (f', [n] = [{num_dims}] (one per dimension) or '
                f'{targets_shape} (per example and dimension)')
  elif len(shape) == len(targets_shape) and shape[-1] == num_dims > 1:
    options += ' (a concentration is one number per example, not per axis)'
  raise ValueError(
      f'{name} shape {shape} does not fit targets shape {targets_shape}: '
      f'pass {options}; the ranks must match and the sizes broadcast, size 1 '
      'included.')
