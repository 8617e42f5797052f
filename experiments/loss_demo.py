"""A short demonstration of PROPEL on a bimodal target (until the training demo lands).

Fits a two-component mixture by gradient descent to labels that are equally
often +1 and -1, as a flat hand seen from the front or the back, and prints
where the components end up: PROPEL finds both modes where a squared error
would settle on their average, 0.
"""

import jax
import jax.numpy as jnp

from propel_jax import propel_loss


def main():
  targets = jnp.array([[1.0], [-1.0]] * 64)  # [128, 1]
  params = {'means': jnp.array([[0.1], [-0.05]]), 'log_scales': jnp.log(jnp.full((2, 1), 0.3))}

  def loss_fn(p):
    means = jnp.broadcast_to(p['means'], (targets.shape[0], 2, 1))
    scales = jnp.broadcast_to(jnp.exp(p['log_scales']), means.shape)
    return propel_loss(means, scales, targets, target_scale=0.1).mean()

  step = jax.jit(jax.value_and_grad(loss_fn))
  for i in range(1001):
    loss, grads = step(params)
    params = jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)
    if i % 200 == 0:
      print(f'step {i:3d}  loss {float(loss):.4f}  means {params["means"].ravel()}  '
            f'scales {jnp.exp(params["log_scales"]).ravel()}')


if __name__ == '__main__':
  main()
