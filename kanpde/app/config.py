"""A Hydra/OmegaConf configuration turned, once, into a typed :class:`RunSpec`.

:func:`build_spec` checks the whole configuration (dtype, device, engine, problem, model widths and
constructor arguments, stages and their optimizers, sampler, evaluation grid, output directory) before
any training starts and raises :class:`ConfigError` with one clear sentence when something is off. The
rest of the application reads the :class:`RunSpec` only.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, MissingMandatoryValue, OmegaConf, open_dict
from torch import nn

from kanpde.app.problem_file import class_path, is_file_target, load_class
from kanpde.derivatives.field import ENGINE_CHOICES, supports_forward
from kanpde.models import KAN, HardDirichlet, PeriodicEmbedding, warm_up
from kanpde.models.protocol import is_edge_model
from kanpde.pde import Problem, Sampler, check_problem
from kanpde.pde.hard import corner_note, soft_problem
from kanpde.pde.periodic import periodic_axes, unperiodic_problem
from kanpde.pde.reference import ReferenceData, declared_reference, read_reference
from kanpde.training import Stage
from kanpde.training.auto import TIERS, AutoOptimizer
from kanpde.training.fit import CHUNK_SIZE, DIVERGENCE_FACTOR

__all__ = ["ConfigError", "RunSpec", "ModelSpec", "EvalSpec", "OutputSpec", "build_spec", "build_stages", "DTYPES",
           "check_command_line"]

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64}
STAGE_KEYS = {"optimizer", "steps", "grid_size", "n_interior", "n_boundary", "resample", "update_grid", "sparsify",
              "prune", "symbolic", "restarts", "adaptive", "rba", "causal", "balance"}


class ConfigError(ValueError):
    """The configuration cannot be run; the message says which value and why."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of the run: ``name`` (``"model"`` or ``"baseline"``), its checked config node, and
    ``make(dtype, device)``, which builds it (wrapped in hard constraints when the run asks for them);
    ``notes``: entries for its metrics (``matched_params``: the main model's count its widths were chosen for);
    ``rematch(n)``: for a baseline with ``match_params=true``, the spec matched to ``n`` parameters instead
    (the run calls it with the trained main model's count, which a wall-clock budget may leave below the
    count planned at the end of the stages, the one this spec is matched to)."""

    name: str
    node: DictConfig
    make: Callable[[torch.dtype, torch.device], nn.Module]
    notes: dict[str, Any] = field(default_factory=dict)
    rematch: Callable[[int], ModelSpec] | None = None


@dataclass(frozen=True)
class EvalSpec:
    n_per_axis: int
    chunk_size: int
    max_points: int
    every_stage: bool


@dataclass(frozen=True)
class OutputSpec:
    figures: bool
    checkpoint: bool
    activations: bool


@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs, checked: built once from the configuration by :func:`build_spec`."""

    run_id: str
    output_dir: Path
    problem: Problem
    fit_problem: Problem  # the problem trained on: without the conditions hard constraints enforce
    models: tuple[ModelSpec, ...]  # the main model, then the baseline if any
    stages: tuple[Stage, ...]
    make_sampler: Callable[[], Sampler]
    dtype: torch.dtype
    device: torch.device
    engine: str
    seed: int
    n_interior: int
    n_boundary: int
    pde_weight: float
    eval: EvalSpec
    output: OutputSpec
    resume: bool
    config_yaml: str
    divergence_factor: float | None = DIVERGENCE_FACTOR
    chunk_size: int | None = CHUNK_SIZE
    reference: ReferenceData | None = None  # solution data to compute errors at (problem.reference=PATH or declared)
    reference_wins: bool = False  # the run's error metrics are those vs the reference data (else vs exact)
    max_seconds: float | None = None  # wall-clock training budget per model (trainer.max_seconds)


def _instantiate(node: Any, what: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with its errors turned into one-line :class:`ConfigError` s."""
    try:
        return instantiate(node, **kwargs)
    except MissingMandatoryValue as exc:
        raise ConfigError(f"{what}: {exc.full_key} is required; give it on the command line ({exc.full_key}=...)") from None
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, (ValueError, TypeError)):
            raise ConfigError(f"{what}: {cause}") from None
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{what}: {first}") from None


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here; use device=auto or device=cpu")
    return device


def _fit_widths(model_cfg: DictConfig, problem: Problem, what: str) -> DictConfig:
    """The model config with ``null`` ends of ``widths`` filled from the problem, checked against it."""
    widths = model_cfg.get("widths")
    if widths is None:
        return model_cfg
    widths = list(widths)
    if len(widths) < 2:
        raise ConfigError(f"{what}.widths={widths} needs at least an input and an output size")
    widths[0] = problem.dim if widths[0] is None else widths[0]
    widths[-1] = problem.n_outputs if widths[-1] is None else widths[-1]
    if any(w is None for w in widths):
        raise ConfigError(f"{what}.widths={widths}: only the first and last entries may be null")
    if widths[0] != problem.dim or widths[-1] != problem.n_outputs:
        raise ConfigError(
            f"{what}.widths={widths} does not fit problem {problem.name}: it has {problem.dim} inputs "
            f"{problem.coords} and {problem.n_outputs} output(s) {problem.outputs}, so widths must be "
            f"[{problem.dim}, ..., {problem.n_outputs}] (or null at either end)"
        )
    filled = model_cfg.copy()
    filled.widths = widths
    return filled


_EXTRAS = {"pytorch_optimizer": '; pip install "kanpde[optimizers]"'}


def _missing_module(target: str) -> str | None:
    """The top-level package of ``target`` when it is not installed."""
    top = str(target).split(".")[0]
    return top if top and importlib.util.find_spec(top) is None else None


def _optimizer_factory(opt: Any, named: Any, where: str) -> Callable:
    if isinstance(opt, str):
        if opt not in named:
            raise ConfigError(f"{where}: unknown optimizer {opt!r}; valid: {sorted(named)}, auto or a _target_ node")
        opt = named[opt]
    if not isinstance(opt, DictConfig) or "_target_" not in opt:
        raise ConfigError(f"{where}: optimizer must be a name from trainer.optimizers or a _target_ node")
    try:
        cls = get_class(opt._target_)
    except Exception:
        missing = _missing_module(opt._target_)
        hint = f" (module {missing!r} is not installed{_EXTRAS.get(missing, '')})" if missing else ""
        raise ConfigError(f"{where}: unknown optimizer class {opt._target_!r}{hint}") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"{where}: {opt._target_!r} is not a torch.optim.Optimizer")
    factory = _instantiate(OmegaConf.merge(opt, {"_partial_": True}), f"{where}.optimizer")
    try:  # the optimizer's own argument checks (a negative lr, a bad LM damping) before any training
        factory([nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}.optimizer: {exc}") from None
    return factory


AUTO_KEYS = {"lm", "quasi_newton", "fallback", "lm_max_params", "jacobian_max_mb", "hessian_max_mb"}
AUTO_NAMES = {"lm": "lm", "quasi_newton": "ssbroyden", "fallback": "lbfgs"}


def _auto_optimizer(trainer: DictConfig, named: Any) -> AutoOptimizer:
    """``optimizer: auto``: the :class:`~kanpde.training.auto.AutoOptimizer` of ``trainer.auto_optimizer``
    (optional: ``{lm, quasi_newton, fallback}`` name optimizers of ``trainer.optimizers``, defaults lm,
    ssbroyden, lbfgs; ``lm_max_params``, ``jacobian_max_mb``, ``hessian_max_mb``: the rule's bounds)."""
    node = trainer.get("auto_optimizer") or {}
    if not isinstance(node, DictConfig) and node != {}:
        raise ConfigError(f"trainer.auto_optimizer={node!r} must be a mapping of {sorted(AUTO_KEYS)}")
    extra = set(node) - AUTO_KEYS
    if extra:
        raise ConfigError(f"trainer.auto_optimizer: unknown key(s) {sorted(extra)}; valid: {sorted(AUTO_KEYS)}")
    names = tuple(node.get(tier, AUTO_NAMES[tier]) for tier in TIERS)
    if any(not isinstance(name, str) for name in names):
        raise ConfigError("trainer.auto_optimizer: lm, quasi_newton and fallback must be names in trainer.optimizers")
    factories = [_optimizer_factory(name, named, f"trainer.auto_optimizer.{tier}") for tier, name in zip(TIERS, names)]
    bounds = {k: node[k] for k in ("lm_max_params", "jacobian_max_mb", "hessian_max_mb") if k in node}
    try:
        auto = AutoOptimizer(*factories, names=names, **bounds)
    except ValueError as exc:
        raise ConfigError(f"trainer.auto_optimizer: {str(exc).removeprefix('auto optimizer ')}") from None
    try:  # the quasi-Newton tier takes every count up to the Hessian bound (its own max_params may be lower)
        auto.quasi_newton([nn.Parameter(torch.empty(auto.quasi_newton_max_params, device="meta"))])
    except ValueError as exc:
        raise ConfigError(f"trainer.auto_optimizer.hessian_max_mb={auto.hessian_max_mb:g} allows "
                          f"{auto.quasi_newton_max_params:,} parameters, but {names[1]} refuses them ({exc}); "
                          "lower hessian_max_mb or raise its max_params") from None
    return auto


def build_stages(trainer: DictConfig) -> list[Stage]:
    """:class:`Stage` s from ``trainer.stages``; a stage's ``optimizer`` is a name in ``trainer.optimizers``,
    a ``{_target_: ..., _partial_: true, ...}`` node, or ``auto`` (:func:`_auto_optimizer`)."""
    named = trainer.get("optimizers") or {}
    stages_cfg = trainer.get("stages")
    if stages_cfg is not None and not isinstance(stages_cfg, ListConfig):
        raise ConfigError(f"trainer.stages={stages_cfg!r} is not a list of stages: give e.g. "
                          "trainer.stages=[{optimizer: adam, steps: 100}]")
    if not stages_cfg:
        raise ConfigError("trainer.stages is empty: give at least one {optimizer, steps} stage")
    stages = []
    for i, node in enumerate(stages_cfg):
        where = f"trainer.stages[{i}]"
        if not isinstance(node, DictConfig):
            raise ConfigError(f"{where}={node!r} is not a stage: give {{optimizer: ..., steps: ...}}")
        if node.get("optimizer") == "auto" and "auto" not in named:
            factory = _auto_optimizer(trainer, named)
        else:
            factory = _optimizer_factory(node.get("optimizer"), named, where)
        extra = set(node) - STAGE_KEYS
        if extra:
            raise ConfigError(f"{where}: unknown stage key(s) {sorted(extra)}")
        kwargs = {k: node[k] for k in node if k != "optimizer"}
        kwargs.update({k: OmegaConf.to_container(v) for k, v in kwargs.items() if isinstance(v, DictConfig)})
        try:
            stages.append(Stage(optimizer=factory, **kwargs))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return stages


def _count(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}={value!r} must be an integer >= {minimum}")
    return value


def _check_points(trainer: DictConfig, stages: list[Stage], fit_problem: Problem) -> tuple[int, int]:
    """``trainer.n_interior`` / ``n_boundary`` and each stage's own counts: enough points for the PDE and
    at least one per boundary condition trained on; causal weights only where the problem has time.
    Returns the run's two counts."""
    n_conditions = len(fit_problem.conditions)
    need = f"the problem trains {n_conditions} boundary condition(s), each needing a point"
    n_interior = _count(trainer.get("n_interior"), "trainer.n_interior", 1)
    n_boundary = _count(trainer.get("n_boundary"), "trainer.n_boundary", 0)
    if n_boundary < n_conditions:
        raise ConfigError(f"trainer.n_boundary={n_boundary} is too small: {need}; use n_boundary >= {n_conditions}")
    for i, st in enumerate(stages):
        if st.n_boundary is not None and st.n_boundary < n_conditions:
            raise ConfigError(f"trainer.stages[{i}].n_boundary={st.n_boundary} is too small: {need}; "
                              f"use n_boundary >= {n_conditions}")
        if st.adaptive is not None:
            try:
                st.adaptive.check_points(st.n_interior or n_interior)
            except ValueError as exc:
                raise ConfigError(f"trainer.stages[{i}]: {exc}") from None
        if st.causal is not None and not st.causal.auto and not fit_problem.is_time_dependent:
            raise ConfigError(f"trainer.stages[{i}].causal: causal weights need a time coordinate, but problem "
                              f"{type(fit_problem).__name__} has coords {list(fit_problem.coords)} without "
                              f"{fit_problem.time_coord!r}")
    return n_interior, n_boundary


def _weight(value: Any, where: str) -> float:
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = math.nan
    if isinstance(value, bool) or not 0 <= weight < math.inf:
        raise ConfigError(f"{where}={value!r} must be a finite number >= 0 (a negative weight maximises its residual)")
    return weight


def _check_output_dir(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(f"output directory {output_dir} is not writable: {exc.strerror or exc}") from None


SEARCH_PATH_ARGS = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")


def _group_options() -> dict[str, list[str]]:
    """The shipped config groups and their options: ``conf/<group>/*.yaml`` (Hydra's own groups aside)."""
    from importlib.resources import files

    conf = files("kanpde.conf")
    return {g.name: sorted(f.name[:-5] for f in g.iterdir() if f.name.endswith(".yaml"))
            for g in conf.iterdir() if g.is_dir() and g.name not in ("hydra", "__pycache__")}


def _check_group_choices(overrides: list[tuple[str, str]], multirun: bool) -> None:
    groups = _group_options()
    for key, value in overrides:
        group = key.split("@", 1)[0]
        if group not in groups or value in ("null", "None", "") or any(c in value for c in "()[]{}$*?"):
            continue  # not a group, none chosen, or a sweep function / interpolation Hydra expands
        for name in (value.split(",") if multirun else [value]):
            if name.strip() not in groups[group]:
                raise ConfigError(f"unknown {group} {name.strip()!r} ({key}={value}); valid: {', '.join(groups[group])}")


def _check_output_root(value: str) -> None:
    """The directory Hydra is about to create (``value``, interpolations cut off) can be: its nearest
    existing ancestor is a directory in which a file can be created and removed (``os.access`` says yes
    to root on a read-only or virtual file system)."""
    path = Path(value.split("${", 1)[0] or ".").absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    reason = "not a directory"
    if existing.is_dir():
        try:
            with tempfile.NamedTemporaryFile(dir=existing, prefix=".kanpde-write-test-"):
                return
        except OSError as exc:
            reason = exc.strerror or str(exc)
    raise ConfigError(f"output directory {value} cannot be created: {existing} is not a writable directory ({reason})")


def check_command_line(argv: list[str]) -> None:
    """The checks Hydra's own start-up would fail on with a traceback or a long message, made on the raw
    command line before Hydra composes anything; raises :class:`ConfigError` (one line).

    * every config group option named (``problem=nope``, ``model=kan,nope`` in a sweep, ``experiment=``,
      ``trainer=``, ``debug=``, ``model@baseline=``) is a ``conf/<group>/<option>.yaml``; skipped when a
      search path is added (``--config-dir`` and the like), which may bring options of its own;
    * the run's directory (``hydra.run.dir``, default ``outputs/``; with ``-m`` ``hydra.sweep.dir``, default
      ``multirun/``) can be created: a file is created and removed in its nearest existing ancestor.
    """
    multirun = any(a in ("-m", "--multirun") for a in argv)
    overrides = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and not arg.startswith("-") and not key.startswith("~"):
            overrides.append((key.lstrip("+"), value))
    if not any(a.split("=", 1)[0] in SEARCH_PATH_ARGS for a in argv) and not any(k == "hydra.searchpath" for k, _ in overrides):
        _check_group_choices(overrides, multirun)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = [v for k, v in overrides if k == key]
    _check_output_root(given[-1] if given else ("multirun" if multirun else "outputs"))


def _make_model(node: DictConfig, what: str, dtype: torch.dtype, device: torch.device) -> nn.Module:
    try:
        cls = get_class(node._target_)
        params = inspect.signature(cls).parameters
    except Exception:
        raise ConfigError(f"{what}: unknown model class {node.get('_target_')!r}") from None
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        # a key of another model's config, e.g. an experiment preset's KAN grid_size under model=mlp
        extra = [str(k) for k in node if k != "_target_" and k not in params]
        if extra:
            drop = " ".join(f"~{what}.{k}" for k in extra)
            raise ConfigError(f"{what}: {cls.__name__} takes no {', '.join(extra)} (set for another model, e.g. by an "
                              f"experiment preset); drop it with {drop}")
    kwargs = {"dtype": dtype, "device": device} if {"dtype", "device"} <= set(params) else {}
    model = _instantiate(node, what, **kwargs)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{what}: {type(model).__name__} is not a torch.nn.Module")
    return model.to(dtype=dtype, device=device)


def _problem_node(cfg: DictConfig) -> Any:
    """``cfg.problem``; for a user's file (``problem._target_=path/to/my_pde.py:MyProblem``) the file is loaded
    (:mod:`kanpde.app.problem_file`; a relative path from where the command started) and the node names
    the class it defines."""
    node = cfg.problem
    if isinstance(node, DictConfig) and "reference" in node:  # the run's, not a constructor argument
        node = node.copy()  # keeps its place in the config: errors name problem.<key>
        with open_dict(node):
            del node["reference"]
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if not is_file_target(target):
        return node
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    try:
        cls = load_class(target, get_original_cwd() if HydraConfig.initialized() else None)
    except ValueError as exc:
        raise ConfigError(f"problem._target_={target}: {exc}") from None
    node = node.copy()
    node._target_ = f"{cls.__module__}.{cls.__qualname__}"
    return node


def _recorded_config(cfg: DictConfig) -> str:
    """The resolved configuration a run stores; a problem from a file is recorded by its class path
    (``kanpde_user.<stem>:<Class>``, :func:`~kanpde.app.problem_file.class_path`), never by the file."""
    target = cfg.problem.get("_target_") if isinstance(cfg.get("problem"), DictConfig) else None
    if not is_file_target(target):
        return OmegaConf.to_yaml(cfg, resolve=True)
    data = OmegaConf.to_container(cfg, resolve=True)
    data["problem"]["_target_"] = class_path(target)
    return OmegaConf.to_yaml(data)


def command_path(value: object) -> Path:
    """A path given on the command line: a relative one from the directory the command started in."""
    path = Path(str(value)).expanduser()
    if path.is_absolute():
        return path
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    return Path(get_original_cwd() if HydraConfig.initialized() else ".") / path


def _reference(cfg: DictConfig, problem: Problem) -> tuple[ReferenceData | None, bool]:
    """The run's reference data and whether its errors are the run's: ``problem.reference=PATH`` (from where
    the command started; used over an exact solution), else the data the problem declares (used where it has
    no exact solution). Read and checked here, before training: a bad file is one :class:`ConfigError` line."""
    given = cfg.problem.get("reference") if isinstance(cfg.get("problem"), DictConfig) else None
    if given is not None:
        try:
            return read_reference(command_path(given), problem), True
        except ValueError as exc:
            raise ConfigError(f"problem.reference={given}: {exc}") from None
    try:
        declared = declared_reference(problem)
    except ValueError as exc:
        raise ConfigError(f"{type(problem).__name__}.reference: {exc}") from None
    return declared, declared is not None and not problem.has_exact


def _problems(cfg: DictConfig) -> tuple[Problem, Problem]:
    """The configured problem, and the problem trained on (without the conditions that hard constraints or
    the periodic embedding enforce)."""
    problem = _instantiate(_problem_node(cfg), "problem")
    if not isinstance(problem, Problem):
        raise ConfigError(f"problem: {type(problem).__name__} is not a kanpde.Problem")
    if cfg.get("periodic_embedding", False):
        if cfg.get("hard_bc", False):
            raise ConfigError("periodic_embedding=true with hard_bc=true: the lifting g + D N is not periodic in "
                              "general; use one of them")
        try:
            return problem, unperiodic_problem(problem)
        except ValueError as exc:
            raise ConfigError(f"periodic_embedding=true: {exc}") from None
    if not cfg.get("hard_bc", False):
        return problem, problem
    try:
        soft = soft_problem(problem)
    except ValueError as exc:
        raise ConfigError(f"hard_bc=true: {exc}") from None
    note = corner_note(problem)
    if note:
        log.warning("hard_bc=true: %s", note)
    return problem, soft


def _model_nodes(cfg: DictConfig, problem: Problem) -> list[tuple[str, DictConfig]]:
    baseline_cfg = cfg.get("baseline")
    if baseline_cfg is not None and not isinstance(baseline_cfg, DictConfig):
        raise ConfigError(
            f"baseline={baseline_cfg!r} is not a model config: choose one with model@baseline={baseline_cfg} "
            "(or baseline=null for none)"
        )
    if isinstance(baseline_cfg, DictConfig) and "_target_" not in baseline_cfg:
        # settings without a model: a preset that resizes the baseline (debug=fast) under one that chose no
        # model@baseline (experiment=burgers1d_inverse). No model class was chosen, so there is no baseline.
        log.info("baseline: no model chosen (model@baseline=...), so its settings %s train nothing",
                 sorted(baseline_cfg))
        baseline_cfg = None
    nodes = [("model", _fit_widths(cfg.model, problem, "model"))]
    if baseline_cfg is not None:
        baseline_cfg = _fit_widths(baseline_cfg, problem, "baseline")
        if OmegaConf.to_container(baseline_cfg) == OmegaConf.to_container(nodes[0][1]):
            log.info("baseline is the same model as the main one: not trained twice")
        else:
            nodes.append(("baseline", baseline_cfg))
    return nodes


def _check_stage_kinds(stages: list[Stage], main: nn.Module, hard_bc: bool, periodic: bool = False) -> None:
    """Stage kinds that cannot apply to the main model are refused (the baseline runs the same schedule
    and skips the interpretability steps, which need edge functions)."""
    for i, st in enumerate(stages):
        kinds = [k for k, on in (("sparsify", bool(st.sparsify)), ("prune", st.prune is not False),
                                 ("symbolic", bool(st.symbolic) and st.symbolic_field is None)) if on]
        if kinds and not is_edge_model(main):
            raise ConfigError(f"trainer.stages[{i}]: {'/'.join(kinds)} needs a model with edge functions (a KAN), "
                              f"not {type(main).__name__}")
        if "symbolic" in kinds and hard_bc:
            raise ConfigError(f"trainer.stages[{i}]: symbolic stages with hard_bc=true would snap the network N inside "
                              "u = g + D N, whose formula is not the solution's; use hard_bc=false")
        if "symbolic" in kinds and periodic:
            raise ConfigError(f"trainer.stages[{i}]: symbolic stages with periodic_embedding=true would snap the network "
                              "of (cos, sin) features, whose formula is not the solution's; use periodic_embedding=false")


def _check_parameter_counts(stages: list[Stage], node: DictConfig, name: str, model: nn.Module) -> None:
    """Optimizers that limit the parameter count (``limits_parameter_count``: the dense inverse Hessian of
    :class:`kanpde.QuasiNewton`) are built over a stand-in of the count the model has in their stage (after
    the grid extensions before it, without pruning), so a model too large for them is refused before training."""
    counts: dict[int | None, int] = {}
    for i, (st, grid) in enumerate(zip(stages, _stage_grids(stages, node))):
        if not getattr(getattr(st.optimizer, "func", None), "limits_parameter_count", False):
            continue
        if grid not in counts:
            counts[grid] = _count_at_grid(node, name, model, grid)
        try:
            st.optimizer([nn.Parameter(torch.empty(counts[grid], device="meta"))])
        except ValueError as exc:
            raise ConfigError(f"trainer.stages[{i}].optimizer ({name}): {exc}") from None


def _stage_grids(stages: list[Stage], node: DictConfig) -> list[int | None]:
    """The grid size the model has in each stage (None throughout for a model without a grid)."""
    grid, grids = node.get("grid_size") if "grid_size" in node else None, []
    for st in stages:
        if grid is not None and st.grid_size is not None:
            grid = st.grid_size
        grids.append(grid)
    return grids


def _count_at_grid(node: DictConfig, name: str, model: nn.Module, grid: int | None) -> int:
    """Parameters of ``model`` (built from ``node``) once its grid is ``grid``."""
    if grid is None or grid == node.get("grid_size"):
        return sum(p.numel() for p in model.parameters())
    grown = _make_model(OmegaConf.merge(node, {"grid_size": grid}), name, torch.float64, torch.device("cpu"))
    return sum(p.numel() for p in grown.parameters())


def _matched_widths(node: DictConfig, target: int) -> tuple[DictConfig, int]:
    """The baseline node with ``match_params`` taken out and, when it is true, its hidden widths all set to
    the one width ``w`` (its depth kept) whose parameter count is closest to ``target`` (the smaller ``w``
    on a tie). Returns the node and the count it has."""
    node = node.copy()
    with open_dict(node):
        match = node.pop("match_params", False)
    if not isinstance(match, bool):
        raise ConfigError(f"baseline.match_params={match!r} must be true or false")
    if not match:
        return node, 0
    widths = list(node.get("widths") or [])
    if len(widths) < 3:
        raise ConfigError(f"baseline.match_params=true needs a baseline with hidden layers (widths [in, w, ..., out]), "
                          f"got widths {widths}")

    def count(w: int) -> int:
        trial = OmegaConf.merge(node, {"widths": [widths[0], *[w] * (len(widths) - 2), widths[-1]]})
        return sum(p.numel() for p in _make_model(trial, "baseline", torch.float64, torch.device("cpu")).parameters())

    low, high = 1, 1  # count(w) grows with w: double up to the target, then bisect
    while count(high) < target:
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) < target else (low, mid)
    w = low if abs(count(low) - target) <= abs(count(high) - target) else high
    node.widths = [widths[0], *[w] * (len(widths) - 2), widths[-1]]
    return node, count(w)


def _embedded_widths(node: DictConfig, problem: Problem, name: str) -> DictConfig:
    """The model node with one more input per periodic coordinate (each enters as a (cos, sin) pair)."""
    if node.get("widths") is None:
        raise ConfigError(f"periodic_embedding=true needs a model with widths; {name} {node.get('_target_')} has none")
    widened = node.copy()
    widened.widths = [problem.dim + len(periodic_axes(problem)), *list(node.widths)[1:]]
    return widened


def _model_specs(cfg: DictConfig, problem: Problem, engine: str, stages: list[Stage]) -> tuple[ModelSpec, ...]:
    hard_bc = bool(cfg.get("hard_bc", False))
    periodic = bool(cfg.get("periodic_embedding", False))
    specs = []
    main_count = 0  # the main model's parameters at the end of its stages: what match_params matches
    for name, node in _model_nodes(cfg, problem):
        if periodic:
            node = _embedded_widths(node, problem, name)
        notes: dict[str, Any] = {}
        if name == "model" and "match_params" in node:  # model=mlp: the key is the baseline's
            if node.match_params:
                raise ConfigError("model.match_params=true: parameter matching applies to the baseline "
                                  "(baseline.match_params=true matches it to the main model)")
            node = node.copy()
            with open_dict(node):
                node.pop("match_params")
        rematch = None
        if name == "baseline" and "match_params" in node:
            raw = node
            node, matched = _matched_widths(raw, main_count)
            if matched:
                notes["matched_params"] = main_count
                rematch = functools.partial(_rematched, raw, problem, hard_bc, periodic)
        model = _make_model(node, name, torch.float64, torch.device("cpu"))  # constructor checks, before training
        if name == "model":
            main_count = _count_at_grid(node, name, model, _stage_grids(stages, node)[-1])
        if engine == "forward" and not supports_forward(model):
            raise ConfigError(f"engine=forward but {name} {type(model).__name__} has no forward_jet; use engine=auto or autograd")
        if name == "model":
            _check_stage_kinds(stages, model, hard_bc, periodic)
        _check_parameter_counts(stages, node, name, model)

        specs.append(ModelSpec(name, node, _factory(node, name, problem, hard_bc, periodic), notes, rematch))
    return tuple(specs)


def _factory(node: DictConfig, name: str, problem: Problem, hard_bc: bool,
             periodic: bool) -> Callable[[torch.dtype, torch.device], nn.Module]:
    """``make(dtype, device)`` of a model spec: the network from ``node``, wrapped as the run asks."""

    def make(dtype: torch.dtype, device: torch.device) -> nn.Module:
        net = _make_model(node, name, dtype, device)
        if periodic:  # u = N(cos, sin, ...): periodic exactly
            return PeriodicEmbedding(net, problem)
        return HardDirichlet(net, problem) if hard_bc else net  # u = g + D N: Dirichlet data exactly

    return make


def _rematched(raw: DictConfig, problem: Problem, hard_bc: bool, periodic: bool, target: int) -> ModelSpec:
    """The baseline spec (``raw``: its node with ``match_params``) matched to ``target`` parameters."""
    node, matched = _matched_widths(raw, target)
    log.info("baseline widths %s: %d parameters, matched to the main model's %d", list(node.widths), matched, target)
    return ModelSpec("baseline", node, _factory(node, "baseline", problem, hard_bc, periodic),
                     {"matched_params": target}, functools.partial(_rematched, raw, problem, hard_bc, periodic))


def _trainer_limits(trainer: DictConfig) -> tuple[float | None, int | None]:
    """``trainer.divergence_factor`` (a number > 1, or null: only non-finite losses diverge) and
    ``trainer.chunk_size`` (points per chunk of the loss, or null: never chunked), checked."""
    factor = trainer.get("divergence_factor", DIVERGENCE_FACTOR)
    if factor is not None and (isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 1 < factor < float("inf")):
        raise ConfigError(f"trainer.divergence_factor must be a number > 1 or null (no check), got {factor!r}")
    chunk = trainer.get("chunk_size", CHUNK_SIZE)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ConfigError(f"trainer.chunk_size must be a positive integer or null (no chunking), got {chunk!r}")
    return (None if factor is None else float(factor)), chunk


def _max_seconds(trainer: DictConfig) -> float | None:
    """``trainer.max_seconds``: the wall-clock training budget of each model (null: none), checked."""
    value = trainer.get("max_seconds")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf):
        raise ConfigError(f"trainer.max_seconds must be a number of seconds > 0 or null (no budget), got {value!r}")
    return None if value is None else float(value)


def build_spec(cfg: DictConfig, output_dir: Path, run_id: str) -> RunSpec:
    """Check the whole configuration and build the :class:`RunSpec` (models are built per fit)."""
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype={cfg.dtype!r}; valid: {sorted(DTYPES)}")
    engine = cfg.get("engine", "auto")
    if engine not in ENGINE_CHOICES:
        raise ConfigError(f"engine={engine!r}; valid: {list(ENGINE_CHOICES)}")
    device = _resolve_device(str(cfg.device))
    problem, fit_problem = _problems(cfg)
    for p in {id(problem): problem, id(fit_problem): fit_problem}.values():
        if p.unknowns is not None:  # fields declared by their KAN widths: made now, so the check can probe them
            p.unknowns.build_fields(lambda widths, grid: KAN(widths, grid_size=grid, dtype=DTYPES[cfg.dtype], device=device))
    try:  # pde(), conditions, exact() on a few points: shapes, dtype, finiteness, before any training
        check_problem(problem, DTYPES[cfg.dtype], device)
    except ValueError as exc:
        raise ConfigError(f"problem check: {exc}") from None
    reference, reference_wins = _reference(cfg, problem)
    stages = build_stages(cfg.trainer)
    if problem.unknowns is not None and bool(cfg.get("resume", False)):
        raise ConfigError(f"resume=true is not available for {type(problem).__name__}: its unknowns are not kept in "
                          "checkpoints; run it again without resume")
    n_interior, n_boundary = _check_points(cfg.trainer, stages, fit_problem)
    pde_weight = _weight(cfg.trainer.get("pde_weight"), "trainer.pde_weight")
    divergence_factor, chunk_size = _trainer_limits(cfg.trainer)
    max_seconds = _max_seconds(cfg.trainer)
    models = _model_specs(cfg, problem, engine, stages)
    _instantiate(cfg.sampler, "sampler")
    if int(cfg.eval.n_per_axis) < 2:
        raise ConfigError(f"eval.n_per_axis must be >= 2, got {cfg.eval.n_per_axis}")
    _check_output_dir(output_dir)
    if device.type == "cpu":
        warm_up()  # numba's one-off start, here rather than inside the first model's timed training
    return RunSpec(
        run_id=run_id,
        output_dir=output_dir,
        problem=problem,
        fit_problem=fit_problem,
        models=models,
        stages=tuple(stages),
        make_sampler=lambda: _instantiate(cfg.sampler, "sampler"),
        dtype=DTYPES[cfg.dtype],
        device=device,
        engine=str(engine),
        seed=int(cfg.seed),
        n_interior=n_interior,
        n_boundary=n_boundary,
        pde_weight=pde_weight,
        eval=EvalSpec(int(cfg.eval.n_per_axis), int(cfg.eval.chunk_size), int(cfg.eval.get("max_points", 250_000)),
                      bool(cfg.eval.get("every_stage", False))),
        output=OutputSpec(bool(cfg.output.figures), bool(cfg.output.checkpoint), bool(cfg.output.get("activations", False))),
        resume=bool(cfg.get("resume", False)),
        config_yaml=_recorded_config(cfg),
        divergence_factor=divergence_factor,
        chunk_size=chunk_size,
        reference=reference,
        reference_wins=reference_wins,
        max_seconds=max_seconds,
    )
