"""An inverse problem through the run: every model learns the unknowns from their declared start, metrics.json,
the printed table and solution.h5 report them with their error, and resume=true is refused up front."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from kanpde.__main__ import format_table
from kanpde.app.config import ConfigError
from kanpde.app.run import run
from kanpde.problems.burgers1d_inverse import NU_TRUE
from tests.helpers import fast_cfg

SMALL = ("problem=burgers1d_inverse", "problem.n_data=200")


@pytest.mark.slow
def test_a_run_reports_the_learned_unknowns_of_both_models(tmp_path: Path) -> None:
    metrics = run(fast_cfg(*SMALL), tmp_path)
    for entry in (metrics, metrics["baseline"]):
        nu = entry["unknowns"]["nu"]
        assert nu["true"] == pytest.approx(NU_TRUE) and nu["value"] > 0
        assert nu["rel_error"] == pytest.approx(abs(nu["value"] - NU_TRUE) / NU_TRUE)
    assert metrics["unknowns"]["nu"]["value"] != metrics["baseline"]["unknowns"]["nu"]["value"]
    assert "nu " in format_table(metrics) and "(true 3.183e-03)" in format_table(metrics)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["unknowns"] == metrics["unknowns"]
    with h5py.File(tmp_path / "solution.h5") as f:
        assert json.loads(f["main/metrics"].attrs["unknowns"]) == metrics["unknowns"]
        assert json.loads(f["baseline/metrics"].attrs["unknowns"]) == metrics["baseline"]["unknowns"]


def test_resume_is_refused_for_a_problem_with_unknowns(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="resume=true is not available for Burgers1DInverse"):
        run(fast_cfg(*SMALL, "resume=true"), tmp_path)
