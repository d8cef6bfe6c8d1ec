"""Inverse problems: observations as a data term, unknown scalars and coefficient fields trained with the network
(first- and second-order optimizers), their trajectory in the history, and bad declarations refused."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import Tensor

import kanpde
from kanpde import Box, Dirichlet, Observation, Problem, Sampler
from kanpde.models.unknowns import WithUnknowns
from kanpde.training.loss import PinnLeastSquares, loss_terms

F64 = torch.float64
RNG = np.random.default_rng(0)
XS = RNG.uniform(-1, 1, (40, 1))


class Source(Problem):
    """u'' + k π² sin(πx) / 2 = 0, u(±1) = 0: u = k/2 sin(πx); data of u = sin(πx) make k = 2."""

    coords = ("x",)

    def __init__(self, k0: float = 0.5, positive: bool = True) -> None:
        super().__init__(Box([-1], [1], names=self.coords),
                         [Dirichlet("all", 0.0), Observation(XS, np.sin(np.pi * XS[:, 0]))])
        self.unknown("k", k0, positive=positive, true=2.0)

    def pde(self, x: Tensor, u) -> Tensor:
        return u.d("xx") + self.param("k") * math.pi**2 * torch.sin(math.pi * x[:, 0]) / 2

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(math.pi * x[:, 0])


def test_observations_are_fixed_points_with_their_values() -> None:
    problem = Source()
    data = problem.conditions[1]
    assert data.kind == "observation" and data.label == "data"
    batch = problem.sample(Sampler("sobol", seed=0), 16, 4)
    pts = batch.boundary["data"]
    np.testing.assert_array_equal(pts.x.numpy(), XS)
    np.testing.assert_array_equal(pts.values.numpy(), np.sin(np.pi * XS[:, 0]))
    assert batch.boundary["dirichlet[all]"].x.shape[0] == 4  # the data take no share of n_boundary
    exact_model = kanpde.MLP([1, 2, 1], dtype=F64)
    terms = loss_terms(exact_model, problem, batch)
    with torch.no_grad():
        misfit = (exact_model(pts.x)[:, 0] - pts.values).pow(2).mean()
    assert terms["data"].item() == pytest.approx(misfit.item(), rel=1e-14)


def test_the_lm_system_carries_observed_values_through_its_chunks() -> None:
    problem = Source()
    torch.manual_seed(0)
    model = WithUnknowns(kanpde.KAN([1, 4, 1], grid_size=4, dtype=F64), problem.unknowns)
    batch = problem.sample(Sampler("sobol", seed=0), 24, 4)
    for engine in ("forward", "autograd"):
        whole = PinnLeastSquares(model, problem, batch, 0.01, engine, chunk_size=4096).jacobian()
        chunked = PinnLeastSquares(model, problem, batch, 0.01, engine, chunk_size=3).jacobian()
        assert torch.allclose(whole[0], chunked[0], atol=1e-14, rtol=0) and torch.allclose(whole[1], chunked[1], atol=1e-14, rtol=0)
        assert whole[0][:, -1].abs().max() > 0  # d r / d k: the unknown is in the Jacobian
        assert torch.isclose(whole[1].pow(2).sum(), torch.tensor(PinnLeastSquares(model, problem, batch, 0.01, engine).value(), dtype=F64))


def test_an_unknown_gets_a_gradient_and_is_recovered_by_adam_then_lm() -> None:
    problem = Source()
    torch.manual_seed(0)
    stages = [kanpde.Stage(torch.optim.Adam, 50), kanpde.Stage(kanpde.LevenbergMarquardt, 30)]
    result = kanpde.fit(kanpde.KAN([1, 5, 1], grid_size=5, dtype=F64), problem, stages, n_interior=100, n_boundary=2)
    assert type(result.model) is kanpde.KAN  # the trainer's wrapper is not handed out
    k = problem.unknowns.values()["k"]
    assert k == pytest.approx(2.0, rel=1e-2)
    trajectory = [s["param:k"] for s in result.history.steps]
    assert trajectory[0] == pytest.approx(0.5) and trajectory[-1] == pytest.approx(k, rel=1e-2)


def test_a_positive_unknown_stays_positive_and_a_free_one_can_change_sign() -> None:
    problem = Source(k0=0.5, positive=True)
    assert problem.unknowns.scalars["k"].item() == pytest.approx(math.log(0.5))
    free = Source(k0=-1.0, positive=False)
    assert free.param("k").item() == -1.0
    free.unknowns.scalars["k"].data.fill_(-3.0)
    assert free.unknowns.values() == {"k": -3.0}


def test_every_fit_trains_the_problems_own_unknowns() -> None:
    problem = Source()
    copied = copy.deepcopy(problem)  # what a run does for its second model
    torch.manual_seed(0)
    kanpde.fit(kanpde.KAN([1, 3, 1], grid_size=3, dtype=F64), problem, [kanpde.Stage(torch.optim.Adam, 5)], n_interior=20, n_boundary=2)
    assert problem.unknowns.values()["k"] != 0.5 and copied.unknowns.values()["k"] == 0.5


@pytest.mark.parametrize(
    ("declare", "match"),
    [
        (lambda p: p.unknown("k", -1.0, positive=True), "initial value > 0"),
        (lambda p: p.unknown("k", float("nan")), "finite initial value"),
        (lambda p: (p.unknown("k", 1.0), p.unknown("k", 2.0)), "declared twice"),
        (lambda p: p.unknown("not a name", 1.0), "identifier"),
        (lambda p: p.unknown_field("a", lambda x: x), "needs a network"),
        (lambda p: p.unknown_field("a", widths=[1, 5, 2]), "KAN widths"),
    ],
)
def test_bad_unknowns_are_refused(declare, match: str) -> None:
    class P(Problem):
        coords = ("x",)

        def __init__(self) -> None:
            super().__init__(Box([0], [1], names=self.coords), [Dirichlet("all")])
            declare(self)

        def pde(self, x, u):
            return u.d("xx")

    with pytest.raises((ValueError, TypeError), match=match):
        P()


def test_reading_an_undeclared_unknown_says_what_is_declared() -> None:
    with pytest.raises(KeyError, match="declared: \\['k'\\]"):
        Source().param("nu")
    with pytest.raises(KeyError, match="no unknown field 'a'"):
        Source().field_of("a", torch.zeros(1, 1, dtype=F64))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Observation([[0.0], [0.5]], [1.0]), "one value per point"),
        (lambda: Observation([[0.0]], [float("nan")]), "must be finite"),
    ],
)
def test_bad_observations_are_refused(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_observations_outside_the_domain_are_refused() -> None:
    class P(Problem):
        coords = ("x",)

        def __init__(self) -> None:
            super().__init__(Box([0], [1], names=self.coords), [Dirichlet("all"), Observation([[0.5], [1.5]], [0.0, 0.0])])

        def pde(self, x, u):
            return u.d("xx")

    with pytest.raises(ValueError, match=r"point \[1.5\] lies outside the domain"):
        P()


class Diffusion(Problem):
    """(a u')' = f on [0, 1] with a(x) = 1 + x² unknown, u = sin(πx) observed; f from the true a."""

    coords = ("x",)

    def __init__(self) -> None:
        xs = np.linspace(0, 1, 41)[:, None]
        super().__init__(Box([0], [1], names=self.coords), [Dirichlet("all"), Observation(xs, np.sin(np.pi * xs[:, 0]))])
        self.unknown_field("a", kanpde.KAN([1, 3, 1], grid_size=3, dtype=F64), true=lambda x: 1 + x[:, 0] ** 2)

    def pde(self, x: Tensor, u) -> Tensor:
        a = self.field_of("a", x)
        s, c = torch.sin(math.pi * x[:, 0]), torch.cos(math.pi * x[:, 0])
        f = 2 * x[:, 0] * math.pi * c - (1 + x[:, 0] ** 2) * math.pi**2 * s
        return a.d("x") * u.d("x") + a.value * u.d("xx") - f


def test_a_coefficient_field_is_a_network_trained_with_the_solution() -> None:
    problem = Diffusion()
    torch.manual_seed(0)
    net = problem.unknowns.fields["a"]
    with torch.no_grad():
        net.base_weight.zero_() if hasattr(net, "base_weight") else None
    x = torch.linspace(0, 1, 101, dtype=F64)[:, None]
    true = 1 + x[:, 0] ** 2

    def error() -> float:
        with torch.no_grad():
            return float((net(x)[:, 0] - true).pow(2).mean().sqrt())

    before = error()
    stages = [kanpde.Stage(torch.optim.Adam, 100, update_grid=False), kanpde.Stage(kanpde.LevenbergMarquardt, 40, update_grid=False)]
    kanpde.fit(kanpde.KAN([1, 5, 1], grid_size=5, dtype=F64), problem, stages, n_interior=80, n_boundary=2)
    after = error()
    assert after < 0.05 < before


# -- a symbolic stage that targets an unknown field -------------------------------------------------------------


class Quadratic(Problem):
    """-(a u')' = f on [0, 1] with a(x) = 1 + x² unknown (a KAN [1, 1]), u = sin(πx) observed."""

    coords = ("x",)

    def __init__(self) -> None:
        xs = np.linspace(0, 1, 21)[:, None]
        super().__init__(Box([0], [1], names=self.coords), [Dirichlet("all"), Observation(xs, np.sin(np.pi * xs[:, 0]))])
        self.unknown_field("a", kanpde.KAN([1, 1], grid_size=5, dtype=F64), true=lambda x: 1 + x[:, 0] ** 2)

    def pde(self, x: Tensor, u) -> Tensor:
        a = self.field_of("a", x)
        s, c = torch.sin(math.pi * x[:, 0]), torch.cos(math.pi * x[:, 0])
        f = (1 + x[:, 0] ** 2) * math.pi**2 * s - 2 * math.pi * x[:, 0] * c
        return -(a.d("x") * u.d("x") + a.value * u.d("xx")) - f


def _near(net: torch.nn.Module, fn, scale: float = 0.0) -> None:
    """Set the [1, 1] KAN ``net`` to ``fn`` (+ ``scale`` x a wiggle) by least squares on its spline (no base part)."""
    from kanpde.models.bspline import fit_coefficients

    layer = net.layers[0]
    x = torch.linspace(0, 1, 200, dtype=F64)[:, None]
    y = fn(x) + scale * torch.sin(7 * x)
    with torch.no_grad():
        layer.base_weight.zero_()
        layer.spline_scaler.fill_(1.0)
        layer.spline_weight.copy_(fit_coefficients(x, y[:, :, None], layer.grid, layer.spline_order))


class Sine(torch.nn.Module):
    """u = s sin(πx) with s trained: the solution's exact form, so the loss pins the field alone."""

    def __init__(self) -> None:
        super().__init__()
        self.s = torch.nn.Parameter(torch.tensor(1.0, dtype=F64))

    def forward(self, x: Tensor) -> Tensor:
        return self.s * torch.sin(math.pi * x)


def test_a_symbolic_stage_snaps_the_targeted_field_to_its_formula() -> None:
    import sympy

    from kanpde.app.run import unknowns_report
    from kanpde.models.symbolic import SymbolicKAN

    problem = Quadratic()
    _near(problem.unknowns.fields["a"], lambda x: 1 + x**2, scale=1e-3)  # a trained field: 1 + x² to 1e-3
    snap = {"target": "field:a", "lib": ["x", "x^2"], "polish": True}
    result = kanpde.fit(Sine(), problem, [kanpde.Stage(kanpde.LevenbergMarquardt, 2, symbolic=snap)], n_interior=60, n_boundary=2)
    field = problem.unknowns.fields["a"]
    assert isinstance(field, SymbolicKAN) and field.fully_symbolic
    assert type(result.model) is Sine  # the model is not snapped
    summary = result.history.stages[0]
    assert [r["name"] for r in summary["symbolic:a"]] == ["x^2"] and summary["symbolic:a"][0]["r2"] > 0.999
    before, after = summary["polish:a"]
    assert after <= before
    report = unknowns_report(problem)["a"]
    x = sympy.Symbol("x")
    learned = sympy.sympify(report["formula"])
    assert learned.free_symbols == {x}
    grid = np.linspace(0, 1, 101)
    values = sympy.lambdify(x, learned, "numpy")(grid)
    assert np.abs(values - (1 + grid**2)).max() < 1e-8 and report["rel_l2_error"] < 1e-8  # the wiggle is gone
    # the snapped field is what the residual reads: its affine parameters are trained by the stage
    assert field.layers[0].symbolic_affine.requires_grad


def test_a_failed_gate_leaves_the_targeted_field_unsnapped() -> None:
    problem = Quadratic()
    _near(problem.unknowns.fields["a"], lambda x: 1 + x**2)
    original = copy.deepcopy(problem.unknowns.fields["a"].state_dict())
    snap = {"target": "field:a", "lib": ["x"], "r2_threshold": 0.0, "min_r2": 0.99}  # a line: R^2 0.94
    with pytest.raises(kanpde.SymbolicFailed, match="of field a fits x with R"):
        kanpde.fit(Sine(), problem, [kanpde.Stage(torch.optim.Adam, 1, symbolic=snap)], n_interior=20, n_boundary=2)
    field = problem.unknowns.fields["a"]
    assert type(field) is kanpde.KAN and all(torch.equal(v, original[k]) for k, v in field.state_dict().items())


@pytest.mark.parametrize("target", ["field:", "field:not a name", "a", 3])
def test_a_bad_symbolic_target_is_refused(target) -> None:
    with pytest.raises(ValueError, match="stage symbolic.target must be"):
        kanpde.Stage(torch.optim.Adam, 1, symbolic={"target": target})


def test_a_symbolic_target_naming_no_field_is_refused_before_training() -> None:
    stage = kanpde.Stage(torch.optim.Adam, 1, symbolic={"target": "field:b"})
    model = Sine()
    with pytest.raises(ValueError, match=r"stage 0: symbolic target field:b names no unknown field of Quadratic; declared: \['a'\]"):
        kanpde.fit(model, Quadratic(), [stage], n_interior=20, n_boundary=2)
    with pytest.raises(ValueError, match="names no unknown field of Source"):
        kanpde.fit(model, Source(), [stage], n_interior=20, n_boundary=2)
