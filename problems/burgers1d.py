"""Viscous Burgers in 1-D, the standard PINN benchmark (Raissi et al. 2019):

    u_t + u u_x = nu u_xx  on  [-1, 1] x [0, 1],  nu = 0.01 / pi,
    u(x, 0) = -sin(pi x),  u(-1, t) = u(1, t) = 0.

No closed form: the reference is the Cole–Hopf formula evaluated by quadrature at each point
(:func:`kanpde.problems._reference.burgers_cole_hopf`, 1201 trapezoid nodes). It reproduces the published steepest
slope u_x(0, 1.6037/pi) = -152.00516 (Basdevant et al. 1986) to 1e-8 relative; ``u_x`` is the
quadrature of the differentiated integrand, ``u_t`` follows from the PDE with ``u_xx`` by central
differences of ``u_x`` (h = 1e-6).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.geometry import Box
from kanpde.pde.problem import Dirichlet, Initial, Problem
from ._reference import burgers_cole_hopf


class Burgers1D(Problem):
    """Viscous Burgers equation with a shock forming at x = 0; reference by Cole–Hopf quadrature."""

    coords = ("x", "t")
    reference_solution = True  # computed numerically: tests check it by finite differences

    def __init__(self, nu: float = 0.01 / math.pi) -> None:
        self.nu = float(nu)
        conditions = [Dirichlet(("x-", "x+"), 0.0), Initial(lambda x: -torch.sin(math.pi * x[:, 0]))]
        super().__init__(Box([-1.0, 0.0], [1.0, 1.0], self.coords), conditions)

    def pde(self, x: Tensor, u: Field) -> Tensor:
        return u.d("t") + u.value * u.d("x") - self.nu * u.d("xx")

    def _reference(self, x: Tensor, derivative: bool = False):
        pts = x.detach().double().cpu().numpy()
        return burgers_cole_hopf(pts[:, 0], pts[:, 1], self.nu, derivative=derivative)

    def exact(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self._reference(x)).to(dtype=x.dtype, device=x.device)

    def exact_grad(self, x: Tensor) -> Tensor:
        pts = x.detach().double().cpu().numpy()
        u, ux = burgers_cole_hopf(pts[:, 0], pts[:, 1], self.nu, derivative=True)
        h = 1e-6
        _, ux_p = burgers_cole_hopf(pts[:, 0] + h, pts[:, 1], self.nu, derivative=True)
        _, ux_m = burgers_cole_hopf(pts[:, 0] - h, pts[:, 1], self.nu, derivative=True)
        ut = self.nu * (ux_p - ux_m) / (2 * h) - u * ux
        return torch.from_numpy(np.stack([ux, ut], axis=1)).to(dtype=x.dtype, device=x.device)
