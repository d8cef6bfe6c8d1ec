"""The hard-constraint wrapper (kanpde.models.hard.HardDirichlet): exact boundary values (box, disk, annulus),
derivatives of the wrapped model by the forward engine and the LM Jacobian against autograd, grid extension
through the wrapper, refused domains. (Runs with hard_bc=true: tests/app/.)"""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

import kanpde
from kanpde.derivatives.field import AutogradField, ForwardField
from kanpde.derivatives.jet import DerivativePlan
from kanpde.models.hard import HardDirichlet
from kanpde.io.files import import_object, resolve_class
from kanpde.pde.hard import hard_conditions, soft_problem
from kanpde.training.loss import PinnLeastSquares
from kanpde.pde.sampling import Sampler
from kanpde.training.loss import derivative_plans

F64 = torch.float64


class DiskPoisson(kanpde.Problem):
    """Δu = 0 on the unit disk centred at (0.2, -0.1), u = e^x sin y + 1 on the circle (a non-zero target)."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(kanpde.Disk((0.2, -0.1), 1.0), [kanpde.Dirichlet("circle", self.exact)])

    def pde(self, x, u):
        return u.laplacian()

    def exact(self, x):
        return torch.exp(x[:, 0]) * torch.sin(x[:, 1]) + 1.0


class AnnulusLaplace(kanpde.Problem):
    """Δu = 0 on an annulus, u = 1 + x on both circles."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(kanpde.Annulus((0.0, 0.0), 0.4, 1.2), [kanpde.Dirichlet("all", self.exact)])

    def pde(self, x, u):
        return u.laplacian()

    def exact(self, x):
        return 1.0 + x[:, 0]


# Importable by name, as HardDirichlet's config and load_run need.
_module = types.ModuleType("kanpde_test_hard_problems")
_module.DiskPoisson, _module.AnnulusLaplace = DiskPoisson, AnnulusLaplace
DiskPoisson.__module__ = AnnulusLaplace.__module__ = _module.__name__
sys.modules[_module.__name__] = _module

CASES = {
    "poisson2d": {"_target_": "kanpde.problems.poisson2d.Poisson2D"},
    "poisson5d": {"_target_": "kanpde.problems.poisson5d.Poisson5D"},
    "poisson2d_robin": {"_target_": "kanpde.problems.poisson2d_robin.Poisson2DRobin"},
    "disk": {"_target_": f"{_module.__name__}.DiskPoisson"},
    "annulus": {"_target_": f"{_module.__name__}.AnnulusLaplace"},
    "kovasznay": {"_target_": "kanpde.problems.kovasznay.Kovasznay"},
}


def _build_problem(spec: dict) -> kanpde.Problem:
    spec = dict(spec)
    return import_object(spec.pop("_target_"))(**spec)


def _wrapped(spec: dict, kind: str = "kan") -> HardDirichlet:
    problem = _build_problem(spec)
    widths = [problem.dim, 5, problem.n_outputs]
    net = kanpde.KAN(widths, grid_size=4, dtype=F64) if kind == "kan" else kanpde.MLP(widths, dtype=F64)
    return HardDirichlet(net, problem)


@pytest.mark.parametrize("name", ["poisson2d", "poisson5d", "poisson2d_robin", "disk", "annulus", "kovasznay"])
def test_dirichlet_data_hold_to_machine_precision(name: str) -> None:
    model = _wrapped(CASES[name])
    problem = model.problem
    with torch.no_grad():  # scramble the network: the boundary values must not depend on it
        for p in model.net.parameters():
            p.add_(torch.randn_like(p))
    batch = problem.sample(Sampler(method="sobol", seed=3), 64, 400)
    checked = 0
    for comp, (pieces, cond) in hard_conditions(problem).items():
        pts = batch.boundary[cond.label].x
        with torch.no_grad():
            u, n = model(pts)[:, comp], model.net(pts)[:, comp]
        g = cond.target(pts)
        if problem.geometry.is_box:  # the face factor is exactly zero on the face
            assert torch.equal(u, g)
        else:  # points on a circle carry the round-off of x = c + r (cos t, sin t): |D| ~ eps there
            assert float((u - g).abs().max()) <= 16 * torch.finfo(F64).eps * (1 + float(g.abs().max()) + float(n.abs().max()))
        checked += pts.shape[0]
        with torch.no_grad():  # and inside the domain the network does act
            inside = model(batch.interior)[:, comp] - cond.target(batch.interior)
        assert float(inside.abs().max()) > 1e-3
    assert checked > 0


@pytest.mark.parametrize("kind", ["kan", "mlp"])
@pytest.mark.parametrize("name", ["poisson2d", "disk", "annulus"])
def test_forward_engine_matches_autograd(name: str, kind: str) -> None:
    """The product rule of HardDirichlet.forward_jet against nested autograd of its forward."""
    model = _wrapped(CASES[name], kind)
    problem = model.problem
    x = torch.from_numpy(problem.geometry.sample_interior(Sampler(method="sobol", seed=1), 50))
    coords = problem.coords
    fwd = ForwardField(model, x, coords, plan={(0,), (1,), (0, 0), (0, 1), (1, 1)})
    ref = AutogradField(model, x, coords)
    for spec in [coords[0], coords[1], coords[0] * 2, coords[0] + coords[1], coords[1] * 2]:
        assert torch.allclose(fwd.d(spec), ref.d(spec), atol=1e-11, rtol=1e-11), spec
    assert torch.allclose(fwd.value, ref.value, atol=1e-14, rtol=0)
    traced = ForwardField(model, x, coords, plan=DerivativePlan.of([], [(0, 1)]))  # the Laplacian as one row
    assert torch.allclose(traced.laplacian(), ref.laplacian(), atol=1e-11, rtol=1e-11)
    assert traced.plan.pairs == ()


def test_lm_jacobian_through_the_wrapper_matches_autograd() -> None:
    model = _wrapped(CASES["poisson2d"])
    problem = soft_problem(model.problem)
    assert problem.conditions == ()
    batch = problem.sample(Sampler(method="sobol", seed=0), 30, 0)
    plans = derivative_plans(model, problem, batch, "forward")
    J, r = PinnLeastSquares(model, problem, batch, 0.01, "forward", plans, chunk_size=8).jacobian()
    J_ref, r_ref = PinnLeastSquares(model, problem, batch, 0.01, "autograd", None, chunk_size=8).jacobian()
    assert torch.allclose(r, r_ref, atol=1e-14, rtol=0)
    assert torch.allclose(J, J_ref, atol=1e-12 * float(J_ref.abs().max()), rtol=0)


def test_refine_keeps_the_wrapper_and_the_function() -> None:
    model = _wrapped(CASES["poisson2d"])
    x = torch.from_numpy(model.problem.geometry.sample_interior(Sampler(method="sobol", seed=2), 100))
    model.update_grid(x)  # every layer's inputs inside its grid: grid extension is then exact
    finer = model.refine(8, x)
    assert isinstance(finer, HardDirichlet) and finer.grid_size == 8 and model.grid_size == 4
    with torch.no_grad():
        assert torch.allclose(finer(x), model(x), atol=1e-10, rtol=0)
    rebuilt = HardDirichlet.from_config(json.loads(json.dumps(finer.config)), resolve_class, dtype=F64)
    rebuilt.load_state_dict(finer.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), finer(x))


def test_unsupported_domains_are_refused() -> None:
    with pytest.raises(ValueError, match="Box, Disk and Annulus domains, not LShape"):
        HardDirichlet(kanpde.KAN([2, 3, 1]), _build_problem({"_target_": "kanpde.problems.laplace_lshape.LaplaceLShape"}))
