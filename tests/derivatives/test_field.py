"""The forward derivative engine against the autograd engine (the oracle), in float64.

Agreement is checked to 1e-10 relative for values, first, second and mixed derivatives of KANs
(uniform and adaptive knots, several grids and spline orders, every base activation) and MLPs (every
activation), in 1, 2 and 3 input dimensions and with several outputs; then gradients with respect to
parameters (gradcheck), the trainer's loss terms, evaluation, engine selection and torch.func.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from kanpde import KAN, MLP, Dirichlet, Neumann, Problem, Sampler, evaluate, loss_terms
from kanpde.derivatives.field import AutogradField, ForwardField, make_field, probe_plan, resolve_engine, supports_forward
from kanpde.pde.geometry import Box
from kanpde.derivatives.jet import DerivativePlan
from kanpde.models import _kernels as kernels
from kanpde.problems.poisson2d import Poisson2D
from kanpde.training.fit import derivative_plans

D = torch.float64
COORDS = {1: ("x",), 2: ("x", "y"), 3: ("x", "y", "z")}
RTOL = 1e-10


def _all_indices(dim: int) -> list[tuple[int, ...]]:
    first = [(i,) for i in range(dim)]
    second = [(i, j) for i in range(dim) for j in range(i, dim)]
    return first + second


def _perturb(model: nn.Module, scale: float = 0.3, seed: int = 0) -> nn.Module:
    """Move parameters away from their initialisation so every term of the chain rule matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


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
        with kernels.disabled():  # the tensor path here; tests/test_kernels.py holds the kernels to it
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
    model = _perturb(KAN([dim, 4, 3, 2], grid_size=grid_size, spline_order=k, noise_scale=1.0, dtype=D))
    _assert_fields_agree(model, _points(dim, spread=1.2), n_out=2)  # some points beyond the grid range


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("k", [3, 2])
def test_kan_adaptive_knots_agree_with_autograd(dim: int, k: int) -> None:
    torch.manual_seed(dim + k)
    model = _perturb(KAN([dim, 5, 1], grid_size=6, spline_order=k, noise_scale=1.0, dtype=D))
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
    model = _perturb(KAN([2, 4, 2], grid_size=5, base_activation=base_activation, noise_scale=1.0, dtype=D))
    _assert_fields_agree(model, _points(2), n_out=2)


def test_kan_points_on_knots_and_range_ends_agree_with_autograd() -> None:
    torch.manual_seed(3)
    model = _perturb(KAN([2, 3, 1], grid_size=4, noise_scale=1.0, dtype=D))
    knots = model.layers[0].grid  # (2, G+2k+1)
    x = torch.cat([knots.T, torch.tensor([[-1.0, 1.0], [1.0, -1.0], [0.999999, -0.999999]], dtype=D)])
    _assert_fields_agree(model, x, n_out=1)


@pytest.mark.parametrize("activation", ["tanh", "silu", "sin", "gelu", "softplus"])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_mlp_agrees_with_autograd(activation: str, dim: int) -> None:
    torch.manual_seed(dim)
    model = _perturb(MLP([dim, 16, 16, 3], activation=activation, dtype=D), 0.1)
    _assert_fields_agree(model, _points(dim), n_out=3)


def test_mlp_softplus_linear_region_and_single_layer() -> None:
    torch.manual_seed(0)
    model = MLP([2, 8, 1], activation="softplus", dtype=D)
    with torch.no_grad():
        model.linears[0].weight.mul_(40.0)  # pre-activations far beyond softplus' threshold of 20
    _assert_fields_agree(model, _points(2), n_out=1)
    _assert_fields_agree(MLP([3, 2], dtype=D), _points(3), n_out=2)  # no hidden layer: zero curvature


# -- the field's behaviour ----------------------------------------------------------------------------


def test_plan_from_indices() -> None:
    plan = DerivativePlan.of([(0, 0), (2, 2), (1,), ()])
    assert plan.dirs == (0, 1, 2) and plan.pairs == ((0, 0), (2, 2)) and plan.order == 2
    assert plan.covers((2, 2)) and plan.covers((1,)) and not plan.covers((0, 2))
    assert plan.position((2, 2)) == 1 and plan.position((2,)) == 2
    assert DerivativePlan.of([(1, 3)]).pairs == ((0, 1),)
    assert DerivativePlan.of([]).order == 0
    with pytest.raises(ValueError):
        DerivativePlan((1, 0))


def test_plan_with_traces() -> None:
    plan = DerivativePlan.of([(0,), (1, 1)], [(0, 2), (0, 1, 2)])
    assert plan.dirs == (0, 1, 2) and plan.pairs == ((1, 1),) and plan.traces == ((0, 1, 2), (0, 2))
    assert plan.p == 3 and plan.order == 2 and plan.trace_columns == {(0, 2), (0, 1, 2)}
    assert plan.trace_position((0, 1, 2)) == 1 and plan.trace_position((0, 2)) == 2 and plan.trace_position((0, 1)) is None
    assert plan.entries == ((0, 1, 1), (1, 0, 0), (1, 1, 1), (1, 2, 2), (2, 0, 0), (2, 2, 2))
    assert DerivativePlan.of([], [(3,)]) == DerivativePlan.of([(3, 3)])  # a one-column trace is its pair
    assert DerivativePlan.of([], [(1, 3)]) == DerivativePlan((1, 3), (), ((0, 1),))  # positions into dirs
    assert plan.union([], [(0, 1)]).trace_columns == {(0, 2), (0, 1, 2), (0, 1)}
    for bad in [((0, 1), (), ((0,),)), ((0, 1), (), ((1, 0),)), ((0, 1), (), ((0, 2),)), ((0, 1), (), ((0, 1), (0, 1)))]:
        with pytest.raises(ValueError):
            DerivativePlan(*bad)


def test_laplacian_is_one_trace_row_and_the_probe_plans_it() -> None:
    """A residual written with u.laplacian() carries one row through the network, not one per pair;
    asking for a pure pair as well adds it beside the trace. Both agree with autograd."""
    torch.manual_seed(5)
    model = _perturb(MLP([3, 8, 8, 1], dtype=D), 0.1)
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
    model = _perturb(KAN([2, 4, 1], grid_size=5, noise_scale=1.0, dtype=D))
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
    model = _perturb(MLP([2, 8, 2], dtype=D))
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
    model = _perturb(make())
    x, xb = _points(2, 10, seed=4), _points(2, 4, seed=5)
    loss = _residual_loss(model, "forward", x, xb)
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    assert torch.autograd.gradcheck(loss, params, eps=1e-6, atol=1e-7, rtol=1e-6)
    # and the parameter gradients equal those of the autograd engine
    g_fast = torch.autograd.grad(loss(*params), params)
    g_slow = torch.autograd.grad(_residual_loss(model, "autograd", x, xb)(*params), params)
    for a, b in zip(g_fast, g_slow):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_loss_terms_and_parameter_gradients_match_autograd_engine() -> None:
    torch.manual_seed(0)
    problem = Poisson2D()
    batch = problem.sample(Sampler(seed=0), 256, 64).to(D, "cpu")
    for model in (_perturb(KAN([2, 5, 1], grid_size=7, noise_scale=1.0, dtype=D)), _perturb(MLP([2, 16, 16, 1], dtype=D))):
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
    model = _perturb(KAN([2, 3, 1], grid_size=4, noise_scale=1.0, dtype=D))
    plans = derivative_plans(model, problem, batch)
    assert plans["pde"] == DerivativePlan.of([(0, 1)], [(0, 1)])  # the mixed pair and the Laplacian row
    neumann = next(c.label for c in problem.conditions if c.kind == "neumann")
    assert plans[neumann] == DerivativePlan.of([(0,), (1,)])
    fast = loss_terms(model, problem, batch, "forward", plans)
    slow = loss_terms(model, problem, batch, "autograd")
    for key in slow:
        assert fast[key].item() == pytest.approx(slow[key].item(), rel=1e-10)


def test_evaluate_with_forward_engine_gives_the_same_metrics() -> None:
    torch.manual_seed(0)
    model = _perturb(KAN([2, 4, 1], grid_size=5, noise_scale=1.0, dtype=D))
    problem = Poisson2D()
    fast = evaluate(model, problem, 41, engine="auto", chunk_size=500)
    slow = evaluate(model, problem, 41, engine="autograd", chunk_size=500)
    for key, value in slow.metrics.items():
        assert fast.metrics[key] == pytest.approx(value, rel=1e-10, abs=1e-15)
    assert abs(fast.grad_predicted - slow.grad_predicted).max() < 1e-12


# -- torch.func ---------------------------------------------------------------------------------------


def test_torch_func_per_point_parameter_jacobians_match_autograd() -> None:
    """vmap(jacrev) over points of the forward-engine residual: per-point gradients for Gauss-Newton."""
    torch.manual_seed(0)
    model = _perturb(KAN([2, 3, 1], grid_size=4, noise_scale=1.0, dtype=D))
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


@pytest.mark.parametrize(
    "module",
    [nn.Tanh(), nn.SiLU(), nn.GELU(), nn.GELU(approximate="tanh"), nn.Softplus(), nn.Softplus(beta=2.0, threshold=5.0), nn.Identity()],
    ids=lambda m: repr(m),
)
def test_activation_derivatives_match_autograd(module: nn.Module) -> None:
    from kanpde.models.activations import activation_derivatives

    z = torch.linspace(-12.0, 12.0, 401, dtype=D).requires_grad_(True)
    f0, f1, f2 = activation_derivatives(module, z.detach(), 2)
    ref0 = module(z)
    ref1 = torch.autograd.grad(ref0.sum(), z, create_graph=True)[0]
    ref2 = torch.autograd.grad(ref1.sum(), z)[0] if ref1.requires_grad else torch.zeros_like(z)
    torch.testing.assert_close(f0, ref0.detach(), rtol=0, atol=0)
    torch.testing.assert_close(f1, ref1.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(f2, ref2, rtol=1e-12, atol=1e-13)


def test_run_with_each_engine_gives_the_same_result(tmp_path) -> None:
    from hydra import compose, initialize_config_module

    from kanpde.app.run import ConfigError, run

    metrics = {}
    with initialize_config_module("kanpde.conf", version_base="1.3"):
        for engine in ("auto", "forward", "autograd"):
            cfg = compose("config", overrides=["debug=fast", f"engine={engine}", "output.figures=false"])
            metrics[engine] = run(cfg, tmp_path / engine)
        with pytest.raises(ConfigError, match="engine='jet'"):
            run(compose("config", overrides=["debug=fast", "engine=jet"]), tmp_path / "bad")
        cfg = compose("config", overrides=["debug=fast"])
        assert cfg.engine == "auto"
    for engine in ("auto", "forward"):
        for key in ("l2_rel", "h1_rel"):
            assert metrics[engine][key] == pytest.approx(metrics["autograd"][key], rel=1e-6)
            assert metrics[engine]["baseline"][key] == pytest.approx(metrics["autograd"]["baseline"][key], rel=1e-6)
