"""The run file (kanpde.io.run_file): the solution.h5 layout of a run read with plain h5py, load_run
rebuilding models that reproduce the saved fields, save/load in 1-D and 3-D, missing and foreign files."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from kanpde import KAN, MLP, load_run
from tests.helpers import NORMS, SineCube, SineLine, save_small_run


@pytest.mark.parametrize("problem_cls,widths,n", [(SineLine, [1, 3, 1], 33), (SineCube, [3, 3, 1], 9)])
def test_save_load_in_1d_and_3d(problem_cls, widths: list[int], n: int, tmp_path: Path) -> None:
    problem = problem_cls()
    path = save_small_run(problem, widths, n, tmp_path / "solution.h5")
    loaded = load_run(path)
    shape = (n,) * problem.dim
    assert loaded.coords == problem.coords and loaded.baseline is None and loaded.config_yaml is None
    assert loaded.main.fields["u"]["predicted"].shape == shape
    axes = [loaded.main.axes[c] for c in problem.coords]
    mesh = np.meshgrid(*axes, indexing="ij")
    pts = np.stack([m.ravel() for m in mesh], axis=1)
    np.testing.assert_allclose(loaded.main(pts).numpy().reshape(shape), loaded.main.fields["u"]["predicted"],
                               rtol=0, atol=1e-12)
    exact = problem.exact(torch.from_numpy(pts)).numpy().reshape(shape)
    np.testing.assert_allclose(loaded.main.fields["u"]["exact"], exact, rtol=0, atol=1e-15)


def test_load_run_rejects_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no kanpde run file"):
        load_run(tmp_path / "nothing.h5")
    with pytest.raises(FileNotFoundError):
        load_run(tmp_path)  # a directory without solution.h5
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(ValueError, match="not a kanpde run file"):
        load_run(tmp_path / "other.h5")


def test_hdf5_layout_with_plain_h5py(fast_run) -> None:
    out, metrics, _ = fast_run
    with h5py.File(out / "solution.h5", "r") as f:
        assert f.attrs["format"] == "kanpde-run" and int(f.attrs["format_version"]) == 2
        assert f.attrs["problem"] == "poisson2d"
        assert list(f.attrs["coords"]) == ["x", "y"] and list(f.attrs["outputs"]) == ["u"]
        config = yaml.safe_load(f["config"].attrs["yaml"])
        assert config["model"]["widths"] == [None, 3, None] and config["eval"]["n_per_axis"] == 21
        assert set(f) == {"config", "main", "baseline"}
        for group, name in (("main", "kan"), ("baseline", "mlp")):
            g = f[group]
            assert g.attrs["name"] == name
            assert set(g) == {"axes", "fields", "history", "metrics", "model"}
            x, y = g["axes/x"][()], g["axes/y"][()]
            np.testing.assert_array_equal(x, np.linspace(-1, 1, 21))
            np.testing.assert_array_equal(y, np.linspace(-1, 1, 21))
            fu = g["fields/u"]
            assert set(fu) == {"predicted", "exact", "error"}
            assert all(fu[k].shape == (21, 21) for k in fu)
            np.testing.assert_array_equal(fu["error"][()], fu["predicted"][()] - fu["exact"][()])
            X, Y = np.meshgrid(x, y, indexing="ij")
            np.testing.assert_allclose(fu["exact"][()], np.sin(np.pi * X) * np.sin(np.pi * Y**2), rtol=0, atol=1e-15)
            hist = g["history"]
            assert set(hist) == {"stage", "step", "time", "loss", "pde", "dirichlet[all]"}
            assert all(hist[k].shape == (7,) for k in hist)
            stages = json.loads(hist.attrs["stages"])
            assert [s["steps"] for s in stages] == [5, 2]
            m = metrics if group == "main" else metrics["baseline"]
            assert {k: g["metrics"].attrs[k] for k in NORMS} == pytest.approx({k: m[k] for k in NORMS}, rel=1e-15)
            cls = g["model"].attrs["class"]
            assert cls == ("kanpde.models.kan:KAN" if name == "kan" else "kanpde.models.mlp:MLP")
            assert "widths" in json.loads(g["model"].attrs["config"])
            assert len(g["model/state"]) > 0
        assert json.loads(f["main/model"].attrs["config"])["grid_size"] == 7
        assert f["main/model/state/layers.0.grid"].shape == (2, 7 + 2 * 3 + 1)


def test_load_run_rebuilds_models_that_reproduce_the_saved_fields(fast_run) -> None:
    out, metrics, _ = fast_run
    loaded = load_run(out)  # a run directory works as well as the file
    assert loaded.problem == "poisson2d" and loaded.coords == ("x", "y") and loaded.outputs == ("u",)
    assert isinstance(loaded.model, KAN) and loaded.model.grid_size == 7
    assert isinstance(loaded.baseline.model, MLP)
    assert "poisson2d" in loaded.config_yaml
    with h5py.File(out / "solution.h5", "r") as f:
        knots = f["main/model/state/layers.1.grid"][()]
    assert torch.equal(loaded.model.layers[1].grid, torch.from_numpy(knots))
    assert not np.allclose(np.diff(knots, axis=1), np.diff(knots, axis=1).mean())  # adapted, non-uniform knots
    for result, m in ((loaded.main, metrics), (loaded.baseline, metrics["baseline"])):
        assert next(result.model.parameters()).dtype == torch.float64
        X, Y = np.meshgrid(result.axes["x"], result.axes["y"], indexing="ij")
        pts = np.stack([X.ravel(), Y.ravel()], axis=1)
        pred = result(pts).numpy().reshape(21, 21)
        np.testing.assert_allclose(pred, result.fields["u"]["predicted"], rtol=0, atol=1e-12)
        new = result(torch.rand(13, 2, dtype=torch.float64) * 2 - 1)
        assert new.shape == (13, 1) and bool(torch.isfinite(new).all())
        assert {k: result.metrics[k] for k in NORMS} == pytest.approx({k: m[k] for k in NORMS}, rel=1e-15)
        assert len(result.history["loss"]) == 7 and [s["grid_size"] for s in result.stages][-1] in (7, None)
    assert [s["grid_size"] for s in loaded.main.stages] == [5, 7]
