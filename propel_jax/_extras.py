"""Names the pip extra a subpackage needs when one of its dependencies is missing."""

import importlib.util


def require(subpackage: str, extra: str, modules: tuple[str, ...]) -> None:
  """Raises ImportError naming `extra` if any of `modules` is not installed.

  Args:
    subpackage: the importing package, for the message (e.g. 'propel_jax.nn').
    extra: the pip extra that installs the modules.
    modules: top-level module names to look for (found, not imported).
  """
  missing = [m for m in modules if importlib.util.find_spec(m) is None]
  if missing:
    raise ImportError(
        f'{subpackage} needs {", ".join(missing)} (not installed): '
        f"pip install 'propel-jax[{extra}]' (from a checkout: pip install '.[{extra}]').")
