"""The configuration (kanpde.app.config): every combination of the Hydra
config groups composes and builds, and every bad input is a one-line ConfigError before any training."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from torch import Tensor

from kanpde import Box, Dirichlet, Initial, Problem
from kanpde.app.config import ConfigError, build_spec, build_stages
from kanpde.app.run import run
from kanpde.problems.poisson2d import Poisson2D
from tests.helpers import CONF_DIR, REPO_ROOT, fast_cfg, load_script, make_cfg


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def target(group: str, option: str) -> str:
    return yaml.safe_load((CONF_DIR / group / f"{option}.yaml").read_text())["_target_"]


# -- every combination of config group options ---------------------------------------------------------------

PROBLEMS = [
    ["problem=custom", "problem._target_=kanpde.problems.poisson2d.Poisson2D"] if p == "custom" else [f"problem={p}"]
    for p in options("problem")
    if p in ("poisson2d", "custom")  # the other shipped problems: tests/problems/test_problems.py
]
BASELINES = [[f"model@baseline={m}"] for m in options("model")] + [["baseline=null"]]
# Studies (experiments naming a `study`, e.g. paper_fig33) sweep architectures of their own, so they
# replace the model and baseline choices: test_paper_fig33_architectures_compose_and_build builds each of theirs.
STUDIES = {e for e in options("experiment") if "study" in yaml.safe_load((CONF_DIR / "experiment" / f"{e}.yaml").read_text())}
# Presets that drop the baseline on purpose (a formula of the main model only, e.g. poisson2d_symbolic).
NO_BASELINE = {e for e in options("experiment") if "baseline" in yaml.safe_load((CONF_DIR / "experiment" / f"{e}.yaml").read_text())
               and yaml.safe_load((CONF_DIR / "experiment" / f"{e}.yaml").read_text())["baseline"] is None}
# Presets that choose no model@baseline (defaults: override /model@baseline: null): no baseline unless the
# command line chooses one (model@baseline=mlp); baseline=null has no key to set there.
BASELINE_OFF = {e for e in options("experiment")
                if any(isinstance(d, dict) and "override /model@baseline" in d and d["override /model@baseline"] is None
                       for d in yaml.safe_load((CONF_DIR / "experiment" / f"{e}.yaml").read_text()).get("defaults", []))}
# (debug presets shrink the baseline too, which such a preset has dropped: not combined with them)
PRESETS = [(e, d) for e, d in itertools.product([None, *sorted(set(options("experiment")) - STUDIES)], [None, *options("debug")])
           if not (e in NO_BASELINE | BASELINE_OFF and d is not None)]
COMBOS = [
    (problem, model, baseline, trainer, experiment, debug)
    for problem in PROBLEMS
    for model in options("model")
    for baseline in BASELINES
    for trainer in options("trainer")
    for experiment, debug in PRESETS
    if not (experiment in BASELINE_OFF and baseline == ["baseline=null"])
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


@pytest.mark.slow
@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "-".join(overrides_of(*c)).replace("/", "."))
def test_every_combination_composes(combo) -> None:
    problem, model, baseline, trainer, experiment, debug = combo
    cfg = make_cfg(*overrides_of(*combo))
    assert cfg.model._target_ == target("model", model)
    assert cfg.problem._target_ == "kanpde.problems.poisson2d.Poisson2D"
    if baseline == ["baseline=null"] or experiment in NO_BASELINE:
        assert cfg.baseline is None
    elif experiment in BASELINE_OFF:  # the baseline chosen on the command line is back
        assert cfg.baseline._target_ == target("model", baseline[0].split("=")[1])
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
        if experiment in BASELINE_OFF and baseline == ["baseline=null"]:
            continue
        ovs = overrides_of(problem, model, baseline, trainer, experiment, debug)
        try:
            built = build_spec(make_cfg(*ovs), tmp_path / "out", "test")
        except ConfigError as exc:
            failures.append(f"{ovs}: {exc}")
            continue
        assert built.stages and built.problem.name == "poisson2d"
    return failures


@pytest.mark.slow
@pytest.mark.parametrize("experiment,debug", PRESETS)
def test_every_kan_combination_builds(experiment, debug, tmp_path: Path) -> None:
    """run()'s checks (problem, widths, grids, stages, optimizers, sampler) pass for every shipped combination."""
    assert _build_failures("kan", experiment, debug, tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("experiment,debug", PRESETS)
def test_every_mlp_combination_builds(experiment, debug, tmp_path: Path) -> None:
    """The same for an MLP as main model, except the symbolic preset: its sparsify/prune/symbolic stages
    need edge functions and are refused up front, in one line, for every combination."""
    failures = _build_failures("mlp", experiment, debug, tmp_path)
    if experiment == "poisson2d_symbolic":
        assert failures and all("needs a model with edge functions (a KAN), not MLP" in f for f in failures)
    elif experiment == "burgers1d_inverse":  # a KAN preset: its model.grid_size is no MLP argument
        assert failures and all("model: MLP takes no grid_size" in f and "~model.grid_size" in f for f in failures)
    else:
        assert failures == []


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
    (["trainer.stages=[{optimizer: sgdx, steps: 1}]"], r"unknown optimizer 'sgdx'; valid: \['adam', 'bfgs', 'lbfgs', 'lm', 'soap', 'ssbfgs', 'ssbroyden'\]"),
    (["trainer.stages=[{optimizer: adam, steps: 1, grdi_size: 3}]"], r"unknown stage key\(s\) \['grdi_size'\]"),
    (["trainer.stages=[]"], r"trainer.stages is empty"),
    (["trainer.optimizers.adam._target_=torch.optim.Nope"], r"unknown optimizer class 'torch.optim.Nope'"),
    (["trainer.optimizers.adam._target_=torch.nn.Linear"], r"'torch.nn.Linear' is not a torch.optim.Optimizer"),
    (["trainer.stages=[{optimizer: soap, steps: 1}]", "trainer.optimizers.soap._target_=not_installed_pkg.SOAP"],
     r"unknown optimizer class 'not_installed_pkg.SOAP' \(module 'not_installed_pkg' is not installed\)"),
    (["trainer.stages=[{optimizer: ssbroyden, steps: 1}]", "trainer.optimizers.ssbroyden.max_params=10"],
     r"trainer.stages\[0\].optimizer \(model\): SSBroyden keeps a dense .* more than max_params=10;"),
    (["engine=jet"], r"engine='jet'"),
    (["device=nope"], r"device='nope' is not a device"),
    (["problem=custom"], r"problem: problem._target_ is required"),
    (["problem=custom", "problem._target_=kanpde.pde.sampling.Sampler"], r"Sampler is not a kanpde.Problem"),
    (["problem=custom", "problem._target_=nowhere.Nothing"], r"^problem: "),
    (["eval.n_per_axis=1"], r"eval.n_per_axis must be >= 2"),
    # point counts, the stages' shape and the loss weights (issue 16, item 3)
    (["trainer.n_interior=0"], r"trainer.n_interior=0 must be an integer >= 1"),
    (["trainer.n_interior=-3"], r"trainer.n_interior=-3 must be an integer >= 1"),
    (["trainer.n_boundary=0"], r"trainer.n_boundary=0 is too small: the problem trains 1 boundary condition"),
    (["trainer.n_boundary=-1"], r"trainer.n_boundary=-1 must be an integer >= 0"),
    (["problem=poisson2d_robin", "trainer.n_boundary=2"], r"trainer.n_boundary=2 is too small: .* 3 boundary"),
    (["trainer.stages=[{optimizer: adam, steps: 2, n_interior: 0}]"], r"trainer.stages\[0\]: stage n_interior must be a positive"),
    (["trainer.stages=[{optimizer: adam, steps: 2, n_boundary: -5}]"], r"trainer.stages\[0\]: stage n_boundary must be a positive"),
    (["problem=poisson2d_robin", "trainer.stages=[{optimizer: adam, steps: 2, n_boundary: 1}]"],
     r"trainer.stages\[0\].n_boundary=1 is too small"),
    (["trainer.stages=adam"], r"trainer.stages='adam' is not a list of stages"),
    (["trainer.stages=[adam]"], r"trainer.stages\[0\]='adam' is not a stage"),
    (["trainer.pde_weight=-1"], r"trainer.pde_weight=-1 must be a finite number >= 0"),
    (["trainer.pde_weight=nan"], r"trainer.pde_weight=nan must be a finite number >= 0"),
    (["trainer.pde_weight=inf"], r"trainer.pde_weight=inf must be a finite number >= 0"),
    (["trainer.divergence_factor=1"], r"trainer.divergence_factor must be a number > 1 or null"),
    (["trainer.divergence_factor=abc"], r"trainer.divergence_factor must be a number > 1 or null"),
    (["trainer.chunk_size=0"], r"trainer.chunk_size must be a positive integer or null"),
    (["trainer.chunk_size=1.5"], r"trainer.chunk_size must be a positive integer or null"),
    # adaptive collocation (issue 17)
    (["trainer.stages=[{optimizer: adam, steps: 2, adaptive: {method: rae, every: 1, candidates: 100}}]"],
     r"trainer.stages\[0\]: stage adaptive.method must be one of \['rad', 'rar-d'\]"),
    (["trainer.stages=[{optimizer: adam, steps: 2, adaptive: {method: rar-d, every: 1, candidates: 100}}]"],
     r"trainer.stages\[0\]: stage adaptive.count .* is required for rar-d"),
    (["trainer.stages=[{optimizer: adam, steps: 2, adaptive: {method: rad, every: 0, candidates: 100}}]"],
     r"trainer.stages\[0\]: stage adaptive.every must be an integer >= 1"),
    (["trainer.stages=[{optimizer: adam, steps: 2, adaptive: {method: rad, every: 1, candidates: 10}}]"],
     r"trainer.stages\[0\]: stage adaptive.candidates=10 is fewer than the stage's 64 interior points"),
    (["trainer.stages=[{optimizer: adam, steps: 2, rba: {gamma: 1.5}}]"],
     r"trainer.stages\[0\]: stage rba.gamma must be a number in \[0, 1\)"),
    # adaptive weights (issue 17)
    (["trainer.stages=[{optimizer: adam, steps: 2, causal: {epsilon: 1.0}}]"],
     r"trainer.stages\[0\].causal: causal weights need a time coordinate, but problem Poisson2D has coords "
     r"\['x', 'y'\] without 't'"),
    (["problem=heat1d", "trainer.stages=[{optimizer: adam, steps: 2, causal: {bins: 0}}]"],
     r"trainer.stages\[0\]: stage causal.bins must be an integer >= 1"),
    (["trainer.stages=[{optimizer: adam, steps: 2, balance: {method: ntk}}]"],
     r"trainer.stages\[0\]: stage balance.method must be one of \['grad_norm'\]"),
    # optimizer: auto (issue 17): its rule's settings, trainer.auto_optimizer
    (["trainer.stages=[{optimizer: auto, steps: 1}]", "+trainer.auto_optimizer.lm_max=3"],
     r"^trainer.auto_optimizer: unknown key\(s\) \['lm_max'\]; valid: \['fallback', 'hessian_max_mb'"),
    (["trainer.stages=[{optimizer: auto, steps: 1}]", "+trainer.auto_optimizer.lm_max_params=-1"],
     r"^trainer.auto_optimizer: lm_max_params must be an integer >= 0, got -1$"),
    (["trainer.stages=[{optimizer: auto, steps: 1}]", "+trainer.auto_optimizer.quasi_newton=nope"],
     r"^trainer.auto_optimizer.quasi_newton: unknown optimizer 'nope'"),
    (["trainer.stages=[{optimizer: auto, steps: 1}]", "+trainer.auto_optimizer.hessian_max_mb=3200"],
     r"^trainer.auto_optimizer.hessian_max_mb=3200 allows 20,000 parameters, but ssbroyden refuses them \(.*max_params"),
    # the wall-clock budget and parameter matching (issue 17)
    (["trainer.max_seconds=0"], r"trainer.max_seconds must be a number of seconds > 0 or null"),
    (["trainer.max_seconds=abc"], r"trainer.max_seconds must be a number of seconds > 0 or null"),
    (["model=mlp", "+model.grid_size=10"], r"model: MLP takes no grid_size \(set for another model, .*drop it with ~model.grid_size$"),
    (["model=mlp", "model.match_params=true"], r"model.match_params=true: parameter matching applies to the baseline"),
    (["baseline.match_params=yes"], r"baseline.match_params='yes' must be true or false"),
    (["baseline.match_params=true", "baseline.widths=[null,null]"], r"baseline.match_params=true needs a baseline with hidden layers"),
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
    built = build_spec(cfg, tmp_path, "test")
    assert isinstance(built.problem, Poisson2D) and built.dtype == torch.float64
    assert [s.steps for s in built.stages] == [5, 2] and [s.grid_size for s in built.stages] == [None, 7]
    assert OmegaConf.to_container(built.models[0].node)["widths"] == [2, 3, 1]


class MissingInitial(Problem):
    """A time-dependent problem with no initial condition: refused before training."""

    coords = ("x", "t")

    def __init__(self) -> None:
        super().__init__(Box([0.0, 0.0], [1.0, 2.0], self.coords), [Dirichlet(("x-", "x+"))])

    def exact(self, x: Tensor) -> Tensor:
        return x[:, 0]


def test_bad_problem_is_a_config_error_before_training(tmp_path: Path) -> None:
    cfg = make_cfg("problem=custom", f"problem._target_={__name__}.MissingInitial", "debug=fast")
    with pytest.raises(ConfigError, match="no initial condition"):
        run(cfg, output_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "solution.h5").exists()


@pytest.mark.slow
def test_hard_bc_runs_on_the_l_shape(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Polygons take hard constraints (ADF lifting from the boundary data): hard_bc=true on the L-shape trains
    end to end on debug=fast, both models, with finite errors, after one warning about its corners."""
    with caplog.at_level("WARNING", logger="kanpde"):
        metrics = run(fast_cfg("hard_bc=true", "problem=laplace_lshape"), output_dir=tmp_path)
    corners = [r for r in caplog.records if "at the corners of the boundary" in r.getMessage()]
    assert len(corners) == 1 and corners[0].levelname == "WARNING"
    for m in (metrics, metrics["baseline"]):
        assert math.isfinite(m["l2_rel"]) and math.isfinite(m["h1_rel"]) and m["l2_rel"] < 10


def test_hard_bc_config_error_for_an_unsupported_problem(tmp_path: Path, monkeypatch) -> None:
    from kanpde.problems.heat1d import Heat1D

    monkeypatch.setattr(Heat1D, "__init__", lambda self: _Corners.__init__(self))  # data that disagree at a corner
    with pytest.raises(ConfigError, match=r"hard_bc=true: hard Dirichlet constraints need data that agree where faces meet"):
        run(fast_cfg("hard_bc=true", "problem=heat1d"), output_dir=tmp_path)


class _Corners(Problem):
    coords = ("x", "t")

    def __init__(self) -> None:
        Problem.__init__(self, Box([0.0, 0.0], [1.0, 1.0], self.coords),
                         [Dirichlet(("x-", "x+"), 0.0), Initial(1.0)])
LM_ERRORS = [
    ("trainer.optimizers.lm.damping=-1", r"trainer.stages\[0\].optimizer: LevenbergMarquardt damping must be a finite number > 0, got -1"),
    ("trainer.optimizers.lm.damping=0", r"damping must be a finite number > 0"),
    ("trainer.optimizers.lm.damping_max=1e-6", r"needs damping_min <= damping <= damping_max"),
    ("trainer.optimizers.lm.scaling=diagonal", r"scaling must be one of \['marquardt', 'identity'\], got 'diagonal'"),
    ("trainer.optimizers.lm.max_tries=0", r"max_tries must be a positive integer, got 0"),
    ("trainer.optimizers.lm.chunk_size=0", r"chunk_size must be a positive integer"),
    ("trainer.optimizers.lm.dtype=int32", r"dtype must be a floating dtype"),
    ("trainer.optimizers.lm.tolerance_change=1.5", r"tolerance_change must be in \[0, 1\), got 1.5"),
    ("+trainer.optimizers.lm.dampnig=1", r"trainer.stages\[0\].optimizer: .*dampnig"),
]


@pytest.mark.parametrize("override,message", LM_ERRORS, ids=[o for o, _ in LM_ERRORS])
def test_lm_config_errors_are_clear(override: str, message: str, tmp_path: Path) -> None:
    cfg = fast_cfg("trainer.stages=[{optimizer: lm, steps: 2}]", override)
    with pytest.raises(ConfigError, match=message) as info:
        build_stages(cfg.trainer)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=message):
        run(cfg, output_dir=tmp_path)
    assert not (tmp_path / "solution.h5").exists()


@pytest.mark.slow
def test_paper_fig33_architectures_compose_and_build(tmp_path: Path) -> None:
    swept = {}
    for experiment in ("paper_fig33", "paper_fig33_small"):
        base = make_cfg(f"experiment={experiment}", hydra=True)
        archs = swept[experiment] = str(base.hydra.sweeper.params.arch).split(",")
        assert str(base.hydra.sweeper.params.seed) == "0,1" and base.study == experiment
        assert set(archs) <= set(base.archs) and base.baseline is None and base.eval.every_stage
        for arch in archs:
            cfg = make_cfg(f"experiment={experiment}", f"arch={arch}")
            built = build_spec(cfg, tmp_path, "test")
            assert built.models[0].node._target_.endswith(arch.split("_")[0].upper())
            assert len(built.models) == 1
    assert len(swept["paper_fig33"]) == 16 and set(swept["paper_fig33_small"]) < set(swept["paper_fig33"])


class NaNWeight(Problem):
    """A condition weight that is not a number: refused when the problem is made."""

    coords = ("x",)

    def __init__(self) -> None:
        super().__init__(Box([0.0], [1.0], self.coords), [Dirichlet("all", 0.0, weight=float("nan"))])

    def pde(self, x: Tensor, u) -> Tensor:
        return u.d("xx")

    def exact(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x[:, 0])


def test_non_finite_condition_weight_is_a_config_error(tmp_path: Path) -> None:
    cfg = make_cfg("problem=custom", f"problem._target_={__name__}.NaNWeight", "debug=fast")
    with pytest.raises(ConfigError, match=r"^problem: condition weight must be a finite number >= 0, got nan$"):
        run(cfg, output_dir=tmp_path / "out")


FAULTY_PROBLEMS = [
    ("Scalar", r"^problem check: Scalar\.pde returned shape \(\) at 8 interior points, expected \(8,\)$"),
    ("OneShort", r"^problem check: OneShort\.pde returned shape \(7,\)"),
    ("ThreeColumns", r"^problem check: ThreeColumns\.pde returned shape \(8, 3\)"),
    ("NaNExact", r"^problem check: NaNExact\.exact returned 24 non-finite value\(s\)"),
    ("WideExact", r"^problem check: WideExact\.exact returned shape \(24, 2\)"),
]


@pytest.mark.parametrize("name,message", FAULTY_PROBLEMS, ids=[n for n, _ in FAULTY_PROBLEMS])
def test_faulty_problem_methods_are_refused_before_training(name: str, message: str, tmp_path: Path) -> None:
    """pde(), the conditions and exact() are probed on a few points before any training (kanpde.pde.check)."""
    events = []
    cfg = make_cfg("problem=custom", f"problem._target_=tests.pde.test_check.{name}", "debug=fast", "baseline=null")
    with pytest.raises(ConfigError, match=message):
        run(cfg, output_dir=tmp_path / "out", progress=events.append)
    assert events == [] and not (tmp_path / "out" / "solution.h5").exists()


# -- the command line, checked before Hydra composes (kanpde.app.config.check_command_line) -------------------

COMMAND_LINE_ERRORS = [
    (["problem=nope"], r"^unknown problem 'nope' \(problem=nope\); valid: advection1d, allencahn1d, .*custom, .*wave1d$"),
    (["model=nope"], r"^unknown model 'nope' \(model=nope\); valid: kan, mlp, modified_mlp$"),
    (["trainer=nope"], r"^unknown trainer 'nope' \(trainer=nope\); valid: accurate, default$"),
    (["experiment=nope"], r"^unknown experiment 'nope' \(experiment=nope\); valid: burgers1d_inverse, paper_fig33, .*poisson2d_symbolic$"),
    (["debug=slow"], r"^unknown debug 'slow' \(debug=slow\); valid: fast$"),
    (["model@baseline=nope"], r"^unknown model 'nope' \(model@baseline=nope\); valid: kan, mlp, modified_mlp$"),
    (["+experiment=nope"], r"^unknown experiment 'nope'"),
    (["-m", "model=kan,nope"], r"^unknown model 'nope' \(model=kan,nope\); valid: kan, mlp, modified_mlp$"),
    (["hydra.run.dir=/proc/kanpde/run"], r"^output directory /proc/kanpde/run cannot be created: /proc is not a writable directory"),
    (["-m", "hydra.sweep.dir=/proc/x/${study}"], r"^output directory /proc/x/\$\{study\} cannot be created: /proc is not"),
]


@pytest.mark.parametrize("argv,message", COMMAND_LINE_ERRORS, ids=[" ".join(a) for a, _ in COMMAND_LINE_ERRORS])
def test_command_line_errors_before_hydra(argv: list[str], message: str, tmp_path: Path, monkeypatch) -> None:
    from kanpde.app.config import check_command_line

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message) as info:
        check_command_line(argv)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing created, the write test removed


COMMAND_LINES_ACCEPTED = [
    [],
    ["problem=poisson3d", "model=mlp", "trainer=default", "debug=fast", "experiment=poisson2d_quick"],
    ["-m", "model=kan,mlp", "seed=0,1", "problem=poisson2d,heat1d"],
    ["--multirun", "model=glob(*)", "experiment=choice(paper_poisson,poisson2d_quick)"],
    ["problem=custom", "problem._target_=somewhere.Mine", "model._target_=x.Y"],
    ["+foo=1", "++trainer.bar=2", "~baseline", "baseline=null", "experiment=null"],
    ["--config-dir", "/my/conf", "problem=mine"],  # a search path may bring options of its own
    ["hydra.searchpath=[file:///my/conf]", "model=mine"],
    ["hydra.run.dir=new/deeper/${now:%H-%M}"],
]


@pytest.mark.parametrize("argv", COMMAND_LINES_ACCEPTED, ids=[" ".join(a) or "none" for a in COMMAND_LINES_ACCEPTED])
def test_command_lines_accepted(argv: list[str], tmp_path: Path, monkeypatch) -> None:
    from kanpde.app.config import check_command_line

    monkeypatch.chdir(tmp_path)
    check_command_line(argv)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv,default", [([], "outputs"), (["-m"], "multirun")])
def test_default_output_directory_in_an_unwritable_working_directory(argv, default: str, monkeypatch) -> None:
    """os.access says yes to root; creating a file is the test (/proc refuses it to root too)."""
    from kanpde.app.config import check_command_line

    monkeypatch.chdir("/proc")
    with pytest.raises(ConfigError, match=rf"^output directory {default} cannot be created: /proc is not a writable"):
        check_command_line(argv)


def test_output_directory_under_a_file(tmp_path: Path, monkeypatch) -> None:
    from kanpde.app.config import check_command_line

    (tmp_path / "a_file").write_text("in the way")
    with pytest.raises(ConfigError, match=r"a_file is not a writable directory \(not a directory\)"):
        check_command_line([f"hydra.run.dir={tmp_path / 'a_file' / 'run'}"])


@pytest.mark.parametrize("overrides,message", [
    (["periodic_embedding=true"], "periodic_embedding=true: periodic embedding needs a problem with a periodic "
                                  "coordinate; Poisson2D: it has no Periodic condition"),
    (["periodic_embedding=true", "hard_bc=true", "problem=advection1d"], "periodic_embedding=true with hard_bc=true"),
    (["periodic_embedding=true", "problem=advection1d", "model._target_=kanpde.models.mlp.MLP", "~model.widths",
      "+model.widths=null"], "periodic_embedding=true needs a model with widths"),
    (["periodic_embedding=true", "problem=advection1d", "trainer.stages=[{optimizer: lbfgs, steps: 1, symbolic: {lib: [x]}}]"],
     r"trainer.stages\[0\]: symbolic stages with periodic_embedding=true would snap the network of \(cos, sin\) features"),
])
def test_periodic_embedding_config_errors(overrides: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        build_spec(fast_cfg(*overrides), tmp_path / "out", "test")


def test_periodic_embedding_widens_the_input_and_drops_the_periodic_term(tmp_path: Path) -> None:
    spec = build_spec(fast_cfg("periodic_embedding=true", "problem=advection1d", "model@baseline=modified_mlp"),
                      tmp_path / "out", "test")
    assert [c.kind for c in spec.problem.conditions] == ["periodic", "initial"]
    assert [c.kind for c in spec.fit_problem.conditions] == ["initial"]
    for model_spec, cls in zip(spec.models, ("KAN", "ModifiedMLP")):
        model = model_spec.make(torch.float64, torch.device("cpu"))
        assert type(model).__name__ == "PeriodicEmbedding" and type(model.net).__name__ == cls
        assert model.widths[0] == 3 and model.net.widths[0] == 3


def test_modified_mlp_with_fourier_features_builds_as_the_baseline(tmp_path: Path) -> None:
    spec = build_spec(fast_cfg("model@baseline=modified_mlp", "baseline.fourier_features={count: 8, scale: 2.0}"),
                      tmp_path / "out", "test")
    model = spec.models[1].make(torch.float64, torch.device("cpu"))
    assert type(model).__name__ == "ModifiedMLP" and model.config["fourier_features"] == {"count": 8, "scale": 2.0}
    with pytest.raises(ConfigError, match="baseline: fourier_features.count must be a positive integer"):
        build_spec(fast_cfg("model@baseline=modified_mlp", "baseline.fourier_features={count: 0}"), tmp_path / "out", "test")


def _kan_count_at(grid: int) -> int:
    from kanpde import KAN

    return sum(p.numel() for p in KAN([2, 3, 1], grid_size=grid).parameters())


@pytest.mark.parametrize("widths", [[None, 8, None], [None, 8, 8, 8, None]])
def test_match_params_picks_the_closest_width_at_the_baselines_depth(widths, tmp_path: Path) -> None:
    """debug=fast's KAN [2,3,1] ends at grid 7; the matched MLP keeps its depth and takes the hidden width whose
    count (2 -> w -> ... -> w -> 1: 3w + (h - 1)(w^2 + w) + w + 1) is closest to it, checked by brute force."""
    spec = build_spec(make_cfg("debug=fast", "baseline.match_params=true", f"baseline.widths={widths}".replace("None", "null")),
                      tmp_path / "out", "test")
    target = _kan_count_at(7)
    hidden = len(widths) - 2

    def count(w: int) -> int:
        return 3 * w + (hidden - 1) * (w * w + w) + w + 1

    best = min(range(1, 500), key=lambda w: (abs(count(w) - target), w))
    base = spec.models[1]
    assert list(base.node.widths) == [2, *[best] * hidden, 1] and "match_params" not in base.node
    assert base.notes == {"matched_params": target}
    assert sum(p.numel() for p in base.make(torch.float64, torch.device("cpu")).parameters()) == count(best)
    assert abs(count(best) - target) <= abs(count(best + 1) - target) and abs(count(best) - target) <= abs(count(best - 1) - target)
    assert spec.models[0].notes == {}


def test_match_params_false_leaves_the_baseline_as_configured(tmp_path: Path) -> None:
    spec = build_spec(make_cfg("debug=fast"), tmp_path / "out", "test")
    assert list(spec.models[1].node.widths) == [2, 8, 1] and spec.models[1].notes == {} and spec.max_seconds is None
    assert "match_params" not in spec.models[1].node


def test_optimizer_auto_takes_its_tiers_and_bounds_from_trainer_auto_optimizer(tmp_path: Path) -> None:
    from kanpde import AutoOptimizer

    cfg = make_cfg("debug=fast", "trainer.stages=[{optimizer: adam, steps: 1}, {optimizer: auto, steps: 1}]",
                   "+trainer.auto_optimizer={quasi_newton: ssbfgs, lm_max_params: 100, jacobian_max_mb: 1.5}")
    stages = build_stages(cfg.trainer)
    rule = stages[1].optimizer
    assert isinstance(rule, AutoOptimizer) and stages[1].optimizer_name == "auto"
    assert (rule.names, rule.lm_max_params, rule.jacobian_max_mb, rule.hessian_max_mb) == (("lm", "ssbfgs", "lbfgs"),
                                                                                           100, 1.5, 800.0)
    assert rule.choose(101, 10).name == "ssbfgs" and rule.choose(100, 10).name == "lm"
    assert rule.choose(100, 1_876).name == "ssbfgs"  # Jacobian 1.5008 MB
    default = build_stages(make_cfg("debug=fast", "trainer.stages.1.optimizer=auto").trainer)[1].optimizer
    assert (default.names, default.lm_max_params) == (("lm", "ssbroyden", "lbfgs"), 5_000)


def test_causal_auto_builds_for_a_problem_without_time(tmp_path: Path) -> None:
    spec = build_spec(make_cfg("debug=fast", "trainer.stages=[{optimizer: adam, steps: 1, causal: auto}]"),
                      tmp_path / "out", "test")
    assert spec.stages[0].causal.auto


@pytest.mark.slow
def test_the_accurate_recipe_builds_for_every_benchmark_problem(tmp_path: Path) -> None:
    """trainer=accurate: Adam warm-up then optimizer-auto stages (LM here) with RAD and grid extension, a budget,
    4,000 points;
    the configuration checks pass for the table's problems with their presets (no training)."""
    accuracy_table = load_script(REPO_ROOT / "scripts" / "accuracy_table.py", "kanpde_accuracy_table")
    for stem in accuracy_table.PROBLEMS:
        if stem == "allencahn1d":  # its reference solution takes minutes to build the first time
            continue
        ovs = [f"problem={stem}", *accuracy_table.RECIPE, *accuracy_table.PRESETS.get(stem, []), "trainer.max_seconds=60"]
        spec = build_spec(make_cfg(*ovs), tmp_path / stem, "test")
        assert spec.max_seconds == 60.0 and spec.n_interior == 4000
        assert [st.optimizer_name for st in spec.stages] == ["Adam", "auto", "auto", "auto", "auto"]
        # the KAN at its last grid (what the baseline is matched to) resolves to LM on the recipe's 4,800 points
        assert spec.stages[-1].optimizer.choose(spec.models[1].notes["matched_params"], 4_800).name == "lm", stem
        assert [st.grid_size for st in spec.stages] == [5, 5, 10, 20, 40]
        assert all(st.adaptive is not None and st.adaptive.method == "rad" for st in spec.stages[1:])
        assert spec.models[1].notes["matched_params"] > 0, stem
