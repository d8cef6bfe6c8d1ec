"""Restartable runs (kanpde.app.checkpoint): stable run ids, skipping
finished runs, resuming from stage checkpoints bit for bit, checkpoints readable with torch.load."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from kanpde import KAN, load_run
from kanpde.app.checkpoint import finished_run, run_id
from kanpde.app.run import RunFailed, run
from tests.helpers import fast_cfg

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
