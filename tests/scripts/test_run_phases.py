"""Smoke test of scripts/run_phases.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


def test_run_phases_script_times_a_tiny_run() -> None:
    """scripts/run_phases.py runs the CLI with its timers and prints the phases and the optimizer table."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "run_phases.py"), "problem=poisson2d", "debug=fast", "device=cpu",
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
