"""One training step of the paper's network, JAX/Flax NNX vs PyTorch + torchpropel.

The step: forward, PROPEL loss, backward and an Adam update of the paper's
head-orientation CNN (128×128×1 input, [3×3 conv, BatchNorm, ReLU, 2×2
max-pool] × (16, 32, 32, 32), FC 20, ReLU, FC 12 = n·I means and scales for
n = 3, I = 2, sigmoid on both as in the paper) on a batch of 64. The PyTorch
model is the same network written with torch.nn; its loss is torchpropel's
PROPEL (which differs from the paper for n > 1, see README "The loss"; the
arithmetic is the same size). Every formulation runs interleaved in this
process on the same data; medians over the repetitions.

  python benchmarks/train_step_benchmark.py [--reps 30] [--batch 64]

Where JAX runs on a GPU, the PyTorch model runs on it too (CUDA, cuDNN autotuned).
"""

import argparse
import os
import statistics
import time

import numpy as np

NUM_TARGETS, NUM_GAUSSIANS, HIDDEN = 3, 2, 20
TARGET_SCALE = 0.05
MIN_SCALE = 1e-3
LEARNING_RATE = 1e-3


def make_batch(batch_size, image_size, seed=0):
  rng = np.random.default_rng(seed)
  return {
      'image': rng.uniform(size=(batch_size, image_size, image_size, 1)).astype(np.float32),
      'label': rng.uniform(0.1, 0.9, (batch_size, NUM_TARGETS)).astype(np.float32),
  }


# --- PyTorch -----------------------------------------------------------------


def torch_step_fn(batch, device='cpu'):
  """Returns step() -> loss for the torch model on the batch (NCHW) on `device`."""
  import torch
  import torchpropel

  class PaperCNN(torch.nn.Module):

    def __init__(self, image_size):
      super().__init__()
      layers, cin = [], 1
      for cout in (16, 32, 32, 32):
        layers += [torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.BatchNorm2d(cout),
                   torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
        cin = cout
      flat = (image_size // 16) ** 2 * cin
      layers += [torch.nn.Flatten(), torch.nn.Linear(flat, HIDDEN), torch.nn.ReLU(),
                 torch.nn.Linear(HIDDEN, 2 * NUM_TARGETS * NUM_GAUSSIANS)]
      self.net = torch.nn.Sequential(*layers)

    def forward(self, images):
      out = self.net(images).view(-1, NUM_GAUSSIANS, 2 * NUM_TARGETS)
      # torchpropel's layout: [B, I, 2n], means then standard deviations.
      means, scales = out.split(NUM_TARGETS, dim=-1)
      return torch.cat([torch.sigmoid(means), torch.sigmoid(scales) + MIN_SCALE], dim=-1)

  torch.manual_seed(0)
  # cuDNN picks its fastest convolution algorithms for these shapes, as a tuned PyTorch run would.
  torch.backends.cudnn.benchmark = True
  model = PaperCNN(batch['image'].shape[1]).to(device)
  loss_fn = torchpropel.PROPEL(TARGET_SCALE).to(device)  # Its σ is a parameter.
  optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
  images = torch.from_numpy(batch['image']).permute(0, 3, 1, 2).contiguous().to(device)
  labels = torch.from_numpy(batch['label']).to(device)
  model.train()

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss.item()
  return step


# --- JAX ---------------------------------------------------------------------


def _jax_model(image_size, **model_config):
  import ml_collections
  from flax import nnx
  from propel_jax.nn import models
  config = ml_collections.ConfigDict({
      'loss': 'propel', 'num_gaussians': NUM_GAUSSIANS, 'target_scale': TARGET_SCALE,
      'model': {'hidden_units': HIDDEN, 'scale_activation': 'sigmoid',
                'min_scale': MIN_SCALE, **model_config}})
  info = ml_collections.ConfigDict({'label_names': ('yaw', 'pitch', 'roll'),
                                    'image_shape': (image_size, image_size, 1)})
  return models.create_model(config, info, rngs=nnx.Rngs(0))


def nnx_jit_step_fn(batch, **model_config):
  """The plain NNX formulation: nnx.jit over (model, optimizer)."""
  import jax
  from flax import nnx
  import optax
  model = _jax_model(batch['image'].shape[1], **model_config)
  optimizer = nnx.Optimizer(model, optax.adam(LEARNING_RATE), wrt=nnx.Param)
  batch = jax.device_put(batch)

  @nnx.jit
  def train_step(model, optimizer, batch):
    def loss_fn(model):
      return model.head.loss(model(batch['image']), batch).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  return lambda: float(train_step(model, optimizer, batch))


def pure_jit_step_fn(batch, donate=True, **model_config):
  """jax.jit of a pure function of (params, batch_stats, opt_state, batch)."""
  import jax
  from flax import nnx
  import optax
  model = _jax_model(batch['image'].shape[1], **model_config)
  graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  tx = optax.adam(LEARNING_RATE)
  state = [params, batch_stats, tx.init(params)]
  batch = jax.device_put(batch)

  def train_step(params, batch_stats, opt_state, batch):
    def loss_fn(params, batch_stats):
      model = nnx.merge(graphdef, params, batch_stats, copy=True)
      loss = model.head.loss(model(batch['image']), batch).mean()
      return loss, nnx.state(model, nnx.BatchStat)
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  train_step = jax.jit(train_step, donate_argnums=(0, 1, 2) if donate else ())

  def step():
    *state[:], loss = train_step(*state, batch)
    return float(loss)
  return step


VARIANTS = {
    'torch': torch_step_fn,
    'nnx_jit': nnx_jit_step_fn,
    'pure_jit': pure_jit_step_fn,
    'pure_jit_nodonate': lambda b: pure_jit_step_fn(b, donate=False),
    'nnx_jit_xla_conv_grad': lambda b: nnx_jit_step_fn(b, conv_weight_gradient='xla'),
    'pure_jit_xla_conv_grad': lambda b: pure_jit_step_fn(b, conv_weight_gradient='xla'),
}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--image_size', type=int, default=128)
  parser.add_argument('--reps', type=int, default=20)
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--variants', default='torch,nnx_jit,pure_jit,pure_jit_xla_conv_grad',
                      help=f'comma-separated, from {",".join(VARIANTS)}')
  parser.add_argument('--threads', type=int, default=os.cpu_count())
  parser.add_argument('--torch_device', default='',
                      help="torch's device; default: cuda where JAX runs on a GPU, else cpu")
  args = parser.parse_args()

  import torch
  torch.set_num_threads(args.threads)
  import jax
  from loss_benchmark import default_torch_device  # benchmarks/ is the script's folder.
  torch_device = args.torch_device or default_torch_device()
  batch = make_batch(args.batch, args.image_size)
  names = args.variants.split(',')
  steps = {name: (VARIANTS[name](batch, torch_device) if name == 'torch' else VARIANTS[name](batch))
           for name in names}
  for name, step in steps.items():
    for _ in range(args.warmup):
      loss = step()
    print(f'{name:>20}: loss after warm-up {loss:.4f}')
  times = {name: [] for name in names}
  for _ in range(args.reps):
    for name, step in steps.items():  # Interleaved: load changes hit all alike.
      start = time.perf_counter()
      step()
      times[name].append(time.perf_counter() - start)
  print(f'\nbatch {args.batch}, {args.image_size}×{args.image_size}×1, n = {NUM_TARGETS}, '
        f'I = {NUM_GAUSSIANS}; jax {jax.__version__} ({jax.devices()[0].device_kind}), '
        f'torch {torch.__version__} on {torch_device} ({args.threads} CPU threads); '
        f'medians of {args.reps}')
  reference = statistics.median(times['torch']) if 'torch' in times else None
  for name in names:
    median = statistics.median(times[name])
    line = f'{name:>20}: {1e3 * median:8.2f} ms/step  {args.batch / median:8.1f} images/s'
    if reference is not None:
      line += f'  speed vs torch {reference / median:5.2f}×'
    print(line)


if __name__ == '__main__':
  main()
