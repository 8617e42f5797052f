"""Plots of an evaluation whose labels are rotations (unit quaternions).

A rotation R = Rz(φ) Ry(θ) Rz(ψ) is drawn as the point where it sends the
canonical axis e_z, R e_z = (longitude φ, latitude 90° − θ), on a Mollweide
(equal-area) map of the sphere, coloured by the remaining angle ψ about that
axis (a cyclic colour map). A density is drawn as points: a grid
distribution's cells with marker area proportional to their probability
(full size at FULL_MARKER_PROBABILITY or more; the cells holding the top 99%
of the mass, the most probable drawn last), a von Mises-Fisher mixture's
draws (equal weights). The equivalent labels are open circles in their ψ colour
(concentric where several share an axis, as a cube's four rotations about
a face normal do), the label a black cross, the decoded rotations
black-edged dots. (The idea of Implicit-PDF's figures, drawn from these coordinates.)

`write_all` draws into a directory:

    predicted_vs_true.png  per decoder, the histogram of the geodesic error
                           to the nearest equivalent label (degrees);
    density_<i>.png        the image beside its Mollweide density plot.

`draw_mollweide` draws one example's panel (the comparison reuses it).
"""

import math
import os
from typing import Any

import jax
from matplotlib import colormaps
from matplotlib import figure
import numpy as np

from propel_jax import directional
from propel_jax import rotation_grid
from propel_jax import scoring_directional
from propel_jax.training import evaluation

NUM_DRAWS = 500
# A grid distribution's cells drawn: the most probable, holding this share.
MASS_SHOWN = 0.99
# A cell with this probability or more gets the largest marker; the area
# scales with probability, so a uniform grid (1/4,608 per cell) is specks.
FULL_MARKER_PROBABILITY = 0.05
_COLOURS = colormaps['hsv']


def hopf_coordinates(quaternions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Quaternions (w, x, y, z) [..., 4] -> (longitude, latitude, ψ) in radians.

  Longitude in (−π, π] and latitude in [−π/2, π/2] of R e_z; ψ in [0, 2π) the
  angle about it in R = Rz(φ) Ry(θ) Rz(ψ). From the closed form in
  `rotation_grid`: atan2(z, w) = (φ + ψ)/2 and atan2(x, y) = (ψ − φ)/2;
  q and −q give the same values.
  """
  q = np.asarray(quaternions, np.float64)
  q = q / np.linalg.norm(q, axis=-1, keepdims=True)
  w, x, y, z = np.moveaxis(q, -1, 0)
  axis = np.stack([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)], -1)
  longitude = np.arctan2(axis[..., 1], axis[..., 0])
  latitude = np.arcsin(np.clip(axis[..., 2], -1.0, 1.0))
  psi = np.mod(np.arctan2(z, w) + np.arctan2(x, y), 2 * math.pi)
  return longitude, latitude, psi


def density_points(distribution: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
  """Example `index`'s density as points: (quaternions [P, 4], weights [P]).

  A `rotation_grid.GridDistribution`: its most probable cells holding
  MASS_SHOWN of the probability (most probable first), weighted by their
  probability; a `directional.VonMisesFisherMixture`: NUM_DRAWS draws
  (antipodal), weight 1.
  """
  example = type(distribution)(*(None if field is None else np.asarray(field)[index]
                                 for field in distribution))
  if isinstance(example, rotation_grid.GridDistribution):
    probability = np.exp(np.asarray(example.log_probs(), np.float64))
    order = np.argsort(-probability)
    count = int(np.searchsorted(np.cumsum(probability[order]), MASS_SHOWN)) + 1
    keep = order[:count]
    return rotation_grid.grid(example.level)[keep], probability[keep]
  draws = example.sample(jax.random.key(0), (NUM_DRAWS,), antipodal=True)
  return np.asarray(draws), np.ones(NUM_DRAWS)


def _ring(quaternions):
  """[P] how many earlier rows send e_z to the same point (the circle's ring index)."""
  longitude, latitude, _ = hopf_coordinates(quaternions)
  spots = np.round(np.stack([np.cos(latitude) * np.cos(longitude),
                             np.cos(latitude) * np.sin(longitude), np.sin(latitude)], -1), 3)
  return np.array([np.sum(np.all(spots[:i] == spots[i], axis=-1)) for i in range(len(spots))])


def _scatter(ax, quaternions, **kwargs):
  longitude, latitude, psi = hopf_coordinates(quaternions)
  colour = kwargs.pop('colour', None)
  colours = _COLOURS(psi / (2 * math.pi)) if colour is None else colour
  key = 'edgecolors' if kwargs.get('facecolors') == 'none' else 'c'
  ax.scatter(longitude, latitude, **{key: colours}, **kwargs)


def draw_mollweide(ax, outputs: evaluation.Outputs, index: int, *,
                   legend: bool = False) -> None:
  """One example's density, labels and predictions on Mollweide axes `ax`."""
  if outputs.mixture is not None:
    points, weights = density_points(outputs.mixture, index)
    if isinstance(outputs.mixture, directional.VonMisesFisherMixture):
      _scatter(ax, points, s=4.0, alpha=0.35, linewidths=0, label='density')
    else:  # The most probable cells on top.
      size = 80.0 * np.minimum(weights / FULL_MARKER_PROBABILITY, 1.0)
      _scatter(ax, points[::-1], s=size[::-1], alpha=0.8, linewidths=0, label='density')
  equivalents = np.unique(np.round(outputs.equivalent_labels[index], 5), axis=0)
  _scatter(ax, equivalents, s=60.0 * (1.0 + 0.7 * _ring(equivalents))**2, facecolors='none',
           linewidths=1.2, label='equivalent labels')
  _scatter(ax, outputs.label[index][None], s=40, marker='x', colour='black', label='label')
  for decoder, prediction in sorted(outputs.predictions.items()):
    _scatter(ax, prediction[index][None], s=25, edgecolors='black', linewidths=0.8,
             label=decoder)
  ax.grid(alpha=0.3)
  ax.tick_params(labelsize=5)
  if legend:
    ax.legend(fontsize=6, loc='upper left', bbox_to_anchor=(1.02, 1.0))


def plot_density(outputs: evaluation.Outputs, index: int, path: str) -> None:
  """The image of example `index` beside its Mollweide density plot."""
  fig = figure.Figure(figsize=(10, 3.6))
  image_ax = fig.add_axes((0.01, 0.1, 0.22, 0.8))
  image_ax.imshow(np.squeeze(outputs.images[index]), cmap='gray', vmin=0.0, vmax=1.0)
  image_ax.set_axis_off()
  image_ax.set_title(f'example {index}')
  ax = fig.add_axes((0.26, 0.1, 0.55, 0.8), projection='mollweide')
  draw_mollweide(ax, outputs, index, legend=True)
  ax.set_title('R e_z on the sphere; colour: angle ψ about it', fontsize=8)
  fig.savefig(path, dpi=80)


def plot_errors(outputs: evaluation.Outputs, path: str) -> None:
  """Histograms of the geodesic error to the nearest equivalent, one per decoder."""
  decoders = sorted(outputs.predictions)
  fig = figure.Figure(figsize=(3.4 * len(decoders), 3.0))
  axes = fig.subplots(1, len(decoders), squeeze=False)[0]
  for ax, decoder in zip(axes, decoders):
    errors = np.asarray(scoring_directional.rotation_errors(outputs.predictions[decoder],
                                                            outputs.equivalent_labels))
    ax.hist(errors, bins=np.linspace(0, 180, 37))
    ax.set(xlabel=f'{decoder}: error to the nearest equivalent (°)', ylabel='test images')
  fig.tight_layout()
  fig.savefig(path, dpi=80)


def write_all(outputs: evaluation.Outputs, directory: str, *, num_examples: int) -> None:
  """Writes every plot of a rotation-valued evaluation into `directory`."""
  os.makedirs(directory, exist_ok=True)
  plot_errors(outputs, os.path.join(directory, 'predicted_vs_true.png'))
  for index in range(min(num_examples, len(outputs.images))):
    plot_density(outputs, index, os.path.join(directory, f'density_{index}.png'))
