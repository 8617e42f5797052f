"""One training step of the paper's network, JAX/Flax NNX vs PyTorch + torchpropel.

The step: forward, PROPEL loss, backward and an optimiser update of the
paper's head-orientation CNN (128×128×1 input, [3×3 conv, BatchNorm, ReLU,
2×2 max-pool] × (16, 32, 32, 32), FC 20, ReLU, FC 12 = n·I means and scales
for n = 3, I = 2, sigmoid on both as in the paper) on a batch of 64.

  pure_jit  the step `experiments.train` runs: `train.jit_train_step` of the
            `head_pose.py:biwi` config (Adam on a cosine schedule after
            global-norm clipping, donated state), with sigmoid scales and
            σ_gt = 0.05 as on the PyTorch side.
  nnx_jit   `nnx.jit` over (model, nnx.Optimizer(Adam)): the plain NNX form.
  torch     the same network in torch.nn, torchpropel's PROPEL (which differs
            from the paper for n > 1, see README "The loss"; the arithmetic is
            the same size), torch.optim.Adam.

Every variant runs interleaved in this process on the same data (alternating
the order), and the table gives medians of wall time and of this process's
CPU time (all threads) per step, and their ratios to PyTorch. CPU time is
robust to other processes competing for the cores; wall time on an idle
machine is the headline measure.

  python benchmarks/train_step_benchmark.py [--reps 20] [--batch 64]
  taskset -c 0 python benchmarks/train_step_benchmark.py --threads 1   # one core

Where JAX runs on a GPU, the PyTorch model runs on it too (CUDA, cuDNN
autotuned); there only the wall-time ratio means anything.
"""

import argparse
import os
import sys

import numpy as np

NUM_TARGETS, NUM_GAUSSIANS, HIDDEN = 3, 2, 20
TARGET_SCALE = 0.05
MIN_SCALE = 1e-3
LEARNING_RATE = 1e-3


def make_batch(batch_size, image_size, seed=0):
  rng = np.random.default_rng(seed)
  label = rng.uniform(0.1, 0.9, (batch_size, NUM_TARGETS)).astype(np.float32)
  return {
      'image': rng.uniform(size=(batch_size, image_size, image_size, 1)).astype(np.float32),
      'label': label,
      'equivalent_labels': label[:, None],
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
        layers += [torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                   torch.nn.BatchNorm2d(cout), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
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


def _config(**model_config):
  """head_pose.py:biwi with the PyTorch side's scale activation and σ_gt."""
  from experiments.configs import head_pose
  config = head_pose.get_config('biwi')
  config.target_scale = TARGET_SCALE
  config.model.scale_activation = 'sigmoid'
  config.model.min_scale = MIN_SCALE
  config.model.update(model_config)
  return config


def _info(image_size):
  """The two DatasetInfo fields the model reads."""
  import types
  from propel_jax.data import labels
  names = ('yaw', 'pitch', 'roll')
  return types.SimpleNamespace(image_shape=(image_size, image_size, 1),
                               labels=labels.LabelSpec(names, (0.0,) * 3, (1.0,) * 3))


def pure_jit_step_fn(batch, **model_config):
  """The training loop's step: train.jit_train_step on a 1-device-or-more mesh."""
  from propel_jax.training import parallel
  from propel_jax.training import train
  config = _config(**model_config)
  mesh = parallel.create_mesh()
  tx = train.create_optimizer(config)
  model, state = train.create_model_and_state(config, _info(batch['image'].shape[1]), tx, mesh)
  train_step = train.jit_train_step(model, tx, train.learning_rate_schedule(config), mesh)
  batch = parallel.shard_batch(batch, mesh)
  holder = [state]

  def step():
    holder[0], metrics = train_step(holder[0], batch)
    return float(metrics['loss'])
  return step


def nnx_jit_step_fn(batch, **model_config):
  """The plain NNX formulation: nnx.jit over (model, optimizer), Adam."""
  import jax
  from flax import nnx
  import optax
  from propel_jax.nn import models
  model = models.create_model(_config(**model_config), _info(batch['image'].shape[1]),
                              rngs=nnx.Rngs(0))
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


VARIANTS = {
    'torch': torch_step_fn,
    'pure_jit': pure_jit_step_fn,
    'nnx_jit': nnx_jit_step_fn,
    'pure_jit_xla_conv_grad': lambda b: pure_jit_step_fn(b, conv_weight_gradient='xla'),
    'pure_jit_row_block_conv_grad': lambda b: pure_jit_step_fn(
        b, conv_weight_gradient='row_blocks'),
}
LABELS = {
    'torch': 'PyTorch + torchpropel',
    'pure_jit': 'train.jit_train_step (experiments.train)',
    'nnx_jit': 'nnx.jit over (model, optimizer)',
    'pure_jit_xla_conv_grad': "train step, XLA's conv weight gradient",
    'pure_jit_row_block_conv_grad': 'train step, row-block conv weight gradient',
}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--image_size', type=int, default=128)
  parser.add_argument('--reps', type=int, default=20)
  parser.add_argument('--variants', default='torch,pure_jit,nnx_jit',
                      help=f'comma-separated, from {",".join(VARIANTS)}')
  parser.add_argument('--threads', type=int, default=os.cpu_count(),
                      help="torch's CPU threads (default: every core, as XLA uses)")
  parser.add_argument('--torch_device', default='',
                      help="torch's device; default: cuda where JAX runs on a GPU, else cpu")
  args = parser.parse_args()

  import torch
  torch.set_num_threads(args.threads)
  import jax
  # benchmarks/ is the script's folder; the repository root holds experiments/.
  sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from loss_benchmark import default_torch_device, time_interleaved
  torch_device = args.torch_device or default_torch_device()
  batch = make_batch(args.batch, args.image_size)
  names = args.variants.split(',')
  unknown = sorted(set(names) - set(VARIANTS))
  if unknown:
    parser.error(f'unknown variants {unknown}; known: {sorted(VARIANTS)}')
  steps = {name: (VARIANTS[name](batch, torch_device) if name == 'torch' else VARIANTS[name](batch))
           for name in names}
  times = time_interleaved(steps, args.reps)

  print(f'\nTraining step: batch {args.batch}, {args.image_size}×{args.image_size}×1, '
        f'n = {NUM_TARGETS}, I = {NUM_GAUSSIANS}; jax {jax.__version__} on '
        f'{jax.devices()[0].device_kind} ({jax.device_count()} device(s)), torch '
        f'{torch.__version__} on {torch_device} ({args.threads} threads), {os.cpu_count()} '
        f'CPU(s), load average {os.getloadavg()[0]:.1f}; medians of {args.reps}, interleaved.')
  print('Ratio = PyTorch time / this time (> 1: faster than PyTorch).\n')
  print(f'| {"formulation":<44} | wall ms | CPU ms | images/s (wall) | ratio (wall) '
        f'| ratio (CPU) |')
  print(f'|{"-" * 46}|--------:|-------:|----------------:|-------------:|------------:|')
  reference = times.get('torch')
  for name in names:
    wall, cpu = times[name]
    ratios = (f'{reference[0] / wall:11.2f}× | {reference[1] / cpu:10.2f}×' if reference
              else f'{"–":>12} | {"–":>11}')
    print(f'| {LABELS[name]:<44} | {1e3 * wall:7.1f} | {1e3 * cpu:6.1f} | '
          f'{args.batch / wall:15.1f} | {ratios} |')


if __name__ == '__main__':
  main()
