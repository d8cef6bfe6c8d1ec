"""An inverse problem: learn a source strength k from 40 noisy observations of u.

    u'' + k π² sin(πx) / 2 = 0  on  [-1, 1],  u(±1) = 0,   data: u = sin(πx) + 1 % noise  (so k = 2),

with ``k`` declared unknown (kept positive, starting at 0.5): run ``python examples/inverse_source.py``.
"""

import math

import numpy as np
import torch

import kanpde
from kanpde import Box, Dirichlet, Observation, Problem

rng = np.random.default_rng(0)
xs = rng.uniform(-1, 1, (40, 1))
us = np.sin(np.pi * xs[:, 0]) + 0.01 * rng.standard_normal(40)


class Source(Problem):
    coords = ("x",)

    def __init__(self):
        super().__init__(Box([-1], [1], names=self.coords), [Dirichlet("all", 0.0), Observation(xs, us)])
        self.unknown("k", 0.5, positive=True, true=2.0)

    def pde(self, x, u):
        return u.d("xx") + self.param("k") * math.pi**2 * torch.sin(math.pi * x[:, 0]) / 2


if __name__ == "__main__":
    torch.manual_seed(0)
    problem = Source()
    stages = [kanpde.Stage(torch.optim.Adam, 50), kanpde.Stage(kanpde.LevenbergMarquardt, 30)]
    result = kanpde.fit(kanpde.KAN([1, 5, 1], grid_size=5, dtype=torch.float64), problem, stages,
                        n_interior=100, n_boundary=2)
    k = problem.unknowns.values()["k"]
    path = [round(s["param:k"], 3) for s in result.history.steps[::16]]
    print(f"k = {k:.5f} (true 2, error {abs(k - 2) / 2:.2%}); trajectory {path}")
