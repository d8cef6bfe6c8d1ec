"""Smoke test of scripts/bench.py: one tiny configuration in-process, and the report it prints."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import REPO_ROOT, load_script


@pytest.fixture(scope="module")
def bench():
    return load_script(REPO_ROOT / "scripts" / "bench.py", "kanpde_bench")


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
