"""The PINN loss (kanpde.training.fit today, kanpde.training.loss after the split): loss terms and their
parameter gradients under every derivative engine, derivative plans, the weighted sum."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kanpde import KAN, MLP, Dirichlet, Neumann, Problem, Sampler, loss_terms
from kanpde.derivatives.jet import DerivativePlan
from kanpde.pde.geometry import Box
from kanpde.problems.poisson2d import Poisson2D
from kanpde.training.fit import derivative_plans, weighted_loss
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
