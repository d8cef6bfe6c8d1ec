"""A user's problem from a file (kanpde.app.problem_file, wired in kanpde.app.config):
``problem._target_=path/to/my_pde.py:MyProblem`` from any directory, one-line errors before any training, and
a run that records the class (``kanpde_user.<stem>:<Class>``), never the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml

from kanpde.app.config import ConfigError
from kanpde.app.problem_file import class_path, is_file_target, load_class, loaded_class
from kanpde.app.run import run
from tests.helpers import fast_cfg

SOURCE = '''
import math

import torch

import kanpde


class MyProblem(kanpde.Problem):
    """u_xx + u_yy = f on [-1, 1]^2 with u = sin(k pi x) sin(k pi y), zero on the boundary."""

    coords = ("x", "y")

    def __init__(self, k: int = 1) -> None:
        self.k = int(k)
        super().__init__(kanpde.Box([-1.0, -1.0], [1.0, 1.0], self.coords), [kanpde.Dirichlet("all", 0.0)])

    def pde(self, x, u):
        return u.laplacian() + 2 * (self.k * math.pi) ** 2 * self.exact(x)

    def exact(self, x):
        return torch.sin(self.k * math.pi * x[:, 0]) * torch.sin(self.k * math.pi * x[:, 1])


class NotAProblem:
    pass
'''


@pytest.fixture
def problem_file(tmp_path: Path) -> Path:
    path = tmp_path / "user code" / "my_pde.py"  # a space in the path, outside any package
    path.parent.mkdir()
    path.write_text(SOURCE)
    return path


def test_file_targets_are_told_from_module_targets() -> None:
    assert is_file_target("my_pde.py:MyProblem") and is_file_target("../a/b.py") and is_file_target(r"C:\a\b.py:P")
    assert not is_file_target("kanpde.problems.poisson2d.Poisson2D") and not is_file_target(None)
    assert class_path("some/dir/my_pde.py:MyProblem") == "kanpde_user.my_pde:MyProblem"


def test_the_class_loads_from_any_directory(problem_file: Path, tmp_path: Path, monkeypatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cls = load_class("../user code/my_pde.py:MyProblem")
    problem = cls(k=2)
    assert problem.name == "my_pde" and problem.k == 2
    assert problem.spec["class"] == class_path("whatever/my_pde.py:MyProblem") == "kanpde_user.my_pde:MyProblem"
    assert load_class("my_pde.py:MyProblem", base=problem_file.parent).__name__ == "MyProblem"
    assert loaded_class("kanpde_user.my_pde:MyProblem").__module__ == "kanpde_user.my_pde"


def test_recorded_names_never_import_anything(problem_file: Path) -> None:
    """Only a class the configuration loaded in this process is found; other names -- a module under the
    user package that was never loaded, any other module -- give None without an import."""
    load_class(f"{problem_file}:MyProblem")
    before = set(sys.modules)
    assert loaded_class("kanpde_user.never_loaded:MyProblem") is None
    assert loaded_class("os:system") is None and loaded_class("subprocess:run") is None
    assert loaded_class("kanpde_user.my_pde:NotThere") is None
    assert set(sys.modules) == before
    import importlib

    with pytest.raises(ImportError):  # the user package has no search path: no file is ever found in it
        importlib.import_module("kanpde_user.my_pde_other")


BAD_FILES = {
    "missing file": (None, "nope.py:MyProblem", "no such file: "),
    "no class": (SOURCE, "my_pde.py", "names a file but no class: write "),
    "no such class": (SOURCE, "my_pde.py:Other", "defines no Other; its Problem subclasses: MyProblem"),
    "not a problem": (SOURCE, "my_pde.py:NotAProblem", "NotAProblem in "),
    "syntax error": ("x = 1\ndef broken(:\n    pass\n", "my_pde.py:MyProblem", ", line 2: "),
    "raises": ("import math\nraise RuntimeError('no licence server')\n", "my_pde.py:MyProblem",
               "my_pde.py, line 2 raised RuntimeError: no licence server"),
    "import error": ("import not_a_module_anywhere\n", "my_pde.py:MyProblem", "raised ModuleNotFoundError"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_problem_files_give_one_line_before_training(case: str, tmp_path: Path, monkeypatch) -> None:
    source, target, expected = BAD_FILES[case]
    if source is not None:
        (tmp_path / "my_pde.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    import kanpde.app.run as run_module

    monkeypatch.setattr(run_module, "fit", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ConfigError) as info:
        run(fast_cfg(f"problem._target_={target}"), output_dir=tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"problem._target_={target}: ") and expected in message
    assert "\n" not in message
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.slow
def test_a_run_records_the_class_not_the_file_and_resumes(problem_file: Path, tmp_path: Path) -> None:
    """End to end with hard constraints: metrics name the problem by its stem, the run file's configuration and
    the model's problem spec carry kanpde_user.my_pde:MyProblem and no path, and resume=true finds the class."""
    target = f"{problem_file}:MyProblem"
    overrides = (f"problem._target_={target}", "+problem.k=1", "baseline=null", "hard_bc=true")
    metrics = run(fast_cfg(*overrides), output_dir=tmp_path / "run")
    assert metrics["problem"] == "my_pde" and metrics["status"] == "ok"
    with h5py.File(tmp_path / "run" / "solution.h5") as f:
        stored = yaml.safe_load(f["config"].attrs["yaml"])
        model_config = json.loads(f["main/model"].attrs["config"])
    assert stored["problem"] == {"_target_": "kanpde_user.my_pde:MyProblem", "k": 1, "reference": None}
    assert model_config["problem"]["class"] == "kanpde_user.my_pde:MyProblem"
    assert str(problem_file.parent) not in json.dumps(model_config)
    resumed = run(fast_cfg(*overrides, "resume=true", "force=true"), output_dir=tmp_path / "run")
    assert resumed["l2_rel"] == metrics["l2_rel"]


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_cli_runs_a_problem_file_from_another_directory(problem_file: Path, tmp_path: Path) -> None:
    """`python -m kanpde problem._target_=../user code/my_pde.py:MyProblem` from a sibling directory, with
    Hydra changing into the run directory (the path stays relative to where the command started);
    a bad class name is one line on stderr and exit code 2."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    common = ["debug=fast", "baseline=null", "output.figures=false", "hydra.job.chdir=true"]
    good = subprocess.run([sys.executable, "-m", "kanpde", "problem._target_=../user code/my_pde.py:MyProblem",
                           *common, f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["problem"] == "my_pde"
    bad = subprocess.run([sys.executable, "-m", "kanpde", "problem._target_=../user code/my_pde.py:Nope", *common,
                          f"hydra.run.dir={tmp_path / 'bad'}"], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("kanpde: error: problem._target_=../user code/my_pde.py:Nope: ")
    assert len([line for line in bad.stderr.splitlines() if line.startswith("kanpde:")]) == 1
