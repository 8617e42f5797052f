"""Von Mises-Fisher PROPEL on the circle: an angle known only up to a half turn.

The label is θ(x) = 60°·x or θ(x) + 180°, each half the time, as for a
symmetric object whose front and back look alike. A small Flax NNX network
predicts a mixture of two von Mises components per x (mean directions as raw
2-D vectors, concentrations through a softplus), trained with
`propel_jax.directional.propel_loss`. The average of the two unit vectors is
0, so a point estimate trained on it (cosine or squared error) has no
direction to give; the mixture's two modes land on both answers. The script
checks that, prints the largest angular error of the modes, and saves a plot.

    python examples/circle_regression.py --plot /tmp/circle.png [--steps 1500]
"""

import argparse

from flax import nnx
import jax
import jax.numpy as jnp
import matplotlib
import optax

from propel_jax import directional

matplotlib.use('Agg')
from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

NUM_COMPONENTS = 2


def angle_deg(x):
  return 60.0 * x


def unit_vector(deg):
  return jnp.stack([jnp.cos(jnp.radians(deg)), jnp.sin(jnp.radians(deg))], axis=-1)


class VonMisesNet(nnx.Module):
  """x [B, 1] -> mean directions [B, I, 2] (raw vectors) and concentrations [B, I]."""

  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(1, 64, rngs=rngs)
    self.out = nnx.Linear(64, 3 * NUM_COMPONENTS, rngs=rngs)

  def __call__(self, x):
    out = self.out(nnx.tanh(self.hidden(x)))
    directions = out[:, :2 * NUM_COMPONENTS].reshape(-1, NUM_COMPONENTS, 2)
    return directions, jax.nn.softplus(out[:, 2 * NUM_COMPONENTS:])


def train(steps: int, seed: int = 0) -> VonMisesNet:
  model = VonMisesNet(nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer, key):
    x_key, flip_key = jax.random.split(key)
    x = jax.random.uniform(x_key, (256, 1), minval=-1.0, maxval=1.0)
    flip = jax.random.bernoulli(flip_key, shape=(256,))
    targets = unit_vector(angle_deg(x[:, 0]) + jnp.where(flip, 180.0, 0.0))

    def loss_fn(model):
      directions, concentrations = model(x)
      return directional.propel_loss(directions, concentrations, targets,
                                     target_concentration=50.0).mean()

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
  parser.add_argument('--steps', type=int, default=1500)
  args = parser.parse_args()

  model = train(args.steps)
  x = jnp.linspace(-1.0, 1.0, 101)[:, None]
  directions, concentrations = model(x)
  locations, _, valid = directional.modes(directions, concentrations)  # [101, 2, 2]
  found = jnp.degrees(jnp.arctan2(locations[..., 1], locations[..., 0]))  # (-180°, 180°]
  found = jnp.where(valid, (found + 90.0) % 360.0 - 90.0, jnp.nan)  # [-90°, 270°)
  # Each answer against the nearer of the modes, on the circle.
  answers = angle_deg(x) + jnp.array([0.0, 180.0])  # [101, 2]
  gaps = jnp.abs((found[:, None, :] - answers[:, :, None] + 180.0) % 360.0 - 180.0)
  error = jnp.max(jnp.nanmin(gaps, axis=-1))

  fig, ax = plt.subplots(figsize=(6, 4))
  for k in range(2):
    ax.plot(x, answers[:, k], 'k-', lw=6, alpha=0.15, label='the two answers' if k else None)
  ax.plot(jnp.repeat(x, 2), found.ravel(), 'C0.', ms=4,
          label='PROPEL: modes of the predicted von Mises mixture')
  ax.set(xlabel='x', ylabel='angle (degrees)', ylim=(-90, 270), yticks=range(-90, 271, 45),
         title='θ = 60°·x or 60°·x + 180°')
  ax.legend(loc='center', fontsize=8)
  fig.savefig(args.plot, dpi=100, bbox_inches='tight')

  both = bool(jnp.all(valid.sum(axis=-1) == 2))
  print(f'two modes at every x: {both}; largest angular error of the modes: '
        f'{float(error):.2f}°')
  if not (both and error < 3.0):
    raise SystemExit('FAILED: the modes did not find both answers within 3°')
  print(f'OK: both answers found within 3°; plot: {args.plot}')


if __name__ == '__main__':
  main()
