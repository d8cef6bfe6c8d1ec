"""The periodic embedding (kanpde.models.periodic): periodic to rounding, value and derivatives, for a KAN and an
MLP; grid operations on embedded points; refused without a periodic coordinate."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from kanpde.derivatives.field import make_field, resolve_engine
from kanpde.io.files import resolve_class
from kanpde import Box, Periodic, Problem
from kanpde.models import KAN, MLP, ModifiedMLP, PeriodicEmbedding, tensor_path
from kanpde.models.protocol import is_edge_model, unwrap
from kanpde.models.registry import class_path
from kanpde.problems.advection1d import Advection1D
from kanpde.problems.allencahn1d import AllenCahn1D
from kanpde.problems.poisson2d import Poisson2D

F64 = torch.float64


def nets():
    torch.manual_seed(0)
    return {"kan": KAN([3, 4, 1], grid_size=5, dtype=F64), "mlp": MLP([3, 10, 10, 1], dtype=F64),
            "modified_mlp": ModifiedMLP([3, 8, 8, 1], fourier_features={"count": 3, "scale": 1.0}, dtype=F64)}


def matched(problem, n: int = 17) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = problem.geometry.bounding_box
    t = torch.linspace(0, 1, n, dtype=F64)
    xa = torch.stack([torch.full_like(t, lo[0]), t], 1)
    xb = torch.stack([torch.full_like(t, hi[0]), t], 1)
    return xa, xb


@pytest.mark.parametrize("name", ["kan", "mlp", "modified_mlp"])
@pytest.mark.parametrize("problem", [Advection1D(), AllenCahn1D()], ids=["advection1d", "allencahn1d"])
def test_values_and_derivatives_agree_on_opposite_faces(name: str, problem) -> None:
    model = PeriodicEmbedding(nets()[name], problem)
    assert resolve_engine("auto", model) == "forward"
    xa, xb = matched(problem)
    with tensor_path():  # the forward engine without compiling kernels
        ua, ub = make_field(model, xa, problem.coords, engine="auto"), make_field(model, xb, problem.coords, engine="auto")
        scale = float(ua.value.detach().abs().max()) + 1.0
        for spec in ("x", "t", "xx"):
            assert float((ua.d(spec) - ub.d(spec)).detach().abs().max()) < 1e-12 * scale * 100, spec
    assert float((ua.value - ub.value).detach().abs().max()) < 1e-14 * scale * 10
    # not trivially constant: the embedding keeps the dependence on x
    inner = torch.tensor([[0.3 * (xb[0, 0] + xa[0, 0]) + 0.1, 0.5]], dtype=F64)
    assert float((model(inner) - model(xa[8:9])).detach().abs()) > 1e-6


def test_the_network_sees_cos_and_sin_of_the_periodic_coordinate() -> None:
    model = PeriodicEmbedding(MLP([3, 4, 1], dtype=F64), Advection1D())
    x = torch.tensor([[0.0, 0.2], [math.pi / 2, 0.7], [2 * math.pi, 1.0]], dtype=F64)
    e = model.embed(x)
    expected = torch.tensor([[1.0, 0.0, 0.2], [0.0, 1.0, 0.7], [1.0, 0.0, 1.0]], dtype=F64)
    torch.testing.assert_close(e, expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(model(x), model.net(e), rtol=0, atol=0)


def test_lower_bound_is_the_phase_origin() -> None:
    """allencahn1d's x lies in [-1, 1]: period 2, theta = pi (x + 1)."""
    model = PeriodicEmbedding(MLP([3, 4, 1], dtype=F64), AllenCahn1D())
    e = model.embed(torch.tensor([[-1.0, 0.0], [0.0, 0.5]], dtype=F64))
    torch.testing.assert_close(e, torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.5]], dtype=F64), rtol=0, atol=1e-15)


def test_refused_without_a_periodic_coordinate_or_with_wrong_widths() -> None:
    with pytest.raises(ValueError, match="periodic embedding needs a problem with a periodic coordinate; Poisson2D"):
        PeriodicEmbedding(MLP([2, 4, 1]), Poisson2D())
    with pytest.raises(ValueError, match=r"the network takes 2 inputs, but advection1d embeds 2 coordinates into 3"):
        PeriodicEmbedding(MLP([2, 4, 1]), Advection1D())


def test_grid_operations_act_on_embedded_points() -> None:
    torch.manual_seed(1)
    problem = Advection1D()
    model = PeriodicEmbedding(KAN([3, 3, 1], grid_size=5, dtype=F64), problem)
    assert is_edge_model(model) and isinstance(unwrap(model), KAN) and model.grid_size == 5
    x = torch.rand(200, 2, dtype=F64) * torch.tensor([2 * math.pi, 1.0], dtype=F64)
    twin = copy.deepcopy(model.net)
    model.update_grid(x)
    twin.update_grid(model.embed(x))
    torch.testing.assert_close(model(x), twin(model.embed(x)), rtol=0, atol=0)
    finer = model.refine(10, x)
    assert isinstance(finer, PeriodicEmbedding) and finer.grid_size == 10
    torch.testing.assert_close(finer(x), twin.refine(10, model.embed(x))(model.embed(x)), rtol=0, atol=0)


def test_rebuilt_from_config_through_the_allow_list() -> None:
    torch.manual_seed(2)
    model = PeriodicEmbedding(MLP([3, 6, 1], activation="sin", dtype=F64), Advection1D(c=2.0))
    cls = resolve_class(class_path(PeriodicEmbedding))
    again = cls.from_config(model.config, resolve_class, dtype=F64)
    again.load_state_dict(model.state_dict())
    assert again.problem.c == 2.0 and again.net.config == model.net.config
    x = torch.rand(5, 2, dtype=F64)
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


class _XYPeriodic(Problem):
    """x and y periodic (periods 3 and 2), z not: the forward jet's trace rows mix embedded and plain columns."""

    coords = ("x", "y", "z")

    def __init__(self) -> None:
        super().__init__(Box([0.0, -1.0, 0.0], [3.0, 1.0, 1.0], self.coords), [Periodic(("x-", "x+")), Periodic(("y-", "y+"))])

    def pde(self, x, u):
        return u.laplacian()


@pytest.mark.parametrize("name", ["kan", "mlp"])
@pytest.mark.parametrize("problem", [AllenCahn1D(), _XYPeriodic()], ids=["allencahn1d", "xy_periodic"])
def test_forward_jet_matches_autograd(name: str, problem) -> None:
    torch.manual_seed(4)
    d = problem.dim
    net = KAN([d + len([1 for c in problem.conditions if c.kind == "periodic"]), 4, 1], grid_size=5, dtype=F64) if name == "kan" \
        else MLP([d + len([1 for c in problem.conditions if c.kind == "periodic"]), 8, 8, 1], dtype=F64)
    model = PeriodicEmbedding(net, problem)
    lo, hi = (torch.as_tensor(b, dtype=F64) for b in problem.geometry.bounding_box)
    x = lo + (hi - lo) * torch.rand(11, d, dtype=F64)
    with tensor_path():
        fwd = make_field(model, x, problem.coords, engine="forward")
        ag = make_field(model, x, problem.coords, engine="autograd")
        specs = [c for c in problem.coords] + [a + b for i, a in enumerate(problem.coords) for b in problem.coords[i:]]
        for spec in specs:
            torch.testing.assert_close(fwd.d(spec), ag.d(spec), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(fwd.laplacian(), ag.laplacian(), rtol=1e-10, atol=1e-12)
        assert fwd.value.shape == (11,)
