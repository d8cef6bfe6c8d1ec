"""The command line ``python -m kanpde`` (kanpde/__main__.py), run in subprocesses from a scratch directory:
a fast run and its table, one-line errors, sweeps (-m) with the joblib and submitit_local launchers and the
skipping of finished runs, and the docs' worked example of a user problem in one file.

The single runs start together in one module fixture (two at a time), the sweeps in another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kanpde import Sampler, loss_terms
from kanpde.report import main as report_main
from tests.helpers import DOCS_DIR, REPO_ROOT, FunctionModule, code_block, load_script

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

BAD = {
    "unknown_problem": (["problem=nope"], "unknown problem 'nope' (problem=nope); valid: advection1d, allencahn1d"),
    "unknown_model": (["model=nope"], "unknown model 'nope' (model=nope); valid: kan, mlp, modified_mlp"),
    "widths": (["model.widths=[3,10,1]"], "model.widths=[3, 10, 1] does not fit problem poisson2d"),
    "grid_size": (["model.grid_size=0"], "model: grid_size must be an integer >= 1, got 0"),
    "spline_order": (["model.spline_order=0"], "model: spline_order must be an integer >= 1, got 0"),
    "steps": (["trainer.stages=[{optimizer: adam, steps: 0}]"], "trainer.stages[0]: stage steps must be a positive integer"),
    "optimizer": (["trainer.stages=[{optimizer: sgdx, steps: 1}]"], "trainer.stages[0]: unknown optimizer 'sgdx'"),
    "dtype": (["dtype=float16"], "dtype='float16'; valid: ['float32', 'float64']"),
    "unwritable": ([], None),
}
# Each `python -m kanpde` costs ~5 s of imports (torch, scipy.stats, matplotlib). These run as real
# separate commands; the other bad inputs go through the same entry point (kanpde.__main__.cli, the
# function `python -m kanpde` calls) several times inside one extra interpreter.
SEPARATE = {"good", "unknown_problem", "dtype", "unwritable"}

DRIVER = """
import contextlib, io, json, sys
from kanpde.__main__ import cli as main  # the entry point: its checks before Hydra, then Hydra
results = {}
for name, argv in json.loads(sys.argv[1]).items():
    sys.argv = ["kanpde", *argv]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    results[name] = [code, out.getvalue(), err.getvalue()]
print(json.dumps(results))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def _argv(args: list[str], run_dir: Path) -> list[str]:
    return ["debug=fast", *args, f"hydra.run.dir={run_dir}"]


def _invoke(cwd: Path, run_dir: Path, args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "kanpde", *_argv(args, run_dir)]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=240)


def _invoke_many(cwd: Path, jobs: dict[str, tuple[list[str], Path]]) -> dict[str, subprocess.CompletedProcess]:
    argvs = {name: _argv(args, run_dir) for name, (args, run_dir) in jobs.items()}
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argvs)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name: subprocess.CompletedProcess(argvs[name], *results[name]) for name in jobs}


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    cwd = tmp_path_factory.mktemp("cwd")  # not the repository: the CLI must work from any directory
    blocker = cwd / "a_regular_file"
    blocker.write_text("in the way")
    jobs = {"good": ([], cwd / "good")}
    for name, (args, _) in BAD.items():
        jobs[name] = (args, blocker / "sub" if name == "unwritable" else cwd / name)
    shared = {name: job for name, job in jobs.items() if name not in SEPARATE}
    with ThreadPoolExecutor(max_workers=2) as pool:  # the two longest first: the good run and the shared one
        good = pool.submit(_invoke, cwd, jobs["good"][1], jobs["good"][0])
        many = pool.submit(_invoke_many, cwd, shared)
        futures = {name: pool.submit(_invoke, cwd, run_dir, args)
                   for name, (args, run_dir) in jobs.items() if name in SEPARATE - {"good"}}
        done = {"good": good.result()} | {name: f.result() for name, f in futures.items()} | many.result()
    return {name: (done[name], jobs[name][1]) for name in jobs}


def test_fast_run_succeeds_and_prints_the_table(cli) -> None:
    proc, run_dir = cli["good"]
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.split()[:1] == ["model"])
    table = lines[start:]  # the last lines printed are the metrics table
    assert table[0].split() == ["model", "kan", "mlp"]
    heads = [row.split()[0] for row in table if row.split()[0] != "compile"]  # a first run also shows compile time
    assert heads == ["model", "params", "train", "l2_rel", "h1_rel", "linf", "mse", "h1_mse", "residual", "residual", "vs"]
    assert table[1].split() == ["params", "108", "33"]  # 9 edges x (7 + 3 coefficients + w_b + w_s)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = dict(zip(["kan", "mlp"], next(r for r in table if r.startswith("l2_rel")).split()[1:]))
    assert row == {"kan": f"{metrics['l2_rel']:.3e}", "mlp": f"{metrics['baseline']['l2_rel']:.3e}"}
    for name in ("solution.h5", "metrics.json", "solution.png", "baseline_solution.png", "history.png",
                 ".hydra/config.yaml", ".hydra/overrides.yaml"):
        assert (run_dir / name).is_file(), name
    assert "debug=fast" in (run_dir / ".hydra" / "overrides.yaml").read_text()


@pytest.mark.parametrize("name", [n for n, (_, msg) in BAD.items() if msg])
def test_bad_input_gives_one_line_error_before_training(cli, name: str) -> None:
    proc, run_dir = cli[name]
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kanpde: error: "), proc.stderr
    assert BAD[name][1] in lines[0]
    assert "stage 1/" not in proc.stdout  # no training started
    assert not (run_dir / "solution.h5").exists() and not (run_dir / "checkpoint.pt").exists()


@pytest.mark.parametrize("name,group,valid", [("unknown_problem", "problem", ["poisson2d", "custom"]),
                                              ("unknown_model", "model", ["kan", "mlp"])])
def test_unknown_group_option_lists_the_valid_ones(cli, name: str, group: str, valid: list[str]) -> None:
    """One line listing the valid options (not Hydra's 23-line message), before Hydra creates anything."""
    proc, run_dir = cli[name]
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and line.startswith(f"kanpde: error: unknown {group} 'nope'")
    assert all(option in line.split("valid: ")[1].split(", ") for option in valid)
    assert not run_dir.exists()


def test_unwritable_output_directory(cli) -> None:
    """The CLI checks hydra.run.dir before Hydra creates it: one line, exit code 2."""
    proc, run_dir = cli["unwritable"]
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"kanpde: error: output directory {run_dir} cannot be created: {run_dir.parent} is not a writable "
        "directory (not a directory)"]
    assert "stage 1/" not in proc.stdout


# -- sweeps: python -m kanpde -m ... ---------------------------------------------------------------------------

TINY = ["debug=fast", "baseline=null", "model=kan,mlp", "seed=0", "eval.n_per_axis=11",
        "trainer.stages=[{optimizer: adam, steps: 2}]"]
RUNS = {"baseline=null,debug=fast,eval.n_per_axis=11,model=kan,seed=0,trainer.stages=[{optimizer:adam,steps:2}]",
        "baseline=null,debug=fast,eval.n_per_axis=11,model=mlp,seed=0,trainer.stages=[{optimizer:adam,steps:2}]"}


def _kanpde(*args: str, cwd: Path, module: str = "kanpde") -> subprocess.CompletedProcess:
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
        futures = {name: pool.submit(_kanpde, *args, cwd=root) for name, args in commands.items()}
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
    again = _kanpde("-m", *TINY, "study=small", "hydra/launcher=basic", cwd=sweep_dir.parent.parent)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("skipped (force=true runs it again)") + again.stdout.count("skipped (force=true") == 2
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/metrics.json")} == stamps
    # the report command's entry point, in-process (an extra interpreter costs ~10 s of imports here)
    assert report_main([str(sweep_dir), "--out", str(sweep_dir / "report")]) == 0
    out = capsys.readouterr().out
    assert "| poisson2d | KAN [2,3,1] G=5 |" in out and "| poisson2d | MLP [2,3,1] |" in out
    for name in ("summary.md", "summary.csv", "runs.csv", "scaling.png", "time.png", "loss_curves.png"):
        assert (sweep_dir / "report" / name).is_file(), name


# -- the docs' worked example: a user problem in one file ---------------------------------------------------

EXAMPLES = REPO_ROOT / "examples"
WORKED_EXAMPLE = DOCS_DIR / "problems.md"  # "Adding a problem": the block that starts "# reaction_diffusion.py"


@pytest.mark.parametrize("source", ["docs", "examples"])
def test_user_problem_in_one_file_has_an_exact_solution(source: str, tmp_path: Path) -> None:
    """The worked example's exact solution satisfies its PDE and its Neumann, Robin and initial conditions."""
    module = "reaction_diffusion"
    if source == "docs":
        (tmp_path / f"{module}.py").write_text(code_block(WORKED_EXAMPLE, f"# {module}.py"))
    path = tmp_path / f"{module}.py" if source == "docs" else EXAMPLES / f"{module}.py"
    problem = load_script(path, module).ReactionDiffusion(k=0.5)
    batch = problem.sample(Sampler("sobol", seed=0), 64, 96)
    terms = loss_terms(FunctionModule(problem.exact), problem, batch)
    assert max(t.item() for t in terms.values()) <= 1e-24


def test_user_problem_in_one_file_runs_through_the_cli(tmp_path: Path) -> None:
    """The docs' worked example, verbatim, as a file: `python -m kanpde problem=custom problem._target_=...`."""
    module = "reaction_diffusion"
    (tmp_path / f"{module}.py").write_text(code_block(WORKED_EXAMPLE, f"# {module}.py"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "kanpde", "problem=custom", f"problem._target_={module}.ReactionDiffusion",
           "+problem.k=0.5", "debug=fast", "output.figures=false", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["problem"] == module and "l2_rel_final" in metrics and "l2_rel" in metrics["baseline"]
    assert "l2_rel" in proc.stdout



# -- run files are data; one run per output directory --------------------------------------------------------------

def test_crafted_checkpoint_and_locked_directory_give_one_line_and_exit_2(tmp_path: Path) -> None:
    """`resume=true` with a checkpoint whose hard-constraint network is subprocess.Popen (a real command that
    would create a file), and a run into a directory another process holds: each one line, exit code 2."""
    import torch

    from kanpde.app.checkpoint import output_lock, run_id
    from tests.helpers import make_cfg

    crafted, locked, reached = tmp_path / "crafted", tmp_path / "locked", tmp_path / "reached"
    crafted.mkdir()
    config = {"net": {"class": "subprocess:Popen", "config": {"args": ["touch", str(reached)]}},
              "problem": {"class": "kanpde.problems.poisson2d:Poisson2D", "kwargs": {}}}
    torch.save({"stage": 0, "run_id": run_id(make_cfg("debug=fast")), "model_class": "kanpde.models.hard:HardDirichlet",
                "model_config": config, "state_dict": {}, "history": {"steps": [], "stages": []},
                "torch_rng": torch.get_rng_state()}, crafted / "checkpoint.pt")
    with output_lock(locked):  # held by this process while the CLI runs in another
        results = _invoke_many(tmp_path, {"crafted": (["resume=true"], crafted), "locked": ([], locked)})
    expected = {"crafted": f"resume=true: {crafted / 'checkpoint.pt'}: saved class 'subprocess:Popen' is not allowed",
                "locked": f"output directory {locked} is in use by another run (process {os.getpid()})"}
    for name, message in expected.items():
        proc = results[name]
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("kanpde: error: "), proc.stderr
        assert message in lines[0]
        assert "stage 1/" not in proc.stdout
    assert not reached.exists()
    assert not (crafted / "solution.h5").exists() and not (locked / "solution.h5").exists()
