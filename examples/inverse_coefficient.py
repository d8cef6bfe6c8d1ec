"""An inverse problem with an unknown coefficient field, snapped to its formula.

    -(a(x) u'(x))' = f(x)  on  [0, 1],  u(0) = u(1) = 0,   data: 50 samples of u = sin(πx),

with the diffusion coefficient ``a`` unknown: a KAN of its own (``unknown_field``), trained with the
solution's network, then snapped to a library formula by a symbolic stage that targets the field
(``symbolic={"target": "field:a"}``) and polished by least squares on the loss. ``f`` is made from the
true coefficient a(x) = 1 + x², which enters nothing else. ``a`` is identifiable because u' vanishes at
x = 1/2 (where u' never vanishes, every a = (C - ∫f) / u' gives the same u). Run ``python examples/inverse_coefficient.py``.
"""

import math

import numpy as np
import torch

import kanpde
from kanpde import Box, Dirichlet, Observation, Problem

xs = np.linspace(0, 1, 50)[:, None]
us = np.sin(np.pi * xs[:, 0])


class Coefficient(Problem):
    coords = ("x",)

    def __init__(self):
        super().__init__(Box([0], [1], names=self.coords), [Dirichlet("all", 0.0), Observation(xs, us)])
        self.unknown_field("a", widths=[1, 1], grid_size=5, true=lambda x: 1 + x[:, 0] ** 2)

    def pde(self, x, u):
        a = self.field_of("a", x)
        s, c = torch.sin(math.pi * x[:, 0]), torch.cos(math.pi * x[:, 0])
        f = (1 + x[:, 0] ** 2) * math.pi**2 * s - 2 * math.pi * x[:, 0] * c  # -(a u')' for the true a
        return -(a.d("x") * u.d("x") + a.value * u.d("xx")) - f


if __name__ == "__main__":
    torch.manual_seed(0)
    problem = Coefficient()
    lm = kanpde.LevenbergMarquardt
    snap = {"target": "field:a", "lib": ["x", "x^2", "exp", "sin"], "polish": True}
    stages = [kanpde.Stage(torch.optim.Adam, 300, update_grid=False), kanpde.Stage(lm, 40, update_grid=False),
              kanpde.Stage(lm, 10, update_grid=False, symbolic=snap)]
    x = torch.linspace(0, 1, 1001, dtype=torch.float64)[:, None]

    def error() -> float:
        with torch.no_grad():
            return float((problem.unknowns.fields["a"](x)[:, 0] - (1 + x[:, 0] ** 2)).abs().max())

    errors = []
    result = kanpde.fit(kanpde.KAN([1, 5, 1], grid_size=5, dtype=torch.float64), problem, stages,
                        n_interior=100, n_boundary=2, on_stage_end=lambda *_: errors.append(error()))
    a = problem.unknowns.fields["a"]
    snapped = result.history.stages[2]["symbolic:a"][0]
    print(f"the KAN of a before the snap: max |a - (1 + x^2)| = {errors[1]:.2e}")
    print(f"snapped edge: {snapped['name']} (R^2 = {snapped['r2']:.12f})")
    print(f"a(x) = {a.formula_text(problem.coords).strip()}")
    print(f"max |a - (1 + x^2)| on [0, 1]: {errors[2]:.2e}; loss {result.history.stages[-1]['loss']:.2e}")
