"""Every public function of both mixture families, wherever JAX code calls it.

One table (`CASES`) calls each public function of `propel_jax.mixtures`,
`propel_jax.losses` and `propel_jax.directional` on a batch of B examples.
The tests run the whole table with Python lists for arrays, with an empty
batch (B = 0), and under `jax.shard_map` with its default checks over two CPU
devices (in a subprocess, so that the device count stays out of the other
tests).
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from propel_jax import directional
from propel_jax import losses
from propel_jax import mixtures

B, I, N = 4, 3, 3  # batch, components, dimensions (vMF: d = 3)
KEY = jax.random.key(0)


def arrays(batch, seed=0):
  """Float32 inputs with a leading batch axis of size `batch`."""
  rng = np.random.default_rng(seed)
  f32 = lambda a: np.asarray(a, np.float32)
  tril = np.tril(rng.normal(size=(batch, I, N, N))) * 0.3 + np.eye(N)
  rotation = np.linalg.qr(rng.normal(size=(batch, 3, 3)))[0]
  rotation *= np.sign(np.linalg.det(rotation))[:, None, None]
  return {
      'means': f32(rng.normal(size=(batch, I, N))),
      'scales': f32(rng.uniform(0.3, 1.0, size=(batch, I, N))),
      'tril': f32(tril),
      'log_weights': f32(rng.normal(size=(batch, I))),
      'targets': f32(rng.normal(size=(batch, N))),
      'predictions': f32(rng.normal(size=(batch, N))),
      'q_means': f32(rng.normal(size=(batch, 1, N))),
      'q_scales': f32(rng.uniform(0.3, 1.0, size=(batch, 1, N))),
      'target_scale': f32(rng.uniform(0.2, 0.5, size=batch)),
      'directions': f32(rng.normal(size=(batch, I, 3))),
      'concentrations': f32(rng.uniform(1.0, 8.0, size=(batch, I))),
      'unit_targets': f32(rng.normal(size=(batch, 3))),
      'target_concentration': f32(rng.uniform(2.0, 5.0, size=batch)),
      'q_directions': f32(rng.normal(size=(batch, 1, 3))),
      'q_concentrations': f32(rng.uniform(2.0, 5.0, size=(batch, 1))),
      'vectors': f32(rng.normal(size=(batch, 2))),
      'angles': f32(rng.uniform(-3.0, 3.0, size=batch)),
      'quaternions': f32(rng.normal(size=(batch, 4))),
      'rotations': f32(rotation),
  }


def _checked(a):
  """check_inputs: eagerly it raises at once; traced, under `checkify.checkify`."""
  losses.check_inputs(a['means'], a['scales'], a['targets'], target_scale=0.3,
                      log_weights=a['log_weights'])
  return jnp.asarray(a['means'])


def _shapes_checked(a):
  mixtures.check_shapes(a['means'], a['tril'], a['log_weights'], a['targets'])
  return jnp.asarray(a['means'])


def _is_full(a):
  return jnp.full(np.shape(a['means'])[:1],
                  mixtures.is_full_covariance(a['means'], a['tril']))


def _vmf(a):
  return directional.VonMisesFisherMixture(
      a['directions'], a['concentrations'], a['log_weights'])


# name -> (function of the batched inputs, the batch axis of every output).
CASES = {
    # propel_jax.losses
    'losses.propel_loss': lambda a: losses.propel_loss(
        a['means'], a['scales'], a['targets'], target_scale=0.3,
        log_weights=a['log_weights']),
    'losses.propel_loss per example': lambda a: losses.propel_loss(
        a['means'], a['scales'], a['targets'], target_scale=a['target_scale']),
    'losses.propel_loss full': lambda a: losses.propel_loss(
        a['means'], a['tril'], a['targets'], target_scale=0.3,
        log_weights=a['log_weights']),
    'losses.mixture_distance': lambda a: losses.mixture_distance(
        a['means'], a['scales'], a['q_means'], a['q_scales'],
        p_log_weights=a['log_weights']),
    'losses.mixture_distance full': lambda a: losses.mixture_distance(
        a['means'], a['scales'], a['means'], a['tril'],
        q_log_weights=a['log_weights']),
    'losses.mixture_nll': lambda a: losses.mixture_nll(
        a['means'], a['tril'], a['targets'], log_weights=a['log_weights']),
    'losses.mse_loss': lambda a: losses.mse_loss(a['predictions'], a['targets']),
    'losses.l1_loss': lambda a: losses.l1_loss(a['predictions'], a['targets']),
    'losses.check_inputs': _checked,
    # propel_jax.mixtures
    'mixtures.Mixture': lambda a: mixtures.Mixture.uniform(
        a['means'], a['scales']).log_prob(a['targets']),
    'mixtures.check_shapes': _shapes_checked,
    'mixtures.normalized_log_weights': lambda a: mixtures.normalized_log_weights(
        a['means'], a['log_weights']),
    'mixtures.is_full_covariance': _is_full,
    'mixtures.component_covariances': lambda a: mixtures.component_covariances(
        a['means'], a['tril']),
    'mixtures.marginal_scales': lambda a: mixtures.marginal_scales(a['means'], a['tril']),
    'mixtures.component_log_prob': lambda a: mixtures.component_log_prob(
        a['targets'], a['means'], a['tril']),
    'mixtures.log_prob': lambda a: mixtures.log_prob(
        a['targets'], a['means'], a['scales'], a['log_weights']),
    'mixtures.mean': lambda a: mixtures.mean(a['means'], a['scales'], a['log_weights']),
    'mixtures.covariance': lambda a: mixtures.covariance(
        a['means'], a['tril'], a['log_weights']),
    'mixtures.modes': lambda a: mixtures.modes(a['means'], a['scales'], a['log_weights']),
    'mixtures.modes full': lambda a: mixtures.modes(a['means'], a['tril'], a['log_weights']),
    'mixtures.most_likely_mode': lambda a: mixtures.most_likely_mode(
        a['means'], a['scales'], a['log_weights']),
    'mixtures.sample': lambda a: mixtures.sample(
        KEY, a['means'], a['tril'], a['log_weights'], sample_shape=(2,)),
    'mixtures.marginal_cdf': lambda a: mixtures.marginal_cdf(
        a['targets'], a['means'], a['tril'], a['log_weights']),
    'mixtures.affine': lambda a: mixtures.affine(
        a['means'], a['tril'], a['log_weights'], shift=a['targets'],
        scale=[2.0, -1.0, 0.5]),
    'mixtures.marginal': lambda a: mixtures.marginal(
        a['means'], a['tril'], a['log_weights'], dims=[1]),
    # propel_jax.directional
    'directional.propel_loss': lambda a: directional.propel_loss(
        a['directions'], a['concentrations'], a['unit_targets'],
        target_concentration=a['target_concentration'], log_weights=a['log_weights']),
    'directional.mixture_distance': lambda a: directional.mixture_distance(
        a['directions'], a['concentrations'], a['q_directions'],
        a['q_concentrations'], p_log_weights=a['log_weights'],
        antipodal=True),
    'directional.log_prob': lambda a: directional.log_prob(
        a['unit_targets'], a['directions'], a['concentrations'], a['log_weights']),
    'directional.mean_direction': lambda a: directional.mean_direction(
        a['directions'], a['concentrations'], a['log_weights'], antipodal=True),
    'directional.modes': lambda a: directional.modes(
        a['directions'], a['concentrations'], a['log_weights'], antipodal=True),
    'directional.most_likely_mode': lambda a: directional.most_likely_mode(
        a['directions'], a['concentrations'], a['log_weights']),
    'directional.sample': lambda a: directional.sample(
        KEY, a['directions'], a['concentrations'], a['log_weights'], sample_shape=(2,)),
    'directional.VonMisesFisherMixture': lambda a: _vmf(a).mean_direction(),
    'directional.angle_to_vector': lambda a: directional.angle_to_vector(a['angles']),
    'directional.vector_to_angle': lambda a: directional.vector_to_angle(a['vectors']),
    'directional.quaternion_to_rotation_matrix': lambda a: (
        directional.quaternion_to_rotation_matrix(a['quaternions'])),
    'directional.rotation_matrix_to_quaternion': lambda a: (
        directional.rotation_matrix_to_quaternion(a['rotations'])),
}
# Outputs whose batch axis is not the first: the samples [S, B, ...].
BATCH_AXIS = {'mixtures.sample': 1, 'directional.sample': 1}
# Functions of random draws: under shard_map each shard draws with the same
# key, so the reference is the function applied to each shard's examples.
RANDOM = {'mixtures.sample', 'directional.sample'}


def test_the_table_covers_every_public_function():
  for module in (losses, mixtures, directional):
    public = {f'{module.__name__.split(".")[-1]}.{name}'
              for name, value in vars(module).items()
              if callable(value) and not name.startswith('_')
              and getattr(value, '__module__', None) == module.__name__}
    covered = {name.split(' ')[0] for name in CASES}
    assert public <= covered, sorted(public - covered)


def _as_lists(a):
  return {k: v.tolist() for k, v in a.items()}


@pytest.mark.parametrize('name', CASES)
def test_lists_give_the_arrays_result_without_warnings(name):
  a = arrays(B)
  want = CASES[name](a)
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    got = CASES[name](_as_lists(a))
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6),
               got, want)


@pytest.mark.parametrize('name', CASES)
def test_an_empty_batch_gives_empty_results(name):
  """Each output's batch axis has size 0, its other axes are as for B > 0."""
  full = CASES[name](arrays(B))
  empty = CASES[name](arrays(0))
  axis = BATCH_AXIS.get(name, 0)

  def check(e, f):
    e, f = np.asarray(e), np.asarray(f)
    assert e.shape == f.shape[:axis] + (0,) + f.shape[axis + 1:], (e.shape, f.shape)
    assert e.dtype == f.dtype
  jax.tree.map(check, empty, full)


SHARD_MAP_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    from jax.experimental import checkify
    import numpy as np
    from jax.sharding import PartitionSpec as P
    sys.path.insert(0, {tests!r})
    import public_functions_test as t

    assert jax.device_count() == 2
    # jax.make_mesh's default (explicit) axes. checkify, which check_inputs is
    # for, fails under shard_map on such a mesh whatever the check (jax
    # 0.10.2), so that one runs on a mesh with auto axes.
    meshes = {{kind: jax.make_mesh((2,), ('b',), axis_types=(kind,))
              for kind in (jax.sharding.AxisType.Explicit, jax.sharding.AxisType.Auto)}}
    a = t.arrays(t.B)
    halves = [{{k: v[i * t.B // 2:(i + 1) * t.B // 2] for k, v in a.items()}}
              for i in range(2)]
    failures = {{}}
    for name, fn in t.CASES.items():
      axis = t.BATCH_AXIS.get(name, 0)
      spec = P(*(None,) * axis, 'b')
      mesh = meshes[jax.sharding.AxisType.Auto if name == 'losses.check_inputs'
                    else jax.sharding.AxisType.Explicit]
      sharded = {{k: jax.device_put(v, jax.NamedSharding(mesh, P('b')))
                 for k, v in a.items()}}
      try:
        # checkify for check_inputs; a no-op for the others.
        err, got = jax.jit(checkify.checkify(jax.shard_map(
            fn, mesh=mesh, in_specs=P('b'), out_specs=spec)))(sharded)
        err.throw()
        if name in t.RANDOM:
          parts = [fn(h) for h in halves]
          want = jax.tree.map(lambda *p: np.concatenate(p, axis), *parts)
        else:
          want = fn(a)
        jax.tree.map(lambda g, w: np.testing.assert_allclose(
            g, w, rtol=1e-5, atol=1e-5), got, want)
      except Exception as e:  # Every failure is reported, not just the first.
        failures[name] = f'{{type(e).__name__}}: {{str(e)[:300]}}'
    print(json.dumps(failures))
""")


def test_every_function_under_shard_map_gives_the_unsharded_result():
  """jax.shard_map with its default checks (check_vma) over 2 CPU devices."""
  tests = os.path.dirname(os.path.abspath(__file__))
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2',
             JAX_PLATFORMS='cpu')
  result = subprocess.run(
      [sys.executable, '-c', SHARD_MAP_SCRIPT.format(tests=tests)],
      capture_output=True, text=True, env=env, timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  failures = json.loads(result.stdout.strip().splitlines()[-1])
  assert not failures, json.dumps(failures, indent=1)


# ----------------------------------------------------------------------------
# The one shape rule of both families: axes match by rank, sizes broadcast.


def _gaussian_loss(targets, width, examples=slice(None)):
  a = arrays(B)
  return losses.propel_loss(a['means'][examples, :, :targets.shape[-1]],
                            a['scales'][examples, :, :targets.shape[-1]], targets,
                            target_scale=width)


def _vmf_loss(targets, width, examples=slice(None)):
  a = arrays(B)
  return directional.propel_loss(a['directions'][examples],
                                 a['concentrations'][examples], targets,
                                 target_concentration=width)


@pytest.mark.parametrize('family', ['gaussian', 'vmf'])
@pytest.mark.parametrize('form', ['scalar', '[B]', '[B, 1]', '[1]', '[1, 1]'])
def test_label_width_one_per_example_in_both_families(family, form):
  """Every per-example form gives the per-example loop's result.

  n = 1 for the Gaussian, where [B] used to be read against the dimension
  axis and fail; the vMF family used to reject [B, 1].
  """
  rng = np.random.default_rng(40)
  targets = arrays(B)['targets'][..., :1] if family == 'gaussian' else arrays(B)['unit_targets']
  loss = _gaussian_loss if family == 'gaussian' else _vmf_loss
  shape = {'scalar': (), '[B]': (B,), '[B, 1]': (B, 1), '[1]': (1,), '[1, 1]': (1, 1)}[form]
  width = rng.uniform(1.0, 2.0, size=shape).astype(np.float32)
  per_example = np.broadcast_to(width.reshape(width.shape[:1]), (B,))
  want = [loss(targets[b:b + 1], per_example[b], slice(b, b + 1)) for b in range(B)]
  np.testing.assert_allclose(loss(targets, width), np.ravel(want), rtol=1e-6)


@pytest.mark.parametrize('family', ['gaussian', 'vmf'])
@pytest.mark.parametrize('shape,match', [
    ((2,), r'shape \(2,\) does not fit targets shape \(4, 3\).*\(4,\) \(the batch shape'),
    ((1, 4), r'shape \(1, 4\) does not fit.*the ranks must match'),
    ((4, 1, 1), r'shape \(4, 1, 1\) does not fit'),
])
def test_label_width_that_does_not_fit_names_the_shapes(family, shape, match):
  targets = arrays(B)['targets'] if family == 'gaussian' else arrays(B)['unit_targets']
  loss = _gaussian_loss if family == 'gaussian' else _vmf_loss
  with pytest.raises(ValueError, match=match):
    loss(targets, np.ones(shape, np.float32))


def test_a_concentration_is_not_per_axis():
  """[B, d] is a per-dimension width, which only Gaussians have."""
  a = arrays(B)
  with pytest.raises(ValueError, match=r'one number per example, not per axis'):
    _vmf_loss(a['unit_targets'], np.ones((B, 3), np.float32))
  np.testing.assert_allclose(  # The Gaussian's per-dimension [B, n] is fine.
      _gaussian_loss(a['targets'], np.full((B, N), 0.3, np.float32)),
      _gaussian_loss(a['targets'], 0.3), rtol=1e-6)


@pytest.mark.parametrize('family', ['gaussian', 'vmf'])
def test_points_have_exactly_one_axis_fewer_than_the_mixture(family):
  """A grid [G, n] against one mixture [I, n] raises in both families.

  The vMF log_prob used to broadcast it; the fix the message names (a
  leading axis of size 1 on the mixture) gives the per-point densities.
  """
  a = arrays(B)
  if family == 'gaussian':
    log_prob, mixture, grid = mixtures.log_prob, (a['means'][0], a['scales'][0]), a['targets']
    names = r'means\[None\] and scales\[None\]'
  else:
    log_prob, mixture, grid = directional.log_prob, (
        a['directions'][0], a['concentrations'][0]), a['unit_targets']
    names = r'mean_directions\[None\] and concentrations\[None\]'
  with pytest.raises(ValueError, match=(
      rf'exactly one more axis than x.*got x \(4, 3\) and \w+ \(3, 3\).*{names}')):
    log_prob(grid, *mixture)
  got = log_prob(grid, *(m[None] for m in mixture))
  want = [log_prob(g, *mixture) for g in grid]
  np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize('family', ['gaussian', 'vmf'])
def test_two_mixtures_have_as_many_axes(family):
  a = arrays(B)
  if family == 'gaussian':
    distance, p, q = losses.mixture_distance, (a['means'], a['scales']), (
        a['q_means'][0], a['q_scales'][0])
    hint = r'q_means\[None\] and q_scales\[None\]'
  else:
    distance, p, q = directional.mixture_distance, (
        a['directions'], a['concentrations']), (a['q_directions'][0],
                                                a['q_concentrations'][0])
    hint = r'q_mean_directions\[None\] and q_concentrations\[None\]'
  with pytest.raises(ValueError, match=rf'same number of axes.*{hint}'):
    distance(*p, *q)
  np.testing.assert_allclose(distance(*p, *(x[None] for x in q)),
                             [distance(*(x[b:b + 1] for x in p), *(x[None] for x in q))[0]
                              for b in range(B)], rtol=1e-6)
