"""Smoke test of scripts/bench.py: one tiny configuration in-process, and the report it prints."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO_ROOT

BENCH = REPO_ROOT / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("kanpde_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("impl", ["kanpde-forward", "kanpde-autograd", "mlp-forward"])
def test_worker_times_one_tiny_configuration(bench, impl: str) -> None:
    threads = torch.get_num_threads()
    cfg = {"impl": impl, "grid": None if impl.startswith("mlp") else 3, "n_interior": 50, "threads": 1,
           "device": "cpu", "dtype": "float64", "warmup": 1, "repeats": 3, "min_repeats": 3, "budget_s": 0.0}
    try:
        rec = bench.worker(cfg)
    finally:
        torch.set_num_threads(threads)
    assert rec["impl"] == impl and rec["n_points"] == 50 + 4 and rec["repeats"] == 3
    assert rec["median_s"] > 0 and rec["peak_mb"] >= 0


def test_report_ratios_and_verdicts(bench) -> None:
    def rec(impl, grid, t):
        return {"impl": impl, "grid": grid, "n_points": 10800, "median_s": t, "peak_mb": 1.0}

    results = [rec("kanpde-forward", 5, 0.010), rec("kanpde-forward", 20, 0.011), rec("kanpde-forward", 50, 0.012),
               rec("kanpde-autograd", 20, 0.2), rec("pykan", 20, 1.0), rec("mlp-autograd", None, 0.5)]
    table, summary = bench._table(results, [5, 20, 50], [10800])
    assert "10800" in table and summary[(10800, 20)]["pykan"]["median_s"] == 1.0
    verdicts = "\n".join(bench._verdicts(summary, [10800], [5, 20, 50]))
    assert "MET] fast engine >= 50x faster than pykan: 90.9x" in verdicts
    assert "MET] fast engine >= 10x faster than kanpde's autograd engine: 18.2x" in verdicts
    assert "grid 50 / grid 5 = 1.20" in verdicts


def test_laplacian_bench_compares_both_plans_on_tiny_problems(capsys, monkeypatch) -> None:
    """scripts/bench_laplacian.py: both plans give the same loss (the script checks) and a ratio is printed
    (on the tensor path: the script's logic is under test, not the kernels, which need compiling)."""
    monkeypatch.setenv("KANPDE_KERNEL", "torch")
    spec = importlib.util.spec_from_file_location("kanpde_bench_laplacian", BENCH.parent / "bench_laplacian.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        rec = module.measure("mlp", 3, 64, rounds=1, steps=1)
        assert module.main(["--dims", "2", "--models", "kan", "--points", "64", "--threads", "1", "--rounds", "1",
                            "--steps", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert rec["model"] == "mlp" and rec["dim"] == 3 and rec["pairs_s"] > 0 and rec["trace_s"] > 0
    out = capsys.readouterr().out
    assert "trace/pairs" in out and "poisson2d" in out


def test_run_phases_script_times_a_tiny_run() -> None:
    """scripts/run_phases.py runs the CLI with its timers and prints the phases and the optimizer table."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(BENCH.parent / "run_phases.py"), "problem=poisson2d", "debug=fast", "device=cpu",
         "output.figures=false"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for line in ("import torch._dynamo", "train + evaluate: model", "train + evaluate: baseline", "write (save_run)",
                 "the run without the main model's training and evaluation"):
        assert line in out, out
    rows = [r.split() for r in out.splitlines() if r.startswith(("  model ", "  baseline ")) and "optimizer" not in r]
    assert {r[0] for r in rows} == {"model", "baseline"} and all(int(r[4]) >= int(r[3]) >= 1 for r in rows), out
