"""SYMSOL I's per-shape table from the comparison reports of its five solids.

    python -m experiments.symsol_table \
        --reports=/tmp/orientation_medium/cone,/tmp/orientation_medium/cylinder,... \
        --output=docs/results/symsol_medium.md

Each report is a comparison directory (`experiments.compare` with
compare_orientation.py:<solid>[_small|_medium]) holding results.json. The
table is laid out as Implicit-PDF's SYMSOL I table (Murphy et al., 2021,
Table 1): one row per method, one column per shape in its order (cone,
cylinder, tetrahedron, cube, icosahedron) and their average; the
log-likelihood averaged over every equivalent label of each test image (nats
w.r.t. the measure of total volume π² on SO(3), SYMSOL I's protocol) and the
spread (the expected angle in degrees from a draw of the prediction to the
nearest equivalent). Cells are mean ± std over seeds; the average is over the
shapes in the table, and is left out where one is missing. Heads without a density
(MSE) have no row.
"""

import json
import math
import os
from typing import Any, Sequence

from absl import app
from absl import flags

from experiments.comparison import report

# Implicit-PDF's column order.
SHAPES = ('cone', 'cylinder', 'tetrahedron', 'cube', 'icosahedron')
METRICS = (('log_likelihood_all_equivalents',
            'Log-likelihood, averaged over all equivalent labels (SYMSOL I protocol), nats '
            'w.r.t. the measure of total volume π² on SO(3) (uniform: −ln π² ≈ −2.29; '
            'higher is better)', 2),
           ('spread', 'Spread: expected angle (°) from a draw of the prediction to the '
            'nearest equivalent label (lower is better)', 1))

_REPORTS = flags.DEFINE_list('reports', None, 'Comparison directories, one per solid.')
_OUTPUT = flags.DEFINE_string('output', None, 'Markdown file to write (default: print).')


def _shape(results: dict[str, Any]) -> str:
  """The solid of a report, from its dataset name (symmetric_solids/<solid>[_size])."""
  builder, _, config = results['dataset'].partition('/')
  shape = config.removesuffix('_small').removesuffix('_medium')
  if builder != 'symmetric_solids' or shape not in SHAPES:
    raise ValueError(f'{results["dataset"]!r} is not one of SYMSOL I\'s solids '
                     f'(symmetric_solids/<{"|".join(SHAPES)}>[_small|_medium]).')
  return shape


def per_shape_table(reports: Sequence[dict[str, Any]]) -> str:
  """Markdown tables (one per metric) of methods × shapes from the reports' results.json.

  Args:
    reports: the content of each solid's results.json; one report per solid.

  Returns:
    The markdown text.

  Raises:
    ValueError: a report is not of a SYMSOL I solid, two are of the same solid,
      or they disagree on the log-likelihood's measure.
  """
  by_shape = {}
  for results in reports:
    shape = _shape(results)
    if shape in by_shape:
      raise ValueError(f'Two reports of the {shape}; pass one per solid.')
    by_shape[shape] = results
  measures = {r.get('log_likelihood_measure') for r in by_shape.values()}
  if len(measures) > 1:
    raise ValueError(f'The reports score the log-likelihood in different measures: {measures}; '
                     'rescore or rerun the older ones.')
  shapes = [s for s in SHAPES if s in by_shape]
  methods = list(dict.fromkeys(m for s in shapes for m in by_shape[s]['methods']))
  lines = []
  for metric, title, digits in METRICS:
    lines += [f'### {title}', '',
              '| method | avg | ' + ' | '.join(shapes) + ' |',
              '|---|---|' + '---|' * len(shapes)]
    for method in methods:
      stats = [by_shape[s]['summary'].get(method, {}).get(metric) for s in shapes]
      if all(stat is None for stat in stats):
        continue  # A point head (MSE): no density to score.
      means = [s['mean'] for s in stats if s is not None]
      average = (f'{math.fsum(means) / len(means):.{digits}f}'
                 if len(means) == len(shapes) else '–')
      lines.append(f'| {method} | {average} | ' +
                   ' | '.join(report.format_stat(s, digits) for s in stats) + ' |')
    lines.append('')
  lines += ['Reports: ' + '; '.join(
      f'{s}: `{by_shape[s]["dataset"]}`, seeds {by_shape[s]["seeds"]}, '
      f'{by_shape[s]["config"]["num_train_steps"]} steps' for s in shapes) + '.']
  return '\n'.join(lines) + '\n'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not _REPORTS.value:
    raise app.UsageError('--reports: the comparison directories of the solids, comma-separated.')
  reports = []
  for directory in _REPORTS.value:
    path = os.path.join(directory, 'results.json')
    if not os.path.exists(path):
      raise app.UsageError(f'{path} does not exist: run experiments.compare with --workdir='
                           f'{directory} first.')
    with open(path) as f:
      reports.append(json.load(f))
  text = per_shape_table(reports)
  if _OUTPUT.value:
    with open(_OUTPUT.value, 'w') as f:
      f.write(text)
  else:
    print(text, end='')


if __name__ == '__main__':
  app.run(main)
