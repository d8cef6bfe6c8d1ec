"""Which coordinates a problem declares periodic, and the problem left to train on (kanpde.pde.periodic)."""

from __future__ import annotations

import math

import pytest

from kanpde import Box, Periodic, Problem
from kanpde.pde.periodic import periodic_axes, unperiodic_problem
from kanpde.problems.advection1d import Advection1D
from kanpde.problems.poisson2d import Poisson2D


class TwoPeriodic(Problem):
    coords = ("x", "y", "z")

    def __init__(self) -> None:
        super().__init__(Box([0.0, -1.0, 0.0], [3.0, 2.0, 1.0], self.coords),
                         [Periodic(("y+", "y-")), Periodic(("x-", "x+"), derivatives=("x",))])

    def pde(self, x, u):
        return u.d("z")


def test_axes_and_periods() -> None:
    assert periodic_axes(Advection1D()) == {0: (0.0, 2 * math.pi)}
    assert periodic_axes(TwoPeriodic()) == {0: (0.0, 3.0), 1: (-1.0, 3.0)}


def test_unperiodic_problem_drops_only_the_periodic_conditions() -> None:
    problem = Advection1D()
    soft = unperiodic_problem(problem)
    assert [c.kind for c in problem.conditions] == ["periodic", "initial"]
    assert [c.kind for c in soft.conditions] == ["initial"]
    assert soft.geometry is problem.geometry and soft is not problem
    assert unperiodic_problem(TwoPeriodic()).conditions == ()


def test_problem_without_periodic_condition_is_refused() -> None:
    with pytest.raises(ValueError, match="Poisson2D: it has no Periodic condition on a coordinate's two faces"):
        periodic_axes(Poisson2D())
    with pytest.raises(ValueError, match="periodic embedding needs a problem with a periodic coordinate"):
        unperiodic_problem(Poisson2D())
