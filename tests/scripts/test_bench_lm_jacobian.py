"""scripts/bench_lm_jacobian.py: both Jacobian paths run, their normal equations agree (the script asserts
it before printing) and the table has a row per grid."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO_ROOT


def test_bench_lm_jacobian_prints_one_row_per_grid() -> None:
    out = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "bench_lm_jacobian.py"), "--grids", "3", "4",
                          "--n-interior", "64", "--n-boundary", "16", "--repeats", "1"], capture_output=True, text=True, check=True,
                         cwd=REPO_ROOT, timeout=300).stdout
    rows = [line for line in out.splitlines() if line.startswith("| 3 |") or line.startswith("| 4 |")]
    assert len(rows) == 2, out
    assert "load average" in out.splitlines()[0]
