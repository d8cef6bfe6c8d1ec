"""Sweeps from the command line: joblib (the default launcher of -m, 2 tiny runs) and submitit_local
(1 run), skipping finished runs on a re-run, and the report command on the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kanpde.report import main as report_main

TINY = ["debug=fast", "baseline=null", "model=kan,mlp", "seed=0", "eval.n_per_axis=11",
        "trainer.stages=[{optimizer: adam, steps: 2}]"]
RUNS = {"baseline=null,debug=fast,eval.n_per_axis=11,model=kan,seed=0,trainer.stages=[{optimizer:adam,steps:2}]",
        "baseline=null,debug=fast,eval.n_per_axis=11,model=mlp,seed=0,trainer.stages=[{optimizer:adam,steps:2}]"}


def kanpde(*args: str, cwd: Path, module: str = "kanpde") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    root = tmp_path_factory.mktemp("sweeps")
    commands = {
        "joblib": ["-m", *TINY, "output.figures=false", "study=small"],
        "submitit": ["-m", "hydra/launcher=submitit_local", *TINY[:2], "model=kan", *TINY[3:], "output.figures=false",
                     "study=small_submitit"],
    }
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(kanpde, *args, cwd=root) for name, args in commands.items()}
        results = {name: f.result() for name, f in futures.items()}
    dirs = {"joblib": root / "multirun" / "small", "submitit": root / "multirun" / "small_submitit"}
    return {name: (dirs[name], results[name]) for name in commands}


@pytest.mark.parametrize("launcher", ["joblib", "submitit"])
def test_sweep_writes_one_run_per_override_set(sweeps, launcher: str) -> None:
    sweep_dir, result = sweeps[launcher]
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {p.parent.name for p in sweep_dir.glob("*/metrics.json")}
    # deterministic directories: multirun/<study>/<override_dirname>
    assert runs == (RUNS if launcher == "joblib" else {min(RUNS)})
    for name in runs:
        metrics = json.loads((sweep_dir / name / "metrics.json").read_text())
        assert metrics["status"] == "ok" and len(metrics["run_id"]) == 16
        assert (sweep_dir / name / "solution.h5").is_file() and (sweep_dir / name / "solution.xdmf").is_file()
    if launcher == "joblib":
        assert "Joblib.Parallel(n_jobs=2" in result.stderr + result.stdout


def test_rerun_skips_finished_runs_and_report_aggregates(sweeps, capsys: pytest.CaptureFixture[str]) -> None:
    sweep_dir, _ = sweeps["joblib"]
    stamps = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/metrics.json")}
    # skipping happens in each run, whatever the launcher: the in-process one saves two interpreters
    again = kanpde("-m", *TINY, "study=small", "hydra/launcher=basic", cwd=sweep_dir.parent.parent)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("skipped (force=true runs it again)") + again.stdout.count("skipped (force=true") == 2
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/metrics.json")} == stamps
    # the report command's entry point, in-process (an extra interpreter costs ~10 s of imports here)
    assert report_main([str(sweep_dir), "--out", str(sweep_dir / "report")]) == 0
    out = capsys.readouterr().out
    assert "| poisson2d | KAN [2,3,1] G=5 |" in out and "| poisson2d | MLP [2,3,1] |" in out
    for name in ("summary.md", "summary.csv", "runs.csv", "scaling.png", "time.png", "loss_curves.png"):
        assert (sweep_dir / "report" / name).is_file(), name

