"""Poisson on the unit square with Dirichlet, Neumann and Robin sides.

    u_xx + u_yy = f  on  [0, 1]^2,     u(x, y) = sin(pi x) cos(pi y),   f = -2 pi^2 u,
    u = 0                on x = 0  (Dirichlet)
    du/dn = -pi cos(pi y) on x = 1  (Neumann, outward normal +x)
    u + du/dn = -sin(pi x) on y = 1  (Robin, a = b = 1; du/dn = u_y = 0 there)
    u = sin(pi x)         on y = 0  (Dirichlet)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.geometry import Box
from kanpde.pde.problem import Dirichlet, Neumann, Problem, Robin

PI = math.pi


class Poisson2DRobin(Problem):
    """2-D Poisson with one Dirichlet pair of sides, a Neumann side and a Robin side."""

    coords = ("x", "y")

    def __init__(self) -> None:
        conditions = [
            Dirichlet(("x-", "y-"), self.exact),
            Neumann("x+", lambda x: -PI * torch.cos(PI * x[:, 1])),
            Robin("y+", a=1.0, b=1.0, value=lambda x: -torch.sin(PI * x[:, 0])),
        ]
        super().__init__(Box([0.0, 0.0], [1.0, 1.0], self.coords), conditions)

    def pde(self, x: Tensor, u: Field) -> Tensor:
        return u.laplacian() + 2 * PI**2 * self.exact(x)

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(PI * x[:, 0]) * torch.cos(PI * x[:, 1])
