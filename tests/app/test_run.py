"""The run (kanpde.app.run): run(cfg) end to end on the fast preset (outputs, metrics.json, figures, progress
events), the MLP alone, divergence, kernel warm-up before the timed training, every derivative engine, an LM
stage, hard constraints, snapping with formula and activation plots, a study with per-stage evaluations.
(Configuration errors: test_config.py; restarts: test_checkpoint.py; the solution.h5 layout: tests/io/.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import sympy
import torch

from kanpde import MLP, Box, Dirichlet, Problem, load_run, trapezoid_weights
from kanpde.app.config import ConfigError, build_spec
from kanpde.app.run import RunFailed, run
from kanpde.models.hard import HardDirichlet
from kanpde.models.symbolic import SymbolicKAN
from kanpde.io.sweep import collect
from tests.helpers import F64, METRIC_KEYS, NORMS, fast_cfg, make_cfg

# -- the fast preset (the fast_run fixture: tests/conftest.py) -------------------------------------------------


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


def test_mlp_run_has_the_same_keys_and_no_baseline(mlp_run, fast_run) -> None:
    out, metrics = mlp_run
    saved = json.loads((out / "metrics.json").read_text())
    assert "baseline" not in saved
    assert set(saved) == set(fast_run[1]) - {"baseline", "baseline_rel_diff"}  # the difference needs a baseline
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

def test_runaway_learning_rate_is_a_diverged_run_with_the_best_model(tmp_path: Path) -> None:
    """Adam at lr=1e6 on the fast preset: finite losses far above the stage's best stop the run as diverged
    (status and message in metrics.json); the saved model is the best-loss one (the start of stage 1: for
    an MLP, which has no grid to adapt, the model as built)."""
    cfg = fast_cfg("trainer.optimizers.adam.lr=1e6", "model=mlp", "baseline=null")
    with pytest.raises(RunFailed, match="exceeds divergence_factor"):
        run(cfg, output_dir=tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "diverged" and "diverged: loss" in saved["failure"]
    assert not (tmp_path / "checkpoint.pt").exists()  # no stage finished: nothing to resume from
    loaded = load_run(tmp_path)
    assert len(loaded.main.history["loss"]) == 1
    spec = build_spec(cfg, tmp_path / "spec", "id")
    torch.manual_seed(spec.seed)  # as the run builds its model before training
    initial = spec.models[0].make(spec.dtype, spec.device)
    for name, value in initial.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value), name


# -- options of a run -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_starts_the_kernels_before_the_first_timed_training(tmp_path: Path, monkeypatch) -> None:
    """numba's one-off start (~0.15 s) happens while the run is built, not inside the KAN's train time."""
    import kanpde.app.config as config_module
    import kanpde.app.run as run_module

    events: list[str] = []
    warm_up, fit = config_module.warm_up, run_module.fit
    monkeypatch.setattr(config_module, "warm_up", lambda: events.append("warm_up") or warm_up())
    monkeypatch.setattr(run_module, "fit", lambda *a, **k: events.append("fit") or fit(*a, **k))
    run(make_cfg("baseline=null", "output.checkpoint=false"), tmp_path / "run")
    assert events == ["warm_up", "fit"]


@pytest.mark.slow
def test_run_with_each_engine_gives_the_same_result(tmp_path: Path) -> None:
    metrics = {}
    for engine in ("auto", "forward", "autograd"):
        metrics[engine] = run(make_cfg("debug=fast", f"engine={engine}", "output.figures=false"), tmp_path / engine)
    with pytest.raises(ConfigError, match="engine='jet'"):
        run(make_cfg("debug=fast", "engine=jet"), tmp_path / "bad")
    assert make_cfg("debug=fast").engine == "auto"
    for engine in ("auto", "forward"):
        for key in ("l2_rel", "h1_rel"):
            assert metrics[engine][key] == pytest.approx(metrics["autograd"][key], rel=1e-6)
            assert metrics[engine]["baseline"][key] == pytest.approx(metrics["autograd"]["baseline"][key], rel=1e-6)


def test_lm_stage_from_the_cli_config(tmp_path: Path) -> None:
    """{optimizer: lm} composes and runs end to end; the history records one row per LM step."""
    cfg = fast_cfg("trainer.stages=[{optimizer: adam, steps: 3}, {optimizer: lm, steps: 4, grid_size: 6}]")
    metrics = run(cfg, output_dir=tmp_path)
    assert metrics["status"] == "ok" and metrics["grid_size"] == 6
    loaded = load_run(tmp_path)
    assert [s["optimizer"] for s in loaded.main.stages] == ["Adam", "LevenbergMarquardt"]
    assert len(loaded.main.history["loss"]) == 7


def test_adaptive_stages_from_the_cli_config(tmp_path: Path) -> None:
    """RAD in an Adam stage and RAR-D in an LM stage on debug=fast: each resampling is in the stage
    summaries of solution.h5 (KAN and baseline alike); RAR-D's points are counted in n_interior. RBA
    weights in the first stage: their mean and max in the step history (NaN where a stage has none)."""
    cfg = fast_cfg("trainer.stages=[{optimizer: adam, steps: 4, rba: {gamma: 0.99, eta: 0.1},"
                   " adaptive: {method: rad, every: 2, candidates: 256}},"
                   " {optimizer: lm, steps: 3, adaptive: {method: rar-d, every: 1, candidates: 128, count: 8, k: 2, c: 0}}]")
    metrics = run(cfg, output_dir=tmp_path)
    assert metrics["status"] == "ok"
    loaded = load_run(tmp_path)
    for result in (loaded.main, loaded.baseline):
        rad, rard = result.stages
        assert [r["step"] for r in rad["adaptive"]] == [2] and rad["adaptive"][0]["points"] == 64
        assert [r["points"] for r in rard["adaptive"]] == [72, 80] and rard["n_interior"] == 80
        assert rad["rba"]["gamma"] == 0.99 and "rba" not in rard
        assert np.all(result.history["rba_max"][:4] > 0.99) and np.all(np.isnan(result.history["rba_max"][4:]))


@pytest.mark.parametrize("problem, optimizers", [
    ("heat1d", ("adam", "lm")),
    pytest.param("burgers1d", ("lbfgs", "ssbroyden"), marks=pytest.mark.slow),
])
def test_causal_and_balance_stages_from_the_cli_config(tmp_path: Path, problem: str, optimizers: tuple[str, ...]) -> None:
    """Causal weights in both stages, gradient-norm balancing in the second, on debug=fast: the step
    history of solution.h5 has the causal minimum and epsilon (the schedule's position carried into the
    second stage) and each term's lambda (NaN where a stage has none), for the KAN and the baseline."""
    first, second = optimizers
    cfg = fast_cfg(f"problem={problem}",
                   f"trainer.stages=[{{optimizer: {first}, steps: 3, causal: {{epsilon: [0.001, 1.0], bins: 4}}}},"
                   f" {{optimizer: {second}, steps: 2, causal: {{epsilon: [0.001, 1.0], bins: 4}},"
                   " balance: {every: 1, alpha: 0.5}}]")
    metrics = run(cfg, output_dir=tmp_path)
    assert metrics["status"] == "ok"
    loaded = load_run(tmp_path)
    for result in (loaded.main, loaded.baseline):
        h = result.history
        assert np.all((h["causal_min"] > 0) & (h["causal_min"] <= 1)) and set(h["causal_epsilon"]) <= {0.001, 1.0}
        labels = [k for k in h if k.startswith("balance:")]
        assert "balance:pde" in labels and len(labels) >= 3  # the PDE, the initial condition and the boundary
        for k in labels:
            assert np.all(np.isnan(h[k][:3])) and np.all(h[k][3:] > 0)
        one, two = result.stages
        assert one["causal"]["bins"] == 4 and "balance" not in one and two["balance"]["method"] == "grad_norm"
        assert two["causal"]["epsilon"] >= one["causal"]["epsilon"]
        assert two["causal"]["weights"][0] == 1.0


@pytest.mark.slow
def test_hard_bc_run_trains_without_dirichlet_terms_and_loads_back(tmp_path: Path) -> None:
    cfg = fast_cfg("hard_bc=true", "trainer.stages=[{optimizer: adam, steps: 3}, {optimizer: lm, steps: 3, grid_size: 6}]")
    metrics = run(cfg, output_dir=tmp_path)
    assert metrics["status"] == "ok" and metrics["model"] == "kan" and metrics["baseline"]["model"] == "mlp"
    assert metrics["widths"] == [2, 3, 1] and metrics["grid_size"] == 6
    loaded = load_run(tmp_path)
    assert isinstance(loaded.model, HardDirichlet) and isinstance(loaded.baseline.model, HardDirichlet)
    assert set(loaded.main.history) == {"stage", "step", "time", "loss", "pde"}  # no Dirichlet term
    edge = torch.tensor([[-1.0, 0.3], [1.0, -0.7], [0.2, 1.0], [0.5, -1.0]], dtype=F64)
    assert float(loaded.main(edge).abs().max()) == 0.0
    grid = torch.from_numpy(loaded.main.fields["u"]["predicted"])
    assert float(grid[0].abs().max()) == 0.0 and float(grid[:, -1].abs().max()) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("restarts", ["", ", restarts: 2"])
def test_run_writes_formula_and_activation_plots(tmp_path: Path, restarts: str) -> None:
    """A tiny snapped run through run(cfg): formula.txt parses with SymPy and equals the saved model read back
    by load_run (a SymbolicKAN with the pruned widths); the activation plots before and after are written,
    also when the whole schedule is a restart block (as in the poisson2d_symbolic preset)."""
    cfg = make_cfg(
        "problem=poisson2d", "debug=fast", "baseline=null", "output.activations=true", "model.widths=[2,3,1]",
        "trainer.stages=[{optimizer: adam, steps: 5}, {optimizer: lbfgs, steps: 1, prune: 0.05},"
        " {optimizer: lbfgs, steps: 1, symbolic: {r2_threshold: 0.0, lib: ['x', 'x^2', 'sin']}},"
        f" {{optimizer: lbfgs, steps: 1, symbolic: {{layers: [], polish: true}}{restarts}}}]",
    )
    metrics = run(cfg, tmp_path)
    for name in ("formula.txt", "activations.png", "activations_before_prune.png", "activations_before_symbolic.png"):
        assert (tmp_path / name).is_file(), name
    text = (tmp_path / "formula.txt").read_text()
    assert metrics["formula"] == text.strip()
    model = load_run(tmp_path).main.model
    assert isinstance(model, SymbolicKAN) and model.fully_symbolic and model.widths == metrics["widths"]
    x = torch.rand(50, 2, dtype=F64) * 2 - 1
    f = sympy.lambdify(sympy.symbols("x y"), sympy.sympify(text.strip()), "numpy")
    value = np.broadcast_to(f(x[:, 0].numpy(), x[:, 1].numpy()), (50,))
    assert np.abs(value - model(x)[:, 0].detach().numpy()).max() < 1e-9


def test_the_symbolic_preset_restarts_its_whole_schedule_until_the_final_check_passes() -> None:
    """poisson2d_symbolic: the restart block is the whole schedule (restarts on the last stage, the one with
    the final check), so a candidate that stalls anywhere (a rejected snap, a polish above max_loss) gives
    way to a fresh initialisation; good_loss lets the first candidate that passes the check go on. Every
    snap after the forced one is gated (min_r2), and so is the pruning (max_width)."""
    stages = make_cfg("experiment=poisson2d_symbolic").trainer.stages
    assert [i for i, st in enumerate(stages) if "restarts" in st] == [len(stages) - 1]
    last = stages[-1]
    assert last.restarts.count >= 5 and last.restarts.good_loss <= last.symbolic.max_loss <= 1e-12
    assert last.symbolic.polish and last.symbolic.max_loss_ratio <= 1.0
    snaps = [st.symbolic for st in stages if "symbolic" in st and st.symbolic.get("layers") != []]
    assert snaps[0].r2_threshold == 0.0 and all(s.min_r2 >= 0.999 for s in snaps[1:]) and len(snaps) >= 4
    pruning = [st.prune for st in stages if "prune" in st]  # a candidate not pruned to [2, 2, 1] fails at once
    assert len(pruning) == 1 and pruning[0].max_width == 2 and stages.index(
        next(st for st in stages if "prune" in st)) < stages.index(next(st for st in stages if "symbolic" in st))


@pytest.mark.slow
def test_a_stalled_symbolic_run_says_so_and_writes_no_formula(tmp_path: Path) -> None:
    """The poisson2d_symbolic preset on a tiny budget (a few steps per stage): the network is far from
    trained when it is snapped, so a quality gate fails. The run writes its outputs, raises RunFailed, and
    metrics.json says status "symbolic_failed" with a one-line message; no formula.txt, no "formula" key
    (before the gates such a run ended with status "ok" and a wrong formula.txt)."""
    from omegaconf import OmegaConf

    cfg = make_cfg("experiment=poisson2d_symbolic", "trainer.n_interior=64", "trainer.n_boundary=32",
                   "eval.n_per_axis=21", "output.figures=false", "output.activations=false")
    OmegaConf.set_struct(cfg, False)
    for stage in cfg.trainer.stages:
        stage.steps = 2 if stage.optimizer == "adam" else 1
        if "prune" in stage:  # past the pruning gate (a barely trained network keeps its 5 nodes): the snaps' gates
            stage.prune.max_width = 5
    cfg.trainer.stages[-1].restarts.count = 2  # the whole schedule restarts: two stalled candidates
    with pytest.raises(RunFailed, match="symbolic_failed|snap rejected|snapped model rejected"):
        run(cfg, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "symbolic_failed" and "formula" not in saved
    assert "\n" not in saved["failure"] and "rejected" in saved["failure"]
    assert saved["failure"].startswith("all 2 initialisations failed (restarts); the first: ")
    assert not (tmp_path / "formula.txt").exists() and (tmp_path / "solution.h5").is_file()


def test_paper_fig33_small_end_to_end_in_ci_size(tmp_path: Path) -> None:
    """One KAN of the reduced study with its grid extension, shrunk further: a point per grid."""
    cfg = make_cfg("experiment=paper_fig33_small", "arch=kan_2_5_1", "device=cpu", "output.figures=false",
                   "trainer.n_interior=64", "trainer.n_boundary=32", "eval.n_per_axis=11",
                   "trainer.stages=[{optimizer: lbfgs, steps: 1, grid_size: 3},"
                   " {optimizer: lbfgs, steps: 1, grid_size: 5}, {optimizer: lbfgs, steps: 1, grid_size: 10}]")
    metrics = run(cfg, tmp_path / "run")
    assert [s["grid_size"] for s in metrics["stages"]] == [3, 5, 10] and metrics["grid_size"] == 10
    assert metrics["stages"][-1]["mse"] == metrics["mse"]
    points = collect(tmp_path)
    assert [p.grid_size for p in points] == [3, 5, 10] and [p.final for p in points] == [False, False, True]


# -- after training nothing is lost: untrustworthy metrics are null with a message (issue 16, item 3) -----------


class Wavy1D(Problem):
    """u'' = -(20 pi)^2 sin(20 pi x) on [0, 1], u = sin(20 pi x): zero at every node of debug=fast's 21-point grid."""

    coords = ("x",)

    def __init__(self) -> None:
        super().__init__(Box([0.0], [1.0], self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x, u):
        return u.d("xx") + (20 * math.pi) ** 2 * torch.sin(20 * math.pi * x[:, 0])

    def exact(self, x):
        return torch.sin(20 * math.pi * x[:, 0])


class TabulatedExact(Wavy1D):
    """The solution interpolated from a table (no autograd graph) and no exact_grad: as a user with
    reference data would write it."""

    def exact(self, x):
        table = np.linspace(0.0, 1.0, 2001)
        values = np.interp(x[:, 0].detach().cpu().numpy(), table, np.sin(20 * np.pi * table))
        return torch.from_numpy(values).to(x)


class NaNAtHalf(Wavy1D):
    """exact() is NaN at x = 0.5 exactly: a node of the evaluation grid, never a random probe point."""

    def exact(self, x):
        return torch.where(x[:, 0] == 0.5, torch.nan, torch.cos(x[:, 0]))


class RaisesAtHalf(Wavy1D):
    def exact(self, x):
        if bool((x[:, 0] == 0.5).any()):
            raise ValueError("x = 0.5 is outside the reference table")
        return torch.cos(x[:, 0])


def _user_run(tmp_path: Path, cls: type, *overrides: str) -> dict:
    cfg = fast_cfg("problem=custom", f"problem._target_={__name__}.{cls.__name__}", "baseline=null", "model=mlp", *overrides)
    return run(cfg, output_dir=tmp_path)


def test_exact_without_gradient_skips_h1_after_training_and_keeps_the_rest(tmp_path: Path) -> None:
    metrics = _user_run(tmp_path, TabulatedExact, "eval.n_per_axis=101")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == metrics
    assert all(saved[k] is None for k in ("h1_semi", "h1", "h1_rel", "h1_mse"))
    assert all(math.isfinite(saved[k]) for k in ("l2", "l2_rel", "linf", "mse"))
    assert saved["status"] == "ok" and "h1_semi, h1, h1_rel, h1_mse not computed" in saved["messages"][0]
    loaded = load_run(tmp_path)  # the trained model is in solution.h5, its null metrics as NaN
    assert math.isnan(loaded.main.metrics["h1"]) and loaded.main.metrics["l2"] == pytest.approx(saved["l2"])


def test_a_solution_vanishing_on_the_grid_is_flagged_not_divided_by(tmp_path: Path) -> None:
    metrics = _user_run(tmp_path, Wavy1D)  # debug=fast: 21 points, sin(20 pi x) = 0 at all of them
    assert metrics["l2_rel"] is None and math.isfinite(metrics["l2"]) and math.isfinite(metrics["h1_rel"])
    assert metrics["status"] == "incomplete"
    assert "l2_rel not computed" in metrics["messages"][0] and "eval.n_per_axis" in metrics["messages"][0]


def test_exact_nan_on_the_grid_gives_null_metrics_not_ok(tmp_path: Path) -> None:
    metrics = _user_run(tmp_path, NaNAtHalf)
    assert all(metrics[k] is None for k in METRIC_KEYS - {"n_params", "train_seconds", "model", "problem"})
    assert metrics["status"] == "incomplete"
    assert metrics["messages"] == ["error metrics not computed: NaNAtHalf.exact returned non-finite values at 1 of "
                                   "21 evaluation points (first at x=0.5)"]
    assert (tmp_path / "solution.h5").is_file()


def test_a_failing_evaluator_keeps_the_trained_model(tmp_path: Path) -> None:
    with pytest.raises(RunFailed, match=r"model: evaluation failed \(ValueError: x = 0.5 is outside the reference table\)"):
        _user_run(tmp_path, RaisesAtHalf, "output.checkpoint=false")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "evaluation_failed" and "outside the reference table" in saved["messages"][0]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["stage"] == 1 and len(state["history"]["stages"]) == 2  # both stages of debug=fast, trained


@pytest.mark.slow
def test_periodic_embedding_run_trains_without_the_periodic_term_and_loads_back(tmp_path: Path) -> None:
    from kanpde.models import PeriodicEmbedding

    metrics = run(fast_cfg("periodic_embedding=true", "problem=advection1d", "model@baseline=modified_mlp"), output_dir=tmp_path)
    assert metrics["status"] == "ok" and metrics["model"] == "kan" and metrics["baseline"]["model"] == "modifiedmlp"
    assert metrics["widths"] == [3, 3, 1] and math.isfinite(metrics["l2_rel"]) and math.isfinite(metrics["baseline"]["l2_rel"])
    loaded = load_run(tmp_path)
    assert isinstance(loaded.model, PeriodicEmbedding) and isinstance(loaded.baseline.model, PeriodicEmbedding)
    for result in (loaded.main, loaded.baseline):
        assert not any("periodic" in key for key in result.history), sorted(result.history)
        assert any(key.startswith("initial") for key in result.history)
        t = np.linspace(0, 1, 9)
        left, right = (result(np.stack([np.full_like(t, x0), t], 1)) for x0 in (0.0, 2 * math.pi))
        assert float(abs(left - right).max()) < 1e-12


def test_a_budget_cut_main_model_gets_a_baseline_matched_to_its_trained_size(tmp_path: Path) -> None:
    """trainer.max_seconds far below one step: the KAN stops after its first step at grid 5 (the grid-7 stage
    skipped, out_of_time), and the matched baseline takes the KAN's trained count, not the planned one (grid 7)."""
    from kanpde import KAN

    metrics = run(fast_cfg("baseline.match_params=true", "trainer.max_seconds=1e-9", "output.checkpoint=false"),
                  output_dir=tmp_path)
    base = metrics["baseline"]
    assert metrics["status"] == base["status"] == "ok" and metrics["out_of_time"] and base["out_of_time"]
    assert metrics["grid_size"] == 5 and metrics["max_seconds"] == 1e-9
    trained = sum(p.numel() for p in KAN([2, 3, 1], grid_size=5).parameters())
    planned = sum(p.numel() for p in KAN([2, 3, 1], grid_size=7).parameters())
    assert metrics["n_params"] == trained < planned and base["matched_params"] == trained
    w = base["widths"][1]
    assert base["n_params"] == 4 * w + 1 and abs(4 * w + 1 - trained) <= 2  # MLP [2, w, 1]: the closest w
