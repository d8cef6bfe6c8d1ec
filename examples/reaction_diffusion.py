"""A user's own PDE in one file: reaction–diffusion with a Neumann end, a Robin end and an initial value.

    u_t = D u_xx - k u   on  [0, 1] x [0, 1],
    du/dn = 0            at x = 0   (no flux; outward normal -x)
    u + du/dn = g(t)     at x = 1   (Robin, g = -(pi/2) exp(-lam t))
    u(x, 0) = cos(pi x / 2),
    exact:  u = exp(-lam t) cos(pi x / 2),   lam = D pi^2 / 4 + k.

Run it from this directory (the current directory is on Python's path with ``python -m``):

    python -m kanpde problem=custom problem._target_=reaction_diffusion.ReactionDiffusion +problem.k=0.5
"""

from __future__ import annotations

import math

import torch

import kanpde


class ReactionDiffusion(kanpde.Problem):
    """Reaction–diffusion in 1-D + time with mixed boundary conditions and an exact solution."""

    coords = ("x", "t")  # a coordinate named "t" makes this a space–time problem: it needs an Initial condition

    def __init__(self, D: float = 0.1, k: float = 1.0):
        self.D, self.k = float(D), float(k)
        self.lam = self.D * math.pi**2 / 4 + self.k
        conditions = [
            kanpde.Neumann("x-", 0.0),
            kanpde.Robin("x+", a=1.0, b=1.0, value=lambda x: -math.pi / 2 * torch.exp(-self.lam * x[:, 1])),
            kanpde.Initial(lambda x: torch.cos(math.pi * x[:, 0] / 2)),
        ]
        super().__init__(kanpde.Box([0.0, 0.0], [1.0, 1.0], self.coords), conditions)

    def pde(self, x, u):
        return u.d("t") - self.D * u.d("xx") + self.k * u.value

    def exact(self, x):
        return torch.exp(-self.lam * x[:, 1]) * torch.cos(math.pi * x[:, 0] / 2)
