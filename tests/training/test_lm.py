"""Levenberg–Marquardt (kanpde.training.lm): small least-squares problems with known minima, the PINN Jacobian
against autograd, the residual vector against the trainer's loss, stages on poisson2d. (Its configuration
errors and a run with an LM stage: tests/app/.)"""

from __future__ import annotations

import functools
import math

import pytest
import torch

import kanpde
from kanpde.training.lm import FunctionLeastSquares, LevenbergMarquardt
from kanpde.training.loss import PinnLeastSquares
from kanpde.problems.advection1d import Advection1D
from kanpde.problems.kovasznay import Kovasznay
from kanpde.problems.poisson2d import Poisson2D
from kanpde.pde.sampling import Sampler
from kanpde.training.loss import derivative_plans, loss_terms, weighted_loss

F64 = torch.float64


def _minimise(fn, params, steps: int, **kwargs) -> LevenbergMarquardt:
    opt = LevenbergMarquardt(params, **kwargs).attach(FunctionLeastSquares(fn, params))
    for _ in range(steps):
        opt.step()
    return opt


@pytest.mark.parametrize("scaling", ["marquardt", "identity"])
def test_rosenbrock_minimum(scaling: str) -> None:
    """r = (10 (y - x^2), 1 - x): ||r||^2 is Rosenbrock's function, minimum 0 at (1, 1)."""
    p = torch.tensor([-1.2, 1.0], dtype=F64, requires_grad=True)
    opt = _minimise(lambda q: torch.stack([10 * (q[1] - q[0] ** 2), 1 - q[0]]), [p], 100, scaling=scaling)
    assert torch.allclose(p.detach(), torch.ones(2, dtype=F64), atol=1e-10, rtol=0)
    assert opt.last["loss"] < 1e-20


def test_exponential_fit_recovers_parameters() -> None:
    """y = a exp(b t) + c sampled exactly; from (1, -0.4, 1.5) the fit finds (a, b, c) to 1e-10."""
    t = torch.linspace(0, 2, 40, dtype=F64)
    a0, b0, c0 = 2.5, -1.3, 0.4
    y = a0 * torch.exp(b0 * t) + c0
    a = torch.tensor(1.0, dtype=F64, requires_grad=True)
    b = torch.tensor(-0.4, dtype=F64, requires_grad=True)
    c = torch.tensor(1.5, dtype=F64, requires_grad=True)
    _minimise(lambda a, b, c: a * torch.exp(b * t) + c - y, [a, b, c], 200)
    got = torch.stack([a, b, c]).detach()
    assert torch.allclose(got, torch.tensor([a0, b0, c0], dtype=F64), atol=1e-10, rtol=0)


def test_rejected_steps_leave_parameters_and_raise_damping() -> None:
    """A system whose trial values are never lower rejects every try: parameters unchanged, mu grows."""

    class Flat(FunctionLeastSquares):
        def value(self) -> float:
            return math.inf

    p = torch.tensor([3.0, -2.0], dtype=F64, requires_grad=True)
    opt = LevenbergMarquardt([p], max_tries=4).attach(Flat(lambda q: q - 1, [p]))
    opt.step()
    assert p.detach().tolist() == [3.0, -2.0]
    assert opt.last["accepted"] == 0.0 and opt.last["tries"] == 4.0 and opt.mu == pytest.approx(1e-3 * 2 * 4 * 8 * 16)


def test_converged_steps_skip_the_jacobian() -> None:
    """With tolerance_change, once steps stop helping the optimizer stops computing Jacobians."""

    class Counting(FunctionLeastSquares):
        calls = 0

        def normal_equations(self):
            Counting.calls += 1
            return super().normal_equations()

    p = torch.tensor([0.3, 2.0], dtype=F64, requires_grad=True)
    opt = LevenbergMarquardt([p], tolerance_change=1e-3, patience=2).attach(Counting(lambda q: q - torch.tensor([1.0, -1.0], dtype=F64), [p]))
    for _ in range(30):
        opt.step()
    assert opt.converged and Counting.calls < 30
    assert torch.allclose(p.detach(), torch.tensor([1.0, -1.0], dtype=F64), atol=1e-10, rtol=0)


def _batch(problem, n_interior: int = 40, n_boundary: int = 24):
    return problem.sample(Sampler(method="sobol", seed=0), n_interior, n_boundary)


def _flat_jacobian_by_autograd(model, problem, batch, pde_weight: float):
    """The scaled residual vector as a function of the flattened parameters, differentiated by
    torch.autograd.functional.jacobian through the autograd engine."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def residuals(flat):
        params, offset = {}, 0
        for name, shape in zip(names, shapes):
            n = math.prod(shape)
            params[name] = flat[offset : offset + n].view(shape)
            offset += n

        class Call(torch.nn.Module):
            def forward(self, x):
                return torch.func.functional_call(model, params, (x,))

        f = Call()
        args = (problem.coords, problem.outputs, "autograd", problem.time_coord)
        res = problem.pde(batch.interior, kanpde.make_field(f, batch.interior, *args))
        out = [math.sqrt(pde_weight / batch.interior.shape[0]) * res]
        for cond in problem.conditions:
            pts = batch.boundary[cond.label]
            r = cond.residual(pts, kanpde.make_field(f, pts.x, *args))
            out.append(math.sqrt(cond.weight / pts.x.shape[0]) * r)
        return torch.cat(out)

    return torch.autograd.functional.jacobian(residuals, flat0), residuals(flat0).detach()


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(lambda: kanpde.KAN([2, 4, 3, 1], grid_size=4, dtype=F64), id="kan"),
        pytest.param(lambda: kanpde.MLP([2, 6, 5, 1], dtype=F64), id="mlp"),
    ],
)
@pytest.mark.parametrize("engine", ["forward", "autograd"])
def test_pinn_jacobian_matches_autograd(model, engine: str) -> None:
    model, problem = model(), Poisson2D()
    batch = _batch(problem)
    plans = derivative_plans(model, problem, batch, engine)
    system = PinnLeastSquares(model, problem, batch, 0.01, engine, plans, chunk_size=7)
    J, r = system.jacobian()
    J_ref, r_ref = _flat_jacobian_by_autograd(model, problem, batch, 0.01)
    assert J.shape == J_ref.shape == (40 + 24, sum(p.numel() for p in model.parameters()))
    assert torch.allclose(r, r_ref, atol=1e-13, rtol=0)
    assert torch.allclose(J, J_ref, atol=1e-12 * float(J_ref.abs().max()), rtol=0)
    A, g, f = system.normal_equations()
    assert torch.allclose(A, J.T @ J, atol=1e-12 * float(A.abs().max()), rtol=0)
    assert torch.allclose(g, J.T @ r, atol=1e-14, rtol=0)


@pytest.mark.parametrize("problem", [Poisson2D, Advection1D, Kovasznay], ids=["poisson2d", "advection1d", "kovasznay"])
def test_squared_residual_norm_is_the_trainers_loss(problem) -> None:
    """||r||^2 = pde_weight mean|r_pde|^2 + sum_c w_c mean|r_c|^2, also for periodic pairs with derivatives
    (advection1d) and a system with three residuals and component conditions (kovasznay)."""
    problem = problem()
    model = kanpde.KAN([problem.dim, 3, problem.n_outputs], grid_size=3, dtype=F64)
    batch = _batch(problem, 30, 40)
    plans = derivative_plans(model, problem, batch, "forward")
    system = PinnLeastSquares(model, problem, batch, 0.05, "forward", plans, chunk_size=11)
    loss = float(weighted_loss(loss_terms(model, problem, batch, "forward", plans), problem, 0.05))
    J, r = system.jacobian()
    _, _, f = system.normal_equations()
    assert f == pytest.approx(loss, rel=1e-12) and system.value() == pytest.approx(loss, rel=1e-12)
    assert float(r @ r) == pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize("engine", ["forward", "autograd"])
def test_chunked_lm_steps_equal_the_unchunked_ones(engine: str) -> None:
    """JᵀJ = Σ_c J_cᵀJ_c and Jᵀr = Σ_c J_cᵀr_c over row blocks c: LM steps on a system built over chunks of
    7 units (trial losses over chunks of 9 points) land on the parameters of the one-chunk system to
    rounding; the two systems' normal equations agree to rounding too."""
    problem = Poisson2D()
    batch = _batch(problem, 61, 40)
    ends = []
    for chunk, loss_chunk in ((10**6, None), (7, 9)):
        torch.manual_seed(0)
        model = kanpde.MLP([2, 6, 5, 1], dtype=F64)
        plans = derivative_plans(model, problem, batch, engine)
        system = PinnLeastSquares(model, problem, batch, 0.01, engine, plans, chunk_size=chunk, loss_chunk_size=loss_chunk)
        A, g, f = system.normal_equations()
        opt = LevenbergMarquardt(model.parameters()).attach(system)
        for _ in range(3):
            opt.step()
        ends.append(([p.detach().clone() for p in model.parameters()], A, g, f, system.value()))
    (p0, A0, g0, f0, v0), (p1, A1, g1, f1, v1) = ends
    torch.testing.assert_close(A1, A0, rtol=1e-12, atol=1e-12 * float(A0.abs().max()))
    torch.testing.assert_close(g1, g0, rtol=1e-12, atol=1e-12 * float(g0.abs().max()))
    assert f1 == pytest.approx(f0, rel=1e-12) and v1 == pytest.approx(v0, rel=1e-10)
    for a, b in zip(p0, p1):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(
    "make,steps,factor,scaling",
    [
        (lambda: kanpde.KAN([2, 6, 1], grid_size=5, dtype=F64), 25, 1e-3, "marquardt"),
        (lambda: kanpde.MLP([2, 10, 10, 1], dtype=F64), 40, 1e-1, "identity"),
    ],
    ids=["kan", "mlp"],
)
def test_lm_stage_reduces_poisson_loss_by_orders_of_magnitude(make, steps: int, factor: float, scaling: str) -> None:
    """A tiny poisson2d fit from the random initialisation: three orders for the KAN; the MLP, further
    from its solution (the nonlinear phase keeps the damping high), at least one."""
    problem = Poisson2D()
    lm = functools.partial(LevenbergMarquardt, scaling=scaling)
    result = kanpde.fit(make(), problem, [kanpde.Stage(lm, steps=steps)], n_interior=300, n_boundary=80)
    losses = [s["loss"] for s in result.history.steps]
    assert len(losses) == steps and all(math.isfinite(v) for v in losses)
    assert all(b <= a for a, b in zip(losses, losses[1:]))  # accepted steps only ever lower the loss
    assert result.history.stages[-1]["loss"] < factor * losses[0]
    assert result.history.stages[-1]["optimizer"] == "LevenbergMarquardt"


def test_lm_then_grid_extension_keeps_working() -> None:
    problem = Poisson2D()
    stages = [kanpde.Stage(LevenbergMarquardt, steps=5, grid_size=3), kanpde.Stage(LevenbergMarquardt, steps=5, grid_size=6)]
    result = kanpde.fit(kanpde.KAN([2, 3, 1], grid_size=3, dtype=F64), problem, stages, n_interior=120, n_boundary=40)
    assert result.model.grid_size == 6
    assert [s["grid_size"] for s in result.history.stages] == [3, 6]
    assert result.history.stages[1]["loss"] < result.history.stages[0]["loss"]


@pytest.mark.parametrize("engine", ["forward", "autograd"])
def test_the_lm_loss_value_equals_its_residual_vector_for_every_engine(engine: str) -> None:
    problem = Poisson2D()
    torch.manual_seed(0)
    net = kanpde.KAN([2, 4, 1], grid_size=4, dtype=F64)
    batch = problem.sample(Sampler("sobol", seed=0), 24, 8)
    system = PinnLeastSquares(net, problem, batch, 0.01, engine)
    _, r = system.jacobian()
    assert system.value() == pytest.approx(float(r @ r), rel=1e-12)
