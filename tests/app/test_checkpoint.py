"""Restartable runs (kanpde.app.checkpoint): stable run ids, skipping
finished runs, resuming from stage checkpoints bit for bit, checkpoints readable with torch.load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from kanpde import KAN, load_run
from kanpde.app.checkpoint import LOCK_NAME, finished_run, output_lock, resume_state, run_id
from kanpde.app.config import ConfigError
from kanpde.app.run import RunFailed, run
from tests.helpers import CRAFTED, CRAFTED_KAN_CONFIG, crafted_model_cases, SineLine, fast_cfg, spy_on_callables

# debug=fast with three stages (Adam, L-BFGS, L-BFGS + grid extension) and a resampling stage, so
# that resuming has to restore a refined grid, the point draws and the history.
STAGES = (
    "trainer.stages=[{optimizer: adam, steps: 4}, {optimizer: lbfgs, steps: 2, grid_size: 5},"
    " {optimizer: lbfgs, steps: 2, grid_size: 7, resample: true}]"
)


class Interrupt(Exception):
    pass


def test_run_id_ignores_output_switches_and_follows_results() -> None:
    base = run_id(fast_cfg())
    assert len(base) == 16
    assert run_id(fast_cfg("force=true", "resume=true", "threads=1", "study=x", "output.figures=true")) == base
    assert run_id(fast_cfg("seed=1")) != base
    assert run_id(fast_cfg("model.grid_size=3")) != base
    assert run_id(fast_cfg()) == base  # stable across compositions


@pytest.mark.slow

def test_run_id_follows_the_reference_data_file_and_not_an_absent_one(tmp_path: Path) -> None:
    from omegaconf import open_dict

    cfg = fast_cfg()
    with open_dict(cfg):
        del cfg.problem["reference"]
    assert run_id(fast_cfg()) == run_id(cfg)  # problem.reference=null: the ids of runs made before the key
    data = tmp_path / "ref.csv"
    data.write_text("x,y,u\n0,0,0\n")
    first = run_id(fast_cfg(f"problem.reference={data}"))
    assert first != run_id(fast_cfg()) and first == run_id(fast_cfg(f"problem.reference={data}"))
    data.write_text("x,y,u\n0,0,1\n")  # new data under the same name: another run, not a finished one
    assert run_id(fast_cfg(f"problem.reference={data}")) != first

def test_finished_run_is_skipped_unless_forced(tmp_path: Path) -> None:
    cfg = fast_cfg("baseline=null")
    first = run(cfg, tmp_path)
    assert first["run_id"] == run_id(cfg)
    assert finished_run(tmp_path, run_id(cfg)) == first
    stamp = (tmp_path / "metrics.json").stat().st_mtime_ns
    calls: list[int] = []
    again = run(cfg, tmp_path, on_stage_end=lambda *a: calls.append(1))
    assert again == first and calls == [] and (tmp_path / "metrics.json").stat().st_mtime_ns == stamp
    # another configuration in the same directory is not "finished"
    assert finished_run(tmp_path, run_id(fast_cfg("baseline=null", "seed=3"))) is None
    forced = run(fast_cfg("baseline=null", "force=true"), tmp_path, on_stage_end=lambda *a: calls.append(1))
    assert calls and forced["mse"] == first["mse"]


def test_failed_or_missing_runs_are_not_finished(tmp_path: Path) -> None:
    assert finished_run(tmp_path, "abc") is None
    (tmp_path / "metrics.json").write_text(json.dumps({"run_id": "abc", "status": "diverged"}))
    (tmp_path / "solution.h5").write_bytes(b"")
    assert finished_run(tmp_path, "abc") is None
    (tmp_path / "metrics.json").write_text("{not json")
    assert finished_run(tmp_path, "abc") is None


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("full")
    return out, run(fast_cfg(STAGES), out)


@pytest.mark.parametrize("stop_after", [("model", 1), ("baseline", 0)])
def test_resume_gives_the_uninterrupted_result(uninterrupted, tmp_path: Path, stop_after: tuple[str, int]) -> None:
    full_dir, full = uninterrupted

    def interrupt(name: str, stage: int, model, history) -> None:
        if (name, stage) == stop_after:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(fast_cfg(STAGES), tmp_path / "cut", on_stage_end=interrupt)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    seen: list[tuple[str, int]] = []
    resumed = run(fast_cfg(STAGES, "resume=true"), tmp_path / "cut", on_stage_end=lambda n, s, m, h: seen.append((n, s)))
    name, stage = stop_after
    # the checkpoint of the stage that was cut is written before the callback raised: finished stages
    # (and the whole main model when the baseline was cut) are not trained again
    expect = [("model", s) for s in range(3) if name == "model" and s > stage]
    expect += [("baseline", s) for s in range(3) if name == "model" or s > stage]
    assert seen == expect
    for a, b in ((full, resumed), (full["baseline"], resumed["baseline"])):
        for key in ("l2", "l2_rel", "h1", "h1_rel", "linf", "mse", "h1_mse", "n_params"):
            assert a[key] == b[key], key  # bit-identical, not approximately equal
    with h5py.File(full_dir / "solution.h5") as f, h5py.File(tmp_path / "cut" / "solution.h5") as g:
        for group in ("main", "baseline"):
            for key in ("loss", "pde", "stage", "step"):
                np.testing.assert_array_equal(f[f"{group}/history/{key}"][()], g[f"{group}/history/{key}"][()])
            for key in f[f"{group}/model/state"]:
                np.testing.assert_array_equal(f[f"{group}/model/state/{key}"][()], g[f"{group}/model/state/{key}"][()])


def test_checkpoint_of_another_config_is_not_resumed(tmp_path: Path) -> None:
    run(fast_cfg("baseline=null"), tmp_path)
    (tmp_path / "metrics.json").unlink()
    other = run(fast_cfg("baseline=null", "seed=5", "resume=true"), tmp_path / "ref")
    resumed = run(fast_cfg("baseline=null", "seed=5", "resume=true"), tmp_path)
    assert resumed["mse"] == other["mse"]


def test_checkpoints_load_with_torch_load(fast_run) -> None:
    out, _, _ = fast_run
    ckpt = torch.load(out / "checkpoint.pt")  # weights_only loading works: plain containers and tensors
    assert ckpt["stage"] == 1 and ckpt["model_class"] == "kanpde.models.kan:KAN"
    model = KAN(**ckpt["model_config"], dtype=torch.float64)
    model.load_state_dict(ckpt["state_dict"])
    assert model.grid_size == 7 and len(ckpt["history"]["steps"]) == 7
    loaded = load_run(out / "solution.h5").model
    x = torch.rand(20, 2, dtype=torch.float64)
    assert torch.equal(model(x), loaded(x))


# -- a checkpoint is data: crafted checkpoints are refused before anything they name is reached -----------------

REAL_SYSTEM = os.system  # before the spies replace it
KAN_CONFIG = CRAFTED_KAN_CONFIG


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    return spy_on_callables(monkeypatch)


def _craft_checkpoint(path: Path, rid: str, model_class: str, config: dict) -> None:
    torch.save({"stage": 0, "run_id": rid, "model_class": model_class, "model_config": config, "state_dict": {},
                "history": {"steps": [], "stages": []}, "torch_rng": torch.get_rng_state()}, path)


@pytest.mark.parametrize("model_class, config, named", crafted_model_cases())
def test_crafted_checkpoint_naming_a_callable_is_refused_before_it_is_reached(
    model_class: str, config: dict, named: str, spies: list, tmp_path: Path
) -> None:
    path = tmp_path / "checkpoint.pt"
    _craft_checkpoint(path, "abc", model_class, config)
    with pytest.raises(ConfigError) as info:
        resume_state(path, "abc", torch.float64, torch.device("cpu"))
    message = str(info.value)
    assert f"saved class '{named}' is not allowed" in message and "\n" not in message
    assert spies == []


@pytest.mark.slow
def test_resume_refuses_a_crafted_checkpoint_before_training(spies: list, tmp_path: Path) -> None:
    """Through run(cfg): the baseline's checkpoint is read after the main model's training, so every
    checkpoint is checked first; nothing is trained or written."""
    cfg = fast_cfg("resume=true")
    _craft_checkpoint(tmp_path / "baseline_checkpoint.pt", run_id(cfg), "kanpde.models.hard:HardDirichlet",
                      {"net": {"class": "subprocess:Popen", "config": {"args": ["echo", CRAFTED]}},
                       "problem": {"class": "kanpde.problems.poisson2d:Poisson2D", "kwargs": {}}})
    stages: list = []
    with pytest.raises(ConfigError, match=r"baseline_checkpoint.pt: saved class 'subprocess:Popen' is not allowed"):
        run(cfg, tmp_path, on_stage_end=lambda *a: stages.append(a))
    assert stages == [] and spies == [] and not (tmp_path / "checkpoint.pt").exists()


def test_a_pickled_callable_in_a_checkpoint_is_refused_in_one_line(spies: list, tmp_path: Path) -> None:
    """A checkpoint is unpickled with weights_only=True: a pickle that would call os.system is refused."""
    class Payload:
        def __reduce__(self):
            return REAL_SYSTEM, (f"echo {CRAFTED}",)

    path = tmp_path / "checkpoint.pt"
    torch.save({"stage": 0, "run_id": "abc", "payload": Payload()}, path)  # the file names posix.system
    with pytest.raises(ConfigError, match=r"cannot be read as a checkpoint: .*GLOBAL posix.system") as info:
        resume_state(path, "abc", torch.float64, torch.device("cpu"))
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value) and spies == []
    path.write_bytes(b"not a checkpoint" * 8)  # a damaged file: one line too
    with pytest.raises(ConfigError, match=r"cannot be read as a checkpoint: \S") as info:
        resume_state(path, "abc", torch.float64, torch.device("cpu"))
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_resume_of_a_run_with_a_problem_of_its_own_and_hard_constraints(tmp_path: Path) -> None:
    """The class the run's configuration names is allowed in its own checkpoint (and figures): resume works."""
    overrides = ("problem=custom", f"problem._target_={SineLine.__module__}.{SineLine.__qualname__}", "hard_bc=true",
                 "baseline=null", "trainer.stages=[{optimizer: adam, steps: 2}, {optimizer: adam, steps: 2}]",
                 "output.figures=true")
    cfg = fast_cfg(*overrides)

    class Interrupted(Exception):
        pass

    def stop(name: str, stage: int, *_: object) -> None:
        if stage == 0:
            raise Interrupted

    with pytest.raises(Interrupted):
        run(cfg, tmp_path, on_stage_end=stop)
    seen: list[int] = []
    metrics = run(fast_cfg(*overrides, "resume=true"), tmp_path, on_stage_end=lambda n, s, *a: seen.append(s))
    assert seen == [1] and metrics["status"] == "ok" and (tmp_path / "solution.png").is_file()
    assert isinstance(load_run(tmp_path, allow=[SineLine]).model.problem, SineLine)


# -- one run per output directory ---------------------------------------------------------------------------------

def test_a_second_run_into_a_locked_directory_is_refused_at_once(tmp_path: Path) -> None:
    stages: list = []
    with output_lock(tmp_path):
        with pytest.raises(ConfigError, match=rf"output directory {tmp_path} is in use by another run \(process {os.getpid()}\)") as info:
            run(fast_cfg(), tmp_path, on_stage_end=lambda *a: stages.append(a))
        assert "\n" not in str(info.value)
    assert stages == [] and sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]
    with output_lock(tmp_path):  # released with the first holder
        pass


HOLD = """
import sys, time
from kanpde.app.checkpoint import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_lock_of_a_killed_run_never_blocks(tmp_path: Path) -> None:
    """The lock is the kernel's (flock): kill -9 of its holder releases it; the lock file left behind is harmless."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=rf"in use by another run \(process {holder.pid}\)"):
            with output_lock(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert (tmp_path / LOCK_NAME).is_file()
    with output_lock(tmp_path):
        pass


RUN_UNTIL_FIRST_STAGE = """
import sys, time, torch
torch.set_num_threads(1)
from kanpde.app.run import run
from tests.helpers import fast_cfg

def pause(name, stage, *_):
    if name == "model" and stage == 1:  # the checkpoint of stage 1 is written before this hook
        print("stage", flush=True)
        time.sleep(600)

run(fast_cfg(*sys.argv[2:]), sys.argv[1], on_stage_end=pause)
"""


@pytest.mark.slow
@pytest.mark.subprocess
def test_resume_after_kill_9_gives_the_uninterrupted_result(uninterrupted, tmp_path: Path) -> None:
    """A run killed with SIGKILL in the middle leaves its lock file and checkpoint; resume=true is not blocked
    and ends where an uninterrupted run ends."""
    _, full = uninterrupted
    proc = subprocess.Popen([sys.executable, "-c", RUN_UNTIL_FIRST_STAGE, str(tmp_path), STAGES], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout.readline().strip() == "stage"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert (tmp_path / LOCK_NAME).is_file() and (tmp_path / "checkpoint.pt").is_file()
    assert not (tmp_path / "metrics.json").exists()
    seen: list[tuple[str, int]] = []
    resumed = run(fast_cfg(STAGES, "resume=true"), tmp_path, on_stage_end=lambda n, s, m, h: seen.append((n, s)))
    assert seen[0] == ("model", 2)
    assert resumed["mse"] == full["mse"] and resumed["baseline"]["mse"] == full["baseline"]["mse"]


def test_diverged_stage_keeps_the_good_checkpoint_and_resume_continues(uninterrupted, tmp_path: Path) -> None:
    """A NaN in the baseline after its stage 0 makes its stage 1 diverge: baseline_checkpoint.pt stays the
    stage-0 one (it used to be overwritten by the diverged model, so resume=true started over), and
    resume=true continues from it to the uninterrupted result, bit for bit."""
    full_dir, full = uninterrupted

    def poison(name: str, stage: int, model, history) -> None:
        if (name, stage) == ("baseline", 0):
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))

    out = tmp_path / "cut"
    with pytest.raises(RunFailed, match="non-finite loss"):
        run(fast_cfg(STAGES), out, on_stage_end=poison)
    assert json.loads((out / "metrics.json").read_text())["baseline"]["status"] == "diverged"
    ckpt = torch.load(out / "baseline_checkpoint.pt")
    assert ckpt["stage"] == 0 and all(bool(torch.isfinite(v).all()) for v in ckpt["state_dict"].values())
    seen: list[tuple[str, int]] = []
    resumed = run(fast_cfg(STAGES, "resume=true"), out, on_stage_end=lambda n, s, m, h: seen.append((n, s)))
    assert seen == [("baseline", 1), ("baseline", 2)]
    for key in ("l2", "l2_rel", "h1", "linf", "mse", "n_params"):
        assert resumed["baseline"][key] == full["baseline"][key], key
        assert resumed[key] == full[key], key
