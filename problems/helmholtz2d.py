"""Helmholtz in 2-D (the PINN benchmark of McClenny & Braga-Neto):

    u_xx + u_yy + k^2 u = f  on  [-1, 1]^2,  u = 0 on the boundary,
    u = sin(a1 pi x) sin(a2 pi y),   f = (k^2 - (a1^2 + a2^2) pi^2) u,   a1 = 1, a2 = 4, k = 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.geometry import Box
from kanpde.pde.problem import Dirichlet, Problem

PI = math.pi


class Helmholtz2D(Problem):
    """2-D Helmholtz equation with homogeneous Dirichlet data."""

    coords = ("x", "y")

    def __init__(self, k: float = 1.0, a1: float = 1.0, a2: float = 4.0) -> None:
        self.k, self.a1, self.a2 = float(k), float(a1), float(a2)
        super().__init__(Box([-1.0, -1.0], [1.0, 1.0], self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x: Tensor, u: Field) -> Tensor:
        f = (self.k**2 - (self.a1**2 + self.a2**2) * PI**2) * self.exact(x)
        return u.laplacian() + self.k**2 * u.value - f

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(self.a1 * PI * x[:, 0]) * torch.sin(self.a2 * PI * x[:, 1])
