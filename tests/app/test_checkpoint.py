"""Restartable runs: stable run ids, skipping finished runs, resuming from stage checkpoints; XDMF sidecar."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from kanpde.app.run import finished_run, run, run_id
from kanpde.outputs.xdmf import write_xdmf

# debug=fast with three stages (Adam, L-BFGS, L-BFGS + grid extension) and a resampling stage, so
# that resuming has to restore a refined grid, the point draws and the history.
STAGES = (
    "trainer.stages=[{optimizer: adam, steps: 4}, {optimizer: lbfgs, steps: 2, grid_size: 5},"
    " {optimizer: lbfgs, steps: 2, grid_size: 7, resample: true}]"
)


def make_cfg(*overrides: str) -> DictConfig:
    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        return compose(config_name="config", overrides=["debug=fast", "device=cpu", "output.figures=false", *overrides])


class Interrupt(Exception):
    pass


def test_run_id_ignores_output_switches_and_follows_results() -> None:
    base = run_id(make_cfg())
    assert len(base) == 16
    assert run_id(make_cfg("force=true", "resume=true", "threads=1", "study=x", "output.figures=true")) == base
    assert run_id(make_cfg("seed=1")) != base
    assert run_id(make_cfg("model.grid_size=3")) != base
    assert run_id(make_cfg()) == base  # stable across compositions


def test_finished_run_is_skipped_unless_forced(tmp_path: Path) -> None:
    cfg = make_cfg("baseline=null")
    first = run(cfg, tmp_path)
    assert first["run_id"] == run_id(cfg)
    assert finished_run(tmp_path, run_id(cfg)) == first
    stamp = (tmp_path / "metrics.json").stat().st_mtime_ns
    calls: list[int] = []
    again = run(cfg, tmp_path, on_stage_end=lambda *a: calls.append(1))
    assert again == first and calls == [] and (tmp_path / "metrics.json").stat().st_mtime_ns == stamp
    # another configuration in the same directory is not "finished"
    assert finished_run(tmp_path, run_id(make_cfg("baseline=null", "seed=3"))) is None
    forced = run(make_cfg("baseline=null", "force=true"), tmp_path, on_stage_end=lambda *a: calls.append(1))
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
    return out, run(make_cfg(STAGES), out)


@pytest.mark.parametrize("stop_after", [("model", 1), ("baseline", 0)])
def test_resume_gives_the_uninterrupted_result(uninterrupted, tmp_path: Path, stop_after: tuple[str, int]) -> None:
    full_dir, full = uninterrupted

    def interrupt(name: str, stage: int, model, history) -> None:
        if (name, stage) == stop_after:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(make_cfg(STAGES), tmp_path / "cut", on_stage_end=interrupt)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    seen: list[tuple[str, int]] = []
    resumed = run(make_cfg(STAGES, "resume=true"), tmp_path / "cut", on_stage_end=lambda n, s, m, h: seen.append((n, s)))
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
    run(make_cfg("baseline=null"), tmp_path)
    (tmp_path / "metrics.json").unlink()
    other = run(make_cfg("baseline=null", "seed=5", "resume=true"), tmp_path / "ref")
    resumed = run(make_cfg("baseline=null", "seed=5", "resume=true"), tmp_path)
    assert resumed["mse"] == other["mse"]


def _check_xdmf(xdmf: Path, h5: Path, dims: int) -> None:
    root = ET.parse(xdmf).getroot()  # well-formed XML
    assert root.tag == "Xdmf" and root.get("Version") == "3.0"
    grids = root.findall("./Domain/Grid")
    assert [g.get("Name").split()[0] for g in grids] == ["main", "baseline"]
    with h5py.File(h5) as f:
        coords = [str(c) for c in f.attrs["coords"]]
        for grid in grids:
            group = grid.get("Name").split()[0]
            topo = grid.find("Topology")
            assert topo.get("TopologyType") == f"{dims}DRectMesh"
            shape = tuple(int(n) for n in topo.get("Dimensions").split())
            assert shape == f[f"{group}/fields/u/predicted"].shape
            geo = grid.find("Geometry")
            assert geo.get("GeometryType") == "VXVYVZ"[: 2 * dims]
            axes = [item.text.split(":")[1] for item in geo.findall("DataItem")]
            assert axes == [f"/{group}/axes/{c}" for c in reversed(coords)]
            items = grid.findall(".//DataItem")
            names = {a.get("Name") for a in grid.findall("Attribute")}
            assert names == {"u_predicted", "u_exact", "u_error"}
            for item in items:
                file_name, _, path = item.text.partition(":")
                assert (xdmf.parent / file_name).resolve() == h5.resolve()
                assert path in f, path  # every reference points at an existing dataset
                assert tuple(int(n) for n in item.get("Dimensions").split()) == f[path].shape
                assert int(item.get("Precision")) == f[path].dtype.itemsize


def test_run_writes_a_well_formed_xdmf_sidecar(tmp_path: Path) -> None:
    run(make_cfg(), tmp_path)
    _check_xdmf(tmp_path / "solution.xdmf", tmp_path / "solution.h5", 2)
    try:
        import xarray as xr
    except ImportError:
        return
    # the README's xarray reading, verbatim
    with h5py.File(tmp_path / "solution.h5") as f:
        g = f["main"]
        coords = {c: g[f"axes/{c}"][()] for c in f.attrs["coords"]}
        ds = xr.Dataset({f"{out}_{k}": (tuple(coords), g[f"fields/{out}/{k}"][()])
                         for out in g["fields"] for k in ("predicted", "exact", "error")}, coords=coords)
    assert ds.u_error.dims == ("x", "y") and ds.u_error.shape == (21, 21)
    np.testing.assert_array_equal(ds.u_predicted.sel(x=ds.x[3], y=ds.y[5]), ds.u_predicted.values[3, 5])


def test_xdmf_in_3d_and_none_in_1d(tmp_path: Path) -> None:
    from kanpde.evaluate import evaluate
    from kanpde.outputs.run_file import RunResult, save_run
    from kanpde.training.fit import History

    import torch

    from kanpde import MLP, Box, Dirichlet, Problem

    class Cube(Problem):
        coords = ("x", "y", "z")

        def __init__(self, dim: int = 3) -> None:
            self.coords = ("x", "y", "z")[:dim]
            super().__init__(Box([0.0] * dim, [1.0] * dim, self.coords), [Dirichlet("all", 0.0)])

        def pde(self, x, u):
            return u.laplacian()

        def exact(self, x):
            return x.sum(dim=1)

    for dim in (3, 1):
        problem = Cube(dim)
        model = MLP([dim, 4, 1]).double()
        ev = evaluate(model, problem, 5)
        result = RunResult("mlp", model, History(), ev, {"mse": 1.0})
        h5 = save_run(tmp_path / f"d{dim}" / "solution.h5", "cube", problem.coords, ("u",), result, result)
        out = write_xdmf(h5)
        if dim == 3:
            _check_xdmf(out, h5, 3)
        else:
            assert out is None and not (tmp_path / "d1" / "solution.xdmf").exists()


def test_paper_fig33_architectures_compose_and_build(tmp_path: Path) -> None:
    from kanpde.app.run import _build

    def compose_study(*overrides: str, hydra: bool = False) -> DictConfig:
        with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)

    swept = {}
    for experiment in ("paper_fig33", "paper_fig33_small"):
        base = compose_study(f"experiment={experiment}", hydra=True)
        archs = swept[experiment] = str(base.hydra.sweeper.params.arch).split(",")
        assert str(base.hydra.sweeper.params.seed) == "0,1" and base.study == experiment
        assert set(archs) <= set(base.archs) and base.baseline is None and base.eval.every_stage
        for arch in archs:
            cfg = compose_study(f"experiment={experiment}", f"arch={arch}")
            built = _build(cfg, tmp_path)
            assert built.model_cfg._target_.endswith(arch.split("_")[0].upper())
            assert built.baseline_cfg is None
    assert len(swept["paper_fig33"]) == 16 and set(swept["paper_fig33_small"]) < set(swept["paper_fig33"])


def test_paper_fig33_small_end_to_end_in_ci_size(tmp_path: Path) -> None:
    """One KAN of the reduced study with its grid extension, shrunk further: a point per grid."""
    from kanpde.outputs.sweep import collect

    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=paper_fig33_small", "arch=kan_2_5_1", "device=cpu",
                   "output.figures=false", "trainer.n_interior=64", "trainer.n_boundary=32",
                   "eval.n_per_axis=11", "trainer.stages=[{optimizer: lbfgs, steps: 1, grid_size: 3},"
                   " {optimizer: lbfgs, steps: 1, grid_size: 5}, {optimizer: lbfgs, steps: 1, grid_size: 10}]"])
    metrics = run(cfg, tmp_path / "run")
    assert [s["grid_size"] for s in metrics["stages"]] == [3, 5, 10] and metrics["grid_size"] == 10
    assert metrics["stages"][-1]["mse"] == metrics["mse"]
    points = collect(tmp_path)
    assert [p.grid_size for p in points] == [3, 5, 10] and [p.final for p in points] == [False, False, True]


def test_run_starts_the_kernels_before_the_first_timed_training(tmp_path: Path, monkeypatch) -> None:
    """numba's one-off start (~0.15 s) happens while the run is built, not inside the KAN's train time."""
    import kanpde.app.run as run_module

    events: list[str] = []
    warm_up, fit = run_module.warm_up, run_module.fit
    monkeypatch.setattr(run_module, "warm_up", lambda: events.append("warm_up") or warm_up())
    monkeypatch.setattr(run_module, "fit", lambda *a, **k: events.append("fit") or fit(*a, **k))
    run(make_cfg("baseline=null", "output.checkpoint=false"), tmp_path / "run")
    assert events == ["warm_up", "fit"]
