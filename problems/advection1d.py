"""Linear advection in 1-D with periodic ends:

    u_t + c u_x = 0  on  [0, 2 pi] x [0, 1],  c = 1,
    u(x, 0) = sin(x),  u(0, t) = u(2 pi, t) (value and u_x),   u = sin(x - c t).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.geometry import Box
from kanpde.pde.problem import Initial, Periodic, Problem


class Advection1D(Problem):
    """1-D advection on a periodic interval."""

    coords = ("x", "t")

    def __init__(self, c: float = 1.0) -> None:
        self.c = float(c)
        conditions = [Periodic(("x-", "x+"), derivatives=("x",)), Initial(lambda x: torch.sin(x[:, 0]))]
        super().__init__(Box([0.0, 0.0], [2 * math.pi, 1.0], self.coords), conditions)

    def pde(self, x: Tensor, u: Field) -> Tensor:
        return u.d("t") + self.c * u.d("x")

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(x[:, 0] - self.c * x[:, 1])
