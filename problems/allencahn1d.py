"""Allen–Cahn in 1-D, the standard PINN benchmark (Raissi et al. 2019; Wight & Zhao 2020):

    u_t = eps u_xx + 5 (u - u^3)  on  [-1, 1] x [0, 1],  eps = 1e-4,
    u(x, 0) = x^2 cos(pi x),  u and u_x periodic in x.

No closed form: the reference is computed at first use by a Fourier pseudo-spectral / ETDRK4 solver
(:func:`kanpde.problems._reference.allen_cahn_etdrk4`: 2048 modes, dt = 1e-4, 1001 snapshots) and cached as
``.npz`` in the user cache dir (about 15 s once). Between snapshots it is interpolated linearly in t
and by its Fourier series in x. Accuracy (measured, max |difference|): halving dt changes it by 1e-11,
linear interpolation in t costs 4e-6, and the spatial resolution is quantified in the README.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.geometry import Box
from kanpde.pde.problem import Initial, Periodic, Problem
from ._reference import allen_cahn_etdrk4, cached, fourier_eval


class AllenCahn1D(Problem):
    """Allen–Cahn equation with periodic ends; reference by an ETDRK4 spectral solver, cached."""

    coords = ("x", "t")
    reference_solution = True  # computed numerically: tests check it by finite differences

    def __init__(self, eps: float = 1e-4, gamma: float = 5.0, n_modes: int = 2048, dt: float = 1e-4, n_out: int = 1001) -> None:
        self.eps, self.gamma = float(eps), float(gamma)
        self.solver = {"n": int(n_modes), "dt": float(dt), "n_out": int(n_out), "eps": self.eps, "gamma": self.gamma}
        conditions = [
            Periodic(("x-", "x+"), derivatives=("x",)),
            Initial(lambda x: x[:, 0] ** 2 * torch.cos(math.pi * x[:, 0])),
        ]
        super().__init__(Box([-1.0, 0.0], [1.0, 1.0], self.coords), conditions)
        self._ref: dict[str, np.ndarray] | None = None

    def pde(self, x: Tensor, u: Field) -> Tensor:
        return u.d("t") - self.eps * u.d("xx") - self.gamma * (u.value - u.value**3)

    @property
    def solution_table(self) -> dict[str, np.ndarray]:
        """``{"x": (n,), "t": (n_out,), "u": (n_out, n)}`` from the cache (computed on first use)."""
        if self._ref is None:
            self._ref = cached("allencahn1d", self.solver, lambda: allen_cahn_etdrk4(t_final=1.0, **self.solver))
        return self._ref

    def _interp(self, x: Tensor, derivative: int) -> np.ndarray:
        """The reference (or its ``derivative``-th x-derivative) at points ``x`` ``(p, 2)``, and u_t."""
        ref = self.solution_table
        pts = x.detach().double().cpu().numpy()
        t_axis = ref["t"]
        dt = t_axis[1] - t_axis[0]
        pos = np.clip(pts[:, 1] / dt, 0, len(t_axis) - 1)
        lo = np.minimum(np.floor(pos).astype(int), len(t_axis) - 2)
        frac = pos - lo
        values = np.empty((pts.shape[0], 2))
        for i in np.unique(lo):  # points sharing a pair of snapshots
            sel = lo == i
            both = fourier_eval(ref["u"][i : i + 2], pts[sel, 0], derivative=derivative)  # (2, p_i)
            values[sel, 0] = (1 - frac[sel]) * both[0] + frac[sel] * both[1]
            values[sel, 1] = (both[1] - both[0]) / dt
        return values

    def exact(self, x: Tensor) -> Tensor:
        u = torch.from_numpy(self._interp(x, 0)[:, 0]).to(dtype=x.dtype, device=x.device)
        # at t = 0 the initial value itself: its Fourier series converges slowly at x = ±1, where u0' jumps
        return torch.where(x[:, 1] == 0, x[:, 0] ** 2 * torch.cos(math.pi * x[:, 0]), u)

    def exact_grad(self, x: Tensor) -> Tensor:
        ux = self._interp(x, 1)[:, 0]
        ut = self._interp(x, 0)[:, 1]
        return torch.from_numpy(np.stack([ux, ut], axis=1)).to(dtype=x.dtype, device=x.device)
