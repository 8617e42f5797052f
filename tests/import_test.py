"""`import propel_jax` must stay light: users import the loss into their own projects."""

import subprocess
import sys


def test_import_pulls_in_nothing_heavy():
  heavy = ('flax', 'optax', 'tensorflow', 'tensorflow_datasets', 'grain', 'orbax', 'torch',
           'matplotlib')
  code = ('import sys, propel_jax; '
          f'print(",".join(m for m in {heavy!r} if m in sys.modules))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == '', f'import propel_jax also imported: {out.stdout.strip()}'
