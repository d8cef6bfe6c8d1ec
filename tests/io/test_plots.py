"""Figures (kanpde.io.plots): run figures in 1-D and 3-D, activation plots of a partly symbolic KAN."""

from __future__ import annotations

from pathlib import Path

import torch

import pytest

from kanpde import KAN
from kanpde.models.symbolic import EdgeFit, fix_symbolic, to_symbolic
from kanpde.io.plots import plot_activations, plot_run
from tests.helpers import F64, SineCube, SineLine, save_small_run


@pytest.mark.parametrize("problem_cls,widths,n", [(SineLine, [1, 3, 1], 33), (SineCube, [3, 3, 1], 9)])
def test_plot_run_in_1d_and_3d(problem_cls, widths: list[int], n: int, tmp_path: Path) -> None:
    """plot_run draws a saved run: the field (the middle slice in 3-D) and the loss history."""
    path = save_small_run(problem_cls(), widths, n, tmp_path / "solution.h5")
    written = plot_run(path)
    assert [p.name for p in written] == ["solution.png", "history.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_activation_plot_is_written(tmp_path: Path) -> None:
    sym = to_symbolic(KAN([2, 3, 1], grid_size=3, dtype=F64))
    fix_symbolic(sym, 0, 0, 0, EdgeFit("sin", 1.0, 0.0, 1.0, 0.0, 1.0))
    x = torch.rand(64, 2, dtype=F64)
    path = plot_activations(sym, x, tmp_path / "activations.png", ("x", "y"), ("u",))
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"


def test_plot_run_draws_the_error_at_the_reference_nodes(tmp_path: Path) -> None:
    """A run with reference data: reference_error.png, the error at the data's nodes (2-D: coloured points)."""
    import numpy as np

    from kanpde import RunResult, Stage, evaluate, fit, load_run, reference_errors, save_run
    from kanpde.io.plots import plot_reference
    from kanpde.pde import reference_data
    from kanpde.problems.poisson2d import Poisson2D

    problem, path = Poisson2D(), tmp_path / "solution.h5"
    fitted = fit(KAN([2, 3, 1], grid_size=3, dtype=F64), problem, [Stage(torch.optim.Adam, 2)], n_interior=16, n_boundary=8)
    pts = np.random.default_rng(0).uniform(-1, 1, (30, 2))
    ref = reference_data(problem, pts, np.zeros(30), source="fem.txt")
    at = reference_errors(fitted.model, problem, ref)
    save_run(path, problem.name, problem.coords, problem.outputs,
             RunResult("kan", fitted.model, fitted.history, evaluate(fitted.model, problem, 9), dict(at.metrics), at))
    written = plot_run(path)
    assert [p.name for p in written] == ["solution.png", "history.png", "reference_error.png"]
    assert written[-1].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no reference data"):
        plot_reference(load_run(save_small_run(problem, [2, 3, 1], 9, tmp_path / "plain.h5")), tmp_path / "x.png")
