"""Poisson in 3-D:  Δu = f  on  [0, 1]^3,  u = 0 on the boundary,

    u = sin(pi x) sin(pi y) sin(pi z),   f = -3 pi^2 u.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.geometry import Box
from kanpde.pde.problem import Dirichlet, Problem

PI = math.pi


class Poisson3D(Problem):
    """3-D Poisson equation with homogeneous Dirichlet data on the unit cube."""

    coords = ("x", "y", "z")

    def __init__(self) -> None:
        super().__init__(Box([0.0] * 3, [1.0] * 3, self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x: Tensor, u: Field) -> Tensor:
        return u.laplacian() + 3 * PI**2 * self.exact(x)

    def exact(self, x: Tensor) -> Tensor:
        return math.prod(torch.sin(PI * x).unbind(dim=1))  # torch.prod: a slow forward-mode derivative
