"""Laplace on the L-shaped domain with the corner singularity:

    Δu = 0  on  [-1, 1]^2 minus (0, 1] x [-1, 0),    u = r^(2/3) sin(2 theta / 3) on the boundary,

with polar angle theta in [0, 3 pi / 2] (the re-entrant corner is the origin; u = 0 on its two edges).
The gradient is singular at the origin (|∇u| ~ r^(-1/3)); it is set to 0 at that single grid point.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.shapes import LShape
from kanpde.pde.problem import Dirichlet, Problem


def _polar(x: Tensor) -> tuple[Tensor, Tensor]:
    r2 = (x**2).sum(dim=1)
    r = torch.sqrt(torch.where(r2 > 0, r2, torch.ones_like(r2)))  # finite derivatives at the origin too
    far = r2 > 0
    theta = torch.atan2(torch.where(far, x[:, 1], torch.zeros_like(r2)), torch.where(far, x[:, 0], torch.ones_like(r2)))
    return torch.where(far, r, torch.zeros_like(r)), torch.where(theta < 0, theta + 2 * math.pi, theta)


class LaplaceLShape(Problem):
    """Laplace's equation on the L-shape with exact Dirichlet data r^(2/3) sin(2θ/3)."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(LShape(self.coords), [Dirichlet("all", self.exact)])

    def pde(self, x: Tensor, u: Field) -> Tensor:
        return u.laplacian()

    def exact(self, x: Tensor) -> Tensor:
        r, theta = _polar(x)
        safe = torch.where(r > 0, r, torch.ones_like(r))  # r^(2/3) with derivative 0, not NaN, at the corner
        return torch.where(r > 0, safe ** (2.0 / 3.0), torch.zeros_like(r)) * torch.sin(2.0 * theta / 3.0)

    def exact_grad(self, x: Tensor) -> Tensor:
        r, theta = _polar(x)
        safe = torch.where(r > 0, r, torch.ones_like(r))
        ur = (2.0 / 3.0) * safe ** (-1.0 / 3.0) * torch.sin(2.0 * theta / 3.0)
        ut_over_r = (2.0 / 3.0) * safe ** (-1.0 / 3.0) * torch.cos(2.0 * theta / 3.0)
        c, s = torch.cos(theta), torch.sin(theta)
        g = torch.stack([ur * c - ut_over_r * s, ur * s + ut_over_r * c], dim=1)
        return torch.where((r > 0)[:, None], g, torch.zeros_like(g))
