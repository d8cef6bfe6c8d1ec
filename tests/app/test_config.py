"""Hydra configuration groups and the end-to-end run(cfg): outputs, metrics, HDF5 layout, load_run, errors."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

from tests.helpers import CONF_DIR
from kanpde import KAN, MLP, load_run, trapezoid_weights
from kanpde.problems.poisson2d import Poisson2D
from kanpde.app.run import ConfigError, RunFailed, _build, run

METRIC_KEYS = {"l2", "l2_rel", "h1_semi", "h1", "h1_rel", "linf", "mse", "h1_mse", "n_params", "train_seconds",
               "model", "problem"}
NORMS = ("l2", "l2_rel", "h1_semi", "h1", "h1_rel", "linf", "mse", "h1_mse")


def make_cfg(*overrides: str) -> DictConfig:
    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def target(group: str, option: str) -> str:
    return yaml.safe_load((CONF_DIR / group / f"{option}.yaml").read_text())["_target_"]


# -- every combination of config group options ---------------------------------------------------------------

PROBLEMS = [
    ["problem=custom", "problem._target_=kanpde.problems.poisson2d.Poisson2D"] if p == "custom" else [f"problem={p}"]
    for p in options("problem")
    if p in ("poisson2d", "custom")  # the other shipped problems: tests/test_library.py
]
BASELINES = [[f"model@baseline={m}"] for m in options("model")] + [["baseline=null"]]
# Studies (experiments naming a `study`, e.g. paper_fig33) sweep architectures of their own, so they
# replace the model and baseline choices: tests/test_restart.py checks that each of theirs builds.
STUDIES = {e for e in options("experiment") if "study" in yaml.safe_load((CONF_DIR / "experiment" / f"{e}.yaml").read_text())}
# Presets that drop the baseline on purpose (a formula of the main model only, e.g. poisson2d_symbolic).
NO_BASELINE = {e for e in options("experiment") if "baseline" in yaml.safe_load((CONF_DIR / "experiment" / f"{e}.yaml").read_text())
               and yaml.safe_load((CONF_DIR / "experiment" / f"{e}.yaml").read_text())["baseline"] is None}
# (debug presets shrink the baseline too, which such a preset has dropped: not combined with them)
PRESETS = [(e, d) for e, d in itertools.product([None, *sorted(set(options("experiment")) - STUDIES)], [None, *options("debug")])
           if not (e in NO_BASELINE and d is not None)]
COMBOS = [
    (problem, model, baseline, trainer, experiment, debug)
    for problem in PROBLEMS
    for model in options("model")
    for baseline in BASELINES
    for trainer in options("trainer")
    for experiment, debug in PRESETS
]


def overrides_of(problem, model, baseline, trainer, experiment, debug) -> list[str]:
    ovs = [*problem, f"model={model}", *baseline, f"trainer={trainer}"]
    ovs += [f"experiment={experiment}"] if experiment else []
    ovs += [f"debug={debug}"] if debug else []
    return ovs


def test_config_groups_are_shipped() -> None:
    assert {"poisson2d", "custom"} <= set(options("problem"))
    assert {"kan", "mlp"} <= set(options("model"))
    assert "fast" in options("debug") and "default" in options("trainer")
    assert len(COMBOS) >= 48


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "-".join(overrides_of(*c)).replace("/", "."))
def test_every_combination_composes(combo) -> None:
    problem, model, baseline, trainer, experiment, debug = combo
    cfg = make_cfg(*overrides_of(*combo))
    assert cfg.model._target_ == target("model", model)
    assert cfg.problem._target_ == "kanpde.problems.poisson2d.Poisson2D"
    if baseline == ["baseline=null"] or experiment in NO_BASELINE:
        assert cfg.baseline is None
    else:
        assert cfg.baseline._target_ == target("model", baseline[0].split("=")[1])
    assert len(cfg.trainer.stages) >= 1 and {"adam", "lbfgs"} <= set(cfg.trainer.optimizers)
    assert cfg.sampler.seed == cfg.seed  # interpolation resolves
    if debug == "fast":
        assert cfg.eval.n_per_axis == 21 and cfg.trainer.n_interior == 64
        assert [s.steps for s in cfg.trainer.stages] == [5, 2]
    elif experiment == "paper_poisson":
        assert cfg.trainer.n_interior == 10000 and [s.grid_size for s in cfg.trainer.stages] == [5, 10, 20]
    else:
        assert cfg.eval.n_per_axis == 201


def _build_failures(model: str, experiment: str | None, debug: str | None, tmp_path: Path) -> list[str]:
    failures = []
    for problem, baseline, trainer in itertools.product(PROBLEMS, BASELINES, options("trainer")):
        ovs = overrides_of(problem, model, baseline, trainer, experiment, debug)
        try:
            built = _build(make_cfg(*ovs), tmp_path / "out")
        except ConfigError as exc:
            failures.append(f"{ovs}: {exc}")
            continue
        assert built.stages and built.problem.name == "poisson2d"
    return failures


@pytest.mark.parametrize("experiment,debug", PRESETS)
def test_every_kan_combination_builds(experiment, debug, tmp_path: Path) -> None:
    """run()'s checks (problem, widths, grids, stages, optimizers, sampler) pass for every shipped combination."""
    assert _build_failures("kan", experiment, debug, tmp_path) == []


@pytest.mark.parametrize("experiment,debug", PRESETS)
def test_every_mlp_combination_builds(experiment, debug, tmp_path: Path) -> None:
    assert _build_failures("mlp", experiment, debug, tmp_path) == []


# -- the end-to-end fast run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("fast")
    events = []
    metrics = run(make_cfg("debug=fast"), output_dir=out, progress=events.append)
    return out, metrics, events


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory: pytest.TempPathFactory):
    """model=mlp through the same path."""
    out = tmp_path_factory.mktemp("mlp")
    metrics = run(make_cfg("debug=fast", "model=mlp", "baseline=null"), output_dir=out)
    return out, metrics


def test_fast_run_writes_its_outputs(fast_run) -> None:
    out, _, events = fast_run
    names = {p.name for p in out.iterdir()}
    assert {"solution.h5", "metrics.json", "solution.png", "baseline_solution.png", "history.png",
            "checkpoint.pt", "baseline_checkpoint.pt"} <= names
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".write-test")]  # atomic writes left nothing
    for png in ("solution.png", "baseline_solution.png", "history.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    kinds = [e.kind for e in events]
    assert kinds.count("stage") == 4 and kinds.count("stage_end") == 4 and kinds.count("step") == 2 * (5 + 2)


def test_fast_run_metrics(fast_run) -> None:
    out, metrics, _ = fast_run
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert METRIC_KEYS <= set(saved) and METRIC_KEYS <= set(saved["baseline"])
    for m, name, n_params in ((saved, "kan", 108), (saved["baseline"], "mlp", 33)):
        assert m["model"] == name and m["problem"] == "poisson2d" and m["n_params"] == n_params
        assert m["status"] == "ok" and m["train_seconds"] > 0
        assert all(math.isfinite(m[k]) and m[k] >= 0 for k in NORMS)
        assert m["h1"] == pytest.approx(math.hypot(m["l2"], m["h1_semi"]), rel=1e-12)
        assert 0 < m["l2_rel"] < 1.5 and m["l2"] <= m["h1"] and m["mse"] <= m["h1_mse"]
        assert m["linf"] >= math.sqrt(m["mse"])
    assert "baseline" not in saved["baseline"]


def test_fast_run_metrics_agree_with_saved_fields(fast_run) -> None:
    out, metrics, _ = fast_run
    with h5py.File(out / "solution.h5", "r") as f:
        for group, m in (("main", metrics), ("baseline", metrics["baseline"])):
            g = f[group]
            axes = [g["axes/x"][()], g["axes/y"][()]]
            err = g["fields/u/error"][()]
            assert m["linf"] == pytest.approx(np.abs(err).max(), rel=1e-12)
            assert m["mse"] == pytest.approx((err**2).mean(), rel=1e-12)
            assert m["l2"] == pytest.approx(math.sqrt(trapezoid_weights(axes) @ (err**2).reshape(-1)), rel=1e-12)


def test_hdf5_layout_with_plain_h5py(fast_run) -> None:
    out, metrics, _ = fast_run
    with h5py.File(out / "solution.h5", "r") as f:
        assert f.attrs["format"] == "kanpde-run" and int(f.attrs["format_version"]) == 1
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


def test_mlp_run_has_the_same_keys_and_no_baseline(mlp_run, fast_run) -> None:
    out, metrics = mlp_run
    saved = json.loads((out / "metrics.json").read_text())
    assert "baseline" not in saved
    assert set(saved) == set(fast_run[1]) - {"baseline"}
    assert saved["model"] == "mlp" and saved["n_params"] == 2 * 3 + 3 + 3 + 1
    assert not (out / "baseline_solution.png").exists() and (out / "solution.png").exists()
    with h5py.File(out / "solution.h5", "r") as f:
        assert "baseline" not in f
    loaded = load_run(out / "solution.h5")
    assert loaded.baseline is None and isinstance(loaded.model, MLP)
    grid = loaded.main
    X, Y = np.meshgrid(grid.axes["x"], grid.axes["y"], indexing="ij")
    pred = grid(np.stack([X.ravel(), Y.ravel()], 1)).numpy().reshape(21, 21)
    np.testing.assert_allclose(pred, grid.fields["u"]["predicted"], rtol=0, atol=1e-12)


def test_fast_preset_runs_with_mlp_model(tmp_path: Path) -> None:
    metrics = run(make_cfg("debug=fast", "model=mlp", "baseline=null", "output.figures=false"), output_dir=tmp_path)
    assert metrics["model"] == "mlp"


def test_diverged_run_still_writes_outputs(tmp_path: Path) -> None:
    cfg = make_cfg("debug=fast", "trainer.optimizers.adam.lr=1e300", "output.figures=false")
    with pytest.raises(RunFailed, match="non-finite loss"):
        run(cfg, output_dir=tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "diverged" and "baseline" not in saved  # the baseline is not trained after a failure
    assert not list(tmp_path.glob("*.png"))
    loaded = load_run(tmp_path)
    assert all(bool(torch.isfinite(p).all()) for p in loaded.model.parameters())
    assert len(loaded.main.history["loss"]) == 1


# -- configuration errors: raised before any training ----------------------------------------------------------------

CONFIG_ERRORS = [
    (["dtype=float16"], r"dtype='float16'; valid: \['float32', 'float64'\]"),
    (["model.widths=[3,10,1]"], r"model.widths=\[3, 10, 1\] does not fit problem poisson2d"),
    (["baseline.widths=[2,8,2]"], r"baseline.widths=\[2, 8, 2\] does not fit"),
    (["model.grid_size=0"], r"model: grid_size must be an integer >= 1, got 0"),
    (["model.spline_order=0"], r"model: spline_order must be an integer >= 1"),
    (["model.base_activation=relu6"], r"unknown base_activation 'relu6'"),
    (["model._target_=kanpde.models.Nope"], r"unknown model class"),
    (["trainer.stages=[{optimizer: adam, steps: 0}]"], r"trainer.stages\[0\]: stage steps must be a positive integer"),
    (["trainer.stages=[{optimizer: adam, steps: 2, grid_size: 0}]"], r"trainer.stages\[0\]: stage grid_size"),
    (["trainer.stages=[{optimizer: sgdx, steps: 1}]"], r"unknown optimizer 'sgdx'; valid: \['adam', 'lbfgs', 'lm'\]"),
    (["trainer.stages=[{optimizer: adam, steps: 1, grdi_size: 3}]"], r"unknown stage key\(s\) \['grdi_size'\]"),
    (["trainer.stages=[]"], r"trainer.stages is empty"),
    (["trainer.optimizers.adam._target_=torch.optim.Nope"], r"unknown optimizer class 'torch.optim.Nope'"),
    (["trainer.optimizers.adam._target_=torch.nn.Linear"], r"'torch.nn.Linear' is not a torch.optim.Optimizer"),
    (["engine=jet"], r"engine='jet'"),
    (["device=nope"], r"device='nope' is not a device"),
    (["problem=custom"], r"problem: problem._target_ is required"),
    (["problem=custom", "problem._target_=kanpde.pde.sampling.Sampler"], r"Sampler is not a kanpde.Problem"),
    (["problem=custom", "problem._target_=nowhere.Nothing"], r"^problem: "),
    (["eval.n_per_axis=1"], r"eval.n_per_axis must be >= 2"),
]


@pytest.mark.parametrize("overrides,message", CONFIG_ERRORS, ids=[" ".join(o) for o, _ in CONFIG_ERRORS])
def test_config_errors_before_training(overrides: list[str], message: str, tmp_path: Path) -> None:
    events = []
    with pytest.raises(ConfigError, match=message) as info:
        run(make_cfg("debug=fast", *overrides), output_dir=tmp_path / "out", progress=events.append)
    assert "\n" not in str(info.value)
    assert events == []  # nothing was trained
    assert not (tmp_path / "out" / "solution.h5").exists()


def test_unwritable_output_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match=r"output directory .*a_file/sub is not writable"):
        run(make_cfg("debug=fast"), output_dir=blocker / "sub")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        run(make_cfg("debug=fast", "device=cuda:0"), output_dir=tmp_path)


def test_run_outside_hydra_needs_an_output_dir() -> None:
    with pytest.raises(ConfigError, match="needs an output_dir"):
        run(make_cfg("debug=fast"))


def test_bad_sampler_method_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sampling method"):
        run(make_cfg("debug=fast", "sampler.method=nope"), output_dir=tmp_path)


def test_baseline_given_by_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="baseline"):
        run(make_cfg("debug=fast", "baseline=kan"), output_dir=tmp_path)


def test_custom_problem_with_target_runs_the_checks(tmp_path: Path) -> None:
    cfg = make_cfg("problem=custom", "problem._target_=kanpde.problems.poisson2d.Poisson2D", "debug=fast")
    built = _build(cfg, tmp_path)
    assert isinstance(built.problem, Poisson2D) and built.dtype == torch.float64
    assert [s.steps for s in built.stages] == [5, 2] and [s.grid_size for s in built.stages] == [None, 7]
    assert OmegaConf.to_container(built.model_cfg)["widths"] == [2, 3, 1]
