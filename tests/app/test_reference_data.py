"""Reference solution data through the run (kanpde.app.run, kanpde.app.config): errors at the data's nodes,
stated as "vs reference data" in metrics.json, the table, solution.h5 and the figures; equal to the exact
solution's errors at the same nodes when the data are sampled from it; bad files refused before training."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from kanpde import Box, Dirichlet, Problem, load_run
from kanpde.__main__ import format_table
from kanpde.app.config import ConfigError
from kanpde.app.run import run
from kanpde.evaluate import NO_EXACT, point_errors
from kanpde.problems.poisson2d import Poisson2D
from tests.helpers import BAD_REFERENCE_KINDS, NORMS, bad_reference_file, comsol_export, fast_cfg

N_DATA = 300
PTS = np.random.default_rng(0).uniform(-1, 1, (N_DATA, 2))


def sampled_exact(path: Path, gradients: bool = True) -> Path:
    """A data file of the exact solution of poisson2d (and its gradient) at PTS."""
    x = torch.from_numpy(PTS)
    u, g = Poisson2D().exact(x).numpy(), Poisson2D().exact_grad(x).numpy()
    columns = {"x": PTS[:, 0], "y": PTS[:, 1], "u": u, **({"u_x": g[:, 0], "u_y": g[:, 1]} if gradients else {})}
    np.savez(path, **columns)
    return path


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("reference")
    data = sampled_exact(out / "ref.npz")
    metrics = run(fast_cfg(f"problem.reference={data}", "eval.n_per_axis=21", "output.figures=true"), output_dir=out / "run")
    return out / "run", metrics


def test_errors_are_measured_at_the_data_nodes_and_said_so(reference_run) -> None:
    out, metrics = reference_run
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    for entry in (saved, saved["baseline"]):
        assert entry["error_source"] == f"reference data ref.npz, {N_DATA} points"
        assert entry["status"] == "ok" and "messages" not in entry
        assert entry["reference"]["source"] == "ref.npz" and entry["reference"]["n_points"] == N_DATA
        assert {k: entry[k] for k in NORMS} == {k: entry["reference"][k] for k in NORMS}
        # the exact solution is known too: its errors on the grid, beside the data's
        assert entry["exact"]["source"] == "exact solution on the 21 x 21 evaluation grid"
        assert math.isfinite(entry["exact"]["l2_rel"]) and entry["exact"]["l2_rel"] != entry["l2_rel"]


def test_reference_errors_equal_the_exact_errors_at_the_same_points(reference_run) -> None:
    """Data sampled from the exact solution: the run's errors vs the data are the exact solution's errors
    evaluated independently at the same nodes, to rounding (H1 included: the data carry the gradient)."""
    out, metrics = reference_run
    loaded = load_run(out)
    problem = Poisson2D()
    x = torch.from_numpy(PTS)
    exact, grad = problem.exact(x).numpy(), problem.exact_grad(x).numpy()[:, None]
    for model, entry in ((loaded.main, metrics), (loaded.baseline, metrics["baseline"])):
        expected = point_errors(model.model, problem, PTS, exact, grad, engine="autograd").metrics
        for key in NORMS:
            assert entry[key] == pytest.approx(expected[key], rel=1e-10), key


def test_the_run_file_holds_the_predictions_at_the_data_points(reference_run) -> None:
    out, metrics = reference_run
    with h5py.File(out / "solution.h5") as f:
        assert int(f.attrs["format_version"]) == 3
        group = f["reference"]
        assert group.attrs["source"] == "ref.npz" and int(group.attrs["n_points"]) == N_DATA
        assert group.attrs["error_source"] == metrics["error_source"]
        assert set(group) == {"points", "values", "gradients", "predicted"} and set(group["predicted"]) == {"main", "baseline"}
        assert json.loads(f["main/metrics"].attrs["reference"])["l2_rel"] == metrics["l2_rel"]
    loaded = load_run(out)
    ref = loaded.reference
    np.testing.assert_array_equal(ref.points, PTS)
    np.testing.assert_array_equal(ref.values[:, 0], Poisson2D().exact(torch.from_numpy(PTS)).numpy())
    assert ref.gradients.shape == (N_DATA, 1, 2)
    for name, model in (("main", loaded.main), ("baseline", loaded.baseline)):
        np.testing.assert_allclose(ref.predicted[name], model(PTS).numpy(), rtol=0, atol=1e-13)
    e = ref.error("main")[:, 0]
    assert np.abs(e).max() == pytest.approx(metrics["linf"], rel=1e-12)
    assert np.sqrt(np.sum(e**2) / np.sum(ref.values**2)) == pytest.approx(metrics["l2_rel"], rel=1e-12)


def test_table_and_figures_say_vs_reference_data(reference_run) -> None:
    out, metrics = reference_run
    lines = format_table(metrics).splitlines()
    assert lines[-1] == f"errors vs reference data ref.npz, {N_DATA} points"
    row = next(line for line in lines if line.startswith("l2_rel (exact)")).split()
    assert float(row[2]) == pytest.approx(metrics["exact"]["l2_rel"], rel=1e-3)
    assert (out / "reference_error.png").read_bytes().startswith(b"\x89PNG")


class Bump(Problem):
    """-Δu = 2 pi² sin(pi x) sin(pi y) on [-1, 1]², u = 0 on the boundary: the solution is known to the
    test, but the problem declares no exact solution, only data of it (a method ``reference``)."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(Box([-1.0, -1.0], [1.0, 1.0], self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x, u):
        return u.laplacian() + 2 * math.pi**2 * torch.sin(math.pi * x[:, 0]) * torch.sin(math.pi * x[:, 1])

    def reference(self):
        return PTS, np.sin(np.pi * PTS[:, 0]) * np.sin(np.pi * PTS[:, 1])


class BumpWithExact(Bump):
    def exact(self, x):
        return torch.sin(math.pi * x[:, 0]) * torch.sin(math.pi * x[:, 1])


def test_a_declared_reference_is_used_where_there_is_no_exact_solution(tmp_path: Path) -> None:
    metrics = run(fast_cfg("problem=custom", f"problem._target_={__name__}.Bump", "baseline=null", "eval.n_per_axis=11"),
                  output_dir=tmp_path)
    assert metrics["error_source"] == f"reference data Bump.reference(), {N_DATA} points"
    assert metrics["status"] == "ok" and math.isfinite(metrics["l2_rel"]) and metrics["h1"] is None
    assert NO_EXACT not in metrics["messages"] and "has no gradient (u_x, u_y)" in metrics["messages"][0]
    assert "exact" not in metrics
    assert format_table(metrics).splitlines()[-1] == f"errors vs reference data Bump.reference(), {N_DATA} points"


def test_an_exact_solution_wins_over_declared_data_which_are_reported_beside(tmp_path: Path) -> None:
    metrics = run(fast_cfg("problem=custom", f"problem._target_={__name__}.BumpWithExact", "baseline=null",
                           "eval.n_per_axis=11"), output_dir=tmp_path)
    assert metrics["error_source"] == "exact solution on the 11 x 11 evaluation grid"
    assert metrics["reference"]["n_points"] == N_DATA and math.isfinite(metrics["reference"]["l2_rel"])
    assert metrics["reference"]["l2_rel"] != metrics["l2_rel"] and "exact" not in metrics
    table = format_table(metrics).splitlines()
    assert any(line.startswith("l2_rel (data)") for line in table) and not table[-1].startswith("errors vs")
    assert load_run(tmp_path, allow=[BumpWithExact]).reference.source == "BumpWithExact.reference()"


def test_a_run_without_reference_data_writes_no_reference_group(fast_run) -> None:
    out, metrics, _ = fast_run
    assert "reference" not in metrics and metrics["error_source"] == "exact solution on the 21 x 21 evaluation grid"
    with h5py.File(out / "solution.h5") as f:
        assert "reference" not in f
    assert load_run(out).reference is None
    assert not format_table(metrics).splitlines()[-1].startswith("errors vs")


@pytest.mark.parametrize("kind", BAD_REFERENCE_KINDS)
def test_bad_reference_files_are_refused_before_training(tmp_path: Path, kind: str) -> None:
    path, message = bad_reference_file(tmp_path, kind, PTS, "Poisson2D")
    with pytest.raises(ConfigError, match=f"^problem.reference={path}: .*" + message) as info:
        run(fast_cfg(f"problem.reference={path}"), output_dir=tmp_path / "run")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / "solution.h5").exists()


def _cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "kanpde", "debug=fast", "device=cpu", "output.figures=false", "eval.n_per_axis=21",
           f"hydra.run.dir={tmp_path / 'run'}", *overrides]
    return subprocess.run(cmd, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("kind", ["npz", "comsol"])
def test_the_cli_reports_errors_vs_reference_data(tmp_path: Path, kind: str) -> None:
    """`python -m kanpde debug=fast problem.reference=ref.npz` (or a COMSOL text export), a path relative to
    where the command starts."""
    if kind == "npz":
        name = sampled_exact(tmp_path / "ref.npz", gradients=False).name
    else:  # the exact solution at PTS as COMSOL's Export > Data writes it
        table = np.column_stack([PTS, Poisson2D().exact(torch.from_numpy(PTS)).numpy()])
        name = comsol_export(tmp_path / "u.txt", table, model="poisson.mph").name
    proc = _cli(tmp_path, f"problem.reference={name}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["error_source"] == f"reference data {name}, {N_DATA} points" and metrics["status"] == "ok"
    assert math.isfinite(metrics["l2_rel"]) and metrics["h1_rel"] is None  # no gradient columns: H1 skipped
    assert f"errors vs reference data {name}, {N_DATA} points" in proc.stdout
    assert "l2_rel (exact)" in proc.stdout
    assert load_run(tmp_path / "run").reference.values.shape == (N_DATA, 1)


@pytest.mark.subprocess
def test_the_cli_refuses_a_bad_reference_file_with_exit_code_2(tmp_path: Path) -> None:
    bad_reference_file(tmp_path, "outside", PTS, "Poisson2D")
    proc = _cli(tmp_path, "problem.reference=bad.npz")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kanpde: error: problem.reference=bad.npz: reference data bad.npz: ")
    assert "1 of 300 points lie outside the domain" in lines[0]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
