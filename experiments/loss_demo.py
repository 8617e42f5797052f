"""A short demonstration of PROPEL on an ambiguous (bimodal) target.

Labels are +1 or -1 with equal probability (a flat hand seen from the front or
the back casts the same silhouette). A squared error settles on their average,
0, which is never right; PROPEL fits a two-component mixture whose modes are
the two answers. Runs in seconds on a CPU:

    python -m experiments.loss_demo
"""

import jax
import jax.numpy as jnp

from propel_jax import mixtures
from propel_jax import mse_loss
from propel_jax import propel_loss

TARGET_SCALE = 0.1


def fit(loss_fn, params, steps=1000, learning_rate=0.02):
  """Plain gradient descent on a loss of the parameters."""
  step = jax.jit(jax.value_and_grad(loss_fn))
  for _ in range(steps):
    loss, grads = step(params)
    params = jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)
  return params, float(loss)


def main():
  key_labels, key_noise = jax.random.split(jax.random.key(0))
  signs = jnp.where(jax.random.bernoulli(key_labels, 0.5, (256, 1)), 1.0, -1.0)
  labels = signs + 0.05 * jax.random.normal(key_noise, (256, 1))  # [256, n=1]

  def propel(p):
    means = jnp.broadcast_to(p['means'], (labels.shape[0], 2, 1))  # [B, I, n]
    scales = jnp.broadcast_to(jnp.exp(p['log_scales']), means.shape)
    return propel_loss(means, scales, labels, target_scale=TARGET_SCALE).mean()

  start = {'means': jnp.array([[0.1], [-0.05]]), 'log_scales': jnp.log(jnp.full((2, 1), 0.3))}
  params, loss = fit(propel, start)
  means, scales = params['means'], jnp.exp(params['log_scales'])
  locations, _, valid = mixtures.modes(means, scales)
  print(f'PROPEL (I=2): loss {loss:.4f}')
  print(f'  component means  {means.ravel()}')
  print(f'  component scales {scales.ravel()}')
  print(f'  mixture modes    {locations[valid].ravel()}')

  prediction, loss = fit(lambda p: mse_loss(jnp.broadcast_to(p, labels.shape),
                                            labels).mean(), jnp.zeros(1))
  print(f'MSE: loss {loss:.4f}, prediction {prediction} (the average of the modes)')

  # The paper's definition holds in any dimension: 0 at a perfect prediction.
  target = jnp.array([0.3, -1.2, 2.0])
  perfect = propel_loss(jnp.stack([target, target]), jnp.full((2, 3), TARGET_SCALE),
                        target, target_scale=TARGET_SCALE)
  print(f'PROPEL at a perfect prediction, n=3, I=2: {float(perfect):.2e}')


if __name__ == '__main__':
  main()
