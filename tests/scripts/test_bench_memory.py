"""Smoke test of scripts/bench_memory.py: one tiny case in this process, and a sweep whose cases are all
recorded already (skipped, so no subprocess) writing its table into a page."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.helpers import REPO_ROOT, load_script

TINY = "[{optimizer: adam, steps: 1}, {optimizer: lbfgs, steps: 1, grid_size: 6}]"


def test_bench_memory_case_and_resumed_table(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("KANPDE_KERNEL", "torch")  # the script's logic is under test, not the kernels
    module = load_script(REPO_ROOT / "scripts" / "bench_memory.py", "kanpde_bench_memory")
    threads = torch.get_num_threads()
    try:
        rec = module.run_case("kan", 300, "64", TINY, 1)  # 300 points in chunks of 64
    finally:
        torch.set_num_threads(threads)
    assert rec["n_interior"] == 300 and rec["steps"] == 2 and rec["n_params"] > 0
    assert 0 < rec["rss_import_mb"] <= rec["rss_sampling_mb"] <= rec["peak_rss_mb"] < 4096
    out, page = tmp_path / "results.json", tmp_path / "page.md"
    mlp = dict(rec, model="mlp", peak_rss_mb=1234.4, seconds=5.0)
    out.write_text(json.dumps({"kan:300:64": rec, "mlp:300:64": mlp}))
    page.write_text("# t\n<!-- bench-memory:start -->\nstale table\n<!-- bench-memory:end -->\nrest\n")
    assert module.main(["--sizes", "300", "--chunk-size", "64", "--out", str(out), "--docs", str(page)]) == 0
    printed = capsys.readouterr().out
    assert "kan:300:64: done before" in printed and "mlp:300:64: done before" in printed
    text = page.read_text()
    assert "stale table" not in text and text.endswith("rest\n") and "| 300 | " in text and "| 1234 | 5 |" in text
    assert "chunk_size=64" in text
