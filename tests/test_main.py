"""The entry point ``python -m kanpde`` (kanpde.__main__.cli) called in-process: what it refuses before
Hydra starts is one line on stderr and exit code 2 (the CLI in subprocesses: tests/test_cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kanpde.__main__ import cli, format_table

REFUSED = [
    (["problem=nope"], "kanpde: error: unknown problem 'nope' (problem=nope); valid: advection1d"),
    (["model=nope"], "kanpde: error: unknown model 'nope' (model=nope); valid: kan, mlp, modified_mlp"),
    (["hydra.run.dir=/proc/x"], "kanpde: error: output directory /proc/x cannot be created: /proc is not a writable directory"),
]


@pytest.mark.parametrize("argv,line", REFUSED, ids=[a[0] for a, _ in REFUSED])
def test_refused_in_one_line_with_exit_code_2(argv, line: str, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["kanpde", "debug=fast", *argv])
    with pytest.raises(SystemExit) as info:
        cli()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line), err
    assert list(tmp_path.iterdir()) == []  # Hydra never started: no outputs/


def test_default_outputs_in_an_unwritable_working_directory(monkeypatch, capsys) -> None:
    monkeypatch.chdir("/proc")  # not writable, even for root (os.access says yes to root)
    monkeypatch.setattr(sys, "argv", ["kanpde", "debug=fast"])
    with pytest.raises(SystemExit) as info:
        cli()
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == ("kanpde: error: output directory outputs cannot be created: /proc is not "
                                              "a writable directory (No such file or directory)")


def test_table_shows_metrics_not_computed() -> None:
    metrics = {"model": "kan", "n_params": 10, "train_seconds": 1.0, "l2_rel": None, "h1_rel": 0.5, "linf": 1e-3,
               "mse": 1e-6, "h1_mse": None}
    rows = {line.split()[0]: line.split()[-1] for line in format_table(metrics).splitlines()}
    assert rows["l2_rel"] == "n/a" and rows["h1_mse"] == "n/a" and rows["h1_rel"] == "5.000e-01"


@pytest.mark.slow
def test_optimizer_and_causal_auto_through_the_cli(tmp_path: Path, monkeypatch) -> None:
    """debug=fast with ``optimizer: auto`` and ``causal: auto`` in its second stage on poisson2d (no time): the
    choice logged once per model and recorded in metrics.json."""
    import json

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["kanpde", "debug=fast", "threads=1", "output.figures=false", "hydra.run.dir=run",
                                      "trainer.stages.1.optimizer=auto", "+trainer.stages.1.causal=auto"])
    cli()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["auto_optimizer"] == [None, "lm"] and metrics["baseline"]["auto_optimizer"] == [None, "lm"]
    assert metrics["causal_auto"] == "off" and metrics["baseline"]["causal_auto"] == "off"
    log = (tmp_path / "run" / "kanpde.log").read_text()
    assert log.count("stage 2 (KAN): optimizer auto -> lm (") == 1
    assert log.count("stage 2 (MLP): optimizer auto -> lm (") == 1
    assert log.count("stage 2: causal auto -> off (coords ['x', 'y']: no time coordinate 't')") == 2  # one per model
