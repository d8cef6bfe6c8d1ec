"""The PDE half of hard constraints (kanpde.pde.hard): which
conditions become hard, the soft problem left to the loss, and problems that cannot be made hard."""

from __future__ import annotations

import pytest

from kanpde.pde.hard import hard_conditions, soft_problem
from kanpde.problems.heat1d import Heat1D
from kanpde.problems.poisson2d_robin import Poisson2DRobin


def test_robin_problem_keeps_its_other_conditions_soft() -> None:
    problem = Poisson2DRobin()
    pieces, _ = hard_conditions(problem)[0]
    assert sorted(pieces) == ["x-", "y-"]
    soft = soft_problem(problem)
    assert [c.kind for c in soft.conditions] == ["neumann", "robin"]
    assert [c.kind for c in problem.conditions].count("dirichlet") == 1  # the original is untouched


def test_a_condition_on_time_cannot_be_made_hard() -> None:
    with pytest.raises(ValueError, match="one target per output"):
        hard_conditions(Heat1D())  # Dirichlet 0 on x-, x+ and the initial sin(pi x) on t-
