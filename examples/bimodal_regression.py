"""PROPEL on a toy ambiguous problem: y = ±(x² + 0.5), each sign half the time.

A small Flax NNX network predicts a mixture of two 1-D Gaussians per x and is
trained with `propel_jax.propel_loss`. Squared error would be minimised by the
conditional mean, 0 for every x, which is neither answer; the mixture's two
modes land on both branches. The script checks that, prints the largest
error of the modes on a grid of x, and saves a plot.

    python examples/bimodal_regression.py --plot /tmp/bimodal.png [--steps 600]
"""

import argparse

from flax import nnx
import jax
import jax.numpy as jnp
import matplotlib
import optax

import propel_jax
from propel_jax import mixtures

matplotlib.use('Agg')
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

NUM_COMPONENTS = 2


def branch(x):
  return x ** 2 + 0.5


class MixtureNet(nnx.Module):
  """x [B, 1] -> means, scales [B, I, 1] of a mixture of I Gaussians."""

  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(1, 64, rngs=rngs)
    self.out = nnx.Linear(64, 2 * NUM_COMPONENTS, rngs=rngs)

  def __call__(self, x):
    means, raw_scales = jnp.split(self.out(nnx.tanh(self.hidden(x))), 2, axis=-1)
    return means[..., None], (jax.nn.softplus(raw_scales) + 1e-3)[..., None]


def train(steps: int, seed: int = 0) -> MixtureNet:
  model = MixtureNet(nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer, key):
    x_key, sign_key = jax.random.split(key)
    x = jax.random.uniform(x_key, (256, 1), minval=-1.0, maxval=1.0)
    y = jnp.where(jax.random.bernoulli(sign_key, shape=(256, 1)), 1.0, -1.0) * branch(x)

    def loss_fn(model):
      means, scales = model(x)
      return propel_jax.propel_loss(means, scales, y, target_scale=0.05).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  # cached_partial skips re-reading the model's graph on every call (Flax's fast path).
  cached_step = nnx.cached_partial(train_step, model, optimizer)
  for key in jax.random.split(jax.random.key(seed), steps):
    cached_step(key)
  return model


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--plot', required=True, help='where to save the PNG')
  parser.add_argument('--steps', type=int, default=600)
  args = parser.parse_args()

  model = train(args.steps)
  x = jnp.linspace(-1.0, 1.0, 101)[:, None]
  means, scales = model(x)
  locations, _, valid = jax.jit(mixtures.modes)(means, scales)  # [101, 2, 1], sorted by density
  found = jnp.sort(jnp.where(valid, locations[..., 0], jnp.nan), axis=-1)  # low, high
  error = jnp.max(jnp.abs(found - jnp.concatenate([-branch(x), branch(x)], axis=-1)))

  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(x, branch(x), 'k-', lw=6, alpha=0.15, label='the two answers')
  ax.plot(x, -branch(x), 'k-', lw=6, alpha=0.15)
  ax.plot(jnp.repeat(x, 2), found.ravel(), 'C0.', ms=4,
          label='PROPEL: modes of the predicted mixture')
  ax.axhline(0.0, color='C3', ls='--', label='MSE optimum: the conditional mean')
  ax.set(xlabel='x', ylabel='y', title='y = ±(x² + 0.5)')
  ax.legend(loc='center', fontsize=8)
  fig.savefig(args.plot, dpi=100, bbox_inches='tight')

  both = bool(jnp.all(valid.sum(axis=-1) == 2))
  print(f'two modes at every x: {both}; largest error of the modes: {float(error):.3f} '
        f'(conditional mean 0, {float(branch(x).min()):.2f} from the nearer answer)')
  if not (both and error < 0.1):
    raise SystemExit('FAILED: the modes did not find both branches within 0.1')
  print(f'OK: both branches found within 0.1; plot: {args.plot}')


if __name__ == '__main__':
  main()
