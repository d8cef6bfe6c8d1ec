"""The report command line (python -m kanpde.report, kanpde/report.py) on bad directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kanpde.io.sweep import ReportError, report
from kanpde.report import main


@pytest.mark.parametrize("case", ["missing", "file", "empty", "corrupt", "foreign"])
def test_bad_directory_gives_one_clear_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "multirun"
    expected = {
        "missing": "does not exist",
        "file": "is not a directory",
        "empty": "no runs in",
        "corrupt": "cannot be read",
        "foreign": "not a kanpde run's metrics",
    }[case]
    if case == "file":
        target.write_text("x")
    elif case != "missing":
        target.mkdir()
        (target / "sub").mkdir()
        if case == "corrupt":
            (target / "sub" / "metrics.json").write_text("{oops")
        elif case == "foreign":
            (target / "sub" / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))
    with pytest.raises(ReportError, match=expected):
        report(target, tmp_path / "out")
    assert main([str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kanpde.report: error: ") and expected in err and "\n" not in err
