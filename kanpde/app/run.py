"""One run from a configuration: config -> objects -> fit -> evaluate -> save.

This module and :mod:`kanpde.__main__` are the only ones that see Hydra/OmegaConf. :func:`run` checks
the whole configuration (problem, model widths, grids, stages, optimizers, output directory) before
any training starts and raises :class:`ConfigError` with one clear sentence when something is off.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf
from torch import nn

from kanpde.evaluate import Evaluation, evaluate, module_dtype_device
from kanpde.derivatives.field import ENGINE_CHOICES, supports_forward
from kanpde.models.hard import HardDirichlet, soft_problem
from kanpde.outputs.run_file import RunResult, atomic_path, save_run, write_json
from kanpde.models._kernels import warm_up
from kanpde.pde.problem import Problem
from kanpde.training.fit import History, ProgressEvent, Stage, TrainingDiverged, fit
from kanpde.outputs.xdmf import write_xdmf

__all__ = ["ConfigError", "RunFailed", "run", "run_id", "finished_run", "build_stages", "format_table"]

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64}
METRIC_KEYS = ("l2", "l2_rel", "h1_semi", "h1", "h1_rel", "linf", "mse", "h1_mse")
# Top-level keys that do not change a run's results: left out of its run id.
NON_RESULT_KEYS = ("hydra", "output", "force", "resume", "threads", "study")
FINAL_TIME_KEYS = ("l2_final", "l2_rel_final", "linf_final")  # time-dependent problems only


class ConfigError(ValueError):
    """The configuration cannot be run; the message says which value and why."""


class RunFailed(RuntimeError):
    """Training stopped (e.g. a non-finite loss); the outputs of the last good model were still written."""


@dataclass
class _Built:
    problem: Problem
    model_cfg: DictConfig
    baseline_cfg: DictConfig | None
    stages: list[Stage]
    dtype: torch.dtype
    device: torch.device
    fit_problem: Problem  # the problem trained on: without the conditions hard_bc enforces


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


def build_stages(trainer: DictConfig) -> list[Stage]:
    """:class:`Stage` s from ``trainer.stages``; a stage's ``optimizer`` is a name in ``trainer.optimizers``
    or a ``{_target_: ..., _partial_: true, ...}`` node."""
    named = trainer.get("optimizers") or {}
    stages_cfg = trainer.get("stages")
    if not stages_cfg:
        raise ConfigError("trainer.stages is empty: give at least one {optimizer, steps} stage")
    stages = []
    for i, node in enumerate(stages_cfg):
        where = f"trainer.stages[{i}]"
        opt = node.get("optimizer")
        if isinstance(opt, str):
            if opt not in named:
                raise ConfigError(f"{where}: unknown optimizer {opt!r}; valid: {sorted(named)} or a _target_ node")
            opt = named[opt]
        if not isinstance(opt, DictConfig) or "_target_" not in opt:
            raise ConfigError(f"{where}: optimizer must be a name from trainer.optimizers or a _target_ node")
        try:
            cls = get_class(opt._target_)
        except Exception:
            raise ConfigError(f"{where}: unknown optimizer class {opt._target_!r}") from None
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            raise ConfigError(f"{where}: {opt._target_!r} is not a torch.optim.Optimizer")
        factory = _instantiate(OmegaConf.merge(opt, {"_partial_": True}), f"{where}.optimizer")
        try:  # the optimizer's own argument checks (a negative lr, a bad LM damping) before any training
            factory([nn.Parameter(torch.zeros(1))])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.optimizer: {exc}") from None
        extra = set(node) - {"optimizer", "steps", "grid_size", "n_interior", "n_boundary", "resample", "update_grid",
                             "sparsify", "prune", "symbolic"}
        if extra:
            raise ConfigError(f"{where}: unknown stage key(s) {sorted(extra)}")
        kwargs = {k: node[k] for k in node if k != "optimizer"}
        kwargs.update({k: OmegaConf.to_container(v) for k, v in kwargs.items() if isinstance(v, DictConfig)})
        try:
            stages.append(Stage(optimizer=factory, **kwargs))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return stages


def _check_output_dir(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(f"output directory {output_dir} is not writable: {exc.strerror or exc}") from None


def _build(cfg: DictConfig, output_dir: Path) -> _Built:
    """Check the whole configuration and build everything but the models (built per fit)."""
    if cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype={cfg.dtype!r}; valid: {sorted(DTYPES)}")
    engine = cfg.get("engine", "auto")
    if engine not in ENGINE_CHOICES:
        raise ConfigError(f"engine={engine!r}; valid: {list(ENGINE_CHOICES)}")
    device = _resolve_device(str(cfg.device))
    problem = _instantiate(cfg.problem, "problem")
    if not isinstance(problem, Problem):
        raise ConfigError(f"problem: {type(problem).__name__} is not a kanpde.Problem")
    if not problem.has_exact:
        raise ConfigError(f"problem {problem.name} has no exact solution to evaluate against")
    fit_problem = problem
    if cfg.get("hard_bc", False):
        try:
            fit_problem = soft_problem(problem)
        except ValueError as exc:
            raise ConfigError(f"hard_bc=true: {exc}") from None
    baseline_cfg = cfg.get("baseline")
    if baseline_cfg is not None and not isinstance(baseline_cfg, DictConfig):
        raise ConfigError(
            f"baseline={baseline_cfg!r} is not a model config: choose one with model@baseline={baseline_cfg} "
            "(or baseline=null for none)"
        )
    model_cfg = _fit_widths(cfg.model, problem, "model")
    if baseline_cfg is not None:
        baseline_cfg = _fit_widths(baseline_cfg, problem, "baseline")
        if OmegaConf.to_container(baseline_cfg) == OmegaConf.to_container(model_cfg):
            log.info("baseline is the same model as the main one: not trained twice")
            baseline_cfg = None
    for name, node in (("model", model_cfg), ("baseline", baseline_cfg)):
        if node is not None:  # constructor checks (grid sizes, activations) before any training
            model = _make_model(node, name, torch.float64, torch.device("cpu"))
            if engine == "forward" and not supports_forward(model):
                raise ConfigError(
                    f"engine=forward but {name} {type(model).__name__} has no forward_jet; use engine=auto or autograd"
                )
    stages = build_stages(cfg.trainer)
    _instantiate(cfg.sampler, "sampler")
    if int(cfg.eval.n_per_axis) < 2:
        raise ConfigError(f"eval.n_per_axis must be >= 2, got {cfg.eval.n_per_axis}")
    _check_output_dir(output_dir)
    if device.type == "cpu":
        warm_up()  # numba's one-off start, here rather than inside the first model's timed training
    return _Built(problem, model_cfg, baseline_cfg, stages, DTYPES[cfg.dtype], device, fit_problem)


def _make_model(node: DictConfig, what: str, dtype: torch.dtype, device: torch.device) -> nn.Module:
    try:
        params = inspect.signature(get_class(node._target_)).parameters
    except Exception:
        raise ConfigError(f"{what}: unknown model class {node.get('_target_')!r}") from None
    kwargs = {"dtype": dtype, "device": device} if {"dtype", "device"} <= set(params) else {}
    model = _instantiate(node, what, **kwargs)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{what}: {type(model).__name__} is not a torch.nn.Module")
    return model.to(dtype=dtype, device=device)


def run_id(cfg: DictConfig) -> str:
    """A stable id of the results a configuration produces: a hash of the resolved config without the
    keys that don't change them (:data:`NON_RESULT_KEYS`: output paths and switches, Hydra's own)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    for key in NON_RESULT_KEYS:
        data.pop(key, None)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finished_run(output_dir: str | os.PathLike, rid: str) -> dict[str, Any] | None:
    """The metrics of a finished, successful run with id ``rid`` in ``output_dir``, or None."""
    path = Path(output_dir) / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    statuses = [metrics.get("status"), (metrics.get("baseline") or {}).get("status", "ok")]
    ok = metrics.get("run_id") == rid and statuses == ["ok", "ok"]
    return metrics if ok and (Path(output_dir) / "solution.h5").is_file() else None


def _checkpoint_writer(path: Path, rid: str) -> Callable[[int, nn.Module, History], None]:
    def write(stage: int, model: nn.Module, history: History) -> None:
        state = {
            "stage": stage,
            "run_id": rid,
            "model_class": f"{type(model).__module__}:{type(model).__qualname__}",
            "model_config": getattr(model, "config", {}),
            "state_dict": model.state_dict(),
            "history": {"steps": history.steps, "stages": history.stages},
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    return write


def _resume_state(path: Path, rid: str, dtype: torch.dtype, device: torch.device) -> tuple[int, nn.Module, History] | None:
    """``(next stage, model, history)`` from the checkpoint at ``path`` when it belongs to this run."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("run_id") != rid or int(state["stage"]) < 0:
        log.warning("%s is from another configuration or a diverged fit: not resumed, training from the start", path)
        return None
    module_name, _, qualname = state["model_class"].partition(":")
    cls: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    model = cls(**state["model_config"]).to(dtype=dtype)
    model.load_state_dict(state["state_dict"])
    torch.set_rng_state(state["torch_rng"])
    history = History(steps=list(state["history"]["steps"]), stages=list(state["history"]["stages"]))
    log.info("resuming from %s after stage %d", path, int(state["stage"]) + 1)
    return int(state["stage"]) + 1, model.to(device=device), history


def _train_and_evaluate(
    name: str,
    node: DictConfig,
    built: _Built,
    cfg: DictConfig,
    output_dir: Path,
    progress: Callable[[ProgressEvent], None] | None,
    rid: str,
    on_stage_end: Callable[[int, nn.Module, History], None] | None = None,
) -> tuple[RunResult, str | None]:
    torch.manual_seed(int(cfg.seed))
    model = _make_model(node, name, built.dtype, built.device)
    if cfg.get("hard_bc", False):  # u = g + D N: the Dirichlet data hold exactly, their loss terms are gone
        model = HardDirichlet.around(model, OmegaConf.to_container(cfg.problem, resolve=True))
    sampler = _instantiate(cfg.sampler, "sampler")
    prefix = "" if name == "model" else f"{name}_"
    path = output_dir / f"{prefix}checkpoint.pt"
    resumed = _resume_state(path, rid, built.dtype, built.device) if cfg.get("resume", False) else None
    start_stage, history = (0, None) if resumed is None else (resumed[0], resumed[2])
    model = model if resumed is None else resumed[1]
    checkpoint = _checkpoint_writer(path, rid) if cfg.output.checkpoint else None
    if cfg.eval.get("every_stage", False):  # before the checkpoint, which then keeps the stage's errors
        checkpoint = _chain(_stage_evaluator(built, cfg), checkpoint)
    if on_stage_end is not None:
        checkpoint = _chain(checkpoint, on_stage_end)
    failure = None
    try:
        result = fit(
            model,
            built.fit_problem,
            built.stages,
            sampler=sampler,
            n_interior=int(cfg.trainer.n_interior),
            n_boundary=int(cfg.trainer.n_boundary),
            pde_weight=float(cfg.trainer.pde_weight),
            engine=cfg.get("engine", "auto"),
            progress=progress,
            on_stage_end=checkpoint,
            start_stage=start_stage,
            history=history,
        )
        model, history, seconds = result.model, result.history, result.seconds
    except TrainingDiverged as exc:
        log.error("%s: %s", name, exc)
        model, history, seconds, failure = exc.model, exc.history, exc.seconds, f"{name}: {exc}"
        if checkpoint:
            checkpoint(-1, model, history)
    evaluation = _evaluate(model, built, cfg)
    label = type(getattr(model, "net", model)).__name__.lower()  # a HardDirichlet wrapper: its network's name
    metrics: dict[str, Any] = {k: evaluation.metrics[k] for k in METRIC_KEYS}
    if getattr(model, "fully_symbolic", False):  # a snapped KAN: its formula in the problem's coordinates
        from kanpde.models.symbolic import formula_text

        metrics["formula"] = formula_text(model, built.problem.coords).strip()
        log.info("%s formula: %s", name, metrics["formula"])
    metrics.update({k: evaluation.metrics[k] for k in FINAL_TIME_KEYS if k in evaluation.metrics})
    metrics.update(
        n_params=evaluation.metrics["n_params"],
        train_seconds=seconds,
        model=label,
        problem=built.problem.name,
        status="diverged" if failure else "ok",
    )
    return RunResult(label, model, history, evaluation, metrics), failure


def _evaluate(model: nn.Module, built: _Built, cfg: DictConfig) -> Evaluation:
    """The run's evaluation of ``model`` (grid, engine, chunking and point cap from ``cfg.eval``)."""
    return evaluate(
        model,
        built.problem,
        int(cfg.eval.n_per_axis),
        engine=cfg.get("engine", "auto"),
        chunk_size=int(cfg.eval.chunk_size),
        max_points=int(cfg.eval.get("max_points", 250_000)),
    )


def _stage_evaluator(built: _Built, cfg: DictConfig) -> Callable[[int, nn.Module, History], None]:
    """Adds the evaluation metrics of the model at the end of each stage to that stage's summary in
    the history (``history.stages[i]["eval"]``): the grid-extension curves of the KAN paper."""

    def record(stage: int, model: nn.Module, history: History) -> None:
        ev = _evaluate(model, built, cfg)
        history.stages[-1]["eval"] = {k: ev.metrics[k] for k in METRIC_KEYS}

    return record


def _stage_metrics(history: History) -> list[dict[str, Any]]:
    """The per-stage evaluations of ``eval.every_stage``, with the training time up to each stage."""
    elapsed, rows = 0.0, []
    for summary in history.stages:
        elapsed += float(summary["seconds"])
        if "eval" in summary:
            rows.append({"stage": summary["stage"], "grid_size": summary["grid_size"], "n_params": summary["n_params"],
                         "train_seconds": elapsed, **summary["eval"]})
    return rows


def _describe(result: RunResult, cfg: DictConfig) -> dict[str, Any]:
    """The metrics.json entry of a model: its metrics, final widths and grid size (null without a grid),
    and with ``eval.every_stage`` the per-stage evaluations."""
    out = dict(result.metrics)
    out["widths"] = list(getattr(result.model, "widths", None) or getattr(result.model, "config", {}).get("widths", []))
    grid = getattr(result.model, "grid_size", None)
    out["grid_size"] = None if grid is None else int(grid)
    if cfg.eval.get("every_stage", False):
        out["stages"] = _stage_metrics(result.history)
    return out


def _activation_plot(built: _Built, cfg: DictConfig, model: nn.Module, path: Path) -> None:
    """The KAN's activation plot on fresh interior and boundary points (nothing for other models)."""
    from kanpde.models.kan import KAN

    if not isinstance(model, KAN):
        return
    from kanpde.outputs.plots import plot_activations
    from kanpde.pde.sampling import Sampler

    dtype, device = module_dtype_device(model)
    batch = built.problem.sample(Sampler(seed=int(cfg.seed)), 1024, 256).to(dtype, device)
    plot_activations(model, batch.all_points(), path, built.problem.coords, built.problem.outputs)


def _before_interpret_plotter(built: _Built, cfg: DictConfig, output_dir: Path) -> Callable[[int, nn.Module, History], None]:
    """Plots the network at the end of the stage before the first stage that prunes, and before the first
    that snaps (``activations_before_prune.png``, ``activations_before_symbolic.png``)."""
    first = {}
    for i, st in enumerate(built.stages):
        for kind, on in (("prune", st.prune is not False), ("symbolic", bool(st.symbolic))):
            if on and kind not in first:
                first[kind] = i

    def plot(stage: int, model: nn.Module, history: History) -> None:
        for kind, index in first.items():
            if stage >= 0 and stage + 1 == index:
                _activation_plot(built, cfg, model, output_dir / f"activations_before_{kind}.png")

    return plot


def _chain(*callbacks: Callable[..., None] | None) -> Callable[..., None]:
    def call(*args: Any) -> None:
        for cb in callbacks:
            if cb is not None:
                cb(*args)

    return call


def run(
    cfg: DictConfig,
    output_dir: str | os.PathLike | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    on_stage_end: Callable[[str, int, nn.Module, History], None] | None = None,
) -> dict[str, Any]:
    """Train the configured model (and its MLP baseline), evaluate, and write the run's outputs.

    Writes ``solution.h5`` (+ ``solution.xdmf``), ``metrics.json``, figures and checkpoints into
    ``output_dir`` (default: the Hydra run directory) and returns the metrics dict that ``metrics.json``
    holds (baseline under ``"baseline"``, the config's :func:`run_id` under ``"run_id"``).

    When ``output_dir`` already holds a successful run with the same id, nothing is trained and its
    metrics are returned, unless ``cfg.force`` is true. With ``cfg.resume`` true, each model continues
    from its last stage checkpoint (``checkpoint.pt``, ``baseline_checkpoint.pt``) and ends with the
    same parameters as an uninterrupted run. ``on_stage_end(name, stage, model, history)`` is called
    after every stage of the ``"model"`` and the ``"baseline"``. Raises :class:`ConfigError` before
    training for a bad configuration and :class:`RunFailed` after writing the outputs of the last good
    model when training diverged.
    """
    if output_dir is None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            raise ConfigError("run(cfg) outside a Hydra app needs an output_dir")
        output_dir = HydraConfig.get().runtime.output_dir
    output_dir = Path(output_dir)
    rid = run_id(cfg)
    done = None if cfg.get("force", False) else finished_run(output_dir, rid)
    if done is not None:
        log.info("run %s already finished in %s: skipped (force=true runs it again)", rid, output_dir)
        return done
    built = _build(cfg, output_dir)
    log.info("problem %s on %s (%s), run %s, output in %s", built.problem.name, built.device, cfg.dtype, rid, output_dir)

    def hook(name: str) -> Callable[[int, nn.Module, History], None] | None:
        return None if on_stage_end is None else lambda *args: on_stage_end(name, *args)

    main_hook = hook("model")
    if cfg.output.get("activations", False):  # the network before each stage that prunes or snaps it
        main_hook = _chain(main_hook, _before_interpret_plotter(built, cfg, output_dir))
    main, failure = _train_and_evaluate("model", built.model_cfg, built, cfg, output_dir, progress, rid, main_hook)
    baseline, base_failure = None, None
    if built.baseline_cfg is not None and failure is None:
        baseline, base_failure = _train_and_evaluate(
            "baseline", built.baseline_cfg, built, cfg, output_dir, progress, rid, hook("baseline")
        )
    metrics = _describe(main, cfg)
    if baseline is not None:
        metrics["baseline"] = _describe(baseline, cfg)
    metrics["run_id"] = rid
    coords, outputs = built.problem.coords, built.problem.outputs
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    path = save_run(output_dir / "solution.h5", built.problem.name, coords, outputs, main, baseline, config_yaml)
    write_xdmf(path)
    write_json(output_dir / "metrics.json", metrics)
    if "formula" in main.metrics:  # one SymPy-parsable line per output, in the problem's coordinate names
        with atomic_path(output_dir / "formula.txt") as tmp:
            tmp.write_text(main.metrics["formula"] + "\n")
    if cfg.output.get("activations", False):
        _activation_plot(built, cfg, main.model, output_dir / "activations.png")
    if cfg.output.figures:
        from kanpde.outputs.plots import plot_run  # matplotlib only when figures are asked for

        plot_run(path, output_dir)
    failure = failure or base_failure
    if failure:
        raise RunFailed(f"{failure} (outputs of the last good model are in {output_dir})")
    return metrics


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if math.isfinite(value) and abs(value) >= 1e4 else f"{value:.3e}"
    return str(value)


def format_table(metrics: dict[str, Any]) -> str:
    """A side-by-side text table of the main model's and the baseline's metrics."""
    columns = [metrics] + ([metrics["baseline"]] if "baseline" in metrics else [])
    rows = [("model", "model"), ("params", "n_params"), ("train time [s]", "train_seconds"),
            ("l2_rel", "l2_rel"), ("h1_rel", "h1_rel"), ("linf", "linf"), ("mse (L2^2)", "mse"),
            ("h1_mse (H1^2)", "h1_mse")]
    lines = []
    for label, key in rows:
        cells = [f"{label:<15}"] + [
            f"{(f'{m[key]:.1f}' if key == 'train_seconds' else _fmt(m[key])):>12}" for m in columns
        ]
        lines.append(" ".join(cells))
    return "\n".join(lines)
