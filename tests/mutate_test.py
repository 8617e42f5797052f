"""tools/mutate.py's mutants still find their snippets: a refactor that renames what a
mutant edits would otherwise drop it from the mutation score without a word."""

import importlib.util
import os
import shutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_mutate():
  spec = importlib.util.spec_from_file_location('mutate', os.path.join(REPO, 'tools', 'mutate.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_mutant_applies_exactly_once(tmp_path):
  mutate = _load_mutate()
  failures = []
  for mutant in mutate.MUTANTS:
    names = mutate._files(mutant.module)  # pylint: disable=protected-access
    for name in names:  # A fresh copy of the module's files for each mutant.
      if os.path.exists(os.path.join(REPO, name)):
        os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
        shutil.copyfile(os.path.join(REPO, name), tmp_path / name)
    why = mutate._apply(str(tmp_path), mutant)  # pylint: disable=protected-access
    if why is not None:
      failures.append(f'{mutant.module}: {mutant.name}: {why}')
  assert not failures, '\n'.join(failures)
