"""Speed of PROPEL value + gradient: propel_jax against torchpropel 0.0.3.

Times the gradient of the batch-mean loss with respect to means and scales
(jax.jit(jax.value_and_grad)) against torchpropel's forward + backward on the
same float32 data, interleaved in one process (alternating which goes first),
and prints medians and their ratio, then how the time grows with B, I and n.

    python benchmarks/loss_benchmark.py            # `make bench`
    python benchmarks/loss_benchmark.py --reps 20 --no-scaling

On a shared machine the medians are still noisy: re-run when it is quiet.
`taskset -c 0 python benchmarks/loss_benchmark.py` compares on one core (both
libraries use the cores they are given). Where JAX runs on a GPU, torchpropel
runs on it too (CUDA); there only the wall-time ratio means anything.
"""

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from propel_jax import propel_loss

TARGET_SCALE = 0.2
POINTS = [(256, 8, 3), (1024, 16, 3), (256, 32, 16), (4096, 64, 3)]
SCALING = {
    'B': [(b, 16, 3) for b in (256, 1024, 4096)],
    'I': [(1024, i, 3) for i in (4, 16, 64)],
    'n': [(1024, 16, d) for d in (1, 3, 16)],
}


def make_data(batch, num, dim, seed=0):
  rng = np.random.default_rng(seed)
  means = rng.normal(size=(batch, num, dim)).astype(np.float32)
  scales = rng.uniform(0.1, 1.0, size=(batch, num, dim)).astype(np.float32)
  targets = rng.normal(size=(batch, dim)).astype(np.float32)
  return means, scales, targets


def jax_step(means, scales, targets):
  """A closure running one jitted value-and-gradient, blocking until done."""
  fn = jax.jit(jax.value_and_grad(
      lambda m, s, y: propel_loss(m, s, y, target_scale=TARGET_SCALE).mean(),
      argnums=(0, 1)))
  args = [jax.device_put(a) for a in (means, scales, targets)]

  def step():
    return jax.block_until_ready(fn(*args))
  return step


def torch_step(means, scales, targets, device):
  """A closure running torchpropel forward + backward (it squares the std)."""
  import torch  # pylint: disable=g-import-not-at-top
  import torchpropel  # pylint: disable=g-import-not-at-top
  output = torch.tensor(np.concatenate([means, scales], axis=-1), device=device,
                        requires_grad=True)
  target = torch.tensor(targets, device=device)
  loss_fn = torchpropel.PROPEL(sigma=TARGET_SCALE).to(device)  # Its σ is a parameter.

  def step():
    output.grad = None
    loss = loss_fn(output, target)
    loss.backward()
    if device != 'cpu':  # CUDA runs asynchronously: time the finished work.
      torch.cuda.synchronize()
    return loss
  return step


def default_torch_device():
  """'cuda' where JAX runs on a GPU and torch sees one, so both use the same chip."""
  import torch  # pylint: disable=g-import-not-at-top
  return 'cuda' if jax.default_backend() == 'gpu' and torch.cuda.is_available() else 'cpu'


def describe_machine():
  """'jax <version> on <platform> (<device>), <cores> of <all> CPU cores, <cpu>'."""
  device = jax.devices()[0]
  return (f'jax {jax.__version__} on {device.platform} ({device.device_kind}), '
          f'{len(os.sched_getaffinity(0))} of {os.cpu_count()} CPU cores, '
          f'{platform.processor() or platform.machine()}')


def time_interleaved(steps, reps):
  """Median wall and CPU seconds per call of each step, alternating their order.

  CPU time (of this process, all its threads) is robust to other processes
  competing for the cores; wall time is what a user waits.
  """
  for step in steps.values():  # compile / warm up
    step()
    step()
  wall = {name: [] for name in steps}
  cpu = {name: [] for name in steps}
  names = list(steps)
  for rep in range(reps):
    for name in (names if rep % 2 == 0 else names[::-1]):
      start, start_cpu = time.perf_counter(), time.process_time()
      steps[name]()
      cpu[name].append(time.process_time() - start_cpu)
      wall[name].append(time.perf_counter() - start)
  return {name: (float(np.median(wall[name])), float(np.median(cpu[name])))
          for name in steps}


def measure(point, reps, torch_device):
  data = make_data(*point)
  steps = {'jax': jax_step(*data)}
  if torch_device:
    steps['torch'] = torch_step(*data, torch_device)
  # Fewer repetitions where one call takes long.
  return time_interleaved(steps, reps if point[0] * point[1] ** 2 * point[2] < 5e6
                          else max(5, reps // 5))


def row(point, result):
  """Wall ms, then CPU ms, per library, and the torch / jax ratios."""
  cells = [f'{point[0]:5d} {point[1]:4d} {point[2]:3d}']
  cells += [f'{result[k][0] * 1e3:9.3f} {result[k][1] * 1e3:9.3f}' for k in result]
  if 'torch' in result:
    cells += [f'{result["torch"][0] / result["jax"][0]:6.1f}x '
              f'{result["torch"][1] / result["jax"][1]:6.1f}x']
  return ' | '.join(cells)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--reps', type=int, default=50)
  parser.add_argument('--no-scaling', action='store_true')
  parser.add_argument('--no-torch', action='store_true')
  parser.add_argument('--torch_device', default='',
                      help="torch's device; default: cuda where JAX runs on a GPU, else cpu")
  args = parser.parse_args()
  torch_device = '' if args.no_torch else (args.torch_device or default_torch_device())
  with_torch = bool(torch_device)
  if with_torch:
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(len(os.sched_getaffinity(0)))
  print(describe_machine()
        + (f'; torch {torch.__version__} on {torch_device}'
           + (f' ({torch.cuda.get_device_name()})' if torch_device == 'cuda' else
              f' with {torch.get_num_threads()} threads')
           if with_torch else ''))
  print('value + gradient of the mean loss w.r.t. means and scales, float32, '
        'median ms of wall and CPU time')
  header = ('    B    I   n | jax  wall       cpu'
            + (' | torch wall       cpu | ratio wall    cpu' if with_torch else ''))
  print(header)
  for point in POINTS:
    print(row(point, measure(point, args.reps, torch_device)), flush=True)
  if args.no_scaling:
    return
  for axis, points in SCALING.items():
    print(f'\ngrowth with {axis} (others at B=1024, I=16, n=3)')
    print(header)
    for point in points:
      print(row(point, measure(point, args.reps, torch_device)), flush=True)


if __name__ == '__main__':
  main()
