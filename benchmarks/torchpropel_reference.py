"""Records torchpropel 0.0.3's outputs on fixed problems, for tests/torchpropel_test.py.

The cross-check test compares propel_jax with the official PyTorch package
without importing PyTorch: it reads the inputs and torchpropel's outputs from
the files this script writes,

    tests/data/torchpropel_reference.npz    arrays (inputs, losses, gradients)
    tests/data/torchpropel_reference.json   scalar facts and the versions used

Regenerate them (needs torch and torchpropel: `pip install -e '.[bench]'`):

    python benchmarks/torchpropel_reference.py [--out_dir=tests/data]

What is recorded (array keys in the .npz, prefixed by the case name):
  n1_i{2,3,8}   B = 16, n = 1, I = 2, 3, 8, σ_gt = 0.2, float64: loss with
                reduction='none' and the gradient of its sum with respect to
                the means and the standard deviations.
  n3_i3         the same at n = 3, I = 3 (where torchpropel's H(P_gt) is the
                one-dimensional one).
  perfect       B = 4, n = 3, I = 2, every σ = 0.2, means on the targets:
                the loss with reduction='mean'.
  sigma_grid    one example of `perfect`, all predicted σ set to each value of
                a grid: where torchpropel's loss is smallest.
  far_n1, far_n3  float32, I = 2, σ = 0.2, the target k σ away (on every
                axis) for k = 0..40: loss and gradients (inf and NaN from some k).
  i1            I = 1: whether it raises, and what.
"""

import argparse
import json
import os
import platform

import numpy as np
import torch
import torchpropel

TARGET_SCALE = 0.2


def run_torchpropel(means, scales, targets, target_scale, reduction='none',
                    dtype=torch.float64):
  """torchpropel's PROPEL on [B, I, n] means and standard deviations, [B, n] targets.

  Returns the loss (as torchpropel shapes it) and the gradients of its sum
  with respect to the means and to the standard deviations, as NumPy arrays.
  """
  num_dims = means.shape[-1]
  output = torch.tensor(np.concatenate([means, scales], axis=-1), dtype=dtype,
                        requires_grad=True)
  module = torchpropel.PROPEL(sigma=target_scale, reduction=reduction).to(dtype)
  loss = module(output, torch.tensor(targets, dtype=dtype))
  loss.sum().backward()
  grad = output.grad.numpy()
  return (loss.detach().numpy(), grad[..., :num_dims].copy(),
          grad[..., num_dims:].copy())


def random_problem(seed, batch, num, dim):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(batch, num, dim)),
          rng.uniform(0.1, 1.0, size=(batch, num, dim)),
          rng.normal(size=(batch, dim)))


def record(arrays, name, means, scales, targets, loss, grad_means, grad_scales):
  arrays.update({f'{name}/means': means, f'{name}/scales': scales,
                 f'{name}/targets': targets, f'{name}/loss': loss,
                 f'{name}/grad_means': grad_means,
                 f'{name}/grad_scales': grad_scales})


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out_dir', default=os.path.normpath(os.path.join(
      os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data')))
  args = parser.parse_args()
  arrays, facts = {}, {}

  # Random problems, float64: n = 1 (I = 2, 3, 8) and n = 3.
  for name, seed, num, dim in [('n1_i2', 2, 2, 1), ('n1_i3', 3, 3, 1),
                               ('n1_i8', 8, 8, 1), ('n3_i3', 0, 3, 3)]:
    means, scales, targets = random_problem(seed, 16, num, dim)
    record(arrays, name, means, scales, targets,
           *run_torchpropel(means, scales, targets, TARGET_SCALE))
  facts['reduction_none_shape'] = list(arrays['n1_i2/loss'].shape)

  # A perfect prediction at n = 3: the paper's loss is 0 there.
  targets = np.zeros((4, 3))
  means, scales = np.zeros((4, 2, 3)), np.full((4, 2, 3), TARGET_SCALE)
  loss, _, _ = run_torchpropel(means, scales, targets, TARGET_SCALE, 'mean')
  arrays.update({'perfect/means': means, 'perfect/scales': scales,
                 'perfect/targets': targets, 'perfect/loss_mean': loss})
  facts['perfect_n3_loss_mean'] = float(loss)

  # The same example with every predicted σ set to each grid value.
  grid = np.linspace(0.1, 0.4, 31)
  losses = [run_torchpropel(means[:1], np.full((1, 2, 3), g), targets[:1],
                            TARGET_SCALE)[0].item() for g in grid]
  arrays.update({'sigma_grid/sigmas': grid, 'sigma_grid/loss': np.array(losses)})
  facts['sigma_grid_argmin'] = float(grid[int(np.argmin(losses))])

  # A target k σ away on every axis, float32, I = 2, every σ = 0.2.
  steps = np.arange(41)
  for name, dim in [('far_n1', 1), ('far_n3', 3)]:
    means = np.zeros((len(steps), 2, dim), np.float32)
    scales = np.full((len(steps), 2, dim), TARGET_SCALE, np.float32)
    targets = np.repeat((steps * TARGET_SCALE)[:, None], dim, 1).astype(np.float32)
    # One problem per call, as a training step would see it: a NaN in one
    # example's gradient must not come from another's.
    results = [run_torchpropel(means[k:k + 1], scales[k:k + 1],
                               targets[k:k + 1], TARGET_SCALE, 'mean',
                               torch.float32) for k in steps]
    record(arrays, name, means, scales, targets,
           np.array([r[0] for r in results]),
           np.concatenate([r[1] for r in results]),
           np.concatenate([r[2] for r in results]))
    arrays[f'{name}/steps'] = steps
    loss = arrays[f'{name}/loss']
    grads = np.concatenate([arrays[f'{name}/grad_means'].reshape(len(steps), -1),
                            arrays[f'{name}/grad_scales'].reshape(len(steps), -1)], 1)
    facts[f'{name}_first_inf_loss_step'] = int(steps[np.isinf(loss)][0])
    facts[f'{name}_first_nan_grad_step'] = int(
        steps[np.isnan(grads).any(axis=1)][0])

  # I = 1.
  means, scales, targets = random_problem(1, 4, 1, 2)
  try:
    run_torchpropel(means, scales, targets, TARGET_SCALE)
    facts['i1_raises'], facts['i1_error'] = False, ''
  except Exception as e:  # pylint: disable=broad-except
    facts['i1_raises'] = True
    facts['i1_error'] = f'{type(e).__name__}: {str(e).splitlines()[0]}'

  facts['versions'] = {'torch': torch.__version__,
                       'torchpropel': getattr(torchpropel, '__version__', None)
                                      or _dist_version('torchpropel'),
                       'numpy': np.__version__,
                       'python': platform.python_version()}
  facts['target_scale'] = TARGET_SCALE
  # torchpropel stores σ_gt in a float32 parameter, so a float64 run uses
  # float32(0.2) = 0.20000000298...; a float64 model of it must use the same.
  facts['torchpropel_target_scale'] = torchpropel.PROPEL(
      sigma=TARGET_SCALE).sigma.item()
  facts['note'] = ('torchpropel takes standard deviations and squares them; '
                   'gradients are of the sum of the recorded loss with respect '
                   'to means and standard deviations. Written by '
                   'benchmarks/torchpropel_reference.py.')

  os.makedirs(args.out_dir, exist_ok=True)
  npz = os.path.join(args.out_dir, 'torchpropel_reference.npz')
  np.savez_compressed(npz, **arrays)
  with open(os.path.join(args.out_dir, 'torchpropel_reference.json'), 'w') as f:
    json.dump(facts, f, indent=2, sort_keys=True)
    f.write('\n')
  print(json.dumps(facts, indent=2, sort_keys=True))
  print(f'wrote {npz} ({os.path.getsize(npz)} bytes) and its .json')


def _dist_version(name):
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  return metadata.version(name)


if __name__ == '__main__':
  main()
