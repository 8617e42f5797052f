"""Hand-written mutation testing: would the tests notice a plausible bug?

Each mutant below replaces one exact snippet of a module with a small semantic
change (a sign, a constant, a dropped term, the wrong equivalent label), in a
copy of the repository, and runs that module's own tests (and doctests),
stopping at the first failure. A mutant that survives points at a missing
assertion: kill it with a test, or mark it equivalent here (with the reason)
when no test can tell it apart.

    python tools/mutate.py                   # the working tree, 2 mutants at a time
    python tools/mutate.py --rev main        # a commit (before/after comparisons)
    python tools/mutate.py --only scoring,input_pipeline --jobs 1
    python tools/mutate.py --only scoring --match CRPS
    python tools/mutate.py --list            # the mutants, and whether each applies

`make mutate` runs the first. Not part of `make test`: a pass runs the fast
tests of ten modules about 110 times (more than an hour on 2 cores). Before
the mutants, each module's tests run once unmutated; a module whose tests fail
unmutated is reported and skipped. A mutant whose snippet is missing (the code
changed) is reported as not applicable: update its snippet. Exit status 1 if
any non-equivalent mutant survives.
"""

import argparse
import concurrent.futures
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each module's own tests; the core modules' doctests count too (as in `make test`).
TESTS = {
    'losses': ['tests/losses_test.py', '--doctest-modules', 'propel_jax/losses.py'],
    'mixtures': ['tests/mixtures_test.py', '--doctest-modules', 'propel_jax/mixtures.py'],
    'scoring': ['tests/scoring_test.py', '--doctest-modules', 'propel_jax/scoring.py'],
    'directional': ['tests/directional_test.py', '--doctest-modules',
                    'propel_jax/directional.py'],
    'rotation_grid': ['tests/rotation_grid_test.py', '--doctest-modules',
                      'propel_jax/rotation_grid.py'],
    'scoring_directional': ['tests/scoring_directional_test.py', '--doctest-modules',
                            'propel_jax/scoring_directional.py'],
    'input_pipeline': ['tests/input_pipeline_test.py'],
    'checkpointing': ['tests/checkpoint_test.py'],
    'image_folder': ['tests/image_folder_test.py'],
    'workdir_lock': ['tests/workdir_lock_test.py'],
}
# The files a module's mutants may edit: a public module and the private ones
# behind it (a snippet must occur exactly once among them).
FILES = {
    'losses': ['propel_jax/losses.py', 'propel_jax/_diagonal.py',
               'propel_jax/_full_covariance.py', 'propel_jax/_linalg.py',
               'propel_jax/_common.py', 'propel_jax/_shapes.py'],
    'mixtures': ['propel_jax/mixtures.py', 'propel_jax/_common.py',
                 'propel_jax/_linalg.py'],
    'scoring': 'propel_jax/scoring.py',
    'directional': ['propel_jax/directional.py', 'propel_jax/_von_mises_fisher.py',
                    'propel_jax/rotations.py'],
    'rotation_grid': ['propel_jax/rotation_grid.py', 'propel_jax/rotations.py'],
    'scoring_directional': ['propel_jax/scoring_directional.py', 'propel_jax/rotations.py'],
    'input_pipeline': 'propel_jax/data/input_pipeline.py',
    'checkpointing': 'propel_jax/training/checkpointing.py',
    'image_folder': 'propel_jax/data/builders/image_folder.py',
    'workdir_lock': 'propel_jax/training/workdir_lock.py',
}


@dataclasses.dataclass(frozen=True)
class Mutant:
  """`old` (exactly once in the module's file) replaced by `new`.

  `equivalent`: why no test can kill it (it changes no observable result);
  such a mutant is run and shown, but not counted.
  """
  module: str
  name: str
  old: str
  new: str
  equivalent: str = ''


M = Mutant
MUTANTS = [
    # losses: the closed-form overlaps, their custom gradients, the baselines.
    M('losses', 'cross overlap: |Δμ| for Δμ²', 'jnp.log(v) + d * d * inv',
      'jnp.log(v) + jnp.abs(d) * inv'),
    M('losses', 'self overlap spread: 1/√v for 1/√(2v)',
      'flat(lax.rsqrt(2.0 * variances))', 'flat(lax.rsqrt(variances))'),
    M('losses', 'self overlap: ½ for ¼ log 4π',
      '- 0.25 * num_dims * _common.LOG_4PI\n           - 0.25 * _sum_over_dims',
      '- 0.5 * num_dims * _common.LOG_4PI\n           - 0.25 * _sum_over_dims'),
    M('losses', 'ρ: exp(-d) for exp(-d/2)', 'rho = lax.rsqrt(spread) * jnp.exp(-0.5 * sq_dist)',
      'rho = lax.rsqrt(spread) * jnp.exp(-sq_dist)'),
    M('losses', 'self overlap: shift once',
      'return 2.0 * shift + jnp.log(total), terms / total, rows / total\n\n\ndef self_overlap_gradients(',
      'return shift + jnp.log(total), terms / total, rows / total\n\n\ndef self_overlap_gradients('),
    M('losses', 'custom gradient: sign of ∂/∂μ', 'return -scaled_diff, scaled_diff * scaled_diff',
      'return scaled_diff, scaled_diff * scaled_diff'),
    M('losses', 'custom gradient: ∂/∂v not halved',
      'return grad_means, 0.5 * grad_vars, 2.0 * row_terms',
      'return grad_means, grad_vars, 2.0 * row_terms'),
    M('losses', 'cross gradient: q side ∂/∂v not halved',
      'grads[:3] + (-sums[0], 0.5 * sums[1]', 'grads[:3] + (-sums[0], sums[1]'),
    M('losses', 'cross gradient: q side skipped', 'if perturbed(tangents[3:]):',
      'if False:'),
    M('losses', 'cross overlap: log 2π once, not per dimension',
      'log_g = -0.5 * (num_dims * _common.LOG_2PI', 'log_g = -0.5 * (_common.LOG_2PI'),
    M('losses', 'cross shares: not normalised', 'return top + jnp.log(total), shifted / total',
      'return top + jnp.log(total), shifted'),
    M('losses', 'contiguous copy: dimensions reversed',
      "eye = jnp.eye(array.shape[1], dtype=array.dtype)",
      "eye = jnp.eye(array.shape[1], dtype=array.dtype)[::-1]"),
    M('losses', 'distance: no log 2', 'jnp.logaddexp(log_pp, log_qq) - LOG_2 - log_pq',
      'jnp.logaddexp(log_pp, log_qq) - log_pq'),
    M('losses', 'mse: sum over axes', 'return jnp.mean(jnp.square(predictions - targets)',
      'return jnp.sum(jnp.square(predictions - targets)'),
    M('losses', 'l1: squared', 'return jnp.mean(jnp.abs(predictions - targets)',
      'return jnp.mean(jnp.square(predictions - targets)'),
    M('losses', 'per-example target scale not broadcast over n',
      'return width[..., None]', 'return width'),
    # losses, full covariance: the overlaps, their closed-form gradients, the
    # factorisation, the mixed diagonal/full pairs.
    M('losses', 'full overlap: log det S dropped',
      'return -0.5 * (sum(jnp.log(p) for p in pivots) + mahalanobis)',
      'return -0.5 * mahalanobis'),
    M('losses', 'full ρ: spread not halved',
      'spread = spread * (0.5 * pivot * rsqrt_pivots_a[k] * rsqrt_pivots_b[k])',
      'spread = spread * (pivot * rsqrt_pivots_a[k] * rsqrt_pivots_b[k])'),
    M('losses', 'full self overlap: det(Σ)^-1 for det(Σ)^-1/2',
      '+ 0.5 * jnp.sum(jnp.log(rsqrt_pivots), axis=0))',
      '+ jnp.sum(jnp.log(rsqrt_pivots), axis=0))'),
    M('losses', 'full cross overlap: log 2π once, not per dimension',
      'return log_total - 0.5 * num_dims * _common.LOG_2PI, terms',
      'return log_total - 0.5 * _common.LOG_2PI, terms'),
    M('losses', 'full gradient: sign of ∂/∂μ', 'return [-u_k for u_k in u], d_cov',
      'return [u_k for u_k in u], d_cov'),
    M('losses', 'full gradient: off-diagonal entries not doubled',
      'd_cov = [(0.5 if r == c else 1.0) * (u[r] * u[c] - inverse[r, c])',
      'd_cov = [0.5 * (u[r] * u[c] - inverse[r, c])'),
    M('losses', 'full self gradient: pairs counted once',
      'means_t, covs_t, means_t, covs_t)\n  weights = 2.0 * terms',
      'means_t, covs_t, means_t, covs_t)\n  weights = terms'),
    M('losses', 'full cross gradient: q side ∂/∂μ sign',
      'grads = grads[:3] + (-jnp.stack(sums[:num_dims]),',
      'grads = grads[:3] + (jnp.stack(sums[:num_dims]),'),
    M('losses', 'factorisation: Schur complement added',
      'entry[r, c] = entry[r, c] - multipliers[r, k] * entry[c, k]',
      'entry[r, c] = entry[r, c] + multipliers[r, k] * entry[c, k]'),
    M('losses', 'factorisation: Mahalanobis term without 1/D',
      'mahalanobis = sum(y_k * y_k * inv for y_k, inv in zip(y, inverses))',
      'mahalanobis = sum(y_k * y_k for y_k in y)'),
    M('losses', 'factorisation: S⁻¹ off-diagonal seeded with 1/D',
      'value = inverses[r] if r == c else 0.0', 'value = inverses[r]'),
    M('losses', 'looped factorisation (n > 8): Schur update without the pivot',
      'remaining = remaining - pivot * jnp.outer(column, column)',
      'remaining = remaining - jnp.outer(column, column)'),
    M('losses', 'diagonal side of a mixed pair: 1/√(2v) for v',
      'entries = [mixture.variances[r] if r == c else zeros',
      'entries = [mixture.roots[r] if r == c else zeros'),

    # mixtures: densities, moments, modes, sampling, affine maps.
    M('mixtures', 'modes: bandwidth from the largest scale',
      'unit = jnp.min(marginal_scales(means, scales), axis=-2,',
      'unit = jnp.max(marginal_scales(means, scales), axis=-2,'),
    M('mixtures', 'modes: default merge tolerance 0.3', 'merge_tol: float = 1e-2) -> tuple',
      'merge_tol: float = 0.3) -> tuple'),
    M('mixtures', 'component density: + log σ', '  return jnp.sum(jnp.log(scales), axis=-1)',
      '  return -jnp.sum(jnp.log(scales), axis=-1)'),
    M('mixtures', 'default weights: 1, not 1/I',
      'return jnp.full(shape, -math.log(shape[-1]), dtype)',
      'return jnp.full(shape, 0.0, dtype)'),
    M('mixtures', 'mean: unweighted', 'return jnp.sum(weights[..., None] * means, axis=-2)',
      'return jnp.mean(means, axis=-2)'),
    M('mixtures', 'covariance: σ for σ²',
      'return jnp.square(scales)[..., None] * jnp.eye(',
      'return scales[..., None] * jnp.eye('),
    M('mixtures', 'sample: unit noise', 'return pick(means, 1) + pick(scales, 1) * noise',
      'return pick(means, 1) + noise'),
    M('mixtures', 'marginal CDF: divided by σ²',
      'cdf = special.ndtr((x[..., None, :] - means) / marginal_scales(means, scales))',
      'cdf = special.ndtr((x[..., None, :] - means)\n                     / jnp.square(marginal_scales(means, scales)))'),
    M('mixtures', 'modes: precision 1/σ', 'precisions = 1.0 / jnp.square(scales)',
      'precisions = 1.0 / scales'),
    M('mixtures', 'modes: least dense first', 'order = jnp.argsort(-log_density, axis=-1)',
      'order = jnp.argsort(log_density, axis=-1)'),
    M('mixtures', 'affine: signed scales', 'new_scales = jnp.abs(per_component(scale)) * scales',
      'new_scales = per_component(scale) * scales'),
    # mixtures, full covariance: Σ = L Lᵀ and what is built from L.
    M('mixtures', 'full: Σ = LᵀL', 'return tril @ jnp.swapaxes(tril, -1, -2)',
      'return jnp.swapaxes(tril, -1, -2) @ tril'),
    M('mixtures', 'full density: whitened with the upper triangle',
      'left_side=True,\n                                     lower=True)[..., 0]',
      'left_side=True,\n                                     lower=False)[..., 0]'),
    M('mixtures', 'full density: log det with the signs of the diagonal',
      'jnp.log(jnp.abs(jnp.diagonal(scales, axis1=-2, axis2=-1)))',
      'jnp.log(jnp.diagonal(scales, axis1=-2, axis2=-1))'),
    M('mixtures', 'full modes: precision L⁻¹L⁻ᵀ',
      'return jnp.swapaxes(inverse, -1, -2) @ inverse',
      'return inverse @ jnp.swapaxes(inverse, -1, -2)'),
    M('mixtures', 'full marginal scales: column norms',
      'return jnp.sqrt(jnp.sum(jnp.square(jnp.tril(scales)), axis=-1))',
      'return jnp.sqrt(jnp.sum(jnp.square(jnp.tril(scales)), axis=-2))'),
    M('mixtures', 'full sample: the upper triangle read', 'jnp.tril(pick(scales, 2)), noise)',
      'pick(scales, 2), noise)'),
    M('mixtures', 'full affine: signs on the rows',
      'columns = jnp.sign(scale)[..., None, None, :] if scale.ndim',
      'columns = jnp.sign(scale)[..., None, :, None] if scale.ndim'),
    M('mixtures', 'full marginal: the block\'s columns sorted',
      'jnp.linalg.cholesky(covariances[..., index[:, None], index])',
      'jnp.linalg.cholesky(covariances[..., index[:, None], np.sort(index)])'),
    M('mixtures', 'modes: iterate to num_iters regardless of tol',
      'return (i < num_iters) & (change > tol)', 'return i < num_iters',
      equivalent='Only stops later: the points then move by less than tol times the smallest '
      'scale, below what any test resolves.'),

    # scoring: the symmetry-aware errors and the density scores.
    M('scoring', 'nearest equivalent by squared error',
      'distance = jnp.abs(predictions[..., None, :] - equivalent_labels).mean(axis=-1)',
      'distance = jnp.square(predictions[..., None, :] - equivalent_labels).mean(axis=-1)'),
    M('scoring', 'farthest equivalent', 'best = jnp.argmin(distance, axis=-1)',
      'best = jnp.argmax(distance, axis=-1)'),
    M('scoring', 'E|X|: φ term halved', '+ 2.0 * scale * stats.norm.pdf(z)',
      '+ scale * stats.norm.pdf(z)'),
    M('scoring', 'CRPS: whole spread',
      'return to_label - 0.5 * spread', 'return to_label - spread'),
    M('scoring', 'coverage: one tail of 1 − level', 'tail = 0.5 * (1.0 - level)',
      'tail = 1.0 - level'),
    M('scoring', 'coverage: no upper end', 'return (cdf >= tail) & (cdf <= 1.0 - tail)',
      'return cdf >= tail'),
    M('scoring', 'mode recall: < radius', '<= radius_deg, axis=-1)', '< radius_deg, axis=-1)'),
    M('scoring', 'mode recall: invalid modes count',
      'found = jnp.any(close & valid[..., None, :], axis=-1)', 'found = jnp.any(close, axis=-1)'),
    M('scoring', 'least likely equivalent', 'best = jnp.argmax(log_density, axis=-1)',
      'best = jnp.argmin(log_density, axis=-1)'),
    M('scoring', 'CRPS against the first equivalent', "scores['crps'] = crps(distribution, label)",
      "scores['crps'] = crps(distribution, equivalent_labels[..., 0, :])"),
    M('scoring', 'all modes found: any found',
      "scores['mode_recall_all'] = (recall == 1.0)", "scores['mode_recall_all'] = (recall > 0.0)"),
    M('scoring', 'summary over axes: sum', 'result[name] = float(values.mean())',
      'result[name] = float(values.sum())'),
    M('scoring', 'summary CRPS: sum over examples', "per_axis('crps', mean)",
      "per_axis('crps', jnp.sum(jnp.asarray(values, jnp.float32), axis=0))"),

    M('scoring', 'mode recall: one axis close enough',
      'close = jnp.all(jnp.abs(modes[..., None, :, :]', 'close = jnp.any(jnp.abs(modes[..., None, :, :]'),
    M('scoring', 'coverage: levels stacked last', 'axis=-2).astype(jnp.float32)',
      'axis=-1).astype(jnp.float32)'),

    # directional: the vMF overlap, normaliser, modes, mean axis, conversions.
    M('directional', 'distance: ∫pq from the p block', 'log_pq = block_lse(terms[..., :num, num:])',
      'log_pq = block_lse(terms[..., :num, :num])'),
    M('directional', 'sphere normaliser: log 2π not halved',
      'return -0.5 * _common.LOG_2PI - jnp.log(r) + jnp.log(-jnp.expm1(-2.0 * r))',
      'return -_common.LOG_2PI - jnp.log(r) + jnp.log(-jnp.expm1(-2.0 * r))'),
    M('directional', 'Bessel series used up to κ = 2', '_SERIES_MAX = 0.25', '_SERIES_MAX = 4.0'),
    M('directional', 'antipodal modes: halves of the weight not halved',
      'comp_log_w_peak = jnp.concatenate([log_w_peak, log_w_peak], axis=-1) - _LOG_2',
      'comp_log_w_peak = jnp.concatenate([log_w_peak, log_w_peak], axis=-1)'),
    M('directional', 'antipodal modes: x and -x not merged', 'gap = jnp.minimum(gap, jnp.sum(',
      'gap = jnp.maximum(gap, jnp.sum('),
    M('directional', 'mean axis: sign not fixed',
      'return jnp.where(axis[..., :1] < 0, -axis, axis)', 'return axis'),
    M('directional', 'quaternion: sign not fixed', 'return jnp.where(q[..., :1] < 0, -q, q)',
      'return q'),

    # rotation_grid: the Hopf grid, its cells and the densities on them.
    M('rotation_grid', 'cells: 4^L, not 8^L', 'return 72 * 8**level', 'return 72 * 4**level'),
    M('rotation_grid', 'Hopf: sin for cos of (ψ − φ)/2',
      's * np.sin(difference), s * np.cos(difference),',
      's * np.cos(difference), s * np.cos(difference),'),
    M('rotation_grid', 'nearest cell: q and −q differ',
      'jnp.argmax(jnp.abs(quaternions @ cells.T), axis=-1)', 'jnp.argmax(quaternions @ cells.T, axis=-1)'),
    M('rotation_grid', 'cell density: cell volume dropped',
      'return log_p + (math.log(count) - LOG_SO3_VOLUME)', 'return log_p - LOG_SO3_VOLUME'),

    # scoring_directional: errors, densities in their measures, mode recall.
    M('scoring_directional', 'angular error: farthest equivalent',
      'return jnp.min(angle_between_deg(', 'return jnp.max(angle_between_deg('),
    M('scoring_directional', 'geodesic angle: halved', 'return jnp.rad2deg(4.0 * half)',
      'return jnp.rad2deg(2.0 * half)'),
    M('scoring_directional', 'rotation density: S³ measure, not SO(3)',
      'antipodal=True) + _common.LOG_2', 'antipodal=True)'),
    M('scoring_directional', 'circle grid density: wrong cell width',
      'math.log(2.0 * math.pi / grid.shape[0])', 'math.log(math.pi / grid.shape[0])'),
    M('scoring_directional', 'all modes found: any found',
      "'mode_recall_all': jnp.all(found, axis=-1)", "'mode_recall_all': jnp.any(found, axis=-1)"),
    M('scoring_directional', 'summary: the mean for the median angular error',
      'float(jnp.median(values))', 'float(jnp.mean(values))'),
    M('scoring_directional', 'rotation modes: no density floor',
      'valid = valid & (mode_log_density > _LOG_MODE_FLOOR_ROTATION)', 'valid = valid'),

    # input_pipeline: shards, order, chunks, resizing, augmentation, padding.
    M('input_pipeline', 'train rows without the process offset',
      'start = position * self._global_batch_size + self._first_row',
      'start = position * self._global_batch_size'),
    M('input_pipeline', 'flips drawn apart from the order',
      'flips = rng.uniform(size=self._num_records) < 0.5',
      'flips = np.random.default_rng(self._first_row).uniform(size=self._num_records) < 0.5'),
    M('input_pipeline', 'records read in chunks of 1023', 'indices[start:start + 1024]',
      'indices[start:start + 1023]'),
    M('input_pipeline', 'NEAREST resizing', 'pil.resize((size, size), Image.Resampling.BILINEAR)',
      'pil.resize((size, size), Image.Resampling.NEAREST)'),
    M('input_pipeline', 'flip probability 0.7', 'rng.uniform(size=self._num_records) < 0.5',
      'rng.uniform(size=self._num_records) < 0.7'),
    M('input_pipeline', 'flip leaves equivalent labels',
      "batch['equivalent_labels'] = batch['equivalent_labels'] * sign[:, None]",
      "batch['equivalent_labels'] = batch['equivalent_labels']"),
    M('input_pipeline', 'vertical flip', "batch['image'][flip] = batch['image'][flip, :, ::-1]",
      "batch['image'][flip] = batch['image'][flip, ::-1]"),
    M('input_pipeline', 'padding row unmasked', 'mask = indices < self._num_records',
      'mask = indices <= self._num_records'),
    M('input_pipeline', 'resumed position ignored',
      "self._next_batch = int(state['next_batch'])", 'self._next_batch = 0'),
    M('input_pipeline', 'position counted in other data accepted', 'if differences:',
      'if False:'),
    M('input_pipeline', 'same order every epoch',
      'rng = np.random.default_rng([self._seed, epoch])',
      'rng = np.random.default_rng(self._seed)'),
    M('input_pipeline', 'eval rows without the process offset',
      'first = position * self._global_batch_size + self._first_row',
      'first = position * self._global_batch_size'),
    M('input_pipeline', 'eval drops the last partial batch',
      'stop = -(-len(source) // global_batch_size)', 'stop = len(source) // global_batch_size'),
    M('input_pipeline', 'images divided by 256', "astype(np.float32) / np.float32(255)}",
      "astype(np.float32) / np.float32(256)}"),
    M('input_pipeline', 'non-finite labels pass', 'if not finite.all():', 'if False:'),
    M('input_pipeline', 'cache chosen the other way round',
      'len(source) * np.prod(info.image_shape) <= _CACHE_LIMIT_BYTES)',
      'len(source) * np.prod(info.image_shape) > _CACHE_LIMIT_BYTES)',
      equivalent='Cached and streamed reads give the same batches (tested); only speed and '
      'memory differ.'),

    # checkpointing: what is kept, the position's encoding, verification, fallback.
    M('checkpointing', 'every checkpoint kept', 'CheckpointManagerOptions(max_to_keep=max_to_keep,',
      'CheckpointManagerOptions(max_to_keep=None,'),
    M('checkpointing', 'older positions resumed',
      'if iterator is not None and position.legacy_file is not None:', 'if False:'),
    M('checkpointing', 'restored arrays not verified',
      'elif state_digest(state) != position.state_sha256:', 'elif False:'),
    M('checkpointing', 'position file not verified',
      "if 'sha256' in record and record['sha256'] != _sha256(body):", 'if False:'),
    M('checkpointing', 'oldest checkpoint first',
      'for step in sorted(self.all_steps(), reverse=True):',
      'for step in sorted(self.all_steps()):'),
    M('checkpointing', 'input position not restored',
      'iterator.set_state(position.iterator_state)', 'pass'),
    M('checkpointing', 'damaged checkpoints left in place',
      'if skipped and set_aside_damaged:', 'if False:'),

    # image_folder: build identity and label checks.
    M('image_folder', 'build folder without the fingerprint', "name=f'{name}-{digest[:16]}',",
      'name=name,'),
    M('image_folder', 'fingerprint without the settings',
      'digest.update(json.dumps(settings, sort_keys=True).encode())', 'pass'),
    M('image_folder', 'non-finite targets pass', 'if not all(math.isfinite(v) for v in values):',
      'if False:'),

    # workdir_lock: exclusion, release, takeover.
    M('workdir_lock', 'shared lock',
      'fcntl.LOCK_EX | fcntl.LOCK_NB', 'fcntl.LOCK_SH | fcntl.LOCK_NB'),
    M('workdir_lock', 'file left behind on release', '          os.remove(path)\n', ''),
    M('workdir_lock', 'holder not recorded',
      'os.pwrite(fd, json.dumps(record).encode(), 0)', 'pass'),
]


def _snapshot(rev: str | None, into: str) -> None:
  """The repository's files (a commit's, or the working tree's) without docs."""
  if rev:
    archive = subprocess.run(['git', 'archive', rev, 'propel_jax', 'tests', 'experiments',
                              'pyproject.toml'], cwd=REPO, check=True, capture_output=True)
    subprocess.run(['tar', '-x', '-C', into], input=archive.stdout, check=True)
    return
  listed = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard',
                           'propel_jax', 'tests', 'experiments', 'pyproject.toml'],
                          cwd=REPO, check=True, capture_output=True, text=True)
  for name in listed.stdout.splitlines():
    if os.path.isfile(os.path.join(REPO, name)):
      os.makedirs(os.path.dirname(os.path.join(into, name)), exist_ok=True)
      shutil.copy2(os.path.join(REPO, name), os.path.join(into, name))


def _files(module: str) -> list[str]:
  files = FILES[module]
  return [files] if isinstance(files, str) else files


def _apply(tree: str, mutant: Mutant | None) -> str | None:
  """Applies `mutant` in `tree`; None if done, else why it does not apply."""
  if mutant is None:
    return None
  paths = [os.path.join(tree, name) for name in _files(mutant.module)]
  texts = {}
  for path in paths:
    if os.path.exists(path):
      with open(path) as f:
        texts[path] = f.read()
  if not texts:
    return 'no such module'
  counts = {path: text.count(mutant.old) for path, text in texts.items()}
  if sum(counts.values()) != 1:
    return f'snippet found {sum(counts.values())} times'
  path = next(path for path, count in counts.items() if count)
  with open(path, 'w') as f:
    f.write(texts[path].replace(mutant.old, mutant.new))
  return None


def _run_tests(snapshot: str, module: str, mutant: Mutant | None, cache: str,
               timeout: float) -> tuple[str, float, str]:
  """(outcome, seconds, output tail): 'killed', 'survived', 'timeout', 'n/a: ...'."""
  with tempfile.TemporaryDirectory(prefix='mutant_') as tree:
    shutil.copytree(snapshot, tree, dirs_exist_ok=True)
    problem = _apply(tree, mutant)
    if problem:
      return f'n/a: {problem}', 0.0, ''
    env = dict(os.environ, PYTHONPATH=tree, JAX_COMPILATION_CACHE_DIR=cache,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
    command = [sys.executable, '-m', 'pytest', '-x', '-q', '-p', 'no:cacheprovider',
               '-m', 'not slow', *TESTS[module]]
    start = time.monotonic()
    try:
      result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
      return 'timeout', time.monotonic() - start, ''
    tail = (result.stdout + result.stderr)[-2000:]
    # pytest: 0 all passed, 1 a test failed, 2 one did not even import; else broken.
    outcome = {0: 'survived', 1: 'killed', 2: 'killed'}.get(result.returncode,
                                              f'error (pytest exit {result.returncode})')
    return outcome, time.monotonic() - start, tail


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rev', help='git revision to mutate (default: the working tree)')
  parser.add_argument('--only', help='comma-separated modules (default: all)')
  parser.add_argument('--match', help='only the mutants whose name contains this')
  parser.add_argument('--jobs', type=int, default=2, help='mutants tested at once')
  parser.add_argument('--timeout', type=float, default=1200, help='seconds per test run')
  parser.add_argument('--list', action='store_true', help='list the mutants and exit')
  args = parser.parse_args()
  modules = args.only.split(',') if args.only else list(TESTS)
  unknown = set(modules) - set(TESTS)
  if unknown:
    parser.error(f'unknown modules {sorted(unknown)}; known: {sorted(TESTS)}')
  mutants = [m for m in MUTANTS
             if m.module in modules and (not args.match or args.match in m.name)]

  with tempfile.TemporaryDirectory(prefix='mutate_') as work:
    snapshot, cache = os.path.join(work, 'tree'), os.path.join(work, 'jax_cache')
    os.makedirs(snapshot)
    _snapshot(args.rev, snapshot)
    if args.list:
      for m in mutants:
        with tempfile.TemporaryDirectory() as tree:
          shutil.copytree(snapshot, tree, dirs_exist_ok=True)
          status = _apply(tree, m) or 'applies'
        print(f'{m.module:15} {m.name:55} {status}{" (equivalent)" if m.equivalent else ""}')
      return 0
    print(f'Mutating {args.rev or "the working tree"}: {len(mutants)} mutants of '
          f'{", ".join(modules)}, {args.jobs} at a time.', flush=True)
    absent = {m for m in modules
              if not os.path.exists(os.path.join(snapshot, _files(m)[0]))}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
      baselines = {module: pool.submit(_run_tests, snapshot, module, None, cache, args.timeout)
                   for module in modules if module not in absent}
      broken = set(absent)
      for module, future in baselines.items():
        outcome, seconds, tail = future.result()
        print(f'baseline {module}: {"ok" if outcome == "survived" else outcome} '
              f'({seconds:.0f} s)', flush=True)
        if outcome != 'survived':
          broken.add(module)
          print(tail)
      runs = {m: pool.submit(_run_tests, snapshot, m.module, m, cache, args.timeout)
              for m in mutants if m.module not in broken}
      results = {}
      for m, future in runs.items():
        outcome, seconds, _ = future.result()
        results[m] = outcome
        print(f'  {m.module:15} {m.name:55} {outcome} ({seconds:.0f} s)'
              f'{"  [equivalent: " + m.equivalent + "]" if m.equivalent else ""}', flush=True)

  print('\nmodule           killed / applicable (equivalent and n/a not counted)')
  survivors = []
  for module in modules:
    if module in broken:
      print(f'{module:15}  {"not in this revision" if module in absent else "tests fail unmutated"}'
            ': skipped')
      continue
    counted = [m for m in mutants if m.module == module and not m.equivalent
               and not results[m].startswith('n/a')]
    killed = [m for m in counted if results[m] in ('killed', 'timeout')]
    survivors += [m for m in counted if results[m] not in ('killed', 'timeout')]
    print(f'{module:15}  {len(killed)} / {len(counted)}')
  total = sum(1 for m in mutants if m.module not in broken and not m.equivalent
              and not results[m].startswith('n/a'))
  print(f'{"all":15}  {total - len(survivors)} / {total}')
  for m in survivors:
    print(f'SURVIVED ({results[m]}): {m.module}: {m.name}')
  return 1 if survivors else 0


if __name__ == '__main__':
  sys.exit(main())
