"""Derivative plans (kanpde.derivatives.jet.DerivativePlan): pairs, traces, positions and validation."""

from __future__ import annotations

import pytest

from kanpde.derivatives.jet import DerivativePlan


def test_plan_from_indices() -> None:
    plan = DerivativePlan.of([(0, 0), (2, 2), (1,), ()])
    assert plan.dirs == (0, 1, 2) and plan.pairs == ((0, 0), (2, 2)) and plan.order == 2
    assert plan.covers((2, 2)) and plan.covers((1,)) and not plan.covers((0, 2))
    assert plan.position((2, 2)) == 1 and plan.position((2,)) == 2
    assert DerivativePlan.of([(1, 3)]).pairs == ((0, 1),)
    assert DerivativePlan.of([]).order == 0
    with pytest.raises(ValueError):
        DerivativePlan((1, 0))


def test_plan_with_traces() -> None:
    plan = DerivativePlan.of([(0,), (1, 1)], [(0, 2), (0, 1, 2)])
    assert plan.dirs == (0, 1, 2) and plan.pairs == ((1, 1),) and plan.traces == ((0, 1, 2), (0, 2))
    assert plan.p == 3 and plan.order == 2 and plan.trace_columns == {(0, 2), (0, 1, 2)}
    assert plan.trace_position((0, 1, 2)) == 1 and plan.trace_position((0, 2)) == 2 and plan.trace_position((0, 1)) is None
    assert plan.entries == ((0, 1, 1), (1, 0, 0), (1, 1, 1), (1, 2, 2), (2, 0, 0), (2, 2, 2))
    assert DerivativePlan.of([], [(3,)]) == DerivativePlan.of([(3, 3)])  # a one-column trace is its pair
    assert DerivativePlan.of([], [(1, 3)]) == DerivativePlan((1, 3), (), ((0, 1),))  # positions into dirs
    assert plan.union([], [(0, 1)]).trace_columns == {(0, 2), (0, 1, 2), (0, 1)}
    for bad in [((0, 1), (), ((0,),)), ((0, 1), (), ((1, 0),)), ((0, 1), (), ((0, 2),)), ((0, 1), (), ((0, 1), (0, 1)))]:
        with pytest.raises(ValueError):
            DerivativePlan(*bad)
