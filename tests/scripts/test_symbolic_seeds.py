"""scripts/symbolic_seeds.py: the seeds x threads table of the poisson2d_symbolic preset, from run outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, load_script

EXACT = "-0.5*sin(-3.1415926535897931*x + 3.1415926535897932*y**2 + 10.995574287564279) - 0.5*sin(3.1415926535897932*x + 3.1415926535897932*y**2 - 54.977871437821378)"


@pytest.fixture(scope="module")
def script():
    return load_script(REPO_ROOT / "scripts" / "symbolic_seeds.py", "kanpde_symbolic_seeds")


def _finished(path: Path, metrics: dict, wall: float, formula: str | None = None, restarts: int = 1) -> None:
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "wall.json").write_text(json.dumps({"wall_seconds": wall, "returncode": 0 if formula else 1}))
    (path / "kanpde.log").write_text("".join(f"[t][kanpde.training.fit][INFO] - restart {r}/8: stages 1-12\n"
                                             for r in range(1, restarts + 1)))
    if formula is not None:
        (path / "formula.txt").write_text(formula + "\n")


def test_formula_error_is_the_max_deviation_from_the_solution(script) -> None:
    """The preset's formula in its cos/sin form is the exact solution to rounding; a changed amplitude is
    off by exactly that much times max |sin(pi x) sin(pi y^2)| = 1 (at x = 1/2, y^2 = 1/2, on the grid's nodes
    only approximately)."""
    assert script.formula_error(EXACT) < 1e-14
    assert script.formula_error("sin(pi*x)*sin(pi*y**2)") < 1e-15
    assert 0.0099 < script.formula_error("1.01*sin(pi*x)*sin(pi*y**2)") <= 0.01


def test_table_reports_recovered_failed_and_missing_runs(script, tmp_path: Path) -> None:
    """--collect: one row per (seed, threads): a recovered run with its error and initialisations, a failed
    one with its status and its failure listed below the table, a run not made as 'not run'; the docs
    section is rewritten between its markers."""
    runs = tmp_path / "runs"
    _finished(runs / "s0_t1", {"status": "ok", "train_seconds": 90.0}, 120.4, EXACT, restarts=3)
    _finished(runs / "s0_t2", {"status": "symbolic_failed", "failure": "all 8 initialisations failed (restarts); "
                               "the first: snap rejected", "train_seconds": 400.0}, 410.0, restarts=8)
    page = tmp_path / "page.md"
    page.write_text(f"intro\n{script.START}\nold\n{script.END}\nrest\n")
    argv = sys.argv
    sys.argv = ["symbolic_seeds.py", "--collect", str(runs), "--seeds", "0", "1", "--docs", str(page)]
    try:
        script.main()
    finally:
        sys.argv = argv
    text = page.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    row = next(line for line in text.splitlines() if line.startswith("| 0 | 1 |"))
    assert row.startswith("| 0 | 1 | ok (recovered) | yes | ") and row.endswith("| 3 | 120 | 90 |")
    assert float(row.split("|")[5]) < 1e-14
    assert "| 0 | 2 | symbolic_failed | no | — | 8 | 410 | 400 |" in text
    assert "- seed 0, threads 2: all 8 initialisations failed" in text
    assert "| 1 | 1 | not run |" in text and "| 1 | 2 | not run |" in text


def test_a_finished_run_is_not_run_again(script, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Resumable: runs with wall.json are skipped, the others are run (here a stand-in records the calls)."""
    runs = tmp_path / "runs"
    _finished(runs / "s0_t1", {"status": "ok"}, 1.0, EXACT)
    calls = []
    monkeypatch.setattr(script, "run_one", lambda out, seed, threads: calls.append((seed, threads)) or 0.0)
    monkeypatch.setattr(sys, "argv", ["symbolic_seeds.py", "--out", str(runs), "--seeds", "0", "1", "--threads", "1",
                                      "--no-docs"])
    script.main()
    assert calls == [(1, 1)]
