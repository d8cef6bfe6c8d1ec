"""One run from a configuration: config -> objects -> fit -> evaluate -> save.

This module and :mod:`kanpde.__main__` are the only ones that see Hydra/OmegaConf. :func:`run` checks
the whole configuration (problem, model widths, grids, stages, optimizers, output directory) before
any training starts and raises :class:`ConfigError` with one clear sentence when something is off.
"""

from __future__ import annotations

import inspect
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

from kanpde.evaluate import evaluate
from kanpde.fields import ENGINES
from kanpde.io import RunResult, atomic_path, save_run, write_json
from kanpde.problem import Problem
from kanpde.train import History, ProgressEvent, Stage, TrainingDiverged, fit

__all__ = ["ConfigError", "RunFailed", "run", "build_stages", "format_table"]

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64}
METRIC_KEYS = ("l2", "l2_rel", "h1_semi", "h1", "h1_rel", "linf", "mse", "h1_mse")
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
        extra = set(node) - {"optimizer", "steps", "grid_size", "n_interior", "n_boundary", "resample", "update_grid"}
        if extra:
            raise ConfigError(f"{where}: unknown stage key(s) {sorted(extra)}")
        kwargs = {k: node[k] for k in node if k != "optimizer"}
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
    engine = cfg.get("engine", "autograd")
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r}; valid: {sorted(ENGINES)}")
    device = _resolve_device(str(cfg.device))
    problem = _instantiate(cfg.problem, "problem")
    if not isinstance(problem, Problem):
        raise ConfigError(f"problem: {type(problem).__name__} is not a kanpde.Problem")
    if not problem.has_exact:
        raise ConfigError(f"problem {problem.name} has no exact solution to evaluate against")
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
            _make_model(node, name, torch.float64, torch.device("cpu"))
    stages = build_stages(cfg.trainer)
    _instantiate(cfg.sampler, "sampler")
    if int(cfg.eval.n_per_axis) < 2:
        raise ConfigError(f"eval.n_per_axis must be >= 2, got {cfg.eval.n_per_axis}")
    _check_output_dir(output_dir)
    return _Built(problem, model_cfg, baseline_cfg, stages, DTYPES[cfg.dtype], device)


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


def _checkpoint_writer(path: Path) -> Callable[[int, nn.Module, History], None]:
    def write(stage: int, model: nn.Module, history: History) -> None:
        state = {
            "stage": stage,
            "model_class": f"{type(model).__module__}:{type(model).__qualname__}",
            "model_config": getattr(model, "config", {}),
            "state_dict": model.state_dict(),
            "history": {"steps": history.steps, "stages": history.stages},
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    return write


def _train_and_evaluate(
    name: str,
    node: DictConfig,
    built: _Built,
    cfg: DictConfig,
    output_dir: Path,
    progress: Callable[[ProgressEvent], None] | None,
) -> tuple[RunResult, str | None]:
    torch.manual_seed(int(cfg.seed))
    model = _make_model(node, name, built.dtype, built.device)
    sampler = _instantiate(cfg.sampler, "sampler")
    prefix = "" if name == "model" else f"{name}_"
    checkpoint = _checkpoint_writer(output_dir / f"{prefix}checkpoint.pt") if cfg.output.checkpoint else None
    failure = None
    try:
        result = fit(
            model,
            built.problem,
            built.stages,
            sampler=sampler,
            n_interior=int(cfg.trainer.n_interior),
            n_boundary=int(cfg.trainer.n_boundary),
            pde_weight=float(cfg.trainer.pde_weight),
            engine=cfg.engine,
            progress=progress,
            on_stage_end=checkpoint,
        )
        model, history, seconds = result.model, result.history, result.seconds
    except TrainingDiverged as exc:
        log.error("%s: %s", name, exc)
        model, history, seconds, failure = exc.model, exc.history, exc.seconds, f"{name}: {exc}"
        if checkpoint:
            checkpoint(-1, model, history)
    evaluation = evaluate(model, built.problem, int(cfg.eval.n_per_axis), engine=cfg.engine,
                          chunk_size=int(cfg.eval.chunk_size), max_points=int(cfg.eval.get("max_points", 250_000)))
    label = type(model).__name__.lower()
    metrics: dict[str, Any] = {k: evaluation.metrics[k] for k in METRIC_KEYS}
    metrics.update({k: evaluation.metrics[k] for k in FINAL_TIME_KEYS if k in evaluation.metrics})
    metrics.update(
        n_params=evaluation.metrics["n_params"],
        train_seconds=seconds,
        model=label,
        problem=built.problem.name,
        status="diverged" if failure else "ok",
    )
    return RunResult(label, model, history, evaluation, metrics), failure


def run(
    cfg: DictConfig,
    output_dir: str | os.PathLike | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> dict[str, Any]:
    """Train the configured model (and its MLP baseline), evaluate, and write the run's outputs.

    Writes ``solution.h5``, ``metrics.json``, figures and checkpoints into ``output_dir`` (default: the
    Hydra run directory) and returns the metrics dict that ``metrics.json`` holds (baseline under
    ``"baseline"``). Raises :class:`ConfigError` before training for a bad configuration and
    :class:`RunFailed` after writing the outputs of the last good model when training diverged.
    """
    if output_dir is None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            raise ConfigError("run(cfg) outside a Hydra app needs an output_dir")
        output_dir = HydraConfig.get().runtime.output_dir
    output_dir = Path(output_dir)
    built = _build(cfg, output_dir)
    log.info("problem %s on %s (%s), output in %s", built.problem.name, built.device, cfg.dtype, output_dir)
    main, failure = _train_and_evaluate("model", built.model_cfg, built, cfg, output_dir, progress)
    baseline, base_failure = None, None
    if built.baseline_cfg is not None and failure is None:
        baseline, base_failure = _train_and_evaluate("baseline", built.baseline_cfg, built, cfg, output_dir, progress)
    metrics = dict(main.metrics)
    if baseline is not None:
        metrics["baseline"] = baseline.metrics
    coords, outputs = built.problem.coords, built.problem.outputs
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    path = save_run(output_dir / "solution.h5", built.problem.name, coords, outputs, main, baseline, config_yaml)
    write_json(output_dir / "metrics.json", metrics)
    if cfg.output.figures:
        from kanpde.plots import plot_run  # matplotlib only when figures are asked for

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
