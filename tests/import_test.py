"""The package's shape: a light core, imports that point down the layers, named extras."""

import ast
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
# What each layer may import from this project (besides itself).
ALLOWED = {
    'core': set(),
    'nn': {'core'},
    'data': {'core'},
    'training': {'core', 'nn', 'data'},
    'experiments': {'core', 'nn', 'data', 'training'},
    # The gallery shows the library as a user calls it, not the experiment binaries.
    'examples': {'core', 'nn', 'data', 'training'},
}
CORE_THIRD_PARTY = {'jax', 'numpy'}


def _layer(module: str) -> str:
  parts = module.split('.')
  if parts[0] in ('experiments', 'examples'):
    return parts[0]
  if len(parts) > 1 and parts[1] in ('nn', 'data', 'training'):
    return parts[1]
  return 'core'


def _modules():
  for root in ('propel_jax', 'experiments', 'examples'):
    for path in sorted((REPO / root).rglob('*.py')):
      name = '.'.join(path.relative_to(REPO).with_suffix('').parts)
      yield name.removesuffix('.__init__'), path


def _imports(path):
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
      yield from (f'{node.module}.{alias.name}' for alias in node.names)


def test_imports_point_down_the_layers():
  wrong = []
  for name, path in _modules():
    layer = _layer(name)
    for imported in _imports(path):
      top = imported.split('.')[0]
      if top in ('propel_jax', 'experiments', 'examples'):
        target = _layer(imported)
        if target != layer and target not in ALLOWED[layer]:
          wrong.append(f'{name} ({layer}) imports {imported} ({target})')
      elif layer == 'core' and top not in CORE_THIRD_PARTY and top not in sys.stdlib_module_names:
        wrong.append(f'{name} (core) imports {imported}: the core needs only jax and numpy')
  assert not wrong, '\n'.join(wrong)


def test_import_pulls_in_nothing_heavy():
  heavy = ('flax', 'optax', 'tensorflow', 'tensorflow_datasets', 'grain', 'orbax', 'torch',
           'matplotlib', 'scipy', 'chex')
  code = ('import sys, propel_jax, propel_jax.losses, propel_jax.mixtures, propel_jax.scoring; '
          f'print(",".join(m for m in {heavy!r} if m in sys.modules))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == '', f'import propel_jax also imported: {out.stdout.strip()}'


# Makes the given top-level modules unimportable, as if their extra were not installed.
_BLOCK = '''
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in {blocked!r}:
      raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)
sys.meta_path.insert(0, Block())
import importlib.util
_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: (
    None if name.split('.')[0] in {blocked!r} else _find_spec(name, *a))
'''
_EXTRAS = ('flax', 'optax', 'orbax', 'ml_collections', 'absl', 'tensorflow_datasets', 'grain',
           'array_record', 'PIL', 'etils', 'scipy', 'tensorboardX', 'matplotlib')


@pytest.mark.parametrize('module', ['propel_jax.nn.heads', 'propel_jax.data.input_pipeline',
                                    'propel_jax.training.train'])
def test_a_module_without_its_extra_names_the_extra(module):
  code = _BLOCK.format(blocked=set(_EXTRAS)) + f'import {module}'
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
  assert out.returncode != 0
  assert "pip install 'propel-jax[experiments]'" in out.stderr, out.stderr[-2000:]


def test_the_core_works_without_any_extra():
  code = _BLOCK.format(blocked=set(_EXTRAS)) + (
      'import jax.numpy as jnp\n'
      'from propel_jax import propel_loss, mixtures\n'
      'loss = propel_loss(jnp.zeros((4, 2, 3)), jnp.full((4, 2, 3), 0.2), jnp.ones((4, 3)),'
      ' target_scale=0.1)\n'
      'assert loss.shape == (4,)\n'
      'print(mixtures.most_likely_mode(jnp.zeros((4, 2, 3)), jnp.ones((4, 2, 3))).shape)\n')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == '(4, 3)'


def test_no_library_module_chooses_a_matplotlib_backend():
  # Importing everything that draws must leave the caller's backend alone.
  code = ('import matplotlib; matplotlib.use("svg"); '
          'import experiments.plots, experiments.comparison.plots, experiments.show_dataset; '
          'print(matplotlib.get_backend())')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       cwd=REPO)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == 'svg'
