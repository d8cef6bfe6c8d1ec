"""Run files beyond 2-D: save_run / load_run / plot_run for 1-D and 3-D problems, atomic writes, bad files."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import Tensor

from kanpde import KAN, Box, Dirichlet, Problem, Stage, evaluate, fit, load_run, save_run
from kanpde.outputs.run_file import RunResult, atomic_path, write_json
from kanpde.outputs.plots import plot_run

F64 = torch.float64


class Line(Problem):
    """u'' = -pi^2 sin(pi x) on [-1, 1], u = sin(pi x)."""

    coords = ("x",)

    def __init__(self) -> None:
        super().__init__(Box([-1.0], [1.0], self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x: Tensor, u) -> Tensor:
        return u.d("xx") + math.pi**2 * torch.sin(math.pi * x[:, 0])

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(math.pi * x[:, 0])


class Cube(Problem):
    """Δu = -3 pi^2 u on [0, 1]^3, u = sin(pi x) sin(pi y) sin(pi z)."""

    coords = ("x", "y", "z")

    def __init__(self) -> None:
        super().__init__(Box([0.0] * 3, [1.0] * 3, self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x: Tensor, u) -> Tensor:
        return u.laplacian() + 3 * math.pi**2 * self.exact(x)

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(math.pi * x).prod(dim=1)


@pytest.mark.parametrize("problem_cls,widths,n", [(Line, [1, 3, 1], 33), (Cube, [3, 3, 1], 9)])
def test_save_load_plot_in_1d_and_3d(problem_cls, widths: list[int], n: int, tmp_path: Path) -> None:
    problem = problem_cls()
    fitted = fit(KAN(widths, grid_size=3, dtype=F64), problem,
                 [Stage(functools.partial(torch.optim.Adam, lr=0.01), 3)], n_interior=32, n_boundary=12)
    ev = evaluate(fitted.model, problem, n)
    result = RunResult("kan", fitted.model, fitted.history, ev, dict(ev.metrics))
    path = save_run(tmp_path / "solution.h5", problem.name, problem.coords, problem.outputs, result)
    loaded = load_run(path)
    shape = (n,) * problem.dim
    assert loaded.coords == problem.coords and loaded.baseline is None and loaded.config_yaml is None
    assert loaded.main.fields["u"]["predicted"].shape == shape
    axes = [loaded.main.axes[c] for c in problem.coords]
    mesh = np.meshgrid(*axes, indexing="ij")
    pts = np.stack([m.ravel() for m in mesh], axis=1)
    np.testing.assert_allclose(loaded.main(pts).numpy().reshape(shape), loaded.main.fields["u"]["predicted"],
                               rtol=0, atol=1e-12)
    exact = problem.exact(torch.from_numpy(pts)).numpy().reshape(shape)
    np.testing.assert_allclose(loaded.main.fields["u"]["exact"], exact, rtol=0, atol=1e-15)
    written = plot_run(path)
    assert [p.name for p in written] == ["solution.png", "history.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"l2": np.float64(0.5), "n": np.int64(3), "v": np.arange(2)})
    assert json.loads(target.read_text()) == {"l2": 0.5, "n": 3, "v": [0, 1]}
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("boom")
    assert json.loads(target.read_text())["l2"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary file left behind
    with pytest.raises(TypeError):
        write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()


def test_load_run_rejects_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no kanpde run file"):
        load_run(tmp_path / "nothing.h5")
    with pytest.raises(FileNotFoundError):
        load_run(tmp_path)  # a directory without solution.h5
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(ValueError, match="not a kanpde run file"):
        load_run(tmp_path / "other.h5")
