"""A nonlinear elliptic problem:

    -Δu + u^3 = f  on  [-1, 1]^2,  u = 0 on the boundary,
    u = sin(pi x) sin(pi y),   f = 2 pi^2 u + u^3.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.geometry import Box
from kanpde.pde.problem import Dirichlet, Problem

PI = math.pi


class NonlinearPoisson2D(Problem):
    """-Δu + u³ = f with homogeneous Dirichlet data."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(Box([-1.0, -1.0], [1.0, 1.0], self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x: Tensor, u: Field) -> Tensor:
        ue = self.exact(x)
        return -u.laplacian() + u.value**3 - (2 * PI**2 * ue + ue**3)

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(PI * x[:, 0]) * torch.sin(PI * x[:, 1])
