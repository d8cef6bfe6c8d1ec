"""One run from a configuration: config -> :class:`~kanpde.app.config.RunSpec` -> fit -> evaluate -> save.

:func:`run` turns the configuration into a checked :class:`~kanpde.app.config.RunSpec` once
(:func:`~kanpde.app.config.build_spec`, which raises :class:`~kanpde.app.config.ConfigError` before any
training) and from then on reads only the spec: it trains the main model and its baseline, evaluates
both, and writes ``solution.h5`` (+ XDMF), ``metrics.json``, figures and checkpoints.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig
from torch import nn

from kanpde.app.checkpoint import (
    check_checkpoints, checkpoint_path, checkpoint_writer, finished_run, output_lock, resume_state, run_id,
)
from kanpde.app.config import ConfigError, ModelSpec, RunSpec, build_spec
from kanpde.app.kernels import compile_ahead
from kanpde.evaluate import NO_EXACT, Evaluation, PointEvaluation, evaluate, reference_errors, relative_difference
from kanpde.models import compile_seconds
from kanpde.models.protocol import is_edge_model, module_dtype_device, unwrap
from kanpde.pde import Problem, Sampler
from kanpde.io.files import atomic_path, write_json
from kanpde.io.run_file import RunResult, save_run
from kanpde.io.xdmf import write_xdmf
from kanpde.training import History, ProgressEvent, SymbolicFailed, TrainingDiverged, fit

__all__ = ["RunFailed", "run", "METRIC_KEYS"]

log = logging.getLogger(__name__)

METRIC_KEYS = ("l2", "l2_rel", "h1_semi", "h1", "h1_rel", "linf", "mse", "h1_mse")
FINAL_TIME_KEYS = ("l2_final", "l2_rel_final", "linf_final")  # time-dependent problems only
RESIDUAL_KEYS = ("residual_rms", "residual_max", "condition_rms")  # every run, exact solution or not
StageHook = Callable[[int, nn.Module, History], None]


class RunFailed(RuntimeError):
    """Training stopped (e.g. a non-finite loss); the outputs of the last good model were still written."""


def _chain(*callbacks: Callable[..., None] | None) -> Callable[..., None]:
    def call(*args: Any) -> None:
        for cb in callbacks:
            if cb is not None:
                cb(*args)

    return call


def _own_classes(spec: RunSpec) -> tuple[type, ...]:
    """The classes this run's configuration names (its problem, its models): the only classes besides
    kanpde's own that its run files may name when read back (resume, figures)."""
    return (type(spec.problem), *(get_class(m.node._target_) for m in spec.models))


def _evaluate(model: nn.Module, spec: RunSpec, problem: Problem | None = None) -> Evaluation:
    """The run's evaluation of ``model`` (grid, engine, chunking and point cap from ``spec.eval``); its
    residuals are those of ``problem`` where given (an inverse problem with its learned unknowns)."""
    ev = spec.eval
    return evaluate(model, spec.problem, ev.n_per_axis, engine=spec.engine, chunk_size=ev.chunk_size,
                    max_points=ev.max_points, residual_problem=problem)


def _stage_evaluator(spec: RunSpec) -> StageHook:
    """Adds the evaluation metrics of the model at the end of each stage to that stage's summary in
    the history (``history.stages[i]["eval"]``): the grid-extension curves of the KAN paper."""

    def record(stage: int, model: nn.Module, history: History) -> None:
        try:
            metrics = _evaluate(model, spec).metrics
        except Exception as exc:  # an evaluator's fault never stops the training
            log.error("evaluation after stage %d failed (%s: %s): not recorded", stage + 1, type(exc).__name__, exc)
            metrics = {}
        history.stages[-1]["eval"] = {k: metrics.get(k) for k in (*METRIC_KEYS, "residual_rms", "residual_max")}

    return record


def _train(model_spec: ModelSpec, spec: RunSpec, progress: Callable[[ProgressEvent], None] | None,
           on_stage_end: StageHook | None, problem: Problem) -> tuple[nn.Module, History, float, Exception | None, bool]:
    """Build (or resume) one model and fit it on ``problem``; returns the model, history, seconds, the
    failure, if any, and whether training stopped at the wall-clock budget (``trainer.max_seconds``)."""
    name = model_spec.name
    torch.manual_seed(spec.seed)
    model = model_spec.make(spec.dtype, spec.device)
    sampler = spec.make_sampler()
    path = checkpoint_path(spec.output_dir, name)
    resumed = resume_state(path, spec.run_id, spec.dtype, spec.device, _own_classes(spec)) if spec.resume else None
    start_stage, history = (0, None) if resumed is None else (resumed[0], resumed[2])
    model = model if resumed is None else resumed[1]
    checkpoint = checkpoint_writer(path, spec.run_id) if spec.output.checkpoint else None
    if spec.eval.every_stage:  # before the checkpoint, which then keeps the stage's errors
        checkpoint = _chain(_stage_evaluator(spec), checkpoint)
    hooks = _chain(checkpoint, on_stage_end)
    compile_ahead(model, problem, spec.engine, spec.pde_weight)  # not in the timed training
    try:
        result = fit(model, problem, spec.stages, sampler=sampler, n_interior=spec.n_interior,
                     n_boundary=spec.n_boundary, pde_weight=spec.pde_weight, engine=spec.engine, progress=progress,
                     on_stage_end=hooks, on_block_stage_end=on_stage_end, start_stage=start_stage, history=history,
                     divergence_factor=spec.divergence_factor, chunk_size=spec.chunk_size,
                     max_seconds=spec.max_seconds)
        return result.model, result.history, result.seconds, None, result.out_of_time
    except (TrainingDiverged, SymbolicFailed) as exc:
        # the checkpoint on disk stays the last good stage's (resume=true continues from it)
        log.error("%s: %s", name, exc)
        if isinstance(exc, TrainingDiverged) and on_stage_end is not None:
            on_stage_end(-1, exc.model, exc.history)
        return exc.model, exc.history, exc.seconds, exc, False


def _evaluate_reference(model: nn.Module, spec: RunSpec) -> PointEvaluation | None:
    """The errors of ``model`` at the nodes of the run's reference data (None without reference data)."""
    if spec.reference is None:
        return None
    return reference_errors(model, spec.problem, spec.reference, engine=spec.engine, chunk_size=spec.eval.chunk_size)


def _evaluate_trained(model_spec: ModelSpec, spec: RunSpec, model: nn.Module, history: History, seconds: float,
                      failure: str | None, problem: Problem | None = None) -> tuple[Evaluation, PointEvaluation | None]:
    """The evaluation of a trained model on the grid and at the reference data's nodes (where the run has
    reference data); when it fails, the model and its history are kept first
    (``checkpoint.pt``, complete: ``resume=true`` evaluates again without training), ``metrics.json``
    says ``status: "evaluation_failed"`` and why, and :class:`RunFailed` is raised."""
    try:
        return _evaluate(model, spec, problem), _evaluate_reference(model, spec)
    except Exception as exc:  # whatever the evaluator's fault, the training is not lost
        reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        path = checkpoint_path(spec.output_dir, model_spec.name)
        checkpoint_writer(path, spec.run_id)(len(spec.stages) - 1 if failure is None else -1, model, history)
        metrics = {"model": type(unwrap(model)).__name__.lower(), "problem": spec.problem.name,
                   "train_seconds": seconds, "status": "evaluation_failed", "messages": [f"evaluation failed: {reason}"],
                   "run_id": spec.run_id}
        write_json(spec.output_dir / "metrics.json", metrics)
        log.error("%s: evaluation failed (%s); the trained model is in %s", model_spec.name, reason, path)
        raise RunFailed(f"{model_spec.name}: evaluation failed ({reason}); the trained model and its history are "
                        f"in {path} (resume=true evaluates it again)") from exc


def _train_and_evaluate(model_spec: ModelSpec, spec: RunSpec, progress: Callable[[ProgressEvent], None] | None,
                        on_stage_end: StageHook | None) -> tuple[RunResult, str | None]:
    compiled = compile_seconds()
    # an inverse problem's unknowns are trained in place: every model learns them from their declared start
    problem = spec.fit_problem if spec.fit_problem.unknowns is None else copy.deepcopy(spec.fit_problem)
    model, history, seconds, failure, out_of_time = _train(model_spec, spec, progress, on_stage_end, problem)
    trained = problem if problem.unknowns is not None else None  # residuals with the learned unknowns
    evaluation, at_reference = _evaluate_trained(model_spec, spec, model, history, seconds, failure, trained)
    label = type(unwrap(model)).__name__.lower()  # a hard-constraint wrapper: its network's name
    metrics, messages = _error_metrics(spec, evaluation, at_reference)
    for message in messages:  # no exact solution is a normal case, not a warning
        (log.info if message == NO_EXACT else log.warning)("%s: %s", model_spec.name, message)
    symbolic_failed = isinstance(failure, SymbolicFailed)
    formula = failure.formula if symbolic_failed else None
    if formula is None and getattr(model, "fully_symbolic", False):  # a snapped KAN: its formula in the coordinates
        from kanpde.models.symbolic import formula_text

        formula = formula_text(model, spec.problem.coords).strip()
    if formula is not None:  # a failed gate's formula is no solution: kept apart from "formula" and formula.txt
        key = "formula_rejected" if symbolic_failed else "formula"
        metrics[key] = formula
        log.info("%s %s: %s", model_spec.name, key.replace("_", " "), formula)
    metrics.update({k: evaluation.metrics[k] for k in RESIDUAL_KEYS if k in evaluation.metrics})
    # "incomplete": the L2 errors could not be computed (a non-finite or vanishing solution on the grid or
    # at the data's nodes); H1 metrics skipped for want of the solution's gradient leave a run "ok", with
    # the message, and so does a problem without an exact solution (no error metrics, residual metrics reported)
    has_source = spec.problem.has_exact or spec.reference_wins
    untrusted = has_source and any(metrics.get(k, 0.0) is None for k in ("l2", "l2_rel"))
    status = ("incomplete" if untrusted else "ok") if failure is None else "symbolic_failed" if symbolic_failed else "diverged"
    metrics.update(n_params=evaluation.metrics["n_params"], train_seconds=seconds,
                   compile_seconds=compile_seconds() - compiled, model=label, problem=spec.problem.name, status=status)
    if failure is not None:
        metrics["failure"] = str(failure)
    if spec.max_seconds is not None:  # the wall-clock budget and whether training stopped at it (status stays ok)
        metrics.update(max_seconds=spec.max_seconds, out_of_time=out_of_time)
    metrics.update(model_spec.notes)
    if messages:  # which metrics are null and why
        metrics["messages"] = messages
    if problem.unknowns is not None:
        metrics["unknowns"] = unknowns_report(problem)
        log.info("%s learned %s", model_spec.name, ", ".join(f"{k} = {v['value']:.6g}" for k, v in metrics["unknowns"].items()
                                                            if "value" in v))
    result = RunResult(label, model, history, evaluation, metrics, at_reference)
    return result, None if failure is None else f"{model_spec.name}: {failure}"


def _error_metrics(spec: RunSpec, grid: Evaluation, at_reference: PointEvaluation | None) -> tuple[dict[str, Any], list[str]]:
    """The error metrics of a model and the messages on them: those of the run's error source
    (``error_source``: the reference data where they win, else the exact solution on the grid, else none),
    the reference data's under ``"reference"`` whenever there are some, and the exact solution's on the
    grid under ``"exact"`` when the reference data's win over them."""
    exact = {k: grid.metrics[k] for k in (*METRIC_KEYS, *FINAL_TIME_KEYS) if k in grid.metrics}
    shape = " x ".join(str(n) for n in grid.shape)
    on_grid = f"exact solution on the {shape} evaluation grid"
    if at_reference is None:
        source = {"error_source": on_grid} if spec.problem.has_exact else {}  # none without a solution
        return {**exact, **source}, list(grid.messages)
    ref = spec.reference
    group = {"source": ref.source, "n_points": ref.n_points, **{k: at_reference.metrics[k] for k in METRIC_KEYS}}
    if at_reference.messages:
        group["messages"] = list(at_reference.messages)
    if not spec.reference_wins:  # the exact solution's errors are the run's; the data's beside them
        return {**exact, "error_source": on_grid, "reference": group}, list(grid.messages)
    metrics: dict[str, Any] = {k: at_reference.metrics[k] for k in METRIC_KEYS}
    metrics.update(error_source=ref.describe(), reference=group)
    if spec.problem.has_exact:  # both known: the exact solution's errors on the grid too
        metrics["exact"] = {**exact, "source": on_grid, **({"messages": list(grid.messages)} if grid.messages else {})}
    return metrics, list(at_reference.messages)


def unknowns_report(problem: Problem, n: int = 4096) -> dict[str, dict[str, Any]]:
    """The learned unknowns of an inverse problem: each scalar's ``value`` (and ``true``, ``rel_error`` where
    the problem gives the true value), each field's relative L2 error against its ``true`` function on ``n``
    quasi-random interior points (``rel_l2_error``), or just that it was learned, and its ``formula`` when a
    symbolic stage snapped it."""
    unknowns = problem.unknowns
    out: dict[str, dict[str, Any]] = {}
    for name, value in unknowns.values().items():
        entry: dict[str, Any] = {"value": value}
        true = unknowns.true.get(name)
        if true is not None:
            entry.update(true=true, rel_error=abs(value - true) / abs(true) if true != 0 else abs(value))
        out[name] = entry
    if unknowns.fields:
        x = torch.from_numpy(problem.geometry.sample_interior(Sampler("sobol", seed=0), n))
        for name, net in unknowns.fields.items():
            entry = {"field": True}
            if getattr(net, "fully_symbolic", False):  # snapped by a symbolic stage targeting field:<name>
                from kanpde.models.symbolic import formula_text

                entry["formula"] = formula_text(net, problem.coords).strip()
            true = unknowns.true.get(name)
            if callable(true):
                dtype, device = module_dtype_device(net)
                with torch.no_grad():
                    learned = net(x.to(dtype=dtype, device=device))[:, 0].double().cpu()
                    exact = true(x).reshape(-1).double()
                entry["rel_l2_error"] = float((learned - exact).norm() / exact.norm())
            out[name] = entry
    return out


def _stage_metrics(history: History) -> list[dict[str, Any]]:
    """The per-stage evaluations of ``eval.every_stage``, with the training time up to each stage."""
    elapsed, rows = 0.0, []
    for summary in history.stages:
        elapsed += float(summary["seconds"])
        if "eval" in summary:
            rows.append({"stage": summary["stage"], "grid_size": summary["grid_size"], "n_params": summary["n_params"],
                         "train_seconds": elapsed, **summary["eval"]})
    return rows


def _describe(result: RunResult, spec: RunSpec) -> dict[str, Any]:
    """The metrics.json entry of a model: its metrics, final widths and grid size (null without a grid),
    and with ``eval.every_stage`` the per-stage evaluations."""
    out = dict(result.metrics)
    out["widths"] = list(getattr(result.model, "widths", None) or getattr(result.model, "config", {}).get("widths", []))
    grid = getattr(result.model, "grid_size", None)
    out["grid_size"] = None if grid is None else int(grid)
    if spec.eval.every_stage:
        out["stages"] = _stage_metrics(result.history)
    out.update(_auto_choices(result.history))
    return out


def _auto_choices(history: History) -> dict[str, Any]:
    """What the stages' ``auto`` settings resolved to: ``auto_optimizer`` (per stage run: the optimizer that
    ``optimizer: auto`` chose, null for a stage that named its own) and ``causal_auto`` (``"on"`` / ``"off"``);
    empty when no stage used them."""
    out: dict[str, Any] = {}
    if any("auto" in s for s in history.stages):
        out["auto_optimizer"] = [s["auto"]["optimizer"] if "auto" in s else None for s in history.stages]
    causal = {s["causal_auto"] for s in history.stages if "causal_auto" in s}
    if causal:
        out["causal_auto"] = causal.pop()
    return out


def _activation_plot(spec: RunSpec, model: nn.Module, path: Path) -> None:
    """The edge network's activation plot on fresh interior and boundary points (nothing for other models)."""
    if not is_edge_model(model):
        return
    from kanpde.io.plots import plot_activations
    from kanpde.pde import Sampler

    net = unwrap(model)
    dtype, device = module_dtype_device(net)
    batch = spec.problem.sample(Sampler(seed=spec.seed), 1024, 256).to(dtype, device)
    plot_activations(net, batch.all_points(), path, spec.problem.coords, spec.problem.outputs)


def _before_interpret_plotter(spec: RunSpec) -> StageHook:
    """Plots the network at the end of the stage before the first stage that prunes, and before the first
    that snaps (``activations_before_prune.png``, ``activations_before_symbolic.png``)."""
    first: dict[str, int] = {}
    for i, st in enumerate(spec.stages):
        for kind, on in (("prune", st.prune is not False), ("symbolic", bool(st.symbolic))):
            if on and kind not in first:
                first[kind] = i

    def plot(stage: int, model: nn.Module, history: History) -> None:
        for kind, index in first.items():
            if stage >= 0 and stage + 1 == index:
                _activation_plot(spec, model, spec.output_dir / f"activations_before_{kind}.png")

    return plot


def _write(spec: RunSpec, main: RunResult, baseline: RunResult | None) -> dict[str, Any]:
    """``solution.h5`` (+ XDMF), ``metrics.json``, ``formula.txt`` (``formula_<field>.txt`` for a snapped
    unknown field) and figures; returns the metrics."""
    out = spec.output_dir
    metrics = _describe(main, spec)
    if baseline is not None:
        metrics["baseline"] = _describe(baseline, spec)
    metrics["run_id"] = spec.run_id
    coords, outputs = spec.problem.coords, spec.problem.outputs
    h5 = [None if r is None else dataclasses.replace(r, metrics=_h5_metrics(r.metrics)) for r in (main, baseline)]
    path = save_run(out / "solution.h5", spec.problem.name, coords, outputs, h5[0], h5[1], spec.config_yaml)
    write_xdmf(path)
    write_json(out / "metrics.json", metrics)
    if "formula" in main.metrics:  # one SymPy-parsable line per output, in the problem's coordinate names
        with atomic_path(out / "formula.txt") as tmp:
            tmp.write_text(main.metrics["formula"] + "\n")
    for name, entry in main.metrics.get("unknowns", {}).items():  # a snapped coefficient field: formula_<name>.txt
        if "formula" in entry:
            with atomic_path(out / f"formula_{name}.txt") as tmp:
                tmp.write_text(entry["formula"] + "\n")
    try:  # the run's results are written: a failing figure is reported, not fatal
        if spec.output.activations:
            _activation_plot(spec, main.model, out / "activations.png")
        if spec.output.figures:
            from kanpde.io.plots import plot_run  # matplotlib only when figures are asked for

            plot_run(path, out, allow=_own_classes(spec))
    except Exception as exc:
        log.error("figures not written (%s: %s); solution.h5 and metrics.json are", type(exc).__name__, exc)
    return metrics


def _h5_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as HDF5 attributes: a metric not computed (None) as NaN, the messages as one JSON string."""
    nested = ("messages", "unknowns", "condition_rms", "reference", "exact")
    out = {k: math.nan if v is None else v for k, v in metrics.items() if k not in nested}
    for key in nested:  # lists and mappings as one JSON string each
        if key in metrics:
            out[key] = json.dumps(metrics[key])
    return out


def _output_dir(output_dir: str | os.PathLike | None) -> Path:
    if output_dir is not None:
        return Path(output_dir)
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        raise ConfigError("run(cfg) outside a Hydra app needs an output_dir")
    return Path(HydraConfig.get().runtime.output_dir)


def _one_run_per_directory(run: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """``run`` holding the lock of its output directory (:func:`~kanpde.app.checkpoint.output_lock`): a second
    run into the same directory is refused at once with a :class:`ConfigError`."""

    @functools.wraps(run)
    def locked(cfg: DictConfig, output_dir: str | os.PathLike | None = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
        with output_lock(_output_dir(output_dir)):
            return run(cfg, output_dir, *args, **kwargs)

    return locked


@_one_run_per_directory
def run(
    cfg: DictConfig,
    output_dir: str | os.PathLike | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    on_stage_end: Callable[[str, int, nn.Module, History], None] | None = None,
) -> dict[str, Any]:
    """Train the configured model (and its MLP baseline), evaluate, and write the run's outputs.

    Writes ``solution.h5`` (+ ``solution.xdmf``), ``metrics.json``, figures and checkpoints into
    ``output_dir`` (default: the Hydra run directory) and returns the metrics dict that ``metrics.json``
    holds (baseline under ``"baseline"``, the config's run id under ``"run_id"``). With reference data
    (``problem.reference=PATH``, or declared by a problem without an exact solution) the error metrics are
    those at the data's nodes (``error_source`` says which; :func:`_error_metrics`).

    When ``output_dir`` already holds a successful run with the same id, nothing is trained and its
    metrics are returned, unless ``cfg.force`` is true. With ``cfg.resume`` true, each model continues
    from its last stage checkpoint (``checkpoint.pt``, ``baseline_checkpoint.pt``) and ends with the
    same parameters as an uninterrupted run. ``on_stage_end(name, stage, model, history)`` is called
    after every stage of the ``"model"`` and the ``"baseline"``. The run holds the lock of ``output_dir``
    (:func:`~kanpde.app.checkpoint.output_lock`) throughout: a second run into the same directory is refused
    at once. Raises :class:`ConfigError` before training for a bad configuration (a locked directory and
    a checkpoint to resume from that names a class not allowed included) and :class:`RunFailed` after
    writing the outputs of the last good model when training diverged.
    """
    out, rid = _output_dir(output_dir), run_id(cfg)
    done = None if cfg.get("force", False) else finished_run(out, rid)
    if done is not None:
        log.info("run %s already finished in %s: skipped (force=true runs it again)", rid, out)
        return done
    spec = build_spec(cfg, out, rid)
    if spec.resume:  # every checkpoint to resume from is read and checked before any training
        check_checkpoints(out, [m.name for m in spec.models], rid, _own_classes(spec))
    log.info("problem %s on %s (%s), run %s, output in %s", spec.problem.name, spec.device, str(spec.dtype).removeprefix("torch."), rid, out)

    def hook(name: str) -> StageHook | None:
        return None if on_stage_end is None else lambda *args: on_stage_end(name, *args)

    results: list[RunResult] = []
    failures: list[str] = []
    for model_spec in spec.models:
        if failures:  # a diverged main model: its baseline is not trained
            break
        if model_spec.rematch is not None and results:  # match_params: the trained main model's count
            model_spec = model_spec.rematch(int(results[0].metrics["n_params"]))
        stage_hook = hook(model_spec.name)
        if model_spec.name == "model" and spec.output.activations:  # the network before each prune or snap
            stage_hook = _chain(stage_hook, _before_interpret_plotter(spec))
        result, failure = _train_and_evaluate(model_spec, spec, progress, stage_hook)
        results.append(result)
        failures += [failure] if failure else []
    if len(results) > 1:  # how far the main model and its baseline are apart, exact solution or not
        results[0].metrics["baseline_rel_diff"] = relative_difference(results[0].evaluation, results[1].evaluation)
    metrics = _write(spec, results[0], results[1] if len(results) > 1 else None)
    if failures:
        raise RunFailed(f"{failures[0]} (outputs of the last good model are in {out})")
    return metrics
