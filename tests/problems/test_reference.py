"""Reference solutions: Burgers (Cole–Hopf quadrature) against published values, Allen–Cahn (ETDRK4)
residuals and convergence, and the on-disk cache."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import F64
from kanpde.problems.allencahn1d import AllenCahn1D
from kanpde.problems.burgers1d import Burgers1D
from kanpde.problems._reference import allen_cahn_etdrk4, burgers_cole_hopf, cache_dir, cached, fourier_eval

NU = 0.01 / math.pi


def test_burgers_reproduces_the_published_steepest_slope() -> None:
    """Basdevant et al. (1986): max |u_x| = 152.00516 at x = 0, t = 1.6037/pi, for nu = 0.01/pi."""
    u, ux = burgers_cole_hopf(np.zeros(1), np.array([1.6037 / math.pi]), NU, derivative=True)
    assert abs(u[0]) <= 1e-14
    assert ux[0] == pytest.approx(-152.00516, rel=1e-7)
    # and more quadrature nodes change nothing at that accuracy
    _, fine = burgers_cole_hopf(np.zeros(1), np.array([1.6037 / math.pi]), NU, derivative=True, n_nodes=4001, z_max=16)
    assert fine[0] == pytest.approx(ux[0], rel=1e-10)


def test_burgers_reference_satisfies_the_pde_and_conditions() -> None:
    rng = np.random.default_rng(0)
    x, t = rng.uniform(-1, 1, 300), rng.uniform(0.05, 1.0, 300)
    h = 1e-5
    u, ux = burgers_cole_hopf(x, t, NU, derivative=True)
    _, uxp = burgers_cole_hopf(x + h, t, NU, derivative=True)
    _, uxm = burgers_cole_hopf(x - h, t, NU, derivative=True)
    ut = (burgers_cole_hopf(x, t + h, NU) - burgers_cole_hopf(x, t - h, NU)) / (2 * h)
    uxx = (uxp - uxm) / (2 * h)
    residual = ut + u * ux - NU * uxx
    scale = np.abs(u * ux) + np.abs(NU * uxx) + 1.0
    assert np.max(np.abs(residual) / scale) <= 1e-3  # finite differences (h = 1e-5) across the shock dominate
    smooth = np.abs(x) > 0.2
    assert np.max(np.abs(residual[smooth])) <= 1e-6
    ux_fd = (burgers_cole_hopf(x + h, t, NU) - burgers_cole_hopf(x - h, t, NU)) / (2 * h)
    assert np.max(np.abs(ux_fd - ux)[smooth]) <= 1e-6
    np.testing.assert_allclose(burgers_cole_hopf(np.array([-1.0, 1.0]), np.array([0.5, 0.9]), NU), 0.0, atol=1e-12)
    x0 = np.linspace(-1, 1, 11)
    np.testing.assert_allclose(burgers_cole_hopf(x0, np.zeros(11), NU), -np.sin(math.pi * x0), atol=0)


def test_burgers_problem_grad_is_consistent() -> None:
    problem = Burgers1D()
    x = torch.tensor([[0.5, 0.3], [-0.4, 0.8]], dtype=F64)
    g = problem.exact_grad(x)
    h = 1e-6
    for k in range(2):
        e = torch.zeros(2, dtype=F64)
        e[k] = h
        fd = (problem.exact(x + e) - problem.exact(x - e)) / (2 * h)
        torch.testing.assert_close(g[:, k], fd, rtol=1e-5, atol=1e-6)


def test_allen_cahn_solver_satisfies_the_pde() -> None:
    """A coarse run (256 modes, dt = 1e-3) is fast; its snapshots satisfy the PDE to the time-difference error."""
    ref = allen_cahn_etdrk4(n=256, dt=1e-3, t_final=0.5, n_out=501)
    u, t = ref["u"], ref["t"]
    np.testing.assert_allclose(u[0], ref["x"] ** 2 * np.cos(math.pi * ref["x"]), atol=1e-12)
    dt = t[1] - t[0]
    ut = (u[2:] - u[:-2]) / (2 * dt)
    mid = u[1:-1]
    uxx = fourier_eval(mid, ref["x"], derivative=2)
    residual = ut - 1e-4 * uxx - 5 * (mid - mid**3)
    assert np.abs(residual[50:]).max() <= 5e-3  # t >= 0.05: central differences in t (dt = 1e-3)
    # the bumps at x = ±0.5 grow towards +1 while the rest sits at -1; the fine solve (1024 modes,
    # dt = 5e-5) gives max 0.56093 and min -0.99989 at t = 0.5
    assert u[-1].max() == pytest.approx(0.56093, abs=2e-3) and u[-1].min() == pytest.approx(-0.99989, abs=1e-4)


def test_allen_cahn_time_step_convergence() -> None:
    a = allen_cahn_etdrk4(n=128, dt=1e-3, t_final=0.2, n_out=21)
    b = allen_cahn_etdrk4(n=128, dt=5e-4, t_final=0.2, n_out=21)
    assert np.abs(a["u"] - b["u"]).max() <= 1e-6  # ETDRK4: fourth order in time


def test_allen_cahn_dirichlet_variant_keeps_its_boundary_and_satisfies_the_pde() -> None:
    """The sine-series variant (u(±1) = -1, DeepXDE's eps = 0.001) that scripts/check_references.py compares
    with published data: boundary values exact, PDE residual by finite differences small, converged in n."""
    ref = allen_cahn_etdrk4(n=256, dt=1e-3, t_final=0.5, n_out=501, eps=1e-3, boundary="dirichlet")
    x, u, t = ref["x"], ref["u"], ref["t"]
    assert x[0] == -1.0 and x[-1] == 1.0 and x.shape == (257,)
    np.testing.assert_allclose(u[:, [0, -1]], -1.0, atol=0)
    np.testing.assert_allclose(u[0], x**2 * np.cos(math.pi * x), atol=1e-12)
    dt, h = t[1] - t[0], x[1] - x[0]
    ut = (u[2:, 1:-1] - u[:-2, 1:-1]) / (2 * dt)
    mid = u[1:-1, 1:-1]
    uxx = (u[1:-1, 2:] - 2 * mid + u[1:-1, :-2]) / h**2
    residual = ut - 1e-3 * uxx - 5 * (mid - mid**3)
    assert np.abs(residual[50:]).max() <= 5e-3  # t >= 0.05: central differences in t and x
    finer = allen_cahn_etdrk4(n=512, dt=1e-3, t_final=0.5, n_out=501, eps=1e-3, boundary="dirichlet")
    # algebraic, not spectral, convergence in x: the odd extension of u0 + 1 has a jump in its second
    # derivative at x = ±1 (u0''(±1) = pi^2 - 2); 256 -> 512 points changes it by 2.7e-6
    assert np.abs(finer["u"][:, ::2] - u).max() <= 1e-5
    with pytest.raises(ValueError, match="boundary must be"):
        allen_cahn_etdrk4(n=16, dt=1e-3, t_final=0.01, n_out=2, boundary="neumann")


def test_fourier_eval_interpolates_a_trigonometric_polynomial_exactly() -> None:
    x = -1 + 2 * np.arange(16) / 16
    f = np.sin(math.pi * x) + 0.5 * np.cos(3 * math.pi * x)
    pts = np.linspace(-1, 1, 37)
    np.testing.assert_allclose(fourier_eval(f, pts)[0], np.sin(math.pi * pts) + 0.5 * np.cos(3 * math.pi * pts), atol=1e-13)
    d = fourier_eval(f, pts, derivative=1)[0]
    np.testing.assert_allclose(d, math.pi * np.cos(math.pi * pts) - 1.5 * math.pi * np.sin(3 * math.pi * pts), atol=1e-12)


def test_cache_is_written_atomically_under_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "kanpde"
    calls = []

    def compute() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"u": np.arange(5.0)}

    first = cached("demo", {"n": 5}, compute)
    second = cached("demo", {"n": 5}, compute)
    assert len(calls) == 1 and np.array_equal(first["u"], second["u"])
    files = sorted(p.name for p in (tmp_path / "kanpde").iterdir())
    assert len(files) == 1 and files[0].startswith("demo-") and files[0].endswith(".npz")
    cached("demo", {"n": 6}, compute)
    assert len(calls) == 2


def test_allen_cahn_problem_uses_its_cached_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    problem = AllenCahn1D(n_modes=128, dt=1e-3, n_out=101)
    x = torch.tensor([[-1.0, 0.0], [0.5, 0.0], [1.0, 0.37], [-1.0, 0.37]], dtype=F64)
    u = problem.exact(x)
    assert u[0].item() == pytest.approx(-1.0, abs=1e-12) and u[1].item() == pytest.approx(0.0, abs=1e-12)
    assert u[2].item() == pytest.approx(u[3].item(), abs=1e-12)  # periodic in x
    assert len(list((tmp_path / "kanpde").glob("allencahn1d-*.npz"))) == 1
    assert problem.exact_grad(x).shape == (4, 2)
