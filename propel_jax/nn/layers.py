"""The paper's CNN building blocks, written for a fast training step on CPU.

Two gradients are slow on XLA:CPU, so they are computed another way with the
same values (measurements: docs/benchmarks.md):

  * the 3×3 convolution's weight gradient: an im2col matrix product in blocks
    of image rows inside a `lax.scan`, so that each block's patches stay in
    cache. Row blocks keep the batch axis whole, so a batch sharded over
    devices stays sharded. On GPU and TPU ('auto') it is left to XLA.
  * 2×2 max-pooling: an elementwise maximum of the four strided sub-grids,
    whose gradient is elementwise (`reduce_window`'s `select_and_scatter`
    gradient is slow on CPU).
"""

import functools

from flax import nnx
import jax
import jax.numpy as jnp

_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')
# Patches of one row block should fit in a core's cache.
_ROW_BLOCK_BYTES = 1 << 20
_MAX_TAP_CHANNELS = 4
WEIGHT_GRADIENTS = ('auto', 'xla', 'row_blocks')


def _conv(images, kernel):
  return jax.lax.conv_general_dilated(images, kernel, (1, 1), 'SAME',
                                      dimension_numbers=_DIMENSION_NUMBERS)


def _conv_taps(images, kernel):
  """The same convolution as 9·C broadcast multiply-adds, one per tap and input channel."""
  _, height, width, channels = images.shape
  padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(padded[:, i:i + height, j:j + width, c:c + 1] * kernel[i, j, c]
             for i in range(3) for j in range(3) for c in range(channels))


def _conv_cpu(images, kernel):
  """XLA:CPU's convolution is slow for few input channels; taps are faster there."""
  if images.shape[-1] <= _MAX_TAP_CHANNELS:
    return _conv_taps(images, kernel)
  return _conv(images, kernel)


def _rows_per_block(images):
  """The largest divisor of H whose row block of patches is under _ROW_BLOCK_BYTES."""
  batch, height, width, channels = images.shape
  row_bytes = batch * width * 9 * channels * images.dtype.itemsize
  rows = max(1, min(height, _ROW_BLOCK_BYTES // row_bytes))
  while height % rows:
    rows -= 1
  return rows


def _weight_gradient_row_blocks(images, cotangent):
  """∂L/∂kernel [3, 3, C, O] of a SAME 3×3 convolution, block of rows by block.

  kernel_grad[i, j, c, o] = Σ_{b, h, w} padded[b, h + i, w + j, c] ·
  cotangent[b, h, w, o]: for each block of r output rows, the 9 shifted
  views of r + 2 padded input rows are concatenated into patches
  [B, r, W, 9C] and contracted with the block's cotangent [B, r, W, O].
  """
  _, height, width, channels = images.shape
  rows = _rows_per_block(images)
  padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))

  def accumulate(total, block):
    window = jax.lax.dynamic_slice_in_dim(padded, block * rows, rows + 2, axis=1)
    grad_rows = jax.lax.dynamic_slice_in_dim(cotangent, block * rows, rows, axis=1)
    patches = jnp.concatenate([window[:, i:i + rows, j:j + width]
                               for i in range(3) for j in range(3)], axis=-1)
    return total + jnp.einsum('bhwk,bhwo->ko', patches, grad_rows), None

  zeros = jnp.zeros((9 * channels, cotangent.shape[-1]),
                    jnp.result_type(images, cotangent))
  total, _ = jax.lax.scan(accumulate, zeros, jnp.arange(height // rows))
  return total.reshape(3, 3, channels, cotangent.shape[-1])


@jax.custom_vjp
def _conv_row_block_grad(images, kernel):
  return _conv_cpu(images, kernel)


def _conv_fwd(images, kernel):
  return _conv_cpu(images, kernel), (images, kernel)


def _conv_bwd(residuals, cotangent):
  images, kernel = residuals
  _, images_vjp = jax.vjp(lambda x: _conv(x, kernel), images)
  (images_grad,) = images_vjp(cotangent)
  kernel_grad = _weight_gradient_row_blocks(images, cotangent).astype(kernel.dtype)
  return images_grad, kernel_grad


_conv_row_block_grad.defvjp(_conv_fwd, _conv_bwd)


def conv3x3(images, kernel, weight_gradient: str = 'auto'):
  """A stride-1 SAME 3×3 convolution, images [B, H, W, C], kernel [3, 3, C, O] -> [B, H, W, O].

  Args:
    weight_gradient: how the kernel's gradient is computed: 'xla' (XLA's
      own), 'row_blocks' (the cache-blocked im2col product above) or 'auto'
      ('row_blocks' on CPU, 'xla' elsewhere). Values are identical up to
      float32 summation order.
  """
  if weight_gradient not in WEIGHT_GRADIENTS:
    raise ValueError(f'weight_gradient must be one of {WEIGHT_GRADIENTS}; '
                     f'got {weight_gradient!r}.')
  if weight_gradient == 'auto':
    weight_gradient = 'row_blocks' if jax.default_backend() == 'cpu' else 'xla'
  if weight_gradient == 'xla':
    return _conv(images, kernel)
  return _conv_row_block_grad(images, kernel)


class Conv3x3(nnx.Module):
  """3×3 SAME convolution without bias, for use before BatchNorm.

  BatchNorm subtracts the batch mean, which cancels a bias: its true gradient
  is 0, and Adam would turn the gradient's rounding noise into full-size
  steps. The parameters of `nnx.Conv(cin, cout, (3, 3), use_bias=False)`.
  """

  def __init__(self, in_features: int, out_features: int, *,
               weight_gradient: str = 'auto', rngs: nnx.Rngs):
    if weight_gradient not in WEIGHT_GRADIENTS:
      raise ValueError(f'weight_gradient must be one of {WEIGHT_GRADIENTS}; '
                       f'got {weight_gradient!r}.')
    self.kernel = nnx.Param(nnx.initializers.lecun_normal()(
        rngs.params(), (3, 3, in_features, out_features)))
    self.weight_gradient = weight_gradient

  def __call__(self, images):
    """images [B, H, W, C] -> [B, H, W, out_features]."""
    return conv3x3(images, self.kernel[...], self.weight_gradient)


def max_pool_2x2(images):
  """2×2 max-pooling with stride 2 (VALID: odd trailing rows/columns dropped).

  images [B, H, W, C] -> [B, H // 2, W // 2, C]; the same values as
  `nnx.max_pool(images, (2, 2), strides=(2, 2))`.
  """
  height, width = images.shape[-3] // 2 * 2, images.shape[-2] // 2 * 2
  x = images[..., :height, :width, :]
  return jnp.maximum(jnp.maximum(x[..., 0::2, 0::2, :], x[..., 0::2, 1::2, :]),
                     jnp.maximum(x[..., 1::2, 0::2, :], x[..., 1::2, 1::2, :]))


def _quarters(images):
  """The four strided 2×2 sub-grids [B, H//2, W//2, C], in row-major window order."""
  height, width = images.shape[-3] // 2 * 2, images.shape[-2] // 2 * 2
  return [images[..., i:height:2, j:width:2, :] for i in (0, 1) for j in (0, 1)]


def _unpool(index, values, shape):
  """Full-size [B, H, W, C] with values [B, H//2, W//2, C] at each window's `index`, else 0."""
  batch, height, width, channels = shape
  window = (2 * jax.lax.broadcasted_iota(jnp.int8, (1, 1, 2, 1, 2, 1), 2)
            + jax.lax.broadcasted_iota(jnp.int8, (1, 1, 2, 1, 2, 1), 4))
  full = jnp.where(index[:, :, None, :, None, :] == window, values[:, :, None, :, None, :], 0)
  full = full.reshape(batch, height // 2 * 2, width // 2 * 2, channels)
  return jnp.pad(full, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)))


def _batch_stats(x):
  count = x.shape[0] * x.shape[1] * x.shape[2]
  mean = jnp.sum(x, (0, 1, 2)) / count
  var = jnp.maximum(jnp.sum(x * x, (0, 1, 2)) / count - mean * mean, 0.0)
  return mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _bn_relu_pool(x, scale, bias, epsilon):
  return _bn_relu_pool_fwd(x, scale, bias, epsilon)[0]


def _bn_relu_pool_fwd(x, scale, bias, epsilon):
  mean, var = _batch_stats(x)
  rstd = jax.lax.rsqrt(var + epsilon)
  slope = scale * rstd
  quarters = _quarters(x)
  z = [q * slope + (bias - mean * slope) for q in quarters]
  z_max = jnp.maximum(jnp.maximum(z[0], z[1]), jnp.maximum(z[2], z[3]))
  index = jnp.where(z[0] == z_max, 0, jnp.where(z[1] == z_max, 1, jnp.where(z[2] == z_max, 2, 3)))
  index = index.astype(jnp.int8)
  x_max = jnp.where(index == 0, quarters[0], jnp.where(index == 1, quarters[1], jnp.where(
      index == 2, quarters[2], quarters[3])))
  out = jnp.maximum(z_max, 0)
  return (out, mean, var), (x, scale, mean, rstd, index, x_max, out)


def _bn_relu_pool_bwd(epsilon, residuals, cotangents):
  del epsilon
  x, scale, mean, rstd, index, x_max, out = residuals
  cotangent = cotangents[0]  # The statistics are returned without gradient.
  count = x.shape[0] * x.shape[1] * x.shape[2]
  grad_max = jnp.where(out > 0, cotangent, 0)
  grad_bias = jnp.sum(grad_max, (0, 1, 2))
  grad_scale = jnp.sum(grad_max * ((x_max - mean) * rstd), (0, 1, 2))
  normalized = (x - mean) * rstd
  grad_x = (scale * rstd) * (_unpool(index, grad_max, x.shape)
                             - (grad_bias + normalized * grad_scale) / count)
  return grad_x, grad_scale, grad_bias


_bn_relu_pool.defvjp(_bn_relu_pool_fwd, _bn_relu_pool_bwd)


def batch_norm_relu_max_pool(norm: nnx.BatchNorm, images):
  """`max_pool_2x2(relu(norm(images)))`, with a fused gradient in training mode."""
  if norm.use_running_average:
    return max_pool_2x2(nnx.relu(norm(images)))
  out, mean, var = _bn_relu_pool(images, norm.scale[...], norm.bias[...], norm.epsilon)
  mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
  norm.mean[...] = norm.momentum * norm.mean[...] + (1 - norm.momentum) * mean
  norm.var[...] = norm.momentum * norm.var[...] + (1 - norm.momentum) * var
  return out
