"""scripts/problem_table.py: the docs' problem table from the runs' metrics.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.helpers import REPO_ROOT, load_script


def test_problem_table_script_builds_the_table_from_metrics(tmp_path: Path) -> None:
    """scripts/problem_table.py --collect: one row per shipped problem, numbers from metrics.json, docs page rewritten."""
    table_mod = load_script(REPO_ROOT / "scripts" / "problem_table.py", "kanpde_problem_table")
    runs = tmp_path / "runs"
    (runs / "heat1d").mkdir(parents=True)
    kan = {"l2_rel": 1.5e-3, "l2_rel_final": 2.5e-3, "n_params": 450, "train_seconds": 12.3,
           "baseline": {"l2_rel": 4e-3, "l2_rel_final": 5e-3, "n_params": 5301, "train_seconds": 4.0}}
    (runs / "heat1d" / "metrics.json").write_text(json.dumps(kan))
    (runs / "settings.json").write_text(json.dumps({"overrides": [], "machine": "m", "date": "d", "threads": "1"}))
    page = tmp_path / "problems.md"
    page.write_text(f"intro\n{table_mod.START}\nold\n{table_mod.END}\nrest\n")
    argv = sys.argv
    sys.argv = ["problem_table.py", "--collect", str(runs), "--docs", str(page)]
    try:
        table_mod.main()
    finally:
        sys.argv = argv
    text = page.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    assert "| heat1d | 1.50e-03 | 4.00e-03 | 2.50e-03 | 5.00e-03 | 450 | 5301 | 12 | 4 | KAN |" in text
    assert "| poisson2d | not run |" in text and "default configuration" in text
