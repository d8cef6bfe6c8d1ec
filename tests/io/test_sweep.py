"""The sweep report (kanpde.io.sweep) on synthetic run directories with known numbers: collection, means
and spreads, fitted exponents, tables and figures, per-stage points, failed runs left out. (Its command line and
errors: tests/test_report.py.)"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from kanpde.io.sweep import aggregate, collect, exponents, fit_exponent, report


def write_run(root: Path, name: str, metrics: dict, seed: int, overrides: list[str]) -> Path:
    run_dir = root / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / ".hydra" / "config.yaml").write_text(f"seed: {seed}\nmodel:\n  grid_size: 5\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return run_dir


def model_metrics(family: str, widths: list[int], grid: int | None, n: int, mse: float, h1: float, **extra) -> dict:
    return {"model": family, "problem": "poisson2d", "widths": widths, "grid_size": grid, "n_params": n,
            "mse": mse, "h1_mse": h1, "l2_rel": 10 * mse, "h1_rel": 10 * h1, "train_seconds": n / 10.0,
            "status": "ok", **extra}


BASELINE = model_metrics("mlp", [2, 50, 1], None, 201, 1e-4, 1e-2)


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    """KAN [2,5,1] at G = 5, 10, 20 (n = 10 G), mse = f n^-4, h1 = f n^-2 with f = 1 (seed 0) or 3 (seed 1),
    each with the same MLP baseline; MLPs of depth 2 (baseline=null) with n = 50, 500: mse = 1e-3 / n."""
    root = tmp_path / "multirun" / "study"
    for grid in (5, 10, 20):
        for seed, factor in ((0, 1.0), (1, 3.0)):
            n = 10 * grid
            m = model_metrics("kan", [2, 5, 1], grid, n, factor * n**-4.0, factor * n**-2.0, baseline=BASELINE)
            write_run(root, f"model.grid_size={grid},seed={seed}", m, seed, [f"model.grid_size={grid}", f"seed={seed}"])
    for width, n in ((10, 50), (100, 500)):
        m = model_metrics("mlp", [2, width, 1], None, n, 1e-3 / n, 1e-1 / n)
        write_run(root, f"model=mlp,w={width}", m, 0, ["model=mlp", f"model.widths=[2,{width},1]", "baseline=null", "seed=0"])
    return root


def test_fit_exponent_recovers_power_laws() -> None:
    n = [10.0, 30.0, 100.0, 1000.0]
    assert fit_exponent(n, [7 * x**-4 for x in n]) == pytest.approx(-4.0, abs=1e-12)
    assert fit_exponent(n, [x**0.5 for x in n]) == pytest.approx(0.5, abs=1e-12)
    assert math.isnan(fit_exponent([10.0, 10.0], [1.0, 2.0]))
    assert math.isnan(fit_exponent([10.0], [1.0]))


def test_aggregation_gives_known_means_stds_and_exponents(sweep: Path) -> None:
    points = collect(sweep)
    assert len(points) == 6 + 6 + 2  # KAN runs, their baselines, MLP runs
    rows = aggregate(points)
    kan = [r for r in rows if r["family"] == "kan"]
    assert [r["n_params_mean"] for r in kan] == [50.0, 100.0, 200.0]
    for r in kan:
        n = r["n_params_mean"]
        assert r["n_seeds"] == 2 and r["grid_size"] == n / 10
        assert r["mse_mean"] == pytest.approx(2 * n**-4.0, rel=1e-12)  # mean of 1 and 3 times n^-4
        assert r["mse_std"] == pytest.approx(math.sqrt(2) * n**-4.0, rel=1e-12)  # sample std of (1, 3)
        assert r["train_seconds_mean"] == pytest.approx(n / 10)
        assert r["config"] == f"KAN [2,5,1] G={int(n / 10)}"
    base = [r for r in rows if r["role"] == "baseline"]
    # the same baseline trained in three runs per seed counts once per seed
    assert len(base) == 1 and base[0]["n_seeds"] == 2 and base[0]["mse_std"] == 0.0 and base[0]["mse_mean"] == 1e-4
    mlp = [r for r in rows if r["family"] == "mlp" and r["role"] == "main"]
    assert [(r["n_params_mean"], r["n_seeds"], r["mse_mean"]) for r in mlp] == [(50.0, 1, 2e-5), (500.0, 1, 2e-6)]
    slopes = {(e["name"], e["role"]): e for e in exponents(rows)}
    assert slopes[("KAN [2,5,1]", "main")]["mse_slope"] == pytest.approx(-4.0, abs=1e-9)
    assert slopes[("KAN [2,5,1]", "main")]["h1_mse_slope"] == pytest.approx(-2.0, abs=1e-9)
    assert slopes[("MLP depth 2", "main")]["mse_slope"] == pytest.approx(-1.0, abs=1e-9)
    assert slopes[("KAN (all sizes)", "main")]["n_sizes"] == 3
    assert math.isnan(slopes[("MLP depth 2", "baseline")]["mse_slope"])  # one size: no exponent


def test_report_writes_tables_and_figures(sweep: Path, tmp_path: Path) -> None:
    paths = report(sweep, tmp_path / "out")
    for key in ("runs", "summary", "exponents", "markdown", "scaling", "time"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0, key
    assert "loss_curves" not in paths  # synthetic runs have no solution.h5 history
    md = paths["markdown"].read_text()
    n = 50.0
    assert f"| poisson2d | KAN [2,5,1] G=5 | - | 50 | 2 | {2 * n**-4:.3e} ± {math.sqrt(2) * n**-4:.3e} |" in md
    assert "| poisson2d | KAN [2,5,1] | - | 3 | -4.00 | -2.00 |" in md
    assert "| poisson2d | MLP depth 2 | - | 2 | -1.00 | -1.00 |" in md
    with open(paths["summary"]) as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 3 + 1 + 2
    with open(paths["runs"]) as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 14 and {r["seed"] for r in runs} == {"0", "1"}


def test_per_stage_evaluations_give_one_point_per_grid(tmp_path: Path) -> None:
    stages = [
        {"stage": 0, "grid_size": 5, "n_params": 50, "train_seconds": 1.0, "mse": 1e-3, "h1_mse": 1e-1, "l2_rel": 1, "h1_rel": 1},
        {"stage": 1, "grid_size": 5, "n_params": 50, "train_seconds": 2.0, "mse": 5e-4, "h1_mse": 5e-2, "l2_rel": 1, "h1_rel": 1},
        {"stage": 2, "grid_size": 10, "n_params": 100, "train_seconds": 3.0, "mse": 1e-5, "h1_mse": 1e-3, "l2_rel": 1, "h1_rel": 1},
    ]
    m = model_metrics("kan", [2, 5, 1], 10, 100, 1e-5, 1e-3, stages=stages)
    m["train_seconds"] = 3.5  # fit's time includes the per-stage evaluations: the stages' sum is used
    write_run(tmp_path, "r", m, 0, ["seed=0"])
    points = collect(tmp_path)
    assert [(p.grid_size, p.values["n_params"], p.values["mse"], p.final) for p in points] == [
        (5, 50.0, 5e-4, False),  # the end of grid 5
        (10, 100.0, 1e-5, True),
    ]
    assert points[0].values["train_seconds"] == 2.0 and points[1].values["train_seconds"] == 3.0


def test_failed_runs_are_left_out(sweep: Path) -> None:
    bad = model_metrics("kan", [2, 5, 1], 5, 50, 1.0, 1.0)
    bad["status"] = "diverged"
    write_run(sweep, "diverged", bad, 7, ["seed=7"])
    assert all(p.seed != 7 for p in collect(sweep))


def test_compare_gives_medians_and_spreads_of_main_against_baseline(tmp_path: Path) -> None:
    """Three seeds of a KAN with its matched MLP baseline at a 60 s budget (one KAN seed stopped at it, and
    ended at a smaller grid): per role the median, min and max of l2_rel over seeds, whatever grid each ended at."""
    from kanpde.io.sweep import compare, comparison_markdown

    root = tmp_path / "runs"
    kan_errors, mlp_errors = (4e-3, 1e-3, 2e-3), (9e-2, 3e-2, 5e-2)
    for seed, (ek, em) in enumerate(zip(kan_errors, mlp_errors)):
        mlp = model_metrics("mlp", [2, 30, 1], None, 121, 0.0, 0.0, l2_rel=em, max_seconds=60.0, out_of_time=False,
                            matched_params=120)
        grid = 10 if seed == 0 else 20
        kan = model_metrics("kan", [2, 5, 1], grid, 120 - 10 * (seed == 0), 0.0, 0.0, l2_rel=ek, max_seconds=60.0,
                            out_of_time=seed == 0, baseline=mlp)
        write_run(root, f"seed={seed}", kan, seed, ["trainer=accurate", "baseline.match_params=true", f"seed={seed}"])
    rows = compare(collect(root))
    assert len(rows) == 1
    r = rows[0]
    assert r["overrides"] == "baseline.match_params=true trainer=accurate" and r["max_seconds"] == 60.0
    assert (r["main_family"], r["baseline_family"], r["main_seeds"], r["baseline_seeds"]) == ("kan", "mlp", 3, 3)
    assert (r["main_l2_rel_median"], r["main_l2_rel_min"], r["main_l2_rel_max"]) == (2e-3, 1e-3, 4e-3)
    assert (r["baseline_l2_rel_median"], r["baseline_l2_rel_min"], r["baseline_l2_rel_max"]) == (5e-2, 3e-2, 9e-2)
    assert r["main_n_params_median"] == 120 and r["main_n_params_min"] == 110 and r["baseline_n_params_median"] == 121
    assert r["main_out_of_time"] == 1 and r["baseline_out_of_time"] == 0
    text = comparison_markdown(rows)
    assert "| KAN vs MLP | 3/3 | 120/121 | 60 | 2.00e-03 [1.00e-03–4.00e-03] | 5.00e-02 [3.00e-02–9.00e-02] |" in text
    rows_by_size = aggregate(collect(root))
    kan20 = next(x for x in rows_by_size if x["family"] == "kan" and x["grid_size"] == 20)
    assert (kan20["l2_rel_median"], kan20["l2_rel_min"], kan20["l2_rel_max"], kan20["n_seeds"]) == (1.5e-3, 1e-3, 2e-3, 2)


def test_report_writes_the_comparison_when_runs_have_baselines(sweep: Path, tmp_path: Path) -> None:
    paths = report(sweep, tmp_path / "out", figures=False)
    text = paths["markdown"].read_text()
    assert "Main model against its baseline" in text and paths["comparison"].is_file()
    with open(paths["comparison"]) as f:
        rows = list(csv.DictReader(f))
    assert {r["overrides"] for r in rows} == {"model.grid_size=5", "model.grid_size=10", "model.grid_size=20"}
    assert all(r["main_seeds"] == "2" and r["baseline_l2_rel_median"] == "0.001" for r in rows)  # runs without a baseline left out
