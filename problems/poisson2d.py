"""The KAN paper's Poisson problem (Liu et al. 2024, §3.4).

    u_xx + u_yy = f  on  [-1, 1]^2,      u = 0  on the boundary,
    u(x, y) = sin(pi x) sin(pi y^2),
    f(x, y) = -pi^2 (1 + 4 y^2) sin(pi x) sin(pi y^2) + 2 pi sin(pi x) cos(pi y^2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.geometry import Box
from kanpde.pde.problem import Dirichlet, Problem

PI = math.pi


class Poisson2D(Problem):
    """2-D Poisson equation with homogeneous Dirichlet data on all four sides of ``[-1, 1]^2``."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(Box([-1.0, -1.0], [1.0, 1.0], self.coords), [Dirichlet("all", 0.0)])

    def f(self, x: Tensor) -> Tensor:
        """Source term, ``(n, 2) -> (n,)``."""
        px, py2 = PI * x[:, 0], PI * x[:, 1] ** 2
        return -(PI**2) * (1 + 4 * x[:, 1] ** 2) * torch.sin(px) * torch.sin(py2) + 2 * PI * torch.sin(px) * torch.cos(py2)

    def pde(self, x: Tensor, u: Field) -> Tensor:
        return u.laplacian() - self.f(x)

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(PI * x[:, 0]) * torch.sin(PI * x[:, 1] ** 2)

    def exact_grad(self, x: Tensor) -> Tensor:
        px, py2 = PI * x[:, 0], PI * x[:, 1] ** 2
        ux = PI * torch.cos(px) * torch.sin(py2)
        uy = 2 * PI * x[:, 1] * torch.sin(px) * torch.cos(py2)
        return torch.stack([ux, uy], dim=1)
