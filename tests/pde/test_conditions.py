"""Conditions with variable coefficients (Robin with functions, the conormal flux) and point conditions: their
residuals vanish on manufactured solutions, their points are sampled as declared, bad input is refused, and a
pure-Neumann problem whose level is pinned at a point trains to its solution."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import kanpde
from kanpde import Box, ConormalFlux, Dirichlet, Disk, Neumann, PointValue, Problem, Robin, Sampler
from kanpde.derivatives import make_field
from kanpde.pde.problem import BoundaryPoints

F64 = torch.float64


def u_exact(x: Tensor) -> Tensor:
    return torch.sin(x[:, 0]) * torch.cos(2 * x[:, 1]) + x[:, 0] * x[:, 1]


def grad_exact(x: Tensor) -> Tensor:
    """∇u by hand (not autograd): the residuals below are checked against independent formulas."""
    ux = torch.cos(x[:, 0]) * torch.cos(2 * x[:, 1]) + x[:, 1]
    uy = -2 * torch.sin(x[:, 0]) * torch.sin(2 * x[:, 1]) + x[:, 0]
    return torch.stack([ux, uy], dim=1)


class Exact(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return u_exact(x)[:, None]


def a_fun(x: Tensor) -> Tensor:
    return 1 + x[:, 0] ** 2


def b_fun(x: Tensor) -> Tensor:
    return 2 + x[:, 1]


def boundary(geo, piece: str, n: int = 64) -> BoundaryPoints:
    x, normals = geo.sample_boundary(piece, Sampler("sobol", seed=0), n)
    return BoundaryPoints(torch.from_numpy(x), torch.from_numpy(normals))


def field(points: BoundaryPoints):
    return make_field(Exact().double(), points.x, ("x", "y"), ("u",), "autograd")


@pytest.mark.parametrize("geo", [Box([-1, -1], [1, 1], names=("x", "y")), Disk((0.2, 0.1), 0.7)], ids=["box", "disk"])
def test_robin_with_functions_vanishes_on_a_manufactured_solution(geo) -> None:
    for piece in geo.pieces:
        pts = boundary(geo, piece)
        dudn = (grad_exact(pts.x) * pts.normals).sum(dim=1)
        target = a_fun(pts.x) * u_exact(pts.x) + b_fun(pts.x) * dudn
        lookup = dict(zip(map(tuple, pts.x.tolist()), target.tolist()))
        cond = Robin(piece, a=a_fun, b=b_fun, value=lambda x: torch.tensor([lookup[tuple(r)] for r in x.tolist()], dtype=F64))
        assert cond.residual(pts, field(pts)).abs().max() < 1e-12
        wrong = Robin(piece, a=a_fun, b=7.0, value=cond.value)
        assert wrong.residual(pts, field(pts)).abs().max() > 1e-3  # the coefficient is used


@pytest.mark.parametrize(
    ("A", "apply"),
    [
        (2.5, lambda x, g: 2.5 * g),
        (a_fun, lambda x, g: a_fun(x)[:, None] * g),
        ([[2.0, 0.5], [0.5, 1.0]], lambda x, g: g @ torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64).T),
        (lambda x: torch.stack([torch.stack([a_fun(x), x[:, 0]], 1), torch.stack([x[:, 0], b_fun(x)], 1)], 1),
         lambda x, g: torch.stack([a_fun(x) * g[:, 0] + x[:, 0] * g[:, 1], x[:, 0] * g[:, 0] + b_fun(x) * g[:, 1]], 1)),
    ],
    ids=["constant", "isotropic", "matrix", "matrix_field"],
)
def test_conormal_flux_vanishes_on_a_manufactured_solution(A, apply) -> None:
    geo = Box([-1, -1], [1, 1], names=("x", "y"))
    for piece in geo.pieces:
        pts = boundary(geo, piece)
        flux = (apply(pts.x, grad_exact(pts.x)) * pts.normals).sum(dim=1)
        lookup = dict(zip(map(tuple, pts.x.tolist()), flux.tolist()))
        cond = ConormalFlux(piece, A=A, value=lambda x: torch.tensor([lookup[tuple(r)] for r in x.tolist()], dtype=F64))
        assert cond.kind == "flux"
        assert cond.residual(pts, field(pts)).abs().max() < 1e-12


def test_a_flux_coefficient_of_the_wrong_shape_is_refused() -> None:
    geo = Box([-1, -1], [1, 1], names=("x", "y"))
    pts = boundary(geo, "x-", 8)
    cond = ConormalFlux("x-", A=lambda x: torch.ones(x.shape[0], 3, dtype=F64))
    with pytest.raises(ValueError, match=r"flux coefficient A\(x\) must be"):
        cond.residual(pts, field(pts))


def test_point_condition_points_are_fixed_and_take_no_share_of_the_boundary_points() -> None:
    class Pinned(Problem):
        coords = ("x", "y")

        def __init__(self) -> None:
            super().__init__(Box([-1, -1], [1, 1], names=self.coords),
                             [Neumann("all"), PointValue((0.0, 0.5), 2.0), PointValue([(1, 1), (-1, 0)], 0.0, derivative="x")])

        def pde(self, x, u):
            return u.laplacian()

    problem = Pinned()
    labels = [c.label for c in problem.conditions]
    assert labels == ["neumann[all]", "point[0,0.5]", "point_x[1,1;-1,0]"]
    batch = problem.sample(Sampler("sobol", seed=0), 16, 1)  # one boundary point is enough: points are extra
    assert batch.boundary["neumann[all]"].x.shape == (1, 2)
    assert batch.boundary["point[0,0.5]"].x.tolist() == [[0.0, 0.5]]
    assert batch.boundary["point_x[1,1;-1,0]"].x.tolist() == [[1.0, 1.0], [-1.0, 0.0]]
    again = problem.sample(Sampler("sobol", seed=5), 16, 8)
    assert again.boundary["point[0,0.5]"].x.tolist() == [[0.0, 0.5]]


def test_point_condition_residual_is_value_or_derivative_minus_target() -> None:
    at = torch.tensor([[0.3, -0.2]], dtype=F64)
    pts = BoundaryPoints(at, torch.zeros_like(at))
    value = PointValue((0.3, -0.2), 1.5).residual(pts, field(pts))
    assert value.item() == pytest.approx(u_exact(at).item() - 1.5, abs=1e-14)
    dx = PointValue((0.3, -0.2), 0.0, derivative="x").residual(pts, field(pts))
    assert dx.item() == pytest.approx(grad_exact(at)[0, 0].item(), abs=1e-12)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: PointValue((2.0, 0.0)), "outside the domain"),
        (lambda: PointValue((0.0, 0.0, 0.0)), "need 2 coordinates"),
        (lambda: PointValue((float("nan"), 0.0)), "finite points"),
        (lambda: PointValue([]), "finite points"),
    ],
)
def test_bad_points_are_refused_with_one_line(make, match: str) -> None:
    class P(Problem):
        coords = ("x", "y")

        def __init__(self) -> None:
            super().__init__(Box([-1, -1], [1, 1], names=self.coords), [Dirichlet("x-"), make()])

        def pde(self, x, u):
            return u.laplacian()

    with pytest.raises(ValueError, match=match):
        P()


class NeumannPinned(Problem):
    """Δu = f with du/dn given on the whole boundary: u is unique up to a constant, pinned at one point."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(Box([0, 0], [1, 1], names=self.coords),
                         [Neumann("all", self.dudn), PointValue((0.5, 0.5), 0.0)])

    @staticmethod
    def dudn(x: Tensor) -> Tensor:  # u = cos(πx) cos(πy): du/dn = 0 on every face of the unit square
        return torch.zeros(x.shape[0], dtype=x.dtype)

    def pde(self, x: Tensor, u) -> Tensor:
        return u.laplacian() + 2 * math.pi**2 * self.exact(x)

    def exact(self, x: Tensor) -> Tensor:
        return torch.cos(math.pi * x[:, 0]) * torch.cos(math.pi * x[:, 1])


@pytest.mark.slow
def test_a_pure_neumann_problem_pinned_at_a_point_trains_to_its_solution() -> None:
    torch.manual_seed(0)
    problem = NeumannPinned()
    stages = [kanpde.Stage(kanpde.LevenbergMarquardt, steps=60, update_grid=False)]
    result = kanpde.fit(kanpde.KAN([2, 5, 1], grid_size=5, dtype=F64), problem, stages, n_interior=400, n_boundary=120)
    ev = kanpde.evaluate(result.model, problem, 41)
    assert ev.metrics["l2_rel"] < 1e-2
