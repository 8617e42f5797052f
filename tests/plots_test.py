"""The evaluation plots draw for every target count, with and without a density."""

import os

import numpy as np
import pytest
from scipy import stats

from evaluation_test import make_info
from evaluation_test import make_outputs
from experiments import plots
from propel_jax import mixtures


@pytest.mark.parametrize('n, mixture, full', [(1, True, False), (2, False, False),
                                              (3, True, False), (2, True, True),
                                              (3, True, True)])
def test_plots_for_any_target_count(tmp_path, n, mixture, full):
  info = make_info(n)
  outputs = make_outputs(n, mixture=mixture, full=full)
  plots.write_all(outputs, info, str(tmp_path), num_examples=1)
  assert os.path.getsize(tmp_path / 'predicted_vs_true.png') > 1000
  assert os.path.getsize(tmp_path / 'density_0.png') > 1000


def test_density_grid_is_the_marginal_density():
  means = np.array([[0.0, 10.0, 5.0], [20.0, -10.0, 5.0]])
  scales = np.array([[2.0, 3.0, 1.0], [4.0, 1.0, 1.0]])
  mixture = mixtures.Mixture(means, scales, np.log([0.25, 0.75]))
  low, high = (-60.0, -60.0, -60.0), (60.0, 60.0, 60.0)
  density = plots.density_grid(mixture, (0, 1), low, high, points=120)
  assert density.shape == (120, 120)
  # Rows follow axis 1, columns axis 0: the peak is the second component's
  # (weight 3/4) at x = 20, y = -10, on cell centres -59.5, -58.5, ...
  centres = -59.5 + np.arange(120)
  row, col = np.unravel_index(np.argmax(density), density.shape)
  assert abs(centres[col] - 20) <= 1 and abs(centres[row] + 10) <= 1
  # It integrates to ~1 over the grid (cell area 1).
  assert density.sum() == pytest.approx(1.0, abs=2e-3)
  one_axis = plots.density_grid(mixture, (2,), low, high, points=120)
  assert one_axis.sum() == pytest.approx(1.0, abs=1e-3)


def test_write_for_run_logs_the_plots_to_tensorboard(tmp_path):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from propel_jax.training import evaluation  # pylint: disable=g-import-not-at-top
  make_outputs(2, mixture=True).save(tmp_path / evaluation.OUTPUTS_FILE)
  config = ml_collections.ConfigDict({'test_split': 'test', 'num_plot_examples': 1,
                                      'num_train_steps': 7})
  directory = plots.write_for_run(str(tmp_path), config, make_info(2))
  assert sorted(os.listdir(directory)) == ['density_0.png', 'predicted_vs_true.png']
  events = event_accumulator.EventAccumulator(str(tmp_path / 'tensorboard' / 'plots'))
  events.Reload()
  assert sorted(events.Tags()['images']) == ['plots/density_0', 'plots/predicted_vs_true']
  image, = events.Images('plots/density_0')
  assert image.step == 7 and image.width > 100


def test_density_grid_of_tilted_components_is_their_marginal_density():
  """Full covariance: the density on a pair of axes from the 2×2 sub-covariances."""
  means = np.array([[0.0, 10.0, 5.0], [20.0, -10.0, 5.0]])
  factors = np.array([[[6.0, 0.0, 0.0], [5.0, 4.0, 0.0], [1.0, -2.0, 3.0]],
                      [[4.0, 0.0, 0.0], [-3.0, 3.0, 0.0], [0.0, 1.0, 2.0]]])
  weights = np.array([0.25, 0.75])
  mixture = mixtures.Mixture(means, factors, np.log(weights))
  low, high = (-60.0, -60.0, -60.0), (60.0, 60.0, 60.0)
  density = plots.density_grid(mixture, (2, 0), low, high, points=40)
  cov = factors @ np.swapaxes(factors, -1, -2)
  centres = -58.5 + 3.0 * np.arange(40)
  x, y = np.meshgrid(centres, centres)  # rows along axis 0 (y), columns along axis 2 (x)
  pair = np.stack([x, y], -1)
  expected = sum(w * stats.multivariate_normal.pdf(pair, m[[2, 0]], c[np.ix_([2, 0], [2, 0])])
                 for w, m, c in zip(weights, means, cov))
  np.testing.assert_allclose(density, expected, rtol=1e-4, atol=1e-9)


def test_component_ellipses_follow_the_covariance():
  # Σ = [[5, 3], [3, 5]]: eigenvalues 8 (along (1, 1)) and 2.
  factor = np.linalg.cholesky(np.array([[5.0, 3.0], [3.0, 5.0]]))
  mixture = mixtures.Mixture(np.array([[1.0, 2.0], [0.0, 0.0]]),
                             np.stack([factor, np.diag([3.0, 1.0])]), np.zeros(2))
  (centre, width, height, angle), (_, width2, height2, angle2) = plots.component_ellipses(
      mixture, (0, 1))
  np.testing.assert_allclose(centre, [1.0, 2.0])
  np.testing.assert_allclose([width, height], [2 * np.sqrt(8.0), 2 * np.sqrt(2.0)], rtol=1e-5)
  assert angle % 180 == pytest.approx(45.0, abs=1e-3)
  # An axis-aligned component: the major axis along x.
  np.testing.assert_allclose([width2, height2], [6.0, 2.0], rtol=1e-5)
  assert angle2 % 180 == pytest.approx(0.0, abs=1e-3)
