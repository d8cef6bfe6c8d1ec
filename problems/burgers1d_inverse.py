"""Inverse Burgers: learn the viscosity from noisy samples of the solution (Raissi et al. 2019, §4.1.1).

    u_t + u u_x = nu u_xx  on  [-1, 1] x [0, 1],   u(x, 0) = -sin(pi x),  u(-1, t) = u(1, t) = 0,

with ``nu`` unknown (initial guess ``nu0``, kept positive) and ``n_data`` observations of ``u`` at random
points (seed ``data_seed``), from the Cole–Hopf reference of :mod:`kanpde.problems.burgers1d` with the
true ``nu = 0.01/pi``, plus Gaussian noise of standard deviation ``noise`` times the samples' standard
deviation (Raissi's convention; 1 % by default). The network and ``nu`` train together on the PDE
residual, the initial and boundary conditions and the data; ``metrics.json`` reports the learned ``nu``
and its relative error. The true ``nu`` enters only the data (and the report).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.geometry import Box
from kanpde.pde.problem import Dirichlet, Initial, Observation, Problem
from ._reference import burgers_cole_hopf

NU_TRUE = 0.01 / math.pi


class Burgers1DInverse(Problem):
    """Burgers' equation with the viscosity learned from ``n_data`` noisy samples of the solution."""

    coords = ("x", "t")
    reference_solution = True  # the Cole–Hopf reference of burgers1d (tests/problems/test_reference.py)

    def __init__(self, n_data: int = 2000, noise: float = 0.01, nu0: float = 0.05, data_seed: int = 0) -> None:
        if n_data < 1 or not noise >= 0 or not nu0 > 0:
            raise ValueError(f"Burgers1DInverse needs n_data >= 1, noise >= 0 and nu0 > 0; got {n_data}, {noise}, {nu0}")
        rng = np.random.default_rng(data_seed)
        pts = np.column_stack([rng.uniform(-1, 1, n_data), rng.uniform(0, 1, n_data)])
        u = burgers_cole_hopf(pts[:, 0], pts[:, 1], NU_TRUE)
        u_noisy = u + noise * np.std(u) * rng.standard_normal(n_data)
        conditions = [
            Dirichlet(("x-", "x+"), 0.0),
            Initial(lambda x: -torch.sin(math.pi * x[:, 0])),
            Observation(pts, u_noisy),
        ]
        super().__init__(Box([-1.0, 0.0], [1.0, 1.0], self.coords), conditions)
        self.unknown("nu", nu0, positive=True, true=NU_TRUE)

    def pde(self, x: Tensor, u: Field) -> Tensor:
        return u.d("t") + u.value * u.d("x") - self.param("nu") * u.d("xx")

    def exact(self, x: Tensor) -> Tensor:
        pts = x.detach().double().cpu().numpy()
        return torch.from_numpy(burgers_cole_hopf(pts[:, 0], pts[:, 1], NU_TRUE)).to(dtype=x.dtype, device=x.device)

    def exact_grad(self, x: Tensor) -> Tensor:
        pts = x.detach().double().cpu().numpy()
        u, ux = burgers_cole_hopf(pts[:, 0], pts[:, 1], NU_TRUE, derivative=True)
        h = 1e-6
        _, ux_p = burgers_cole_hopf(pts[:, 0] + h, pts[:, 1], NU_TRUE, derivative=True)
        _, ux_m = burgers_cole_hopf(pts[:, 0] - h, pts[:, 1], NU_TRUE, derivative=True)
        ut = NU_TRUE * (ux_p - ux_m) / (2 * h) - u * ux
        return torch.from_numpy(np.stack([ux, ut], axis=1)).to(dtype=x.dtype, device=x.device)
