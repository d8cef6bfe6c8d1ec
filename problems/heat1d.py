"""Heat / diffusion in 1-D, time as a coordinate:

    u_t = kappa u_xx  on  [0, 1] x [0, 1],  kappa = 0.1,
    u(x, 0) = sin(pi x),  u(0, t) = u(1, t) = 0,    u = exp(-kappa pi^2 t) sin(pi x).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.geometry import Box
from kanpde.pde.problem import Dirichlet, Initial, Problem

PI = math.pi


class Heat1D(Problem):
    """1-D heat equation with homogeneous Dirichlet ends and a sine initial value."""

    coords = ("x", "t")

    def __init__(self, kappa: float = 0.1) -> None:
        self.kappa = float(kappa)
        conditions = [Dirichlet(("x-", "x+"), 0.0), Initial(lambda x: torch.sin(PI * x[:, 0]))]
        super().__init__(Box([0.0, 0.0], [1.0, 1.0], self.coords), conditions)

    def pde(self, x: Tensor, u: Field) -> Tensor:
        return u.d("t") - self.kappa * u.d("xx")

    def exact(self, x: Tensor) -> Tensor:
        return torch.exp(-self.kappa * PI**2 * x[:, 1]) * torch.sin(PI * x[:, 0])
