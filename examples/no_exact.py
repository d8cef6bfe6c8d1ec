"""Poisson with a source and no closed-form solution: trained and judged by its residuals alone.

    -Δu = exp(x) (1 + y)  on  [0, 1]²,   u = 0 on the boundary,

declared without ``exact``: run ``python examples/no_exact.py`` (or through the CLI,
``python -m kanpde problem=custom problem._target_=examples/no_exact.py:SquareSource``).
"""

import torch

import kanpde
from kanpde import Box, Dirichlet, Problem
from kanpde.evaluate import relative_difference


class SquareSource(Problem):
    coords = ("x", "y")

    def __init__(self):
        super().__init__(Box([0, 0], [1, 1], self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x, u):
        return u.laplacian() + torch.exp(x[:, 0]) * (1 + x[:, 1])


if __name__ == "__main__":
    torch.manual_seed(0)
    problem = SquareSource()
    stages = [kanpde.Stage(kanpde.LevenbergMarquardt, steps=40, update_grid=False)]
    evaluations = {}
    for name, model in [("KAN [2, 4, 1]", kanpde.KAN([2, 4, 1], grid_size=4, dtype=torch.float64)),
                        ("MLP [2, 16, 16, 1]", kanpde.MLP([2, 16, 16, 1], dtype=torch.float64))]:
        result = kanpde.fit(model, problem, stages, n_interior=400, n_boundary=200)
        ev = evaluations[name] = kanpde.evaluate(result.model, problem, 101)
        m = ev.metrics
        print(f"{name}: residual_rms {m['residual_rms']:.2e}, residual_max {m['residual_max']:.2e}, "
              f"boundary rms {m['condition_rms']['dirichlet[all]']:.2e}; l2_rel {m['l2_rel']} ({ev.messages[0]})")
    kan, mlp = evaluations.values()
    print(f"relative L2 difference KAN vs MLP: {relative_difference(kan, mlp):.2e}")
