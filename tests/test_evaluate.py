"""Evaluation (kanpde.evaluate): error norms with trapezoid quadrature, evaluate() against exact solutions,
both derivative engines, points outside a non-box domain masked, norms at the final time."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from torch import Tensor, nn

from kanpde import Box, Dirichlet, Initial, Problem, error_norms, evaluate, trapezoid_weights
from kanpde.evaluate import lp_norm, predict
from kanpde.models import KAN
from kanpde.problems.poisson2d import Poisson2D
from tests.helpers import F64, FunctionModule, LinearLShape, observed_orders, perturb

KEYS = {"l2", "l2_rel", "h1_semi", "h1", "h1_rel", "linf", "mse", "h1_mse"}


def grid(box: Box, n):
    axes, pts = box.grid(n)
    return axes, pts, trapezoid_weights(axes)


def test_trapezoid_weights_sum_to_the_measure() -> None:
    for lo, hi, n in [([-1, -1], [1, 1], 11), ([0, -2], [3, 5], (7, 12)), ([0, 0, 0], [1, 2, 3], (4, 5, 6)), ([2], [5], 9)]:
        box = Box(lo, hi)
        _, pts, w = grid(box, n)
        assert w.shape == (pts.shape[0],)
        assert w.sum() == pytest.approx(box.volume, rel=1e-14)
    w1 = trapezoid_weights([np.linspace(0, 1, 5)])
    assert w1.tolist() == [0.125, 0.25, 0.25, 0.25, 0.125]


def test_trapezoid_weights_follow_the_ij_point_order() -> None:
    """Linear integrands are integrated exactly; a transposed weight order would break one of them."""
    _, pts, w = grid(Box([0, 0], [1, 3]), (5, 9))
    assert w @ pts[:, 0] == pytest.approx(1.5, rel=1e-14)  # ∫∫ x = 1/2 * 3
    assert w @ pts[:, 1] == pytest.approx(4.5, rel=1e-14)  # ∫∫ y = 1 * 9/2


def test_l2_norm_known_values() -> None:
    _, pts, w = grid(Box([-1, -1], [1, 1]), 41)
    x, y = pts[:, 0], pts[:, 1]
    # sin^2 over whole periods: the trapezoid rule is exact
    assert lp_norm(np.sin(np.pi * x) * np.sin(np.pi * y), w) == pytest.approx(1.0, abs=1e-13)
    _, pts, w = grid(Box([-1, -1], [1, 1]), 401)
    # ∫∫ x^4 y^2 = (2/5)(2/3) = 4/15; second order, so ~1e-5 at h = 0.005
    assert lp_norm(pts[:, 0] ** 2 * pts[:, 1], w) == pytest.approx(math.sqrt(4 / 15), rel=1e-4)
    assert lp_norm(np.ones(pts.shape[0]), w, p=1) == pytest.approx(4.0, rel=1e-14)
    # components are summed: |(1, 1)|^2 = 2 everywhere
    assert lp_norm(np.ones((pts.shape[0], 2)), w) == pytest.approx(math.sqrt(8.0), rel=1e-14)


def test_trapezoid_norm_converges_at_second_order() -> None:
    exact = 4 / 15
    errors = []
    for n in (11, 21, 41, 81):  # h halves each time
        _, pts, w = grid(Box([-1, -1], [1, 1]), n)
        errors.append(abs(lp_norm(pts[:, 0] ** 2 * pts[:, 1], w) ** 2 - exact))
    orders = observed_orders(errors)
    assert all(1.9 < p < 2.1 for p in orders), orders


def test_error_norms_definitions() -> None:
    axes, pts, w = grid(Box([0, 0], [2, 1]), 11)
    n = pts.shape[0]
    u = np.sin(pts[:, :1]) * np.exp(pts[:, 1:])  # (N, 1)
    gu = np.stack([np.cos(pts[:, :1]) * np.exp(pts[:, 1:]), u], axis=2)  # (N, 1, 2)
    zero = error_norms(u, u, gu, gu, w)
    assert set(zero) == KEYS
    assert all(v == 0.0 for v in zero.values())
    # prediction zero: the error is the solution itself, so both relative norms are exactly one
    none = error_norms(np.zeros_like(u), u, np.zeros_like(gu), gu, w)
    assert none["l2_rel"] == pytest.approx(1.0, rel=1e-14) and none["h1_rel"] == pytest.approx(1.0, rel=1e-14)
    # a constant error c in the values and (a, b) in the gradient
    c, a, b = 0.5, 0.3, -0.4
    e = error_norms(u + c, u, gu + np.array([a, b]), gu, w)
    area = 2.0
    assert e["l2"] == pytest.approx(c * math.sqrt(area), rel=1e-13)
    assert e["h1_semi"] == pytest.approx(math.sqrt((a * a + b * b) * area), rel=1e-13)
    assert e["h1"] == pytest.approx(math.hypot(e["l2"], e["h1_semi"]), rel=1e-14)
    assert e["linf"] == pytest.approx(c, rel=1e-14)
    assert e["mse"] == pytest.approx(c * c, rel=1e-13)
    assert e["h1_mse"] == pytest.approx(c * c + a * a + b * b, rel=1e-13)
    assert e["l2_rel"] == pytest.approx(e["l2"] / lp_norm(u, w), rel=1e-14)
    u_h1 = math.hypot(lp_norm(u, w), lp_norm(gu.reshape(n, -1), w))
    assert e["h1_rel"] == pytest.approx(e["h1"] / u_h1, rel=1e-14)


class ExactPoisson(FunctionModule):
    def __init__(self, scale: float = 1.0) -> None:
        super().__init__(Poisson2D().exact, scale)


def test_evaluate_exact_model_has_zero_error() -> None:
    problem = Poisson2D()
    ev = evaluate(ExactPoisson(), problem, 51, chunk_size=700)
    m = ev.metrics
    assert set(m) == KEYS | {"n_params", "residual_rms", "residual_max", "condition_rms"}
    assert m["n_params"] == 1
    # the exact solution satisfies the PDE and its boundary condition: residuals zero to rounding
    assert m["residual_rms"] < 1e-8 and m["residual_max"] < 1e-8 and ev.residual.shape == (51 * 51, 1)
    assert set(m["condition_rms"]) == {c.label for c in problem.conditions}
    assert all(v < 1e-8 for v in m["condition_rms"].values())
    assert m["l2"] <= 1e-10 and m["h1"] <= 1e-10 and m["linf"] <= 1e-10 and m["h1_rel"] <= 1e-10
    assert ev.points.shape == (51 * 51, 2) and ev.predicted.shape == (51 * 51, 1)
    assert ev.grad_predicted.shape == (51 * 51, 1, 2)
    assert ev.shape == (51, 51) and ev.on_grid(ev.exact).shape == (1, 51, 51)
    # "ij" layout: [0, i, j] is the solution at (x_i, y_j)
    xi, yj = ev.axes[0][7], ev.axes[1][30]
    assert ev.on_grid(ev.exact)[0, 7, 30] == pytest.approx(math.sin(math.pi * xi) * math.sin(math.pi * yj**2), abs=1e-15)


def test_evaluate_twice_the_solution_has_relative_errors_one() -> None:
    m = evaluate(ExactPoisson(scale=2.0), Poisson2D(), 41).metrics
    assert m["l2_rel"] == pytest.approx(1.0, abs=1e-12)
    assert m["h1_rel"] == pytest.approx(1.0, abs=1e-12)
    # and the absolute norms equal the trapezoid norms of the solution itself
    ref = evaluate(ExactPoisson(scale=0.0), Poisson2D(), 41).metrics
    assert m["l2"] == pytest.approx(ref["l2"], rel=1e-12) and m["h1"] == pytest.approx(ref["h1"], rel=1e-12)
    # ||u||_L2^2 = ∫ sin^2(pi x) dx ∫ sin^2(pi y^2) dy = 1 * 0.75587...; measured quadrature error 4.2e-6
    reference = quad(lambda y: math.sin(math.pi * y * y) ** 2, -1, 1, epsabs=1e-14)[0]
    assert m["l2"] ** 2 == pytest.approx(reference, abs=1e-5)


def test_evaluate_float32_model_reports_float64_arrays() -> None:
    model = KAN([2, 3, 1], dtype=torch.float32)
    ev = evaluate(model, Poisson2D(), 11)
    assert ev.predicted.dtype == np.float64 and ev.exact.dtype == np.float64
    x = torch.from_numpy(ev.points).float()
    # float32 rounding apart (the fused CPU kernel of the forward engine accumulates in float64)
    np.testing.assert_allclose(ev.predicted, model(x).detach().double().numpy(), rtol=1e-6, atol=1e-7)


def test_predict_in_chunks_equals_one_call() -> None:
    model = KAN([2, 4, 1], dtype=F64)
    x = torch.rand(1000, 2, dtype=F64) * 2 - 1
    out = predict(model, x, chunk_size=300)
    assert out.shape == (1000, 1) and not out.requires_grad
    torch.testing.assert_close(out, model(x).detach(), rtol=0, atol=1e-15)


class SourceOnly(Problem):
    """Δu = 1 on the unit square, u = 0 on its boundary, declared without an exact solution."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(Box([0, 0], [1, 1], ("x", "y")), [Dirichlet("all")])

    def pde(self, x, u):
        return u.laplacian() - 1.0


def test_evaluate_without_exact_solution_reports_residuals_only() -> None:
    """u = x^2 y: Δu - 1 = 2 y - 1 at every grid point, u itself on the boundary sample."""
    from kanpde import Sampler
    from kanpde.evaluate import NO_EXACT

    problem = SourceOnly()
    f = lambda x: x[:, 0] ** 2 * x[:, 1]
    ev = evaluate(FunctionModule(f), problem, 21, chunk_size=100)
    m = ev.metrics
    assert all(m[k] is None for k in KEYS) and ev.messages == [NO_EXACT]
    assert ev.exact is None and ev.grad_exact is None
    r = 2 * ev.points[:, 1] - 1
    assert m["residual_rms"] == pytest.approx(np.sqrt(np.mean(r**2)), rel=1e-12)
    assert m["residual_max"] == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(ev.residual[:, 0], r, rtol=0, atol=1e-12)
    pts = problem.sample(Sampler("sobol", seed=0), 1, 512).boundary["dirichlet[all]"].x
    assert m["condition_rms"]["dirichlet[all]"] == pytest.approx(float(f(pts).pow(2).mean().sqrt()), rel=1e-12)


@pytest.mark.parametrize("problem", [SourceOnly(), Poisson2D()], ids=["no_exact", "poisson2d"])
def test_residual_metrics_agree_between_engines(problem: Problem) -> None:
    """The forward engine (with the derivative plan the residual asks for) and autograd give the same residuals."""
    model = perturb(KAN([2, 4, 1], grid_size=4, dtype=F64), seed=1)
    fw = evaluate(model, problem, 17, engine="forward").metrics
    ag = evaluate(model, problem, 17, engine="autograd").metrics
    for key in ("residual_rms", "residual_max"):
        assert fw[key] == pytest.approx(ag[key], rel=1e-10) and fw[key] > 1e-3
    assert fw["condition_rms"] == pytest.approx(ag["condition_rms"], rel=1e-10)


def test_relative_difference_of_two_evaluations() -> None:
    from kanpde.evaluate import relative_difference

    problem = SourceOnly()
    a = evaluate(FunctionModule(lambda x: x[:, 0] * x[:, 1]), problem, 11)
    b = evaluate(FunctionModule(lambda x: 1.5 * x[:, 0] * x[:, 1]), problem, 11)
    assert relative_difference(a, b) == pytest.approx(0.5, rel=1e-12)  # ||u - 1.5 u|| / ||u||
    assert relative_difference(a, a) == 0.0


class ParameterFree(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Poisson2D().exact(x)[:, None]


def test_evaluate_parameter_free_module() -> None:
    """A module without parameters or buffers is evaluated in the default dtype (float32 here)."""
    m = evaluate(ParameterFree(), Poisson2D(), 11).metrics
    assert m["l2"] <= 1e-6


def test_evaluate_with_forward_engine_gives_the_same_metrics() -> None:
    torch.manual_seed(0)
    model = perturb(KAN([2, 4, 1], grid_size=5, noise_scale=1.0, dtype=F64))
    problem = Poisson2D()
    fast = evaluate(model, problem, 41, engine="auto", chunk_size=500)
    slow = evaluate(model, problem, 41, engine="autograd", chunk_size=500)
    for key, value in slow.metrics.items():
        assert fast.metrics[key] == pytest.approx(value, rel=1e-10, abs=1e-15)
    assert abs(fast.grad_predicted - slow.grad_predicted).max() < 1e-12


@pytest.mark.parametrize("engine", ["forward", "autograd"])
def test_evaluation_in_small_chunks_equals_one_chunk(engine: str) -> None:
    """Evaluation memory is one chunk's: chunks of 97 points give the one-chunk fields and metrics."""
    torch.manual_seed(0)
    model = perturb(KAN([2, 4, 1], grid_size=5, noise_scale=1.0, dtype=F64))
    one = evaluate(model, Poisson2D(), 41, engine=engine, chunk_size=41 * 41)
    small = evaluate(model, Poisson2D(), 41, engine=engine, chunk_size=97)
    np.testing.assert_array_equal(small.exact, one.exact)
    np.testing.assert_allclose(small.predicted, one.predicted, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(small.grad_predicted, one.grad_predicted, rtol=1e-12, atol=1e-14)
    for key, value in one.metrics.items():
        assert small.metrics[key] == pytest.approx(value, rel=1e-11, abs=1e-15), key


def test_evaluation_masks_points_outside_the_domain() -> None:
    problem = LinearLShape()
    exact = evaluate(FunctionModule(problem.exact), problem, 41)
    assert exact.metrics["l2"] == 0.0
    outside = ~exact.mask
    assert np.all(np.isnan(exact.predicted[outside])) and np.all(np.isfinite(exact.predicted[exact.mask]))
    # u + 1 on the L-shape (area 3): l2 = sqrt(3) up to the O(h) of the masked trapezoid rule
    shifted = evaluate(FunctionModule(lambda x: problem.exact(x) + 1), problem, 41)
    assert shifted.metrics["l2"] == pytest.approx(math.sqrt(3.0), rel=0.03)


class _HeatExact(Problem):
    coords = ("x", "t")

    def __init__(self) -> None:
        super().__init__(Box([0.0, 0.0], [2.0, 1.0], self.coords), [Initial(0.0)])

    def pde(self, x: Tensor, u) -> Tensor:
        return u.d("t") - u.d("xx")

    def exact(self, x: Tensor) -> Tensor:
        return 1.0 + 0.0 * x[:, 0]


def test_final_time_norms() -> None:
    problem = _HeatExact()
    ev = evaluate(FunctionModule(lambda x: 1 + 0.5 * x[:, 1] ** 2), problem, 41)
    # at t = 1: e = 0.5 on [0, 2]: l2_final = 0.5 sqrt(2), relative to ||1|| = sqrt(2)
    assert ev.metrics["l2_final"] == pytest.approx(0.5 * math.sqrt(2), rel=1e-12)
    assert ev.metrics["l2_rel_final"] == pytest.approx(0.5, rel=1e-12)
    assert ev.metrics["linf_final"] == pytest.approx(0.5, rel=1e-12)


# -- metrics that cannot be trusted are None, with a message (issue 16, item 3) ---------------------------------


class Wavy(Problem):
    """u = sin(20 pi x) on [0, 1]: zero at every node of a grid of 21 points; ``exact`` may be made to lose its
    autograd graph (tabulated data) or to return NaN past x = 0.9."""

    coords = ("x",)

    def __init__(self, detached: bool = False, nan_after: float | None = None) -> None:
        super().__init__(Box([0.0], [1.0], self.coords), [])
        self.detached, self.nan_after = detached, nan_after

    def pde(self, x: Tensor, u) -> Tensor:
        return u.d("xx") + (20 * math.pi) ** 2 * torch.sin(20 * math.pi * x[:, 0])

    def exact(self, x: Tensor) -> Tensor:
        u = torch.sin(20 * math.pi * x[:, 0])
        if self.nan_after is not None:
            u = torch.where(x[:, 0] > self.nan_after, torch.nan, u)
        return u.detach() if self.detached else u


def _half_exact(problem: Problem) -> FunctionModule:
    return FunctionModule(lambda x: 0.5 * torch.sin(20 * math.pi * x[:, 0]) + 0.1 * x[:, 0])


def test_h1_metrics_are_skipped_without_a_gradient_of_the_solution() -> None:
    problem = Wavy(detached=True)
    ev = evaluate(_half_exact(problem), problem, 101)
    assert all(ev.metrics[k] is None for k in ("h1_semi", "h1", "h1_rel", "h1_mse"))
    assert len(ev.messages) == 1 and "h1_semi, h1, h1_rel, h1_mse not computed" in ev.messages[0]
    assert "give the problem an exact_grad(x)" in ev.messages[0]
    full = evaluate(_half_exact(problem), Wavy(), 101).metrics  # the same solution with its graph
    for key in ("l2", "l2_rel", "linf", "mse"):
        assert ev.metrics[key] == pytest.approx(full[key], rel=1e-14)
    assert np.isnan(ev.grad_exact).all()


def test_a_solution_that_vanishes_on_the_grid_gives_no_relative_l2() -> None:
    problem = Wavy()
    coarse = evaluate(_half_exact(problem), problem, 21)
    assert np.abs(coarse.exact).max() < 1e-13  # sin(20 pi k / 20)
    assert coarse.metrics["l2_rel"] is None
    assert coarse.metrics["h1_rel"] is not None and math.isfinite(coarse.metrics["h1_rel"])  # |u'| = 20 pi there
    assert coarse.metrics["l2"] == pytest.approx(0.1 / math.sqrt(3), rel=1e-2)  # e = 0.1 x at the nodes
    assert len(coarse.messages) == 1 and "l2_rel not computed" in coarse.messages[0]
    assert "eval.n_per_axis" in coarse.messages[0]
    fine = evaluate(_half_exact(problem), problem, 201)  # resolved: the relative error is there again
    assert fine.messages == [] and 0.4 < fine.metrics["l2_rel"] < 0.6


def test_a_zero_exact_solution_gives_no_relative_norms() -> None:
    problem = _HeatExact()
    problem.exact = lambda x: 0.0 * x[:, 0]
    ev = evaluate(FunctionModule(lambda x: x[:, 0]), problem, 11)
    assert ev.metrics["l2_rel"] is None and ev.metrics["h1_rel"] is None and ev.metrics["l2_rel_final"] is None
    assert ev.metrics["l2"] > 0 and "l2_rel, h1_rel, l2_rel_final not computed" in ev.messages[0]


def test_an_exact_solution_with_nans_gives_no_error_metrics() -> None:
    problem = Wavy(nan_after=0.9)
    ev = evaluate(_half_exact(problem), problem, 101)
    assert all(ev.metrics[k] is None for k in KEYS) and ev.metrics["n_params"] == 1
    assert ev.messages == ["error metrics not computed: Wavy.exact returned non-finite values at 10 of 101 "
                           "evaluation points (first at x=0.91)"]


def _trained_like_kan() -> KAN:
    torch.manual_seed(3)
    return KAN([2, 3, 1], grid_size=5, dtype=F64)


@pytest.mark.parametrize("engine", ["autograd", "forward"])
def test_point_errors_equal_the_norms_of_the_exact_solution_at_the_same_points(engine: str) -> None:
    """At N scattered points, with equal weights |Omega| / N: the same numbers as error_norms of the
    model's values and gradients against the exact solution's there, computed independently."""
    from kanpde.evaluate import point_errors

    problem, model = Poisson2D(), _trained_like_kan()
    pts = np.random.default_rng(0).uniform(-1, 1, (257, 2))
    x = torch.from_numpy(pts).requires_grad_(True)
    u = model(x)
    grad = torch.autograd.grad(u.sum(), x)[0]
    exact, exact_grad = problem.exact(x.detach()), problem.exact_grad(x.detach())
    weights = np.full(257, 4.0 / 257)
    expected = error_norms(u.detach().numpy(), exact.numpy()[:, None], grad.numpy()[:, None], exact_grad.numpy()[:, None],
                           weights)
    got = point_errors(model, problem, pts, exact.numpy(), exact_grad.numpy()[:, None], engine=engine, chunk_size=100)
    assert got.messages == [] and set(got.metrics) == KEYS
    for key in KEYS:
        assert got.metrics[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15), key
    e = u.detach().numpy()[:, 0] - exact.numpy()
    assert got.metrics["l2"] == pytest.approx(math.sqrt(4.0 * np.mean(e**2)), rel=1e-12)  # the Monte Carlo L2 norm
    assert got.metrics["linf"] == pytest.approx(np.abs(e).max(), rel=1e-14)
    np.testing.assert_allclose(got.predicted[:, 0], u.detach().numpy()[:, 0], rtol=0, atol=1e-14)


def test_point_errors_without_gradients_skip_the_h1_norms_and_say_so() -> None:
    from kanpde.evaluate import point_errors

    problem, model = Poisson2D(), _trained_like_kan()
    pts = np.random.default_rng(1).uniform(-1, 1, (50, 2))
    exact = problem.exact(torch.from_numpy(pts)).numpy()
    got = point_errors(model, problem, pts, exact, source="fem.txt")
    assert all(got.metrics[k] is None for k in ("h1_semi", "h1", "h1_rel", "h1_mse"))
    assert got.messages == ["h1_semi, h1, h1_rel, h1_mse not computed: fem.txt has no gradient (u_x, u_y)"]
    assert got.metrics["l2_rel"] > 0 and got.gradients is None
    zero = point_errors(model, problem, pts, 0 * exact, source="zero.npz")
    assert zero.metrics["l2_rel"] is None and zero.metrics["l2"] > 0
    assert "l2_rel not computed: the solution in zero.npz is zero to rounding" in zero.messages[1]


def test_reference_errors_of_the_exact_model_vanish() -> None:
    from kanpde.evaluate import reference_errors
    from kanpde.pde import reference_data

    problem = Poisson2D()
    pts = np.random.default_rng(2).uniform(-1, 1, (64, 2))
    ref = reference_data(problem, pts, problem.exact(torch.from_numpy(pts)))
    got = reference_errors(FunctionModule(problem.exact), problem, ref)
    assert got.metrics["l2"] == 0.0 and got.metrics["linf"] == 0.0 and got.source == "data"
