"""Evaluation of circle-valued (unit-vector) labels: metrics and saved outputs."""

import dataclasses

import numpy as np

from propel_jax import directional
from propel_jax.data.builders import symmetric_shapes
from propel_jax.training import evaluation


@dataclasses.dataclass(frozen=True)
class _Info:
  labels = symmetric_shapes.LABEL_SPEC


def _outputs(n=5, k=3):
  rng = np.random.default_rng(0)
  angles = rng.uniform(0, 2 * np.pi, n)
  equivalents = angles[:, None] + 2 * np.pi * np.arange(k) / k
  vec = lambda a: np.stack([np.cos(a), np.sin(a)], -1).astype(np.float32)
  mixture = directional.VonMisesFisherMixture(
      vec(equivalents), np.full((n, k), 400.0, np.float32), np.zeros((n, k), np.float32))
  return evaluation.Outputs(
      loss=np.ones(n, np.float32), predictions={'mode': vec(angles + 0.1)}, mixture=mixture,
      label=vec(angles), equivalent_labels=vec(equivalents),
      images=np.zeros((2, 4, 4, 1), np.float32))


def test_circle_metrics(tmp_path):
  outputs = _outputs()
  metrics = evaluation.compute_metrics(outputs, _Info())
  np.testing.assert_allclose(metrics['angular_error/mode'], np.rad2deg(0.1), rtol=1e-4)
  np.testing.assert_allclose(metrics['median_angular_error/mode'], np.rad2deg(0.1), rtol=1e-4)
  assert metrics['acc15/mode'] == 1.0 and metrics['acc30/mode'] == 1.0
  assert metrics['mode_recall_all'] == 1.0
  # Three equal modes, one on each equivalent, per radian of arc: e^κ / (3 · 2π I0(κ)),
  # the same at every equivalent.
  expected = -np.log(3 * 2 * np.pi * np.i0(400.0) * np.exp(-400.0))
  np.testing.assert_allclose(metrics['log_likelihood'], expected, rtol=1e-4)
  np.testing.assert_allclose(metrics['log_likelihood_all_equivalents'], expected, rtol=1e-4)
  assert 0 < metrics['spread'] < 5
  assert metrics['num_examples'] == 5
  errors = evaluation.per_example_errors(outputs, _Info())
  np.testing.assert_allclose(errors['mode'], np.rad2deg(0.1), rtol=1e-4)
  # The vMF mixture survives a save and load.
  path = str(tmp_path / 'outputs.npz')
  outputs.save(path)
  loaded = evaluation.Outputs.load(path)
  assert isinstance(loaded.mixture, directional.VonMisesFisherMixture)
  np.testing.assert_array_equal(loaded.mixture.concentrations, outputs.mixture.concentrations)
