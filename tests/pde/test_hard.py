"""The PDE half of hard constraints (kanpde.pde.hard): which conditions become hard (a target per piece),
the soft problem left to the loss, and problems that cannot be made hard (one line each). The lifting's
numbers: tests/models/test_hard.py."""

from __future__ import annotations

import math

import pytest
import torch

from kanpde import Box, Dirichlet, Initial, LShape, Problem
from kanpde.pde.hard import Lifting, hard_conditions, soft_problem
from kanpde.problems.heat1d import Heat1D
from kanpde.problems.laplace_lshape import LaplaceLShape
from kanpde.problems.poisson2d_robin import Poisson2DRobin


def test_robin_problem_keeps_its_other_conditions_soft() -> None:
    problem = Poisson2DRobin()
    pieces = hard_conditions(problem)[0]
    assert sorted(pieces) == ["x-", "y-"]
    soft = soft_problem(problem)
    assert [c.kind for c in soft.conditions] == ["neumann", "robin"]
    assert [c.kind for c in problem.conditions].count("dirichlet") == 1  # the original is untouched


def test_pieces_with_different_targets_and_an_initial_value_are_hard() -> None:
    problem = Heat1D()  # Dirichlet 0 on x-, x+ and the initial sin(pi x) on t-
    pieces = hard_conditions(problem)[0]
    assert list(pieces) == ["x-", "x+", "t-"]
    assert pieces["t-"].kind == "initial" and pieces["x-"].value == 0.0
    assert soft_problem(problem).conditions == ()


def test_polygons_are_hard() -> None:
    problem = LaplaceLShape()
    assert list(hard_conditions(problem)[0]) == list(LShape().pieces)
    x = torch.tensor([[-0.5, 0.5], [0.5, 0.5], [-0.5, -0.5]], dtype=torch.float64)
    lift = Lifting(problem)(x)
    assert lift.shape == (3, 2, 1) and bool((lift[:, 0] > 0).all())


class _Corners(Problem):
    coords = ("x", "t")

    def __init__(self, initial) -> None:
        super().__init__(Box([0.0, 0.0], [1.0, 1.0], self.coords), [Dirichlet(("x-", "x+"), 0.0), Initial(initial)])

    def pde(self, x, u):
        return u.d("t") - u.d("xx")


def test_box_data_that_disagree_where_faces_meet_are_refused() -> None:
    hard_conditions(_Corners(lambda x: torch.sin(math.pi * x[:, 0])))  # 0 at both ends: accepted
    with pytest.raises(ValueError, match=r"need data that agree where faces meet: 'u' is 0 by dirichlet\[x-\+x\+\] "
                                         r"and 1 by initial\[t-\] at \[0.0, 0.0\]; use soft conditions"):
        hard_conditions(_Corners(1.0))


def test_two_targets_on_one_piece_are_refused() -> None:
    class Twice(Problem):
        coords = ("x", "y")

        def __init__(self) -> None:
            super().__init__(Box([0, 0], [1, 1], self.coords), [Dirichlet("all", 0.0), Dirichlet("x-", 1.0)])

        def pde(self, x, u):
            return u.laplacian()

    with pytest.raises(ValueError, match=r"dirichlet\[all\] and dirichlet\[x-\] give 'u' two different values on 'x-'"):
        hard_conditions(Twice())
