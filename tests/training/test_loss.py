"""kanpde.training.loss: one assembly of the PINN residuals under the loss terms (every derivative engine,
derivative plans, the weighted sum), the least-squares system, the symbolic polish and the loss accumulated
over chunks of points."""

from __future__ import annotations

import math

import pytest
import torch
from kanpde.problems.advection1d import Advection1D
from kanpde.problems.allencahn1d import AllenCahn1D
from kanpde.problems.kovasznay import Kovasznay
from kanpde.problems.poisson2d import Poisson2D
from kanpde.problems.poisson2d_robin import Poisson2DRobin
from torch import nn

import kanpde
from kanpde import KAN, MLP, Dirichlet, Neumann, Problem, Sampler, loss_terms
from kanpde.derivatives.jet import DerivativePlan
from kanpde.models.symbolic import to_symbolic
from kanpde.pde.geometry import Box
from kanpde.training.loss import (
    PinnLeastSquares,
    accumulate_loss,
    derivative_plans,
    residual_blocks,
    residual_sets,
    scaled_residuals,
    weighted_loss,
)
from kanpde.training.snap import auto_symbolic, polish_affine
from tests.helpers import F64, perturb

D = F64
BC = "dirichlet[all]"


def test_loss_terms_and_parameter_gradients_match_autograd_engine() -> None:
    torch.manual_seed(0)
    problem = Poisson2D()
    batch = problem.sample(Sampler(seed=0), 256, 64).to(D, "cpu")
    for model in (perturb(KAN([2, 5, 1], grid_size=7, noise_scale=1.0, dtype=D)), perturb(MLP([2, 16, 16, 1], dtype=D))):
        plans = derivative_plans(model, problem, batch, "auto")
        assert plans is not None and plans["pde"] == DerivativePlan.of([], [(0, 1)])
        assert all(p.order == 0 for label, p in plans.items() if label != "pde")  # Dirichlet: values only
        results = {}
        for engine, kw in (("auto", {"plans": plans}), ("forward", {}), ("autograd", {})):
            model.zero_grad()
            terms = loss_terms(model, problem, batch, engine, **kw)
            (0.01 * terms["pde"] + sum(v for k, v in terms.items() if k != "pde")).backward()
            results[engine] = ({k: v.item() for k, v in terms.items()}, [p.grad.clone() for p in model.parameters()])
        ref_terms, ref_grads = results["autograd"]
        for engine in ("auto", "forward"):
            got_terms, got_grads = results[engine]
            for key in ref_terms:
                assert got_terms[key] == pytest.approx(ref_terms[key], rel=1e-10)
            for a, b in zip(got_grads, ref_grads):
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert derivative_plans(nn.Sequential(nn.Linear(2, 1)).to(D), problem, batch, "auto") is None


class _NeumannProblem(Problem):
    """Laplace-type residual with a Neumann side: exercises first-derivative plans on the boundary."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(Box([0.0, 0.0], [1.0, 1.0], self.coords), [Dirichlet(["x-", "x+"]), Neumann(["y-", "y+"])])

    def pde(self, x, u):
        return u.laplacian() + u.d("xy") - 1.0


def test_neumann_conditions_and_mixed_derivatives_in_loss_terms() -> None:
    problem = _NeumannProblem()
    batch = problem.sample(Sampler(seed=1), 64, 32).to(D, "cpu")
    model = perturb(KAN([2, 3, 1], grid_size=4, noise_scale=1.0, dtype=D))
    plans = derivative_plans(model, problem, batch)
    assert plans["pde"] == DerivativePlan.of([(0, 1)], [(0, 1)])  # the mixed pair and the Laplacian row
    neumann = next(c.label for c in problem.conditions if c.kind == "neumann")
    assert plans[neumann] == DerivativePlan.of([(0,), (1,)])
    fast = loss_terms(model, problem, batch, "forward", plans)
    slow = loss_terms(model, problem, batch, "autograd")
    for key in slow:
        assert fast[key].item() == pytest.approx(slow[key].item(), rel=1e-10)


def test_loss_is_the_weighted_sum_of_terms() -> None:
    problem = Poisson2D()
    batch = problem.sample(Sampler(), 64, 32).to(F64, "cpu")
    model = KAN([2, 3, 1], grid_size=3, dtype=F64)
    terms = loss_terms(model, problem, batch)
    assert weighted_loss(terms, problem, 0.01).item() == pytest.approx(0.01 * terms["pde"].item() + terms[BC].item())


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


# -- chunked accumulation (bounded memory) -------------------------------------------------------------------


def _models(problem: Problem) -> list[nn.Module]:
    torch.manual_seed(1)
    return [perturb(KAN([problem.dim, 4, problem.n_outputs], grid_size=5, noise_scale=1.0, dtype=D)),
            perturb(MLP([problem.dim, 8, 8, problem.n_outputs], dtype=D))]


@pytest.mark.parametrize("engine", ["forward", "autograd"])
@pytest.mark.parametrize("problem", [Poisson2D, Advection1D, Kovasznay], ids=["poisson2d", "advection1d", "kovasznay"])
def test_accumulated_loss_and_gradient_equal_the_unchunked_ones(problem, engine: str) -> None:
    """Chunks of 7 points (periodic pairs: 3 units; odd remainders) give the unchunked terms, loss and
    gradient to rounding, for a KAN and an MLP, a plain Poisson problem, periodic pairs with derivatives
    (advection1d) and a system of three residuals (kovasznay)."""
    problem = problem()
    batch = problem.sample(Sampler(seed=0), 61, 47).to(D, "cpu")
    for model in _models(problem):
        plans = derivative_plans(model, problem, batch, engine)
        model.zero_grad(set_to_none=True)
        terms = loss_terms(model, problem, batch, engine, plans)
        loss = weighted_loss(terms, problem, 0.03)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        chunked, total = accumulate_loss(model, problem, batch, 0.03, engine, plans, chunk_size=7, backward=True)
        assert set(chunked) == set(terms)
        for k in terms:
            assert float(chunked[k]) == pytest.approx(float(terms[k].detach()), rel=1e-12, abs=0), k
        assert float(total) == pytest.approx(float(loss), rel=1e-12, abs=0) and not total.requires_grad
        for p, g in zip(model.parameters(), grads):
            torch.testing.assert_close(p.grad, g, rtol=1e-11, atol=1e-13 * float(g.abs().max()))
        _, again = accumulate_loss(model, problem, batch, 0.03, engine, plans, chunk_size=None)
        assert float(again) == pytest.approx(float(loss), rel=1e-13, abs=0)


@pytest.mark.parametrize("chunk", [None, 5])
def test_least_squares_value_under_the_autograd_engine_is_the_loss(chunk: int | None) -> None:
    """The system's value (the LM's trial losses) carries the residual's derivatives under the autograd
    engine too (it used to be evaluated without a graph, so every derivative read as zero)."""
    problem = Poisson2D()
    batch = problem.sample(Sampler(seed=0), 50, 20).to(D, "cpu")
    for model in _models(problem):
        loss = float(weighted_loss(loss_terms(model, problem, batch, "autograd"), problem, 0.01))
        chunking = {} if chunk is None else {"loss_chunk_size": chunk}
        system = PinnLeastSquares(model, problem, batch, 0.01, "autograd", **chunking)
        assert system.value() == pytest.approx(loss, rel=1e-12, abs=0)
