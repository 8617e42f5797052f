"""Side by side with the official PyTorch package torchpropel 0.0.3, without PyTorch.

torchpropel's outputs on fixed problems are recorded in
tests/data/torchpropel_reference.npz (inputs, losses, gradients) and
tests/data/torchpropel_reference.json (scalar facts, versions). To regenerate
them (needs torch and torchpropel: `pip install -e '.[bench]'`):

    python benchmarks/torchpropel_reference.py

What these tests hold to (docs/loss.md quotes them):
- at n = 1 our loss and its gradients equal torchpropel's × ln 10 (it uses log10);
- for n > 1 torchpropel adds the ground truth's self-overlap H(P_gt) of n = 1,
  (4π)^(-1/2)/s instead of (4π)^(-n/2)/sⁿ. A float64 NumPy model of the paper's
  formula with that one substitution reproduces its recorded values and
  gradients, and ours differs from them;
- the consequences: −0.124 at a perfect prediction (n = 3, σ = 0.2), a minimum
  over σ away from σ_gt, inf losses and NaN gradients for far targets in
  float32, a crash for I = 1, and reduction='none' shaped [1, B].
"""

import json
import math
import os

import jax
import numpy as np
import pytest

from propel_jax import losses

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
NPZ = os.path.join(DATA_DIR, 'torchpropel_reference.npz')
JSON = os.path.join(DATA_DIR, 'torchpropel_reference.json')
LN10 = math.log(10)
RANDOM_CASES = ['n1_i2', 'n1_i3', 'n1_i8', 'n3_i3']


@pytest.fixture(scope='module')
def ref():
  with np.load(NPZ) as data:
    return {key: data[key] for key in data.files}


@pytest.fixture(scope='module')
def facts():
  with open(JSON) as f:
    return json.load(f)


# The paper's formula in float64 NumPy, written from the maths (DESIGN.md §1).

def log_overlap(mean_a, var_a, mean_b, var_b):
  """log ∫ N(x; μ_a, diag v_a) N(x; μ_b, diag v_b) dx, summed over the last axis."""
  var = var_a + var_b
  return -0.5 * np.sum(np.log(2 * np.pi * var) + (mean_a - mean_b) ** 2 / var, -1)


def self_overlap_of_gt(target_scale, n):
  """H(P_gt) = ∫ N(x; y, s² I_n)² dx = (4π)^(-n/2) s^(-n)."""
  return (4 * np.pi) ** (-n / 2) * target_scale ** -n


def overlap_terms(means, scales, targets, target_scale):
  """T1 = 2 Σ_i w_i G(gt, i) and M = ∫P_m² = Σ_ij w_i w_j G(i, j), per example."""
  means, var = np.asarray(means, np.float64), np.asarray(scales, np.float64) ** 2
  targets = np.asarray(targets, np.float64)
  weight = 1.0 / means.shape[-2]
  cross = log_overlap(targets[..., None, :], np.full_like(targets[..., None, :],
                                                          target_scale ** 2),
                      means, var)
  pairs = log_overlap(means[..., :, None, :], var[..., :, None, :],
                      means[..., None, :, :], var[..., None, :, :])
  return (2 * weight * np.exp(cross).sum(-1),
          weight ** 2 * np.exp(pairs).sum((-2, -1)))


def paper_propel(means, scales, targets, target_scale):
  """-ln[2∫P_gt P_m / ∫(P_gt² + P_m²)]: the paper's loss, natural log."""
  t1, m = overlap_terms(means, scales, targets, target_scale)
  n = np.shape(targets)[-1]
  return np.log(self_overlap_of_gt(target_scale, n) + m) - np.log(t1)


def torchpropel_formula(means, scales, targets, target_scale):
  """What torchpropel computes: log10, and H(P_gt) taken at n = 1."""
  t1, m = overlap_terms(means, scales, targets, target_scale)
  return np.log10(self_overlap_of_gt(target_scale, 1) + m) - np.log10(t1)


def numerical_gradients(fn, means, scales, targets, target_scale, step=1e-6):
  """Central differences of a per-example loss, summed over the batch."""
  grads = []
  for x in (means, scales):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape[1:]):
      shift = np.zeros_like(x)
      shift[(slice(None),) + index] = step
      args = [means, scales]
      args[len(grads)] = x + shift
      up = fn(*args, targets, target_scale)
      args[len(grads)] = x - shift
      grad[(slice(None),) + index] = (up - fn(*args, targets, target_scale)) / (2 * step)
    grads.append(grad)
  return grads


def ours(means, scales, targets, target_scale):
  """Our per-example loss and the gradients of its sum, as float64 NumPy."""
  means, scales, targets = (np.asarray(a, np.float32) for a in (means, scales, targets))
  def total(m, s):
    loss = losses.propel_loss(m, s, targets, target_scale=target_scale)
    return loss.sum(), loss
  (_, loss), (grad_means, grad_scales) = jax.value_and_grad(
      total, argnums=(0, 1), has_aux=True)(means, scales)
  return tuple(np.asarray(a, np.float64) for a in (loss, grad_means, grad_scales))


def case(ref, name):
  return tuple(ref[f'{name}/{key}'] for key in ('means', 'scales', 'targets'))


# The reference files.

def test_reference_files_are_torchpropel_003_and_small(facts):
  assert facts['versions']['torchpropel'] == '0.0.3'
  assert facts['target_scale'] == 0.2
  assert os.path.getsize(NPZ) + os.path.getsize(JSON) < 200_000


def test_numpy_model_reproduces_the_recorded_torchpropel_values(ref, facts):
  """Our reading of torchpropel's formula is what it computes (float64, all cases)."""
  s = facts['torchpropel_target_scale']  # float32(0.2): it keeps σ_gt in float32
  assert s == float(np.float32(facts['target_scale']))
  for name in RANDOM_CASES:
    np.testing.assert_allclose(torchpropel_formula(*case(ref, name), s),
                               ref[f'{name}/loss'][0], rtol=1e-12, err_msg=name)


# n = 1: the same loss, in log10.

@pytest.mark.parametrize('name', ['n1_i2', 'n1_i3', 'n1_i8'])
def test_equals_torchpropel_times_ln10_at_n1(ref, facts, name):
  loss, grad_means, grad_scales = ours(*case(ref, name), facts['target_scale'])
  np.testing.assert_allclose(loss, ref[f'{name}/loss'][0] * LN10, rtol=2e-5)
  for ours_grad, key in [(grad_means, 'grad_means'), (grad_scales, 'grad_scales')]:
    theirs = ref[f'{name}/{key}'] * LN10
    np.testing.assert_allclose(ours_grad, theirs, rtol=1e-4,
                               atol=1e-5 * np.abs(theirs).max(), err_msg=key)


def test_reduction_none_shape_is_1_by_batch(ref, facts):
  assert facts['reduction_none_shape'] == [1, 16]
  assert ref['n1_i2/loss'].shape == (1, 16)
  assert ours(*case(ref, 'n1_i2'), facts['target_scale'])[0].shape == (16,)


# n > 1: torchpropel's H(P_gt) is the one-dimensional one.

def test_n3_torchpropel_is_the_paper_formula_with_h_gt_of_n1(ref, facts):
  s, s_tp = facts['target_scale'], facts['torchpropel_target_scale']
  problem = case(ref, 'n3_i3')
  theirs = ref['n3_i3/loss'][0] * LN10
  # The substitution accounts for the whole difference, values and gradients.
  np.testing.assert_allclose(torchpropel_formula(*problem, s_tp) * LN10, theirs,
                             rtol=1e-12)
  expected = numerical_gradients(torchpropel_formula, *problem, s_tp)
  for got, want in zip((ref['n3_i3/grad_means'], ref['n3_i3/grad_scales']), expected):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
  # Ours is the paper's formula, and is not theirs.
  loss, grad_means, grad_scales = ours(*problem, s)
  np.testing.assert_allclose(loss, paper_propel(*problem, s), rtol=2e-5)
  expected = numerical_gradients(paper_propel, *problem, s)
  for got, want in zip((grad_means, grad_scales), expected):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
  assert np.abs(loss - theirs).max() > 0.1
  assert np.abs(grad_scales - ref['n3_i3/grad_scales'] * LN10).max() > 0.1


def test_perfect_prediction_at_n3_is_negative_for_torchpropel_zero_for_us(ref, facts):
  s, s_tp = facts['target_scale'], facts['torchpropel_target_scale']
  problem = (ref['perfect/means'], ref['perfect/scales'], ref['perfect/targets'])
  theirs = float(ref['perfect/loss_mean'])
  assert theirs == facts['perfect_n3_loss_mean']
  np.testing.assert_allclose(theirs, -0.124, atol=5e-4)
  np.testing.assert_allclose(torchpropel_formula(*problem, s_tp).mean(), theirs,
                             rtol=1e-12)
  # P_m = P_gt, so ∫P_m² = ∫P_gt P_m = H_3: theirs is log10((H_1 + H_3) / (2 H_3))
  # (to float32(0.2) ≠ 0.2 in its σ_gt).
  h1, h3 = self_overlap_of_gt(s, 1), self_overlap_of_gt(s, 3)
  np.testing.assert_allclose(theirs, math.log10((h1 + h3) / (2 * h3)), rtol=1e-6)
  np.testing.assert_allclose(ours(*problem, s)[0], 0.0, atol=1e-6)


def test_minimum_over_sigma_is_off_target_for_torchpropel_only(ref, facts):
  s, s_tp = facts['target_scale'], facts['torchpropel_target_scale']
  grid, theirs = ref['sigma_grid/sigmas'], ref['sigma_grid/loss']
  means, targets = ref['perfect/means'][:1], ref['perfect/targets'][:1]
  model = [torchpropel_formula(means, np.full((1, 2, 3), g), targets, s_tp)[0]
           for g in grid]
  np.testing.assert_allclose(model, theirs, rtol=1e-12)
  assert grid[np.argmin(theirs)] == pytest.approx(facts['sigma_grid_argmin'])
  assert 0.22 < grid[np.argmin(theirs)] < 0.25
  mine = [ours(means, np.full((1, 2, 3), g), targets, s)[0][0] for g in grid]
  assert grid[np.argmin(mine)] == pytest.approx(s)


# Far targets (float32): torchpropel overflows, ours grows like a squared error.

@pytest.mark.parametrize('name, first_inf, first_nan', [('far_n1', 21, 20),
                                                       ('far_n3', 12, 11)])
def test_far_targets_inf_for_torchpropel_finite_for_us(ref, facts, name, first_inf,
                                                       first_nan):
  s = facts['target_scale']
  steps, theirs = ref[f'{name}/steps'], ref[f'{name}/loss']
  their_grads = np.concatenate([ref[f'{name}/grad_means'].reshape(len(steps), -1),
                                ref[f'{name}/grad_scales'].reshape(len(steps), -1)], 1)
  assert steps[np.isinf(theirs)][0] == first_inf == facts[f'{name}_first_inf_loss_step']
  assert np.isinf(theirs[first_inf:]).all() and np.isfinite(theirs[:first_inf]).all()
  assert (steps[np.isnan(their_grads).any(1)][0] == first_nan
          == facts[f'{name}_first_nan_grad_step'])

  problem = case(ref, name)
  loss, grad_means, _ = ours(*problem, s)
  n = problem[2].shape[-1]
  # Two equal components N(0, s²) and P_gt = N(d, s²) per axis: L = n d² / (4 s²)
  # exactly, and Σ_i ∂L/∂μ_i = -d / (2 s²) per axis.
  distance = steps * s
  np.testing.assert_allclose(loss, n * distance ** 2 / (4 * s ** 2), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(grad_means.sum(1),
                             np.repeat((-distance / (2 * s ** 2))[:, None], n, 1),
                             rtol=1e-5, atol=1e-5)
  if n == 1:  # Where theirs is still accurate, it is ours in log10.
    near = steps <= 18
    np.testing.assert_allclose(loss[near], theirs[near] * LN10, rtol=1e-5, atol=1e-6)


# I = 1.

def test_one_component_crashes_torchpropel_works_here(ref, facts):
  assert facts['i1_raises']
  assert facts['i1_error'].startswith('RuntimeError: index_select')
  means, scales, targets = case(ref, 'n3_i3')
  problem = (means[:, :1], scales[:, :1], targets)
  np.testing.assert_allclose(ours(*problem, facts['target_scale'])[0],
                             paper_propel(*problem, facts['target_scale']), rtol=2e-5)
