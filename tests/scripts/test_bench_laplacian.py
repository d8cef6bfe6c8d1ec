"""Smoke test of scripts/bench_laplacian.py."""

from __future__ import annotations

import torch

from tests.helpers import REPO_ROOT, load_script


def test_laplacian_bench_compares_both_plans_on_tiny_problems(capsys, monkeypatch) -> None:
    """scripts/bench_laplacian.py: both plans give the same loss (the script checks) and a ratio is printed
    (on the tensor path: the script's logic is under test, not the kernels, which need compiling)."""
    monkeypatch.setenv("KANPDE_KERNEL", "torch")
    module = load_script(REPO_ROOT / "scripts" / "bench_laplacian.py", "kanpde_bench_laplacian")
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
