"""Convolution and pooling layers against float64 NumPy references from the definitions."""

from flax import nnx
import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest

from propel_jax.nn import layers

RNG = np.random.default_rng(0)


def _conv_reference(images, kernel):
  """out[b, h, w, o] = Σ_{i, j, c} padded[b, h + i, w + j, c] · kernel[i, j, c, o], float64."""
  _, height, width, _ = images.shape
  padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(np.einsum('bhwc,co->bhwo', padded[:, i:i + height, j:j + width], kernel[i, j])
             for i in range(3) for j in range(3))


def _kernel_grad_reference(images, cotangent):
  """∂/∂kernel[i, j, c, o] of Σ out·cotangent.

  = Σ_{b, h, w} padded[b, h + i, w + j, c] · cotangent[b, h, w, o].
  """
  _, height, width, _ = images.shape
  padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return np.stack([np.stack([
      np.einsum('bhwc,bhwo->co', padded[:, i:i + height, j:j + width], cotangent)
      for j in range(3)]) for i in range(3)])


def _image_grad_reference(kernel, cotangent):
  """∂/∂images[b, y, x, c] of Σ out·cotangent.

  = Σ_{i, j, o} cotangent[b, y − i + 1, x − j + 1, o] · kernel[i, j, c, o].
  """
  _, height, width, _ = cotangent.shape
  padded = np.pad(cotangent, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(np.einsum('bhwo,co->bhwc', padded[:, 2 - i:2 - i + height, 2 - j:2 - j + width],
                       kernel[i, j]) for i in range(3) for j in range(3))


@pytest.mark.parametrize('shape,block_bytes,rows', [
    ((2, 7, 5, 3), 1 << 20, 7),  # Odd sizes, one block.
    # A row of patches is 3·4·9·2 floats = 864 bytes: three rows per block.
    ((3, 9, 4, 2), 2600, 3),
    ((3, 8, 4, 2), 2600, 2),  # Three rows do not divide 8: two.
    ((2, 5, 6, 1), 1, 1),  # One row per block.
    ((2, 4, 3, 5), 1 << 20, 4),  # More than 4 input channels: XLA's forward.
])
@pytest.mark.parametrize('weight_gradient', ['row_blocks', 'xla'])
def test_conv3x3_value_and_gradients(shape, block_bytes, rows, weight_gradient, monkeypatch):
  monkeypatch.setattr(layers, '_ROW_BLOCK_BYTES', block_bytes)
  images = RNG.normal(size=shape)
  kernel = RNG.normal(size=(3, 3, shape[-1], 4))
  cotangent = RNG.normal(size=shape[:-1] + (4,))
  assert layers._rows_per_block(jnp.asarray(images, jnp.float32)) == rows
  # Full float32 products: GPUs would otherwise use TF32 (about 3 decimal digits).
  with jax.default_matmul_precision('highest'):
    out, vjp = jax.vjp(lambda x, k: layers.conv3x3(x, k, weight_gradient),
                       jnp.asarray(images, jnp.float32), jnp.asarray(kernel, jnp.float32))
    images_grad, kernel_grad = vjp(jnp.asarray(cotangent, jnp.float32))
  np.testing.assert_allclose(out, _conv_reference(images, kernel), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(kernel_grad, _kernel_grad_reference(images, cotangent),
                             rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(images_grad, _image_grad_reference(kernel, cotangent),
                             rtol=1e-5, atol=1e-5)


def test_row_block_gradient_passes_finite_differences(enable_x64):
  with enable_x64():
    images = jnp.asarray(RNG.normal(size=(2, 6, 4, 2)))
    kernel = jnp.asarray(RNG.normal(size=(3, 3, 2, 3)))
    check_grads(lambda x, k: layers.conv3x3(x, k, 'row_blocks'), (images, kernel),
                order=1, modes=['rev'])


def test_auto_uses_row_blocks_on_cpu_only():
  grad = jax.grad(lambda k: layers.conv3x3(jnp.ones((1, 4, 4, 1)), k).sum())
  uses_row_blocks = 'scan' in str(jax.make_jaxpr(grad)(jnp.ones((3, 3, 1, 2))))
  assert uses_row_blocks == (jax.default_backend() == 'cpu')
  with pytest.raises(ValueError, match='weight_gradient'):
    layers.conv3x3(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 2)), 'fft')


def test_conv3x3_module_has_nnx_conv_parameters():
  ours = layers.Conv3x3(3, 5, rngs=nnx.Rngs(0))
  theirs = nnx.Conv(3, 5, (3, 3), use_bias=False, rngs=nnx.Rngs(0))
  shapes = lambda m: nnx.to_pure_dict(jax.tree.map(jnp.shape, nnx.state(m, nnx.Param)))
  assert shapes(ours) == shapes(theirs)
  images = jnp.asarray(RNG.normal(size=(2, 6, 6, 3)), jnp.float32)
  theirs.kernel[...] = ours.kernel[...]
  np.testing.assert_allclose(ours(images), theirs(images), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('shape', [(2, 8, 6, 3), (1, 7, 5, 2)])
def test_max_pool_2x2_matches_reduce_window(shape):
  images = jnp.asarray(RNG.normal(size=shape), jnp.float32)  # No ties, almost surely.
  reference = lambda x: nnx.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(layers.max_pool_2x2(images), reference(images))
  cotangent = jnp.asarray(RNG.normal(size=reference(images).shape), jnp.float32)
  ours = jax.vjp(layers.max_pool_2x2, images)[1](cotangent)[0]
  theirs = jax.vjp(reference, images)[1](cotangent)[0]
  np.testing.assert_array_equal(ours, theirs)


def _distinct(shape):
  """Values 0.01 apart in random order: no window has two maxima, even after rounding."""
  return jnp.asarray(RNG.permutation(np.prod(shape)).reshape(shape) * 0.01 - 1.0, jnp.float32)


def _batch_norm(channels, train):
  norm = nnx.BatchNorm(channels, use_running_average=not train, rngs=nnx.Rngs(0))
  norm.scale[...] = jnp.asarray(RNG.uniform(0.5, 1.5, channels), jnp.float32)
  norm.bias[...] = jnp.asarray(RNG.normal(size=channels) * 0.3, jnp.float32)
  norm.mean[...] = jnp.asarray(RNG.normal(size=channels), jnp.float32)
  norm.var[...] = jnp.asarray(RNG.uniform(0.5, 2.0, channels), jnp.float32)
  return norm


@pytest.mark.parametrize('shape', [(3, 6, 4, 2), (2, 7, 5, 3)])  # Odd sizes drop a row/column.
@pytest.mark.parametrize('train', [True, False])
def test_batch_norm_relu_max_pool_matches_the_composition(shape, train):
  ours = _batch_norm(shape[-1], train)
  theirs = nnx.clone(ours)
  images = _distinct(shape)
  cotangent = jnp.asarray(RNG.normal(size=(shape[0], shape[1] // 2, shape[2] // 2, shape[3])),
                          jnp.float32)

  def value_and_grads(norm, forward):
    # Returns the output, the updated norm and the gradients w.r.t. the images, scale and bias.
    def loss(images, norm):
      return jnp.sum(forward(norm, images) * cotangent)
    out = forward(nnx.clone(norm), images)
    grads = nnx.grad(loss, argnums=(0, 1))(images, norm)
    forward(norm, images)  # Updates the running statistics once.
    return out, norm, grads

  reference = lambda norm, x: nnx.max_pool(nnx.relu(norm(x)), (2, 2), strides=(2, 2))
  out, ours, (images_grad, norm_grad) = value_and_grads(ours, layers.batch_norm_relu_max_pool)
  ref_out, theirs, (ref_images_grad, ref_norm_grad) = value_and_grads(theirs, reference)
  np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(images_grad, ref_images_grad, rtol=1e-4, atol=1e-5)
  for name in ('scale', 'bias'):
    np.testing.assert_allclose(getattr(norm_grad, name)[...], getattr(ref_norm_grad, name)[...],
                               rtol=1e-4, atol=1e-5)
  for name in ('mean', 'var'):
    np.testing.assert_allclose(getattr(ours, name)[...], getattr(theirs, name)[...],
                               rtol=1e-5, atol=1e-6)


def test_batch_norm_relu_max_pool_gradient_passes_finite_differences(enable_x64):
  with enable_x64():
    images = jnp.asarray(_distinct((2, 4, 6, 3)), jnp.float64)
    scale, bias = jnp.asarray([0.8, 1.2, -0.9]), jnp.asarray([0.1, -0.2, 0.3])
    check_grads(lambda x, s, b: layers._bn_relu_pool(x, s, b, 1e-5)[0], (images, scale, bias),
                order=1, modes=['rev'], eps=1e-4)
