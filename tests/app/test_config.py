"""The configuration (kanpde.app.config): every combination of the Hydra
config groups composes and builds, and every bad input is a one-line ConfigError before any training."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from torch import Tensor

from kanpde import Box, Dirichlet, Problem
from kanpde.app.config import ConfigError, build_spec, build_stages
from kanpde.app.run import run
from kanpde.problems.poisson2d import Poisson2D
from tests.helpers import CONF_DIR, fast_cfg, make_cfg


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


@pytest.mark.slow
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
    (["trainer.divergence_factor=1"], r"trainer.divergence_factor must be a number > 1 or null"),
    (["trainer.divergence_factor=abc"], r"trainer.divergence_factor must be a number > 1 or null"),
    (["trainer.chunk_size=0"], r"trainer.chunk_size must be a positive integer or null"),
    (["trainer.chunk_size=1.5"], r"trainer.chunk_size must be a positive integer or null"),
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


def test_hard_bc_config_error_for_an_unsupported_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"hard_bc=true: hard Dirichlet constraints support Box, Disk and Annulus"):
        run(fast_cfg("hard_bc=true", "problem=laplace_lshape"), output_dir=tmp_path)
    assert not (tmp_path / "solution.h5").exists()


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
