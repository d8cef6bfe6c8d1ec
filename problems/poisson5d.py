"""Poisson in 5-D (KANs claim to beat the curse of dimensionality on such problems):

    Δu = f  on  [0, 1]^5,   u = prod_i sin(pi x_i / 2),   f = -5 (pi/2)^2 u,
    u = exact values on the boundary (0 on the faces x_i = 0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.geometry import Box
from kanpde.pde.problem import Dirichlet, Problem

PI = math.pi


class Poisson5D(Problem):
    """5-D Poisson equation with Dirichlet data from the exact solution."""

    coords = ("x1", "x2", "x3", "x4", "x5")

    def __init__(self) -> None:
        super().__init__(Box([0.0] * 5, [1.0] * 5, self.coords), [Dirichlet("all", self.exact)])

    def pde(self, x: Tensor, u: Field) -> Tensor:
        return u.laplacian() + 5 * (PI / 2) ** 2 * self.exact(x)

    def exact(self, x: Tensor) -> Tensor:
        return math.prod(torch.sin(PI / 2 * x).unbind(dim=1))  # torch.prod: a slow forward-mode derivative
