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
from tests.helpers import CRAFTED_KAN_CONFIG, crafted_model_cases, format_1_run_file, NORMS, SineCube, SineLine, save_small_run, spy_on_callables


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
        assert f.attrs["format"] == "kanpde-run" and int(f.attrs["format_version"]) == 3
        assert f.attrs["problem"] == "poisson2d"
        assert list(f.attrs["coords"]) == ["x", "y"] and list(f.attrs["outputs"]) == ["u"]
        config = yaml.safe_load(f["config"].attrs["yaml"])
        assert config["model"]["widths"] == [None, 3, None] and config["eval"]["n_per_axis"] == 21
        assert set(f) == {"config", "main", "baseline"}
        for group, name in (("main", "kan"), ("baseline", "mlp")):
            g = f[group]
            assert g.attrs["name"] == name
            assert set(g) == {"axes", "fields", "history", "metrics", "model", "residuals"}
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


# -- a run file is data: crafted files naming callables are refused before anything they name is reached --------

KAN_CONFIG = CRAFTED_KAN_CONFIG
@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    return spy_on_callables(monkeypatch)


def _crafted(tmp_path: Path, model_class: str, config: dict, source: str = "v1_hard_solution") -> Path:
    """A format-1 run file (:func:`format_1_run_file`) whose main model names ``model_class`` with ``config``."""
    path = format_1_run_file(source, tmp_path)
    with h5py.File(path, "a") as f:
        f["main/model"].attrs["class"] = model_class
        f["main/model"].attrs["config"] = json.dumps(config)
    return path


@pytest.mark.parametrize("model_class, config, named", crafted_model_cases())
def test_crafted_run_file_naming_a_callable_is_refused_before_it_is_reached(
    model_class: str, config: dict, named: str, spies: list, tmp_path: Path
) -> None:
    from kanpde.io.files import RunFileRefused

    path = _crafted(tmp_path, model_class, config)
    with pytest.raises(RunFileRefused) as info:
        load_run(path)
    message = str(info.value)
    assert f"saved class '{named}' is not allowed" in message and "\n" not in message
    assert isinstance(info.value, ValueError)
    assert spies == []


def test_constructor_arguments_must_be_plain_data(tmp_path: Path) -> None:
    from kanpde.io.files import RunFileRefused, plain_data
    from kanpde.io.run_file import build_model

    assert plain_data({"a": [1, 2.5, None, True, "s", {"b": []}]}, "x") == {"a": [1, 2.5, None, True, "s", {"b": []}]}
    for bad, where in ((torch.zeros(1), "x"), ({"k": {1: 2}}, "x.k"), ({"k": [object()]}, r"x.k\[0\]"), (b"raw", "x")):
        with pytest.raises(RunFileRefused, match=f"^{where} "):
            plain_data(bad, "x")
    with pytest.raises(RunFileRefused, match="is a Tensor, not plain data"):
        build_model("kanpde.models.kan:KAN", {**KAN_CONFIG, "widths": torch.tensor([2, 3, 1])})
    with pytest.raises(RunFileRefused, match="not a mapping"):
        build_model("kanpde.models.kan:KAN", [2, 3, 1])
    assert isinstance(build_model("kanpde.models.kan:KAN", KAN_CONFIG), KAN)


def test_a_problem_of_your_own_loads_only_when_given(tmp_path: Path) -> None:
    """A hard-constraint run of a problem class outside kanpde is rebuilt only when the reader names the class."""
    from kanpde import HardDirichlet, Problem
    from kanpde.io.files import RunFileRefused
    from tests.helpers import SineLine

    config = {"net": {"class": "kanpde.models.mlp:MLP", "config": {"widths": [1, 4, 1], "activation": "tanh"}},
              "problem": {"class": f"{SineLine.__module__}:{SineLine.__qualname__}", "kwargs": {}}}
    path = _crafted(tmp_path, "kanpde.models.hard:HardDirichlet", config, source="v1_solution")
    with pytest.raises(RunFileRefused, match=f"saved class '{SineLine.__module__}:SineLine' is not allowed"):
        load_run(path)
    with h5py.File(path, "a") as f:  # the network of this config, so that its weights load
        del f["main/model/state"]
        state = f["main/model"].create_group("state")
        for key, value in HardDirichlet(MLP([1, 4, 1]), SineLine()).state_dict().items():
            state.create_dataset(key, data=value.numpy())
    loaded = load_run(path, allow=[SineLine])
    assert isinstance(loaded.model, HardDirichlet) and isinstance(loaded.model.problem, SineLine)
    assert issubclass(SineLine, Problem)
    with pytest.raises(TypeError, match="not a kanpde.Problem or torch.nn.Module class"):
        load_run(path, allow=[len])


def test_the_reference_group_round_trips_and_older_files_without_it_load(tmp_path: Path) -> None:
    """/reference holds the data's nodes, values and both models' predictions there; a format-2 file (no
    such group) still loads, with ``reference`` None."""
    from kanpde import History, RunResult, evaluate, reference_errors, save_run
    from kanpde.pde import reference_data

    problem, path = SineLine(), tmp_path / "solution.h5"
    main = load_run(save_small_run(problem, [1, 3, 1], 17, path)).main.model
    baseline = MLP([1, 4, 1], dtype=torch.float64)
    pts = np.linspace(-1, 1, 25)[:, None]
    ref = reference_data(problem, pts, np.sin(np.pi * pts[:, 0]), np.pi * np.cos(np.pi * pts), source="line.csv")
    results = []
    for name, model in (("kan", main), ("mlp", baseline)):
        at = reference_errors(model, problem, ref)
        results.append(RunResult(name, model, History(),
                                 evaluate(model, problem, 17), {"error_source": ref.describe(), **at.metrics}, at))
    save_run(path, problem.name, problem.coords, problem.outputs, *results)
    run = load_run(path)
    assert run.reference.source == "line.csv" and run.reference.error_source == "reference data line.csv, 25 points"
    np.testing.assert_array_equal(run.reference.points, pts)
    np.testing.assert_array_equal(run.reference.gradients[:, 0, 0], np.pi * np.cos(np.pi * pts[:, 0]))
    for name, loaded in (("main", run.main), ("baseline", run.baseline)):
        np.testing.assert_allclose(run.reference.predicted[name], loaded(pts).numpy(), rtol=0, atol=1e-14)
    np.testing.assert_allclose(run.reference.error("baseline"), baseline(torch.from_numpy(pts)).detach().numpy()
                               - run.reference.values, rtol=0, atol=1e-14)
    with h5py.File(path, "r+") as f:  # the same file as format 2 wrote it: no /reference group
        del f["reference"]
        f.attrs["format_version"] = 2
    old = load_run(path)
    assert old.reference is None and int(old.attrs["format_version"]) == 2 and old.baseline is not None
