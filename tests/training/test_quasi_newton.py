"""Dense quasi-Newton optimizers (kanpde.training.quasi_newton): BFGS against scipy's BFGS, every member on
Rosenbrock and on least-squares objectives, the strong Wolfe conditions and the secant equation at every
accepted step, the parameter-count refusal, the stage rule, and stages through ``fit`` and the CLI; SOAP from
the optional pytorch-optimizer package through ``_target_``."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import Tensor, nn

import kanpde
from kanpde import BFGS, KAN, SSBFGS, Sampler, SSBroyden, Stage, fit
from kanpde.app.config import ConfigError, build_spec, build_stages
from kanpde.app.run import run
from kanpde.training.quasi_newton import QuasiNewton
from tests.helpers import SineLine, fast_cfg

F64 = torch.float64
MEMBERS = [BFGS, SSBFGS, SSBroyden]
IDS = [c.__name__ for c in MEMBERS]


def minimise(cls: type[QuasiNewton], f: Callable[[Tensor], Tensor], x0: Sequence, steps: int = 1, **kwargs):
    """``cls`` on ``f`` from ``x0``: the parameter, the optimizer and the traces of every step."""
    x = nn.Parameter(torch.tensor(x0, dtype=F64))
    opt = cls([x], **kwargs)
    traces = []

    def closure() -> Tensor:
        opt.zero_grad()
        loss = f(x)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
        traces.append(opt.trace)
    return x, opt, traces


def rosenbrock(x: Tensor) -> Tensor:
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


# -- a smooth, strongly convex problem: regularised logistic regression --------------------------------------------------

_rng = np.random.default_rng(3)
A = _rng.normal(size=(40, 6))
LABELS = (_rng.uniform(size=40) < 0.5).astype(float)
LAM = 0.1


def logistic_np(x: np.ndarray) -> float:
    z = A @ x
    return float(np.sum(np.logaddexp(0, z) - LABELS * z) + 0.5 * LAM * x @ x)


def logistic_grad_np(x: np.ndarray) -> np.ndarray:
    z = A @ x
    return A.T @ (1 / (1 + np.exp(-z)) - LABELS) + LAM * x


def logistic(x: Tensor) -> Tensor:
    z = torch.as_tensor(A) @ x
    return (torch.nn.functional.softplus(z) - torch.as_tensor(LABELS) * z).sum() + 0.5 * LAM * x @ x


X0 = [0.5, -0.3, 0.2, 0.1, -0.4, 0.3]


def scipy_bfgs_iterates(n_iter: int) -> list[np.ndarray]:
    """scipy's BFGS iteration (its update, ``H = (I - rho s y^T) H (I - rho y s^T) + rho s s^T``, and its
    first-trial-step rule) written out with :func:`scipy.optimize.line_search`, independently of kanpde."""
    x, g, f = np.array(X0), logistic_grad_np(np.array(X0)), logistic_np(np.array(X0))
    f_prev, H, out = f + np.linalg.norm(g) / 2, np.eye(len(X0)), []
    for _ in range(n_iter):
        d = -H @ g
        alpha, _, _, f_new, f_prev, g_new = scipy.optimize.line_search(
            logistic_np, logistic_grad_np, x, d, gfk=g, old_fval=f, old_old_fval=f_prev, maxiter=20)
        s, y = alpha * d, np.asarray(g_new) - g
        rho, eye = 1 / (y @ s), np.eye(len(X0))
        H = (eye - rho * np.outer(s, y)) @ H @ (eye - rho * np.outer(y, s)) + rho * np.outer(s, s)
        x, g, f = x + s, np.asarray(g_new), f_new
        out.append(x.copy())
    return out


def test_bfgs_iterates_are_scipys_bfgs() -> None:
    ref = scipy_bfgs_iterates(8)
    x = nn.Parameter(torch.tensor(X0, dtype=F64))
    opt = BFGS([x], max_iter=1, initial_scale=False)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = logistic(x)
        loss.backward()
        return loss

    for k, want in enumerate(ref):
        opt.step(closure)
        np.testing.assert_allclose(x.detach().numpy(), want, rtol=1e-10, atol=1e-12, err_msg=f"iterate {k + 1}")


@pytest.mark.parametrize("cls", MEMBERS, ids=IDS)
def test_final_point_matches_scipy_minimize_bfgs(cls: type[QuasiNewton]) -> None:
    want = scipy.optimize.minimize(logistic_np, np.array(X0), jac=logistic_grad_np, method="BFGS", options={"gtol": 1e-8})
    assert want.success  # |g| <= 1e-8 with Hessian >= LAM I: scipy's point is within 1e-7 of the minimiser
    x, opt, _ = minimise(cls, logistic, X0, max_iter=200, tolerance_grad=1e-11)
    assert opt.converged
    np.testing.assert_allclose(x.detach().numpy(), want.x, rtol=0, atol=1e-7)
    assert float(logistic(x.detach())) == pytest.approx(want.fun, rel=1e-13)


# -- Rosenbrock and least squares: every member to a stated tolerance ----------------------------------------------------


@pytest.mark.parametrize("cls", MEMBERS, ids=IDS)
@pytest.mark.parametrize("n", [2, 10])
def test_rosenbrock_to_1e_minus_10(cls: type[QuasiNewton], n: int) -> None:
    x, opt, traces = minimise(cls, rosenbrock, [-1.2, 1.0] * (n // 2), max_iter=300, tolerance_grad=1e-10)
    assert float((x.detach() - 1).abs().max()) < 1e-10
    assert float(rosenbrock(x.detach())) < 1e-18
    assert opt.converged and len(traces[0]) < 150  # superlinear: scipy's BFGS needs ~35 (n = 2) to ~70 (n = 10)


T = torch.linspace(0, 2, 25, dtype=F64)
TRUE = (2.0, -1.3, 0.5)


def exp_residuals(p: Tensor) -> Tensor:
    return p[0] * torch.exp(p[1] * T) + p[2] - (TRUE[0] * torch.exp(TRUE[1] * T) + TRUE[2])


@pytest.mark.parametrize("cls", MEMBERS, ids=IDS)
def test_nonlinear_least_squares_recovers_the_parameters(cls: type[QuasiNewton]) -> None:
    x, opt, _ = minimise(cls, lambda p: exp_residuals(p).pow(2).sum(), [1.0, 0.0, 0.0], max_iter=300, tolerance_grad=1e-13)
    np.testing.assert_allclose(x.detach().numpy(), TRUE, rtol=0, atol=1e-7)
    ref = scipy.optimize.least_squares(lambda p: exp_residuals(torch.as_tensor(p)).numpy(), [1.0, 0.0, 0.0], xtol=1e-15,
                                       ftol=1e-15, gtol=1e-15)
    np.testing.assert_allclose(x.detach().numpy(), ref.x, rtol=0, atol=1e-7)


@pytest.mark.parametrize("cls", MEMBERS, ids=IDS)
def test_linear_least_squares_matches_lstsq(cls: type[QuasiNewton]) -> None:
    rng = np.random.default_rng(0)
    M, rhs = rng.normal(size=(30, 8)) * np.logspace(0, 1.5, 8), rng.normal(size=30)  # condition number ~100
    want = np.linalg.lstsq(M, rhs, rcond=None)[0]
    Mt, rt = torch.as_tensor(M), torch.as_tensor(rhs)
    x, _, _ = minimise(cls, lambda p: (Mt @ p - rt).pow(2).sum(), [0.0] * 8, max_iter=200, tolerance_grad=1e-12)
    np.testing.assert_allclose(x.detach().numpy(), want, rtol=0, atol=1e-8)  # normal equations' condition ~1e4


# -- the conditions every accepted step meets ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", MEMBERS, ids=IDS)
@pytest.mark.parametrize("objective,x0", [(rosenbrock, [-1.2, 1.0] * 3), (logistic, X0)], ids=["rosenbrock", "logistic"])
def test_every_step_meets_the_strong_wolfe_conditions_and_decreases(cls: type[QuasiNewton], objective, x0) -> None:
    c1, c2 = 1e-4, 0.9
    _, _, traces = minimise(cls, objective, x0, steps=4, max_iter=15, c1=c1, c2=c2, tolerance_grad=1e-9)
    records = [r for trace in traces for r in trace]
    assert len(records) >= 10
    for k, r in enumerate(records):
        assert r["slope"] < 0, k  # a descent direction
        assert r["new_loss"] <= r["loss"] + c1 * r["alpha"] * r["slope"], k  # sufficient decrease
        assert abs(r["new_slope"]) <= c2 * abs(r["slope"]) + 1e-300, k  # strong curvature
        assert r["new_loss"] <= r["loss"], k  # monotone (equal only at round-off, near the minimum)
    assert all(r["tau"] > 0 for r in records if not math.isnan(r["tau"]))


@pytest.mark.parametrize("cls", MEMBERS, ids=IDS)
def test_each_update_satisfies_the_secant_equation_and_stays_positive_definite(cls: type[QuasiNewton]) -> None:
    x = nn.Parameter(torch.tensor([-1.2, 1.0] * 3, dtype=F64))
    opt = cls([x], max_iter=1)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = rosenbrock(x)
        loss.backward()
        return loss

    taus = []
    for _ in range(25):
        x_old = x.detach().clone()
        opt.step(closure)
        g_old = torch.autograd.functional.jacobian(rosenbrock, x_old)
        s, y = x.detach() - x_old, torch.autograd.functional.jacobian(rosenbrock, x.detach()) - g_old
        torch.testing.assert_close(opt.H @ y, s, rtol=1e-8, atol=1e-12 * float(s.abs().max()))  # H_new y = s
        assert torch.equal(opt.H, opt.H.T)
        assert float(torch.linalg.eigvalsh(opt.H).min()) > 0
        taus.append(opt.trace[0]["tau"])
    assert opt.n_updates == 25  # the state lives across the steps of a stage
    if cls is BFGS:
        assert taus[1:] == [1.0] * 24  # plain BFGS scales only H_0
    else:
        assert any(t != 1.0 for t in taus[1:])  # the self-scaled members do rescale


def test_ssbroyden_phi_and_tau_follow_the_papers_formulas() -> None:
    """One update against the formulas of Urbán et al. (eqs. 13-23) written out here for given b, h."""
    opt = SSBroyden([nn.Parameter(torch.zeros(7, dtype=F64))])
    opt.n_updates = 3  # not the first update
    rng = np.random.default_rng(1)
    for _ in range(20):
        s, y = torch.as_tensor(rng.normal(size=7)), torch.as_tensor(rng.normal(size=7))
        if float(y @ s) < 0:
            y = -y
        alpha = float(rng.uniform(0.1, 2))
        g = -s / alpha * float(rng.uniform(0.2, 3))  # any g along -s: s = -alpha H g for H = c I
        Hy = y * float(rng.uniform(0.3, 3))
        phi, tau = opt._scaling(alpha, s, y, g, Hy)
        rho = 1 / float(y @ s)
        h, b = rho * float(y @ Hy), -alpha * rho * float(s @ g)
        a = b * h - 1
        rho_m = min(1, h * (1 - math.sqrt(abs(a) / (1 + a))))
        theta = max((rho_m - 1) / a, min(1 / rho_m, (1 - b) / b))
        sigma = 1 + theta * a
        root = abs(sigma) ** (1 / (1 - 7))
        want_tau = min(min(1, 1 / b) * root, sigma) if theta <= 0 else min(1, 1 / b) * min(root, 1 / theta)
        assert phi == pytest.approx((1 - theta) / (1 + a * theta), rel=1e-12)
        assert tau == pytest.approx(want_tau, rel=1e-12)


def test_a_non_finite_trial_loss_is_backed_off_from() -> None:
    def barrier(x: Tensor) -> Tensor:  # finite only inside |x| < 1, minimum near 0.77
        r2 = x.pow(2).sum()
        return (x - 2).pow(2).sum() - torch.log(1 - r2) if float(r2.detach()) < 1 else (0 * x).sum() + math.inf

    x, opt, traces = minimise(SSBroyden, barrier, [0.0], max_iter=50, tolerance_grad=1e-10)
    assert opt.converged and math.isfinite(float(barrier(x.detach())))
    want = scipy.optimize.minimize_scalar(lambda t: (t - 2) ** 2 - math.log(1 - t * t), bounds=(-0.999, 0.999),
                                          method="bounded", options={"xatol": 1e-12}).x
    assert float(x) == pytest.approx(want, abs=1e-7)


# -- refusals --------------------------------------------------------------------------------------------------------------


def test_more_parameters_than_max_params_is_refused_in_one_line() -> None:
    params = [nn.Parameter(torch.zeros(40, 3)), nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match=r"SSBroyden keeps a dense 121 x 121 float64 inverse Hessian .* more than max_params=120") as info:
        SSBroyden(params, max_params=120)
    assert "\n" not in str(info.value)
    SSBroyden(params, max_params=121)  # at the limit: accepted (H is allocated at the first step only)
    assert SSBroyden(params).max_params == 10_000


BAD_ARGUMENTS = [
    ({"update": "dfp"}, r"update must be one of \['bfgs', 'ssbfgs', 'ssbroyden'\], got 'dfp'"),
    ({"max_iter": 0}, r"max_iter must be a positive integer"),
    ({"c1": 0.0}, r"c1 must be a finite number > 0.0 and < 1.0"),
    ({"c1": 0.5, "c2": 0.4}, r"c2 must be a finite number > 0.5 and < 1.0"),
    ({"tolerance_grad": -1.0}, r"tolerance_grad must be a finite number >= 0.0"),
    ({"initial_scale": "yes"}, r"initial_scale must be true or false"),
]


@pytest.mark.parametrize("kwargs,message", BAD_ARGUMENTS, ids=[next(iter(k)) for k, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SSBroyden([nn.Parameter(torch.zeros(2))], **kwargs)


def test_config_refuses_a_stage_whose_grid_extension_exceeds_max_params(tmp_path: Path) -> None:
    stages = "trainer.stages=[{optimizer: ssbroyden, steps: 1}, {optimizer: ssbroyden, steps: 1, grid_size: 40}]"
    small = KAN([2, 3, 1], grid_size=7).to(F64)  # debug=fast's KAN at grid 7 (the bound below sits in between)
    limit = sum(p.numel() for p in small.parameters())
    cfg = fast_cfg(stages, "model.grid_size=7", f"trainer.optimizers.ssbroyden.max_params={limit}", "baseline=null")
    with pytest.raises(ConfigError, match=r"trainer.stages\[1\].optimizer \(model\): SSBroyden keeps a dense") as info:
        build_spec(cfg, tmp_path, "test")
    assert "\n" not in str(info.value)
    build_spec(fast_cfg(stages.replace("grid_size: 40", "grid_size: 7"), "model.grid_size=7",
                        f"trainer.optimizers.ssbroyden.max_params={limit}", "baseline=null"), tmp_path, "test")
    with pytest.raises(ConfigError, match=r"c2 must be a finite number"):
        build_stages(fast_cfg(stages, "trainer.optimizers.ssbroyden.c2=1.5").trainer)


# -- stages through fit, the stage rule, the CLI ---------------------------------------------------------------------------


def _fit_sine(stages: list[Stage], start_stage: int = 0, model=None, history=None):
    torch.manual_seed(0)
    model = model if model is not None else KAN([1, 4, 1], grid_size=5).to(F64)
    return fit(model, SineLine(), stages, sampler=Sampler(seed=1), n_interior=48, n_boundary=2,
               start_stage=start_stage, history=history)


@pytest.mark.parametrize("cls", MEMBERS, ids=IDS)
def test_stages_lower_a_pinn_loss_and_resume_gives_the_same_model(cls: type[QuasiNewton]) -> None:
    stages = [Stage(lambda p: torch.optim.Adam(p, lr=1e-2), 20), Stage(lambda p: cls(p, max_iter=10), 3),
              Stage(lambda p: cls(p, max_iter=10), 3, grid_size=8)]
    whole = _fit_sine(stages)
    losses = [s["loss"] for s in whole.history.stages]
    assert losses[1] < losses[0] / 10 and losses[2] < losses[1]
    first = _fit_sine(stages[:2])  # the same two first stages, then a resume from them
    resumed = _fit_sine(stages, start_stage=2, model=copy.deepcopy(first.model), history=copy.deepcopy(first.history))
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)  # a fresh optimizer at every stage: nothing is lost by a resume


def test_float32_parameters_train_with_a_float64_inverse_hessian() -> None:
    x, opt, _ = minimise(SSBroyden, lambda p: rosenbrock(p.double()), [-1.2, 1.0], max_iter=200, tolerance_grad=1e-6)
    x32 = nn.Parameter(torch.tensor([-1.2, 1.0], dtype=torch.float32))
    opt32 = SSBroyden([x32], max_iter=200)

    def closure() -> Tensor:
        opt32.zero_grad()
        loss = rosenbrock(x32)
        loss.backward()
        return loss

    opt32.step(closure)
    assert opt32.H.dtype == F64 and x32.dtype == torch.float32
    assert float((x32.detach() - 1).abs().max()) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bfgs", "ssbfgs", "ssbroyden", "soap"])
def test_each_new_optimizer_runs_a_debug_fast_run(name: str, tmp_path: Path) -> None:
    if name == "soap":
        pytest.importorskip("pytorch_optimizer", reason='SOAP needs the optional pytorch-optimizer: pip install "kanpde[optimizers]"')
    cfg = fast_cfg(f"trainer.stages=[{{optimizer: adam, steps: 5}}, {{optimizer: {name}, steps: 3, grid_size: 7}}]",
                   "output.figures=false")
    metrics = run(cfg, output_dir=tmp_path)
    assert math.isfinite(metrics["l2_rel"]) and math.isfinite(metrics["baseline"]["l2_rel"])
    assert (tmp_path / "solution.h5").exists()


def test_soap_from_pytorch_optimizer_decreases_a_least_squares_objective() -> None:
    pytorch_optimizer = pytest.importorskip(
        "pytorch_optimizer", reason='SOAP needs the optional pytorch-optimizer: pip install "kanpde[optimizers]"')
    torch.manual_seed(0)
    M, target = torch.randn(64, 6, dtype=F64), torch.randn(64, 3, dtype=F64)
    W = nn.Parameter(torch.zeros(6, 3, dtype=F64))
    best = float((M @ torch.linalg.lstsq(M, target).solution - target).pow(2).mean())
    opt = pytorch_optimizer.SOAP([W], lr=3e-2, weight_decay=0.0, precondition_frequency=5)
    start = float((M @ W - target).pow(2).mean())
    for _ in range(400):
        opt.zero_grad()
        loss = (M @ W - target).pow(2).mean()
        loss.backward()
        opt.step()
    assert float((M @ W - target).pow(2).mean()) - best < 1e-3 * (start - best)


@pytest.mark.slow
@pytest.mark.subprocess
def test_cli_runs_every_new_optimizer_and_refuses_too_many_parameters(tmp_path: Path) -> None:
    stages = ["{optimizer: adam, steps: 3}", "{optimizer: bfgs, steps: 2}", "{optimizer: ssbfgs, steps: 2}",
              "{optimizer: ssbroyden, steps: 2, grid_size: 7}"]
    try:
        import pytorch_optimizer  # noqa: F401
        stages.append("{optimizer: soap, steps: 3}")
    except ImportError:
        pass  # SOAP is optional; test_soap_* report the skip
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    good = subprocess.run([sys.executable, "-m", "kanpde", "debug=fast", f"trainer.stages=[{', '.join(stages)}]",
                           "output.figures=false", f"hydra.run.dir={tmp_path / 'good'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert good.returncode == 0, good.stderr[-2000:]
    assert "l2_rel" in good.stdout and (tmp_path / "good" / "solution.h5").exists()
    bad = subprocess.run([sys.executable, "-m", "kanpde", "debug=fast", "trainer.stages=[{optimizer: ssbroyden, steps: 1}]",
                          "trainer.optimizers.ssbroyden.max_params=10", f"hydra.run.dir={tmp_path / 'bad'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "more than max_params=10" in lines[0], bad.stderr
    assert not (tmp_path / "bad" / "solution.h5").exists()


def test_the_optimizers_are_public() -> None:
    for name in ("QuasiNewton", "BFGS", "SSBFGS", "SSBroyden"):
        assert name in kanpde.__all__ and getattr(kanpde, name).__module__ == "kanpde.training.quasi_newton"
