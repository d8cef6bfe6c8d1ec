"""The derivative accessor (kanpde.derivatives.field): the autograd engine against closed forms (values,
derivatives, caching, errors), then the forward engine against the autograd engine (the oracle), in float64.

Agreement is checked to 1e-10 relative for values, first, second and mixed derivatives of KANs
(uniform and adaptive knots, several grids and spline orders, every base activation) and MLPs (every
activation), in 1, 2 and 3 input dimensions and with several outputs; then gradients with respect to
parameters (gradcheck), plans grown on demand, engine selection and torch.func.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from kanpde import KAN, MLP
from kanpde.derivatives.field import (
    AutogradField, Field, ForwardField, make_field, probe_plan, resolve_engine, supports_forward,
)
from kanpde.derivatives.jet import DerivativePlan
from kanpde.models import _kernels as kernels
from kanpde.problems.poisson2d import Poisson2D
from tests.helpers import F64, FunctionModule, perturb

# -- the autograd engine against closed forms ------------------------------------------------------------------

A, B = 1.3, -0.7
TOL = 1e-12


def u2(x: Tensor) -> Tensor:
    """sin(a x) exp(b y) + x^3 y."""
    X, Y = x[:, 0], x[:, 1]
    return torch.sin(A * X) * torch.exp(B * Y) + X**3 * Y


def u2_derivatives(x: Tensor) -> dict[str, Tensor]:
    X, Y = x[:, 0], x[:, 1]
    s, c, e = torch.sin(A * X), torch.cos(A * X), torch.exp(B * Y)
    return {
        "x": A * c * e + 3 * X**2 * Y,
        "y": B * s * e + X**3,
        "xx": -(A**2) * s * e + 6 * X * Y,
        "yy": B**2 * s * e,
        "xy": A * B * c * e + 3 * X**2,
        "xxy": -(A**2) * B * s * e + 6 * X,
    }


@pytest.fixture
def pts2() -> Tensor:
    return torch.rand(50, 2, dtype=F64) * 4 - 2


def test_2d_values_and_derivatives(pts2: Tensor) -> None:
    model = FunctionModule(u2)
    u = AutogradField(model, pts2, ("x", "y"))
    exact = u2_derivatives(pts2)
    assert u.value.shape == (50,)
    torch.testing.assert_close(u.value, u2(pts2), rtol=0, atol=TOL)
    for spec in ("x", "y", "xx", "yy", "xy", "xxy"):
        torch.testing.assert_close(u.d(spec), exact[spec], rtol=0, atol=TOL, msg=spec)
    torch.testing.assert_close(u.d("yx"), exact["xy"], rtol=0, atol=TOL)
    torch.testing.assert_close(u.d("yxx"), exact["xxy"], rtol=0, atol=TOL)
    torch.testing.assert_close(u.grad(), torch.stack([exact["x"], exact["y"]], 1), rtol=0, atol=TOL)
    torch.testing.assert_close(u.laplacian(), exact["xx"] + exact["yy"], rtol=0, atol=TOL)
    torch.testing.assert_close(u.laplacian(["x"]), exact["xx"], rtol=0, atol=TOL)
    assert model.calls == 1  # one forward pass per field, derivatives by autograd on it


def u3(x: Tensor) -> Tensor:
    """sin(x1) x2^2 exp(x3) + x1 x2 x3."""
    return torch.sin(x[:, 0]) * x[:, 1] ** 2 * torch.exp(x[:, 2]) + x[:, 0] * x[:, 1] * x[:, 2]


def test_3d_with_multi_character_coordinate_names() -> None:
    x = torch.rand(40, 3, dtype=F64) * 2 - 1
    x1, x2, x3 = x.unbind(1)
    s, c, e = torch.sin(x1), torch.cos(x1), torch.exp(x3)
    u = make_field(FunctionModule(u3), x, ("x1", "x2", "x3"))
    expected = {
        "x1": c * x2**2 * e + x2 * x3,
        "x1x2": 2 * x2 * c * e + x3,
        "x2x1": 2 * x2 * c * e + x3,
        "x2x3": 2 * x2 * s * e + x1,
        "x3x3": s * x2**2 * e,
        "x1x1": -s * x2**2 * e,
        "x2x2": 2 * s * e,
        "x1x2x3": 2 * x2 * c * e + 1,
    }
    for spec, value in expected.items():
        torch.testing.assert_close(u.d(spec), value, rtol=0, atol=TOL, msg=spec)
    torch.testing.assert_close(u.d(("x1", "x1")), expected["x1x1"], rtol=0, atol=TOL)
    torch.testing.assert_close(u.laplacian(), 2 * s * e, rtol=0, atol=TOL)
    assert u.grad().shape == (40, 3)


def test_laplacian_excludes_time() -> None:
    """u = sin(2x) t^3: the default laplacian is u_xx only when a coordinate is called "t"."""
    f = lambda x: torch.sin(2 * x[:, 0]) * x[:, 1] ** 3  # noqa: E731
    x = torch.rand(30, 2, dtype=F64) + 0.5
    X, T = x.unbind(1)
    u = make_field(FunctionModule(f), x, ("x", "t"))
    assert u.time_coord == "t"
    torch.testing.assert_close(u.laplacian(), -4 * torch.sin(2 * X) * T**3, rtol=0, atol=TOL)
    torch.testing.assert_close(u.d("t"), 3 * torch.sin(2 * X) * T**2, rtol=0, atol=TOL)
    torch.testing.assert_close(
        u.laplacian(("x", "t")), -4 * torch.sin(2 * X) * T**3 + 6 * torch.sin(2 * X) * T, rtol=0, atol=TOL
    )
    # without a time coordinate every coordinate counts
    v = make_field(FunctionModule(f), x, ("x", "t"), time_coord=None)
    torch.testing.assert_close(v.laplacian(), u.laplacian(("x", "t")), rtol=0, atol=TOL)


def two_outputs(x: Tensor) -> Tensor:
    """u = x^2 y, v = sin(x) + y^3."""
    X, Y = x.unbind(1)
    return torch.stack([X**2 * Y, torch.sin(X) + Y**3], dim=1)


def test_multi_output_field(pts2: Tensor) -> None:
    X, Y = pts2.unbind(1)
    f = make_field(FunctionModule(two_outputs), pts2, ("x", "y"), outputs=("u", "v"))
    assert f.value.shape == (50, 2)
    torch.testing.assert_close(f.value, two_outputs(pts2), rtol=0, atol=TOL)
    torch.testing.assert_close(f["v"].d("x"), torch.cos(X), rtol=0, atol=TOL)
    torch.testing.assert_close(f["v"].d("yy"), 6 * Y, rtol=0, atol=TOL)
    torch.testing.assert_close(f["u"].d("xy"), 2 * X, rtol=0, atol=TOL)
    torch.testing.assert_close(f["u"].value, X**2 * Y, rtol=0, atol=TOL)
    torch.testing.assert_close(f["u"].laplacian(), 2 * Y, rtol=0, atol=TOL)
    with pytest.raises(ValueError, match="select one"):
        f.d("x")
    with pytest.raises(ValueError, match="select one"):
        f.grad()


def test_derivatives_are_cached(pts2: Tensor) -> None:
    u = make_field(FunctionModule(u2), pts2, ("x", "y"))
    assert u.d("x") is u.d("x")
    assert u.d("xy") is u.d("yx") is u.d(("y", "x"))
    assert u.d("xx") is u.d(["x", "x"])
    f = make_field(FunctionModule(two_outputs), pts2, ("x", "y"), outputs=("u", "v"))
    first = f["v"].d("x")
    assert f["v"].d("x") is first  # views share one cache
    assert f["u"].d("x") is not first


def test_derivatives_build_a_graph_to_the_parameters(pts2: Tensor) -> None:
    model = FunctionModule(u2)
    model.dummy.data.fill_(0.0)
    w = torch.nn.Parameter(torch.tensor(2.0, dtype=F64))
    u = make_field(lambda x: w * model(x), pts2, ("x", "y"))
    (g,) = torch.autograd.grad(u.d("xx").sum(), w)
    assert g.item() == pytest.approx(u2_derivatives(pts2)["xx"].sum().item(), rel=1e-12)


def test_output_independent_of_points_has_zero_derivatives() -> None:
    x = torch.rand(10, 2, dtype=F64)
    c = torch.nn.Parameter(torch.tensor(3.0, dtype=F64))
    u = make_field(lambda x: c.expand(x.shape[0]), x, ("x", "y"))
    assert torch.equal(u.d("x"), torch.zeros(10, dtype=F64))
    assert torch.equal(u.d("xy"), torch.zeros(10, dtype=F64))
    assert torch.equal(u.value, torch.full((10,), 3.0, dtype=F64))


def test_field_follows_input_dtype() -> None:
    x = torch.rand(10, 2, dtype=torch.float32)
    u = make_field(FunctionModule(u2, dtype=torch.float32), x, ("x", "y"))
    assert u.d("xx").dtype == torch.float32 and u.grad().dtype == torch.float32
    torch.testing.assert_close(u.d("xx"), u2_derivatives(x.double())["xx"].float(), rtol=1e-4, atol=1e-4)


def test_errors(pts2: Tensor) -> None:
    u = make_field(FunctionModule(u2), pts2, ("x", "y"))
    with pytest.raises(KeyError, match="cannot read derivative 'z'"):
        u.d("z")
    with pytest.raises(KeyError, match="unknown coordinate 'q'"):
        u.d(("x", "q"))
    with pytest.raises(KeyError, match="unknown coordinate 'z'"):
        u.laplacian(["z"])
    with pytest.raises(KeyError, match="empty"):
        u.d("")
    with pytest.raises(KeyError, match="unknown output 'w'"):
        u["w"]
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        make_field(FunctionModule(u2), pts2, ("x", "y", "z"))
    with pytest.raises(ValueError, match="expected"):
        make_field(FunctionModule(u2), pts2, ("x", "y"), outputs=("u", "v"))
    with pytest.raises(ValueError, match="unknown derivative engine"):
        make_field(FunctionModule(u2), pts2, ("x", "y"), engine="jet")
    with pytest.raises(NotImplementedError):
        Field(pts2, ("x", "y")).value


# -- the forward engine against the autograd engine -------------------------------------------------------

D = torch.float64
COORDS = {1: ("x",), 2: ("x", "y"), 3: ("x", "y", "z")}
RTOL = 1e-10


def _all_indices(dim: int) -> list[tuple[int, ...]]:
    first = [(i,) for i in range(dim)]
    second = [(i, j) for i in range(dim) for j in range(i, dim)]
    return first + second


def _assert_fields_agree(model: nn.Module, x: torch.Tensor, n_out: int) -> None:
    dim = x.shape[1]
    coords, outputs = COORDS[dim], tuple(f"u{c}" for c in range(n_out))
    indices = _all_indices(dim)
    fast = ForwardField(model, x, coords, outputs, plan=indices)
    slow = AutogradField(model, x, coords, outputs)
    for c, index in itertools.product(range(n_out), [(), *indices]):
        got, ref = fast._derivative(c, index), slow._derivative(c, index)
        scale = ref.abs().max().clamp(min=1e-300)
        err = ((got - ref).abs().max() / scale).item()
        assert err <= RTOL, f"output {c}, derivative {index}: relative error {err:.2e}"
    assert fast.requested <= {(), *indices}
    if dim > 1:  # Laplacians carried as single rows (traces): over every coordinate, and over a subset
        subsets = [coords] + ([coords[::2]] if dim > 2 else [])
        plan = DerivativePlan.of([], [tuple(coords.index(n) for n in names) for names in subsets])
        with kernels.tensor_path():  # the tensor path here; tests/models/test_kernels.py holds the kernels to it
            traced = ForwardField(model, x, coords, outputs, plan=plan)
        assert traced.plan.pairs == () and traced.plan.p == len(subsets)
        for c, names in itertools.product(range(n_out), subsets):
            got, ref = traced[outputs[c]].laplacian(names), slow[outputs[c]].laplacian(names)
            err = ((got - ref).abs().max() / ref.abs().max().clamp(min=1e-300)).item()
            assert err <= RTOL, f"output {c}, Laplacian over {names}: relative error {err:.2e}"
        assert traced.plan.pairs == () and not traced.requested  # read from the trace rows, no pass added


def _points(dim: int, n: int = 64, seed: int = 0, spread: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return spread * (2 * torch.rand(n, dim, generator=gen, dtype=D) - 1)


# -- agreement with autograd --------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("k", [3, 2, 1])
@pytest.mark.parametrize("grid_size", [3, 8])
def test_kan_uniform_knots_agree_with_autograd(dim: int, k: int, grid_size: int) -> None:
    torch.manual_seed(dim + 10 * k + grid_size)
    model = perturb(KAN([dim, 4, 3, 2], grid_size=grid_size, spline_order=k, noise_scale=1.0, dtype=D))
    _assert_fields_agree(model, _points(dim, spread=1.2), n_out=2)  # some points beyond the grid range


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("k", [3, 2])
def test_kan_adaptive_knots_agree_with_autograd(dim: int, k: int) -> None:
    torch.manual_seed(dim + k)
    model = perturb(KAN([dim, 5, 1], grid_size=6, spline_order=k, noise_scale=1.0, dtype=D))
    samples = _points(dim, 500, seed=1) ** 3  # clustered near 0: strongly non-uniform knots
    model.update_grid(samples)
    knots = model.layers[0].grid
    spacing = knots[:, 1:] - knots[:, :-1]
    assert (spacing.max(1).values / spacing.min(1).values).min() > 3  # really non-uniform
    _assert_fields_agree(model, _points(dim, seed=2), n_out=1)
    # grid extension keeps the engines in agreement on the refined model
    _assert_fields_agree(model.refine(12, samples), _points(dim, seed=3), n_out=1)


@pytest.mark.parametrize("base_activation", ["silu", "tanh", "gelu", "identity"])
def test_kan_base_activations_agree_with_autograd(base_activation: str) -> None:
    torch.manual_seed(0)
    model = perturb(KAN([2, 4, 2], grid_size=5, base_activation=base_activation, noise_scale=1.0, dtype=D))
    _assert_fields_agree(model, _points(2), n_out=2)


def test_kan_points_on_knots_and_range_ends_agree_with_autograd() -> None:
    torch.manual_seed(3)
    model = perturb(KAN([2, 3, 1], grid_size=4, noise_scale=1.0, dtype=D))
    knots = model.layers[0].grid  # (2, G+2k+1)
    x = torch.cat([knots.T, torch.tensor([[-1.0, 1.0], [1.0, -1.0], [0.999999, -0.999999]], dtype=D)])
    _assert_fields_agree(model, x, n_out=1)


@pytest.mark.parametrize("activation", ["tanh", "silu", "sin", "gelu", "softplus"])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_mlp_agrees_with_autograd(activation: str, dim: int) -> None:
    torch.manual_seed(dim)
    model = perturb(MLP([dim, 16, 16, 3], activation=activation, dtype=D), 0.1)
    _assert_fields_agree(model, _points(dim), n_out=3)


def test_mlp_softplus_linear_region_and_single_layer() -> None:
    torch.manual_seed(0)
    model = MLP([2, 8, 1], activation="softplus", dtype=D)
    with torch.no_grad():
        model.linears[0].weight.mul_(40.0)  # pre-activations far beyond softplus' threshold of 20
    _assert_fields_agree(model, _points(2), n_out=1)
    _assert_fields_agree(MLP([3, 2], dtype=D), _points(3), n_out=2)  # no hidden layer: zero curvature


# -- the field's behaviour ----------------------------------------------------------------------------


def test_laplacian_is_one_trace_row_and_the_probe_plans_it() -> None:
    """A residual written with u.laplacian() carries one row through the network, not one per pair;
    asking for a pure pair as well adds it beside the trace. Both agree with autograd."""
    torch.manual_seed(5)
    model = perturb(MLP([3, 8, 8, 1], dtype=D), 0.1)
    x = _points(3)
    coords = ("x", "y", "z")
    slow = AutogradField(model, x, coords)
    plan = probe_plan(lambda u: u.laplacian() + u.value, model, x[:4], coords)
    assert plan == DerivativePlan.of([], [(0, 1, 2)]) and plan.p == 1
    fast = ForwardField(model, x, coords, plan=plan)
    torch.testing.assert_close(fast.laplacian(), slow.laplacian(), rtol=RTOL, atol=0)
    torch.testing.assert_close(fast.laplacian(["x", "z"]), slow.laplacian(["x", "z"]), rtol=RTOL, atol=0)  # grows
    assert fast.plan.trace_columns == {(0, 1, 2), (0, 2)}
    torch.testing.assert_close(fast.laplacian(["y"]), slow.d("yy"), rtol=RTOL, atol=0)  # one column: its pair
    both = probe_plan(lambda u: u.laplacian() - u.d("xx"), model, x[:4], coords)
    assert both == DerivativePlan.of([(0, 0)], [(0, 1, 2)])
    with pytest.raises(ValueError, match="at least one coordinate"):
        fast.laplacian([])


def test_field_without_plan_grows_it_on_demand_and_orders_above_two_use_autograd() -> None:
    torch.manual_seed(0)
    model = perturb(KAN([2, 4, 1], grid_size=5, noise_scale=1.0, dtype=D))
    x = _points(2)
    fast = ForwardField(model, x, ("x", "y"))
    slow = AutogradField(model, x, ("x", "y"))
    assert fast.plan.order == 0
    torch.testing.assert_close(fast.d("xy"), slow.d("xy"), rtol=RTOL, atol=0)
    assert fast.plan.covers((0, 1)) and fast.plan.dirs == (0, 1)
    torch.testing.assert_close(fast.laplacian(), slow.laplacian(), rtol=RTOL, atol=0)
    torch.testing.assert_close(fast.d("xxy"), slow.d("xxy"), rtol=1e-9, atol=0)
    assert fast.requested >= {(0, 1), (0, 0, 1)} and fast.requested_traces == {(0, 1)}
    assert fast.plan.trace_position((0, 1)) is not None  # the Laplacian grew the plan by one trace row


def test_multi_output_views_share_one_jet() -> None:
    torch.manual_seed(0)
    model = perturb(MLP([2, 8, 2], dtype=D))
    x = _points(2)
    u = ForwardField(model, x, ("x", "t"), outputs=("u", "v"), plan=[(0, 0), (1,)])
    ref = AutogradField(model, x, ("x", "t"), outputs=("u", "v"))
    assert u.value.shape == (64, 2)
    for name in ("u", "v"):
        torch.testing.assert_close(u[name].d("xx"), ref[name].d("xx"), rtol=RTOL, atol=0)
        torch.testing.assert_close(u[name].d("t"), ref[name].d("t"), rtol=RTOL, atol=0)
        torch.testing.assert_close(u[name].laplacian(), ref[name].laplacian(), rtol=RTOL, atol=0)  # x only
    v = u["v"]
    v.d("xt")  # outside the plan: the shared jet is recomputed once, for every view
    assert u.plan.covers((0, 1))


def test_probe_plan_records_exactly_what_a_residual_asks() -> None:
    model = KAN([2, 3, 1], grid_size=3, dtype=D)
    x = _points(2, 4)
    problem = Poisson2D()
    plan = probe_plan(lambda u: problem.pde(x, u), model, x, problem.coords)
    assert plan == DerivativePlan.of([], [(0, 1)])  # u.laplacian(): one trace row
    assert probe_plan(lambda u: u.value, model, x, problem.coords).order == 0
    assert probe_plan(lambda u: u.grad(), model, x, problem.coords) == DerivativePlan.of([(0,), (1,)])


def test_engine_auto_picks_forward_for_kan_and_mlp_and_autograd_otherwise() -> None:
    kan, mlp = KAN([2, 3, 1], dtype=D), MLP([2, 8, 1], dtype=D)
    other = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).to(D)
    assert supports_forward(kan) and supports_forward(mlp) and not supports_forward(other)
    x = _points(2, 8)
    assert isinstance(make_field(kan, x, ("x", "y"), engine="auto"), ForwardField)
    assert isinstance(make_field(mlp, x, ("x", "y"), engine="auto"), ForwardField)
    assert isinstance(make_field(other, x, ("x", "y"), engine="auto"), AutogradField)
    assert isinstance(make_field(kan, x, ("x", "y")), AutogradField)  # make_field's default stays autograd
    assert resolve_engine("autograd", kan) == "autograd"
    mlp.activation = nn.ReLU()  # no closed-form second derivative registered
    assert resolve_engine("auto", mlp) == "autograd"
    with pytest.raises(ValueError, match="forward derivative engine"):
        make_field(other, x, ("x", "y"), engine="forward")
    with pytest.raises(ValueError, match="unknown derivative engine"):
        make_field(kan, x, ("x", "y"), engine="jet")


# -- gradients with respect to parameters -------------------------------------------------------------


class _swapped:
    """Temporarily replace a module's parameters by other (possibly functorch-wrapped) tensors."""

    def __init__(self, module: nn.Module, values: dict[str, torch.Tensor]) -> None:
        self.module, self.values = module, values

    def _set(self, name: str, value: torch.Tensor) -> None:
        *path, leaf = name.split(".")
        owner = self.module
        for part in path:
            owner = getattr(owner, part)
        owner._parameters[leaf] = value

    def __enter__(self) -> None:
        self.saved = dict(self.module.named_parameters())
        for name, value in self.values.items():
            self._set(name, value)

    def __exit__(self, *exc: object) -> None:
        for name, value in self.saved.items():
            self._set(name, value)


def _residual_loss(model: nn.Module, engine: str, x: torch.Tensor, xb: torch.Tensor):
    """The Poisson loss as a function of the model's parameters (in ``named_parameters`` order)."""
    problem = Poisson2D()
    names = [n for n, _ in model.named_parameters()]

    def loss(*params: torch.Tensor) -> torch.Tensor:
        with _swapped(model, dict(zip(names, params))):
            field = make_field(model, x, problem.coords, engine=engine)
            boundary = make_field(model, xb, problem.coords, engine=engine)
            return 0.01 * problem.pde(x, field).pow(2).mean() + boundary.value.pow(2).mean()

    return loss


@pytest.mark.parametrize("make", [lambda: KAN([2, 2, 1], grid_size=3, noise_scale=1.0, dtype=D), lambda: MLP([2, 4, 1], dtype=D)])
def test_gradcheck_of_forward_engine_residual_loss(make) -> None:
    torch.manual_seed(0)
    model = perturb(make())
    x, xb = _points(2, 10, seed=4), _points(2, 4, seed=5)
    loss = _residual_loss(model, "forward", x, xb)
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    assert torch.autograd.gradcheck(loss, params, eps=1e-6, atol=1e-7, rtol=1e-6)
    # and the parameter gradients equal those of the autograd engine
    g_fast = torch.autograd.grad(loss(*params), params)
    g_slow = torch.autograd.grad(_residual_loss(model, "autograd", x, xb)(*params), params)
    for a, b in zip(g_fast, g_slow):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


# -- torch.func ---------------------------------------------------------------------------------------


def test_torch_func_per_point_parameter_jacobians_match_autograd() -> None:
    """vmap(jacrev) over points of the forward-engine residual: per-point gradients for Gauss-Newton."""
    torch.manual_seed(0)
    model = perturb(KAN([2, 3, 1], grid_size=4, noise_scale=1.0, dtype=D))
    problem = Poisson2D()
    params = {n: p.detach() for n, p in model.named_parameters()}

    def residual(p: dict[str, torch.Tensor], point: torch.Tensor) -> torch.Tensor:
        x = point.unsqueeze(0)  # (1, 2)
        with _swapped(model, p):
            u = ForwardField(model, x, problem.coords, plan=[(0, 0), (1, 1)])
            return problem.pde(x, u)[0]

    x = _points(2, 6, seed=7)
    jac = torch.func.vmap(torch.func.jacrev(residual), in_dims=(None, 0))(params, x)  # {name: (6, *shape)}
    for i in range(x.shape[0]):
        u = AutogradField(model, x[i : i + 1], problem.coords)
        grads = torch.autograd.grad(problem.pde(x[i : i + 1], u)[0], list(model.parameters()))
        for (name, _), g in zip(model.named_parameters(), grads):
            torch.testing.assert_close(jac[name][i], g, rtol=1e-9, atol=1e-12)


def test_fields_follow_float32() -> None:
    model = KAN([2, 3, 1], grid_size=4, dtype=torch.float32)
    x = _points(2).float()
    u = make_field(model, x, ("x", "y"), engine="auto", plan=[(0, 0), (1, 1)])
    assert u.laplacian().dtype == torch.float32 and u.value.dtype == torch.float32
    ref = AutogradField(model, x, ("x", "y"))
    torch.testing.assert_close(u.laplacian(), ref.laplacian(), rtol=1e-4, atol=1e-4)
    assert math.isfinite(u.value.sum().item())


def test_autograd_derivatives_are_right_under_no_grad(pts2: Tensor) -> None:
    """Under torch.no_grad() the autograd engine used to return zeros for every derivative (no graph), so the
    Levenberg–Marquardt loss with engine=autograd was wrong; now it computes them as anywhere else."""
    model = KAN([2, 4, 1], grid_size=4, dtype=torch.float64)
    free = make_field(model, pts2, ("x", "y"), engine="autograd")
    with torch.no_grad():
        off = make_field(model, pts2, ("x", "y"), engine="autograd")
        lap, grad = off.laplacian(), off.grad()
    assert lap.abs().max() > 0
    assert torch.allclose(lap, free.laplacian(), atol=1e-14, rtol=0)
    assert torch.allclose(grad, free.grad(), atol=1e-14, rtol=0)
