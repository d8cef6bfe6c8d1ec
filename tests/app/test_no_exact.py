"""A problem without an exact solution through the run (kanpde.app.run): it trains, saves and reports its
residual metrics (status "ok", error metrics null with the reason), solution.h5 holds no exact or error
fields but the residual maps, the figures show the residual, and the model-vs-baseline difference is
the one recomputed from the run file."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kanpde import Box, Dirichlet, Problem, load_run, trapezoid_weights
from kanpde.__main__ import format_table
from kanpde.app.run import run
from kanpde.evaluate import NO_EXACT
from tests.helpers import NORMS, REPO_ROOT, fast_cfg


class SquareSource(Problem):
    """-Δu = exp(x) (1 + y) on the unit square, u = 0 on its boundary: no closed-form solution."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(Box([0.0, 0.0], [1.0, 1.0], self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x, u):
        return u.laplacian() + torch.exp(x[:, 0]) * (1 + x[:, 1])


def _run(tmp_path: Path, *overrides: str) -> dict:
    cfg = fast_cfg("problem=custom", f"problem._target_={__name__}.SquareSource", "eval.n_per_axis=33", *overrides)
    return run(cfg, output_dir=tmp_path)


@pytest.fixture(scope="module")
def no_exact_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("no_exact")
    return out, _run(out, "output.figures=true")


def test_runs_end_to_end_and_reports_residual_metrics(no_exact_run) -> None:
    out, metrics = no_exact_run
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    for entry in (saved, saved["baseline"]):
        assert entry["status"] == "ok"
        assert all(entry[k] is None for k in NORMS)
        assert entry["messages"] == [NO_EXACT]
        assert math.isfinite(entry["residual_rms"]) and 0 < entry["residual_rms"] <= entry["residual_max"]
        assert set(entry["condition_rms"]) == {"dirichlet[all]"}
        assert math.isfinite(entry["condition_rms"]["dirichlet[all]"])


def test_solution_file_has_residuals_and_no_exact_fields(no_exact_run) -> None:
    out, metrics = no_exact_run
    loaded = load_run(out, allow=[SquareSource])
    for model in (loaded.main, loaded.baseline):
        assert set(model.fields["u"]) == {"predicted"}
        assert set(model.residuals) == {"pde"} and model.residuals["pde"].shape == (33, 33)
        assert math.isnan(model.metrics["l2"])
        assert json.loads(model.metrics["condition_rms"]) == pytest.approx(
            (metrics if model is loaded.main else metrics["baseline"])["condition_rms"])
    # the residual map is the one the metrics summarise
    res = loaded.main.residuals["pde"]
    assert np.sqrt(np.mean(res**2)) == pytest.approx(metrics["residual_rms"], rel=1e-12)
    assert np.abs(res).max() == pytest.approx(metrics["residual_max"], rel=1e-12)
    # the loaded model predicts what was saved
    axes = [loaded.main.axes[c] for c in ("x", "y")]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    pred = loaded.main(pts).double().numpy().reshape(33, 33)
    np.testing.assert_allclose(pred, loaded.main.fields["u"]["predicted"], rtol=0, atol=1e-6)
    import xml.etree.ElementTree as ET

    grids = ET.parse(out / "solution.xdmf").getroot().iter("Grid")
    assert all({a.get("Name") for a in g.findall("Attribute")} == {"u_predicted", "pde_residual"} for g in grids)


def test_baseline_rel_diff_is_the_weighted_l2_difference(no_exact_run) -> None:
    out, metrics = no_exact_run
    loaded = load_run(out, allow=[SquareSource])
    w = trapezoid_weights([loaded.main.axes["x"], loaded.main.axes["y"]])
    a = loaded.main.fields["u"]["predicted"].reshape(-1)
    b = loaded.baseline.fields["u"]["predicted"].reshape(-1)
    expected = math.sqrt(w @ (a - b) ** 2) / math.sqrt(w @ a**2)
    assert metrics["baseline_rel_diff"] == pytest.approx(expected, rel=1e-10)
    assert 0 < metrics["baseline_rel_diff"] < math.inf
    assert "baseline_rel_diff" not in metrics["baseline"]


def test_figures_show_the_residual_map(no_exact_run) -> None:
    out, _ = no_exact_run
    for png in ("solution.png", "baseline_solution.png", "history.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")


def test_table_shows_residual_rows_and_no_error_rows(no_exact_run) -> None:
    _, metrics = no_exact_run
    table = format_table(metrics)
    labels = [line[:15].strip() for line in table.splitlines()]
    assert "residual rms" in labels and "residual max" in labels and "vs baseline" in labels
    assert not {"l2_rel", "h1_rel", "linf"} & set(labels)


def test_a_run_with_an_exact_solution_reports_residuals_too(tmp_path: Path) -> None:
    metrics = run(fast_cfg("eval.n_per_axis=21", "baseline=null"), output_dir=tmp_path)
    assert metrics["status"] == "ok" and math.isfinite(metrics["l2_rel"])
    assert math.isfinite(metrics["residual_rms"]) and set(metrics["condition_rms"])
    assert "messages" not in metrics and "baseline_rel_diff" not in metrics
    loaded = load_run(tmp_path)
    assert {"predicted", "exact", "error"} <= set(loaded.main.fields["u"]) and "pde" in loaded.main.residuals
    labels = [line[:15].strip() for line in format_table(metrics).splitlines()]
    assert "l2_rel" in labels and "residual rms" in labels


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_example_runs_through_the_cli(tmp_path: Path) -> None:
    """`python -m kanpde problem=custom problem._target_=examples/no_exact.py:SquareSource`, from another directory."""
    target = REPO_ROOT / "examples" / "no_exact.py"
    cmd = [sys.executable, "-m", "kanpde", "problem=custom", f"problem._target_={target}:SquareSource", "debug=fast",
           "device=cpu", "output.figures=false", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["l2_rel"] is None and math.isfinite(metrics["residual_rms"])
    assert math.isfinite(metrics["baseline_rel_diff"]) and metrics["baseline"]["status"] == "ok"
    assert "residual rms" in proc.stdout and NO_EXACT in proc.stdout and "l2_rel" not in proc.stdout
