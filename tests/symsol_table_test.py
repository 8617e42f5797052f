"""The SYMSOL I per-shape table: layout, averages and the checks on its reports."""

import pytest

from experiments import symsol_table

_MEASURE = 'nats w.r.t. the Haar measure of total volume π² on SO(3)'


def _report(shape, values, *, measure=_MEASURE, size='_medium'):
  """A results.json of one solid: {method: (log-likelihood values over seeds, spread values)}."""
  def stat(v):
    mean = sum(v) / len(v)
    std = None if len(v) == 1 else (sum((x - mean) ** 2 for x in v) / (len(v) - 1)) ** 0.5
    return {'mean': mean, 'std': std, 'values': list(v)}
  return {'dataset': f'symmetric_solids/{shape}{size}', 'methods': list(values), 'seeds': [0, 1],
          'config': {'num_train_steps': 10_000}, 'log_likelihood_measure': measure,
          'summary': {m: {'log_likelihood_all_equivalents': stat(ll), 'spread': stat(sp)}
                      for m, (ll, sp) in values.items()}}


def _row(text, title_start, method):
  section = text.split(f'### {title_start}', 1)[1].split('###', 1)[0]
  return next(line for line in section.splitlines() if line.startswith(f'| {method} |'))


def test_columns_follow_implicit_pdf_and_the_average_is_over_shapes():
  reports = [_report('cube', {'a': ([1.0, 2.0], [10.0, 12.0]), 'b': ([0.5], [20.0])}),
             _report('cone', {'a': ([3.0, 3.0], [4.0, 4.0])})]
  text = symsol_table.per_shape_table(reports)
  assert '| method | avg | cone | cube |' in text
  assert _row(text, 'Log-likelihood', 'a') == '| a | 2.25 | 3.00 ± 0.00 | 1.50 ± 0.71 |'
  assert _row(text, 'Spread', 'a') == '| a | 7.5 | 4.0 ± 0.0 | 11.0 ± 1.4 |'
  # b has no cone result: no average, a dash in its cell; one seed: no std.
  assert _row(text, 'Log-likelihood', 'b') == '| b | – | – | 0.50 |'
  # A head without a density (MSE's summary has neither metric) gets no row.
  reports[0]['methods'].append('mse')
  reports[0]['summary']['mse'] = {'angular_error/direct': {'mean': 40.0, 'std': None}}
  assert '| mse |' not in symsol_table.per_shape_table(reports)


def test_reports_that_cannot_share_a_table_are_refused():
  with pytest.raises(ValueError, match='not one of SYMSOL I'):
    symsol_table.per_shape_table([{'dataset': 'symmetric_shapes/k2_medium'}])
  with pytest.raises(ValueError, match='Two reports of the cube'):
    symsol_table.per_shape_table([_report('cube', {}), _report('cube', {}, size='_small')])
  with pytest.raises(ValueError, match='different measures'):
    symsol_table.per_shape_table([_report('cube', {}), _report('cone', {}, measure='relative')])
