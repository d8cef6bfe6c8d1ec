"""Wave equation in 1-D (second order in time: two initial conditions):

    u_tt = c^2 u_xx  on  [0, 1] x [0, 1],  c = 1,   u(0, t) = u(1, t) = 0,
    u(x, 0) = sin(pi x) + sin(3 pi x) / 2,  u_t(x, 0) = 0,
    u = sin(pi x) cos(c pi t) + sin(3 pi x) cos(3 c pi t) / 2.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.geometry import Box
from kanpde.pde.problem import Dirichlet, Initial, Problem

PI = math.pi


class Wave1D(Problem):
    """1-D wave equation with fixed ends, released from rest."""

    coords = ("x", "t")

    def __init__(self, c: float = 1.0) -> None:
        self.c = float(c)
        conditions = [
            Dirichlet(("x-", "x+"), 0.0),
            Initial(lambda x: torch.sin(PI * x[:, 0]) + 0.5 * torch.sin(3 * PI * x[:, 0])),
            Initial(0.0, derivative=True),
        ]
        super().__init__(Box([0.0, 0.0], [1.0, 1.0], self.coords), conditions)

    def pde(self, x: Tensor, u: Field) -> Tensor:
        return u.d("tt") - self.c**2 * u.d("xx")

    def exact(self, x: Tensor) -> Tensor:
        xs, t = x[:, 0], x[:, 1]
        return torch.sin(PI * xs) * torch.cos(self.c * PI * t) + 0.5 * torch.sin(3 * PI * xs) * torch.cos(3 * self.c * PI * t)
