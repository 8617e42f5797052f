"""Side by side with the official PyTorch package torchpropel 0.0.3 (optional).

At n = 1 we equal torchpropel × ln 10 (it uses log10). For n > 1 it computes
the ground truth's self-overlap H(P_gt) as if n were 1; these tests measure
that difference (and the other documented defects) so the README's numbers
stay true.
"""

import math

import numpy as np
import pytest

from propel_jax import losses

torch = pytest.importorskip('torch')
torchpropel = pytest.importorskip('torchpropel')


def torch_propel(means, scales, targets, target_scale, reduction='none'):
  """torchpropel's PROPEL module; it takes standard deviations and squares them."""
  output = torch.tensor(np.concatenate([means, scales], axis=-1), dtype=torch.float64)
  loss = torchpropel.PROPEL(sigma=target_scale, reduction=reduction).double()
  return loss(output, torch.tensor(targets, dtype=torch.float64)).detach().numpy()


def random_problem(rng, batch, num, dim):
  return (rng.normal(size=(batch, num, dim)), rng.uniform(0.1, 1.0, (batch, num, dim)),
          rng.normal(size=(batch, dim)))


@pytest.mark.parametrize('num', [2, 3, 8])
def test_equals_torchpropel_times_ln10_at_n1(num):
  means, scales, targets = random_problem(np.random.default_rng(num), 16, num, 1)
  ours = losses.propel_loss(means, scales, targets, target_scale=0.2)
  theirs = torch_propel(means, scales, targets, 0.2)
  assert theirs.shape == (1, 16)  # reduction='none' keeps a leading 1
  np.testing.assert_allclose(ours, theirs[0] * math.log(10), rtol=2e-5)


def test_n_above_1_differs_only_by_the_ground_truth_self_term():
  """torchpropel × ln 10 = our formula with H(P_gt) = (4π)^(-1/2) / s."""
  rng = np.random.default_rng(0)
  means, scales, targets = random_problem(rng, 16, 3, 3)
  s = 0.2
  theirs = torch_propel(means, scales, targets, s)[0] * math.log(10)
  ours = np.asarray(losses.propel_loss(means, scales, targets, target_scale=s),
                    np.float64)
  assert np.max(np.abs(ours - theirs)) > 0.1
  # L = log(H_gt + M) - log T1 with M = ∫P_m²; so exp(L) T1 - H_gt = M for both.
  # Recover M from ours, then rebuild theirs with the n = 1 H(P_gt).
  n = 3
  h_true = (4 * math.pi) ** (-n / 2) * s ** -n
  h_theirs = (4 * math.pi) ** -0.5 / s
  log_t1 = np.array([np.log(2 * np.mean([np.prod(
      np.exp(-0.5 * (targets[b] - means[b, i]) ** 2 / (scales[b, i] ** 2 + s ** 2))
      / np.sqrt(2 * np.pi * (scales[b, i] ** 2 + s ** 2))) for i in range(3)]))
                     for b in range(16)])
  m = np.exp(ours + log_t1) - h_true
  np.testing.assert_allclose(np.log(h_theirs + m) - log_t1, theirs, rtol=1e-4)


def test_torchpropel_defects_quoted_in_the_readme():
  # Perfect prediction, n = 3, σ = 0.2: theirs is -0.124 (log10 units), ours 0.
  targets = np.zeros((4, 3))
  means, scales = np.zeros((4, 2, 3)), np.full((4, 2, 3), 0.2)
  np.testing.assert_allclose(torch_propel(means, scales, targets, 0.2, 'mean'),
                             -0.124, atol=1e-3)
  np.testing.assert_allclose(losses.propel_loss(means, scales, targets,
                                                target_scale=0.2), 0.0, atol=1e-6)
  # Its minimum over σ is not at σ = 0.2 (grid of σ, n = 3).
  grid = np.linspace(0.1, 0.4, 31)
  theirs = [torch_propel(means[:1], np.full((1, 2, 3), g), targets[:1], 0.2)[0, 0]
            for g in grid]
  ours = [losses.propel_loss(means[:1], np.full((1, 2, 3), g), targets[:1],
                             target_scale=0.2)[0] for g in grid]
  assert abs(grid[np.argmin(ours)] - 0.2) < 1e-9
  assert grid[np.argmin(theirs)] > 0.22
  # I = 1 crashes.
  with pytest.raises(RuntimeError):
    torch_propel(means[:, :1], scales[:, :1], targets, 0.2)


def test_far_target_torchpropel_overflows_ours_finite():
  """n = 1, σ = 0.2 everywhere, target 21 σ away, in float32."""
  means, scales = np.zeros((1, 2, 1), np.float32), np.full((1, 2, 1), 0.2, np.float32)
  target = np.full((1, 1), 21 * 0.2, np.float32)
  output = torch.tensor(np.concatenate([means, scales], -1), requires_grad=True)
  theirs = torchpropel.PROPEL(sigma=0.2)(output, torch.tensor(target))
  theirs.backward()
  assert np.isinf(theirs.item()) and np.isnan(output.grad.numpy()).all()
  ours = losses.propel_loss(means, scales, target, target_scale=0.2)
  # P_m = N(0, 0.04) = P_gt shifted by 4.2, so L = 4.2² / (2 (0.04 + 0.04)).
  exact = 4.2 ** 2 / 0.16
  np.testing.assert_allclose(ours, [exact], rtol=1e-5)
