"""Kovasznay flow: steady incompressible Navier–Stokes, a system with outputs (u, v, p).

    u u_x + v u_y + p_x - (u_xx + u_yy) / Re = 0
    u v_x + v v_y + p_y - (v_xx + v_yy) / Re = 0
    u_x + v_y = 0                    on  [-0.5, 1] x [-0.5, 1.5],  Re = 20,

    lambda = Re/2 - sqrt(Re^2/4 + 4 pi^2),
    u = 1 - exp(lambda x) cos(2 pi y),  v = lambda/(2 pi) exp(lambda x) sin(2 pi y),  p = (1 - exp(2 lambda x)) / 2.

Velocity is given on the whole boundary; the pressure (otherwise fixed only up to a constant) on the
outlet x = 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.geometry import Box
from kanpde.pde.problem import Dirichlet, Problem

PI = math.pi


class Kovasznay(Problem):
    """Kovasznay flow at Reynolds number ``re``."""

    coords = ("x", "y")
    outputs = ("u", "v", "p")

    def __init__(self, re: float = 20.0) -> None:
        self.re = float(re)
        self.lam = self.re / 2 - math.sqrt(self.re**2 / 4 + 4 * PI**2)
        conditions = [
            Dirichlet("all", lambda x: self.exact(x)[:, 0], component="u"),
            Dirichlet("all", lambda x: self.exact(x)[:, 1], component="v"),
            Dirichlet("x+", lambda x: self.exact(x)[:, 2], component="p"),
        ]
        super().__init__(Box([-0.5, -0.5], [1.0, 1.5], self.coords), conditions)

    def pde(self, x: Tensor, w: Field) -> tuple[Tensor, Tensor, Tensor]:
        u, v, p = w["u"], w["v"], w["p"]
        momentum_x = u.value * u.d("x") + v.value * u.d("y") + p.d("x") - u.laplacian() / self.re
        momentum_y = u.value * v.d("x") + v.value * v.d("y") + p.d("y") - v.laplacian() / self.re
        return momentum_x, momentum_y, u.d("x") + v.d("y")

    def exact(self, x: Tensor) -> Tensor:
        e = torch.exp(self.lam * x[:, 0])
        u = 1 - e * torch.cos(2 * PI * x[:, 1])
        v = self.lam / (2 * PI) * e * torch.sin(2 * PI * x[:, 1])
        p = 0.5 * (1 - e**2)
        return torch.stack([u, v, p], dim=1)
