"""Errors against reference data: a problem without a closed-form solution, scored at the nodes of a
classical solver's solution exported as COMSOL writes its text files.

    -Δu = exp(x) (1 + y)  on  [0, 1]²,   u = 0 on the boundary   (no exact solution declared),

with the reference from second-order finite differences on a 129 x 129 grid (SciPy's sparse solver),
written as ``% x y u`` text: run ``python examples/reference_data.py``. Through the CLI a file of your own is
``python -m kanpde problem=custom problem._target_=examples/reference_data.py:SquareSource
problem.reference=fem_solution.txt``.
"""

import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import kanpde
from kanpde import Box, Dirichlet, Problem


class SquareSource(Problem):
    coords = ("x", "y")

    def __init__(self):
        super().__init__(Box([0, 0], [1, 1], self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x, u):
        return u.laplacian() + torch.exp(x[:, 0]) * (1 + x[:, 1])


def finite_differences(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The 5-point solution on the (n + 1)² grid nodes, boundary included: points (N, 2), values (N,)."""
    h, m = 1.0 / n, n - 1
    t = np.linspace(0, 1, n + 1)
    lap = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m)) / h**2
    a = sp.kronsum(lap, lap).tocsc()  # -Δ_h on the interior nodes, x the slow index
    xi, yi = np.meshgrid(t[1:-1], t[1:-1], indexing="ij")
    u = np.zeros((n + 1, n + 1))
    u[1:-1, 1:-1] = spla.spsolve(a, (np.exp(xi) * (1 + yi)).ravel()).reshape(m, m)
    x, y = np.meshgrid(t, t, indexing="ij")
    return np.column_stack([x.ravel(), y.ravel()]), u.ravel()


if __name__ == "__main__":
    torch.manual_seed(0)
    problem = SquareSource()
    points, values = finite_differences(128)
    coarse = finite_differences(64)
    on_coarse = np.isin(points[:, 0] * 128, np.arange(0, 129, 2)) & np.isin(points[:, 1] * 128, np.arange(0, 129, 2))
    fd_error = np.abs(values[on_coarse] - coarse[1]).max()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "square_fd.txt"
        header = "Model: square.mph\nDimension: 2\nNodes: %d\nx y u (1)" % len(values)
        np.savetxt(path, np.column_stack([points, values]), fmt="%.12g", header=header, comments="% ")
        print(*path.read_text().splitlines()[:6], "...", sep="\n")
        reference = kanpde.read_reference(path, problem)
    print(f"{reference.describe()}; finite differences h = 1/64 vs 1/128 differ by {fd_error:.1e} (max)")
    stages = [kanpde.Stage(kanpde.LevenbergMarquardt, steps=40, update_grid=False)]
    result = kanpde.fit(kanpde.KAN([2, 4, 1], grid_size=4, dtype=torch.float64), problem, stages,
                        n_interior=400, n_boundary=200)
    errors = kanpde.reference_errors(result.model, problem, reference)
    m = errors.metrics
    print(f"KAN [2, 4, 1] vs {reference.describe()}: l2_rel {m['l2_rel']:.2e}, linf {m['linf']:.2e}, "
          f"h1 {m['h1']} ({errors.messages[0]})")
