"""The paper's CNN building blocks, written for a fast training step on CPU.

Where XLA:CPU is slow, the blocks compute the same values another way
(measurements: docs/benchmarks.md):

  * the 3×3 convolution's weight gradient: an im2col matrix product in blocks
    of image rows inside a `lax.scan`, so that each block's patches stay in
    cache. Row blocks keep the batch axis whole, so a batch sharded over
    devices stays sharded. Its forward pass, for at most 4 input channels: 9·C
    broadcast multiply-adds. On GPU and TPU ('auto') both are left to XLA.
  * BatchNorm (batch statistics), ReLU and 2×2 max-pooling as one operation
    with a hand-written gradient: only each window's maximum gets a gradient,
    so the backward pass is one elementwise pass at full resolution plus sums
    over the pooled grid (autodiff of the composition takes several passes,
    each recomputing the forward).
  * 2×2 max-pooling on its own (inference): an elementwise maximum of the four
    strided sub-grids (`reduce_window` and its gradient are slow on CPU).
"""

import functools

from flax import nnx
import jax
import jax.numpy as jnp

_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')
# Patches of one row block should fit in a core's cache.
_ROW_BLOCK_BYTES = 1 << 20
# Up to this many input channels the CPU forward pass is tap multiply-adds (see _conv_taps).
_MAX_TAP_CHANNELS = 4
WEIGHT_GRADIENTS = ('auto', 'xla', 'row_blocks')


def _conv(images, kernel):
  return jax.lax.conv_general_dilated(images, kernel, (1, 1), 'SAME',
                                      dimension_numbers=_DIMENSION_NUMBERS)


def _conv_taps(images, kernel):
  """The same convolution as 9·C broadcast multiply-adds, one per tap and input channel.

  XLA:CPU's convolution is slow for few input channels (the first layer of
  an image network); this is one elementwise pass.
  """
  _, height, width, channels = images.shape
  padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(padded[:, i:i + height, j:j + width, c:c + 1] * kernel[i, j, c]
             for i in range(3) for j in range(3) for c in range(channels))


def _conv_cpu(images, kernel):
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


def _local_weight_gradient(images, cotangent):
  """∂L/∂kernel [3, 3, C, O] of a SAME 3×3 convolution, block of rows by block.

  kernel_grad[i, j, c, o] = Σ_{b, h, w} padded[b, h + i, w + j, c] ·
  cotangent[b, h, w, o]: for each block of r output rows, the 9 shifted
  views of r + 2 padded input rows are stacked into patches [9, C, B, r, W]
  and contracted with the block's cotangent [B, r, W, O]. Channel-major
  patches are in the layout the matrix product reads, so they are built by
  one copy. The sum starts from the first block's product (not from zeros),
  so its carry varies over a mesh wherever the inputs do (shard_map).
  """
  _, height, width, channels = images.shape
  rows = _rows_per_block(images)
  padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0))).transpose(3, 0, 1, 2)

  def block_product(block):
    window = jax.lax.dynamic_slice_in_dim(padded, block * rows, rows + 2, axis=2)
    grad_rows = jax.lax.dynamic_slice_in_dim(cotangent, block * rows, rows, axis=1)
    patches = jnp.stack([window[:, :, i:i + rows, j:j + width]
                         for i in range(3) for j in range(3)])
    return jnp.einsum('tcbhw,bhwo->tco', patches, grad_rows)

  total, _ = jax.lax.scan(lambda total, block: (total + block_product(block), None),
                          block_product(0), jnp.arange(1, height // rows))
  return total.reshape(3, 3, channels, cotangent.shape[-1])


def _weight_gradient_row_blocks(images, cotangent):
  """`_local_weight_gradient` over the whole batch, wherever the batch lives.

  When the batch is split over a mesh, each device sums its own rows and one
  cross-device sum follows the loop. Left to sharding propagation, that sum
  would run inside the loop, once per row block, and XLA:CPU orders a loop's
  collectives against the program's other collectives only by when the loop
  starts (a scheduling edge): processes then issue them in different orders
  and a multi-process run over gloo fails ("distributed collective
  mismatch"). With the sum outside, every collective is a top-level one,
  issued in program order on every process.
  """
  # The mesh the batch may be split over: the caller's (jax.set_mesh), else the one
  # the values carry (a network's input may carry none where its activations do).
  mesh = next((m for m in (jax.sharding.get_abstract_mesh(), jax.typeof(images).sharding.mesh,
                           jax.typeof(cotangent).sharding.mesh) if not m.empty),
              jax.sharding.get_abstract_mesh())
  # Inside a shard_map (manual axes) or with explicit shardings the batch here is
  # already the local one, or the caller decides where its sums go.
  if (mesh.empty or mesh.size == 1 or images.shape[0] % mesh.size
      or any(t != jax.sharding.AxisType.Auto for t in mesh.axis_types)):
    return _local_weight_gradient(images, cotangent)
  batch = jax.sharding.PartitionSpec(mesh.axis_names)

  def local(images, cotangent):
    return jax.lax.psum(_local_weight_gradient(images, cotangent), mesh.axis_names)

  return jax.shard_map(local, mesh=mesh, in_specs=(batch, batch),
                       out_specs=jax.sharding.PartitionSpec())(images, cotangent)


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
      own), 'row_blocks' (the cache-blocked im2col product above, and the
      forward pass as multiply-adds for at most 4 input channels) or 'auto'
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


def _quarters(images):
  """The four strided sub-grids [B, H // 2, W // 2, C] of the 2×2 windows, row-major."""
  height, width = images.shape[-3] // 2 * 2, images.shape[-2] // 2 * 2
  return [images[..., i:height:2, j:width:2, :] for i in (0, 1) for j in (0, 1)]


def max_pool_2x2(images):
  """2×2 max-pooling with stride 2 (VALID: odd trailing rows/columns dropped).

  images [B, H, W, C] -> [B, H // 2, W // 2, C]; the same values as
  `nnx.max_pool(images, (2, 2), strides=(2, 2))`.
  """
  top_left, top_right, bottom_left, bottom_right = _quarters(images)
  return jnp.maximum(jnp.maximum(top_left, top_right), jnp.maximum(bottom_left, bottom_right))


def _unpool(index, values, shape):
  """[B, H, W, C]: values [B, H // 2, W // 2, C] where each window's `index` points, else 0."""
  batch, height, width, channels = shape
  window = jnp.arange(4, dtype=index.dtype).reshape(1, 1, 2, 1, 2, 1)
  full = jnp.where(index[:, :, None, :, None, :] == window, values[:, :, None, :, None, :], 0)
  full = full.reshape(batch, height // 2 * 2, width // 2 * 2, channels)
  return jnp.pad(full, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)))


def _batch_stats(images):
  """Mean and (biased) variance over [B, H, W] as nnx.BatchNorm computes them."""
  count = images.shape[0] * images.shape[1] * images.shape[2]
  mean = jnp.sum(images, (0, 1, 2)) / count
  var = jnp.maximum(jnp.sum(images * images, (0, 1, 2)) / count - mean * mean, 0.0)
  return mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _bn_relu_pool(images, scale, bias, epsilon):
  return _bn_relu_pool_fwd(images, scale, bias, epsilon)[0]


def _bn_relu_pool_fwd(images, scale, bias, epsilon):
  """-> (pooled, batch mean, batch variance), residuals for the gradient."""
  mean, var = _batch_stats(images)
  rstd = jax.lax.rsqrt(var + epsilon)
  slope = scale * rstd
  shift = bias - mean * slope
  quarters = _quarters(images)
  normed = [q * slope + shift for q in quarters]
  normed_max = jnp.maximum(jnp.maximum(normed[0], normed[1]), jnp.maximum(normed[2], normed[3]))
  # Each window's input at its first maximum (row-major), the one reduce_window's gradient picks.
  images_max = quarters[3]
  for k in (2, 1, 0):
    images_max = jnp.where(normed[k] == normed_max, quarters[k], images_max)
  pooled = jnp.maximum(images_max * slope + shift, 0)
  return (pooled, mean, var), (images, scale, mean, rstd, images_max, pooled)


def _bn_relu_pool_bwd(epsilon, residuals, cotangents):
  """The BatchNorm gradient with the ReLU and pooling gradients folded in.

  Only each window's maximum receives a gradient, and only where it passed
  the ReLU, so the sums BatchNorm's gradient needs run over the pooled grid.
  The maximum's position is recomputed here (the first input equal to it)
  rather than stored: it is part of the one full-size pass either way.
  """
  del epsilon
  images, scale, mean, rstd, images_max, pooled = residuals
  cotangent = cotangents[0]  # batch_norm_relu_max_pool stops the statistics' gradient.
  count = images.shape[0] * images.shape[1] * images.shape[2]
  grad_max = jnp.where(pooled > 0, cotangent, 0)
  grad_bias = jnp.sum(grad_max, (0, 1, 2))
  grad_scale = jnp.sum(grad_max * ((images_max - mean) * rstd), (0, 1, 2))
  quarters = _quarters(images)
  index = jnp.int8(3)
  for k in (2, 1, 0):
    index = jnp.where(quarters[k] == images_max, jnp.int8(k), index)
  normalized = (images - mean) * rstd
  grad_images = (scale * rstd) * (_unpool(index, grad_max, images.shape)
                                  - (grad_bias + normalized * grad_scale) / count)
  return grad_images, grad_scale, grad_bias


_bn_relu_pool.defvjp(_bn_relu_pool_fwd, _bn_relu_pool_bwd)


def batch_norm_relu_max_pool(norm: nnx.BatchNorm, images):
  """`max_pool_2x2(relu(norm(images)))`, images [B, H, W, C] -> [B, H // 2, W // 2, C].

  In training mode (batch statistics) one custom-gradient operation, which
  updates `norm`'s running statistics as `norm(images)` would; in inference
  mode the plain composition. `norm` normalises the last axis, with scale
  and bias (`nnx.BatchNorm(C)`'s defaults).
  """
  if norm.use_running_average:
    return max_pool_2x2(nnx.relu(norm(images)))
  pooled, mean, var = _bn_relu_pool(images, norm.scale[...], norm.bias[...], norm.epsilon)
  mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
  norm.mean[...] = norm.momentum * norm.mean[...] + (1 - norm.momentum) * mean
  norm.var[...] = norm.momentum * norm.var[...] + (1 - norm.momentum) * var
  return pooled
