"""Poisson on a square plate with two circular holes (constructive solid geometry), KAN + Levenberg–Marquardt.

    -Δu = f  on  [-1, 1]² minus two disks,   u = g on every boundary piece,

with u = x² y + sin(x) (so f = sin(x) - 2y and g = u): run ``python examples/plate_with_holes.py``.
"""

import torch

import kanpde
from kanpde import Box, Dirichlet, Disk, Problem

plate = Box([-1, -1], [1, 1], names=("x", "y"))
holes = Disk((-0.4, 0.0), 0.2).renamed(circle="hole") | Disk((0.4, 0.0), 0.2).renamed(circle="hole")
domain = plate - holes


class Plate(Problem):
    coords = ("x", "y")

    def __init__(self):
        super().__init__(domain, [Dirichlet(("x-", "x+", "y-", "y+"), self.g, name="outer"),
                                  Dirichlet("hole", self.g, name="holes")])

    @staticmethod
    def g(x):
        return x[:, 0] ** 2 * x[:, 1] + torch.sin(x[:, 0])

    def pde(self, x, u):
        return -u.laplacian() - (torch.sin(x[:, 0]) - 2 * x[:, 1])

    def exact(self, x):
        return self.g(x)


if __name__ == "__main__":
    torch.manual_seed(0)
    print("pieces:", domain.pieces)
    print(f"area: {domain.volume:.6f}   hole circumference: {domain.measure('hole1'):.6f}")
    problem = Plate()
    stages = [kanpde.Stage(kanpde.LevenbergMarquardt, steps=40, update_grid=False)]
    result = kanpde.fit(kanpde.KAN([2, 4, 1], grid_size=4, dtype=torch.float64), problem, stages,
                        n_interior=400, n_boundary=200)
    metrics = kanpde.evaluate(result.model, problem, 101).metrics
    print(f"KAN [2, 4, 1]: l2_rel {metrics['l2_rel']:.2e}, linf {metrics['linf']:.2e} ({result.seconds:.1f} s)")
