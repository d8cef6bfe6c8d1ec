"""kanpde.training.loss: one assembly of the PINN residuals under the scalar loss, the least-squares
system and the symbolic polish."""

from __future__ import annotations

import math

import pytest
import torch

import kanpde
from kanpde.models.symbolic import to_symbolic
from kanpde.pde import Sampler
from kanpde.problems.allencahn1d import AllenCahn1D
from kanpde.problems.kovasznay import Kovasznay
from kanpde.problems.poisson2d import Poisson2D
from kanpde.problems.poisson2d_robin import Poisson2DRobin
from kanpde.training.loss import (
    PinnLeastSquares,
    derivative_plans,
    loss_terms,
    residual_blocks,
    residual_sets,
    scaled_residuals,
    weighted_loss,
)
from kanpde.training.snap import auto_symbolic, polish_affine

F64 = torch.float64
PROBLEMS = {  # several residuals (kovasznay), a periodic condition with derivatives (allencahn1d), Robin
    "kovasznay": Kovasznay,
    "allencahn1d": lambda: AllenCahn1D(n_modes=64, dt=1e-3, n_out=11),
    "poisson2d_robin": Poisson2DRobin,
}


def _setup(make):
    torch.manual_seed(0)
    problem = make()
    model = kanpde.KAN([problem.dim, 4, problem.n_outputs], grid_size=4, dtype=F64)
    batch = problem.sample(Sampler(seed=3), 30, 24).to(F64, "cpu")
    return problem, model, batch


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_scaled_residuals_the_system_and_the_terms_give_one_loss(name: str) -> None:
    problem, model, batch = _setup(PROBLEMS[name])
    plans = derivative_plans(model, problem, batch)
    with torch.no_grad():
        loss = float(weighted_loss(loss_terms(model, problem, batch, plans=plans), problem, 0.03))
        vector = scaled_residuals(model, problem, batch, 0.03, plans=plans)
    assert math.isclose(float(vector.pow(2).sum()), loss, rel_tol=1e-12)
    system = PinnLeastSquares(model, problem, batch, 0.03, "forward", plans, chunk_size=7)
    J, r = system.jacobian()
    assert math.isclose(float(r.pow(2).sum()), loss, rel_tol=1e-12) and system.value() == loss
    assert r.shape == vector.shape and J.shape == (r.shape[0], sum(p.numel() for p in model.parameters()))


def test_sets_and_blocks_follow_the_problem() -> None:
    problem, model, batch = _setup(PROBLEMS["allencahn1d"])
    sets = residual_sets(problem, batch, 0.5)
    assert [s.label for s in sets] == ["pde", *(c.label for c in problem.conditions)]
    periodic = next(s for s, c in zip(sets[1:], problem.conditions) if c.kind == "periodic")
    cond = next(c for c in problem.conditions if c.kind == "periodic")
    assert periodic.unit == 2 and periodic.entries == 1 + len(cond.derivatives)
    assert periodic.scale == math.sqrt(cond.weight / (periodic.x.shape[0] // 2 * periodic.entries))
    assert sets[0].scale == math.sqrt(0.5 / batch.interior.shape[0])
    blocks = residual_blocks(model, problem, batch)
    assert [b.label for b in blocks] == [s.label for s in sets]
    assert blocks[0].residual.shape == (batch.interior.shape[0],)


def test_the_symbolic_polish_minimises_the_training_loss() -> None:
    """polish_affine fits the affine parameters on scaled_residuals: its reported loss is the trainer's."""
    problem = Poisson2D()
    torch.manual_seed(1)
    model = kanpde.KAN([2, 2, 1], grid_size=5, dtype=F64)
    batch = problem.sample(Sampler(seed=2), 64, 32).to(F64, "cpu")
    sym, _ = auto_symbolic(to_symbolic(model), batch.all_points(), lib=["x", "x^2", "sin"], r2_threshold=0.0)
    with torch.no_grad():
        start = float(weighted_loss(loss_terms(sym, problem, batch), problem, 0.01))
    before, after = polish_affine(sym, problem, batch, 0.01, max_nfev=50)
    with torch.no_grad():
        end = float(weighted_loss(loss_terms(sym, problem, batch), problem, 0.01))
    assert math.isclose(before, start, rel_tol=1e-12) and math.isclose(after, end, rel_tol=1e-12)
    assert after < before
