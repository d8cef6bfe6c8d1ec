"""Staged training: one closure loop for Adam, L-BFGS, Levenberg–Marquardt and any other ``torch.optim`` optimizer.

    loss = pde_weight * mean |r_pde|^2 + sum_c weight_c * mean |r_c|^2

A run is a list of :class:`Stage` s. Before each stage the trainer (re)samples points if asked, adapts
a KAN's grid to the interior points, extends it when the stage names a new ``grid_size``, and builds a
fresh optimizer for the (possibly new) model's parameters.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from kanpde.derivatives import DerivativePlan
from kanpde.models import compile_seconds
from kanpde.models.protocol import GridModel, is_edge_model, module_dtype_device, rewrap, unwrap
from kanpde.pde import Batch, Problem, Sampler
from kanpde.training.loss import PinnLeastSquares, derivative_plans, loss_terms, weighted_loss
from kanpde.training.prune import prune, sparsity_penalty
from kanpde.training.stage import FitResult, History, ProgressEvent, Stage, TrainingDiverged

__all__ = [
    "Stage",
    "History",
    "FitResult",
    "ProgressEvent",
    "TrainingDiverged",
    "fit",
]

log = logging.getLogger(__name__)


def _clock() -> float:
    """Training time: wall time less what this thread spent compiling CPU kernels (first use after installing)."""
    return time.perf_counter() - compile_seconds()


def _interpret(
    model: nn.Module, stage: Stage, batch: Batch, problem: Problem, pde_weight: float
) -> tuple[nn.Module, dict[str, object]]:
    """A stage's pruning and symbolic snapping, before its optimizer is built; returns the (possibly
    new) model and what changed, for the stage summary. They act on the network inside any wrapper
    (:func:`~kanpde.models.protocol.unwrap`) and apply to edge networks (KANs) only: another model (the
    MLP baseline running the main model's schedule) goes through the stage without them."""
    changes: dict[str, object] = {}
    if not (stage.prune is not False or stage.symbolic):
        return model, changes
    if not is_edge_model(model):
        log.info("%s has no edge functions: the stage's prune/symbolic steps do not apply", type(unwrap(model)).__name__)
        return model, changes
    if stage.prune is not False:
        threshold = 1e-2 if stage.prune is True else float(stage.prune)
        model = rewrap(model, prune(unwrap(model), batch.interior, threshold))
        changes["widths"] = unwrap(model).widths
    if stage.symbolic:
        from kanpde.training.snap import auto_symbolic, polish_affine  # sympy only when snapping

        options = dict(stage.symbolic) if isinstance(stage.symbolic, dict) else {}
        polish = options.pop("polish", False)
        if options.get("layers", None) != []:
            net, records = auto_symbolic(unwrap(model), batch.all_points(), **options)
            model = rewrap(model, net)
            changes["symbolic"] = records
        if polish:
            changes["polish"] = polish_affine(model, problem, batch, pde_weight)
    return model, changes


@dataclass
class _Sparsity:
    """A stage's sparsification term (edge networks only): ``weight * penalty()``, the penalty
    (:func:`kanpde.training.prune.sparsity_penalty`) of the network's edge activations on the interior points."""

    model: nn.Module
    points: Tensor
    weight: float
    mu: float

    @classmethod
    def of(cls, stage: Stage, model: nn.Module, batch: Batch) -> _Sparsity | None:
        if not stage.sparsify or not is_edge_model(model):
            return None
        weight, mu = float(stage.sparsify.get("lambda", 1e-3)), float(stage.sparsify.get("mu", 1.0))
        return cls(unwrap(model), batch.interior, weight, mu)

    def __call__(self) -> Tensor:
        return sparsity_penalty(self.model, self.points, self.mu)


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class _Run:
    """What a fit carries from stage to stage."""

    problem: Problem
    stages: Sequence[Stage]
    sampler: Sampler
    n_points: tuple[int, int]
    pde_weight: float
    engine: str
    progress: Callable[[ProgressEvent], None] | None
    history: History
    start: float
    batch: Batch | None = None
    sizes: tuple[int, int] | None = None

    def report(self, kind: str, index: int, step: int, steps: int, loss: float = math.nan, description: str = "") -> None:
        if self.progress:
            self.progress(ProgressEvent(kind, index, len(self.stages), step, steps, loss, description))

    def draw(self, index: int, stage: Stage, dtype: torch.dtype, device: torch.device) -> tuple[int, int]:
        """The stage's points: the previous ones unless it asks for other counts or a fresh draw."""
        want = (stage.n_interior or self.n_points[0], stage.n_boundary or self.n_points[1])
        if self.batch is None or stage.resample or want != self.sizes:
            if stage.resample:
                self.sampler.reseed(index)
            self.batch, self.sizes = self.problem.sample(self.sampler, *want).to(dtype, device), want
        return want


@dataclass
class _StageState:
    """One stage being trained: its model, optimizer, plans and the records of its current step."""

    index: int
    stage: Stage
    model: nn.Module
    description: str
    optimizer: torch.optim.Optimizer
    plans: dict[str, DerivativePlan] | None
    sparsify: _Sparsity | None
    changes: dict[str, object]
    want: tuple[int, int]
    started: float
    recorded: dict[str, float] = field(default_factory=dict)
    nonfinite: list[float] = field(default_factory=list)  # non-finite losses met in a step (e.g. a line search)

    def terms(self, run: _Run) -> tuple[dict[str, Tensor], Tensor]:
        """The loss terms (with the sparsity term when the stage has one) and the weighted loss."""
        terms = loss_terms(self.model, run.problem, run.batch, run.engine, self.plans)
        loss = weighted_loss(terms, run.problem, run.pde_weight)
        if self.sparsify:
            terms["sparsity"] = self.sparsify()
            loss = loss + self.sparsify.weight * terms["sparsity"]
        return terms, loss


def _prepare_stage(run: _Run, index: int, stage: Stage, model: nn.Module, want: tuple[int, int], started: float) -> _StageState:
    """Interpretation, grid update and extension, a fresh optimizer (with the residual system for
    optimizers that need one) and the forward engine's derivative plans for one stage."""
    batch = run.batch
    model, changes = _interpret(model, stage, batch, run.problem, run.pde_weight)  # before the grid follows the new inputs
    if stage.update_grid is not False and isinstance(model, GridModel):
        model.update_grid(batch.all_points(), only_outside=stage.update_grid is None)
    if stage.grid_size is not None and isinstance(model, GridModel) and stage.grid_size != model.grid_size:
        model = model.refine(stage.grid_size, batch.all_points())
    grid = getattr(model, "grid_size", None)
    description = f"stage {index + 1}/{len(run.stages)} {stage.optimizer_name}" + (f" grid {grid}" if grid else "")
    log.info("%s: %d steps, %d interior + %d boundary points", description, stage.steps, *want)
    run.report("stage", index, 0, stage.steps, description=description)
    optimizer = stage.optimizer(model.parameters())
    plans = derivative_plans(model, run.problem, batch, run.engine)
    if getattr(optimizer, "needs_residuals", False):  # second order: the residual vector, not only the loss
        chunk = getattr(optimizer, "chunk_size", 1024)
        optimizer.attach(PinnLeastSquares(model, run.problem, batch, run.pde_weight, run.engine, plans, chunk))
    return _StageState(index, stage, model, description, optimizer, plans, _Sparsity.of(stage, model, batch),
                       changes, want, started)


def _diverged(state: _StageState, run: _Run, good: dict[str, Tensor], loss: float, where: str) -> TrainingDiverged:
    state.model.load_state_dict(good)
    return TrainingDiverged(
        f"non-finite loss ({loss}) {where}; the model was restored to its last parameters with a finite loss",
        state.model, run.history, _clock() - run.start,
    )


def _run_steps(run: _Run, state: _StageState) -> dict[str, Tensor]:
    """The stage's optimizer steps; the loss each step starts from goes into the history. Returns the
    parameters of the last step that started from a finite loss. A non-finite loss raises
    :class:`TrainingDiverged` with the model restored to its last finite parameters."""
    model, stage, optimizer, recorded, nonfinite = state.model, state.stage, state.optimizer, state.recorded, state.nonfinite

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        terms, loss = state.terms(run)
        if not recorded:  # the first evaluation of a step: the parameters it starts from
            recorded.update({"loss": loss.item(), **{k: v.item() for k, v in terms.items()}})
        if torch.isfinite(loss):
            loss.backward()
        else:
            nonfinite.append(loss.item())
        return loss

    last_good = _snapshot(model)
    for step in range(stage.steps):
        recorded.clear()
        nonfinite.clear()
        before = _snapshot(model)
        try:
            optimizer.step(closure)
        except (IndexError, RuntimeError) as exc:
            # torch's strong-Wolfe line search can fail on a non-finite trial loss (an IndexError in
            # its bracketing) -- that is a divergence like any other; anything else is a real error
            if not nonfinite:
                raise
            log.debug("optimizer step failed after a non-finite loss: %r", exc)
            if math.isfinite(recorded.get("loss", math.nan)):
                last_good = before  # the step started from finite parameters
            recorded["loss"] = nonfinite[0]
        if not math.isfinite(recorded["loss"]):
            where = f"in {state.description}, step {step + 1}/{stage.steps}"
            raise _diverged(state, run, last_good, recorded["loss"], where)
        last_good = before
        global_step = len(run.history.steps)
        run.history.steps.append(
            {"stage": float(state.index), "step": float(global_step), "time": _clock() - run.start, **recorded}
        )
        run.report("step", state.index, step + 1, stage.steps, recorded["loss"], state.description)
    return last_good


def _finish_stage(run: _Run, state: _StageState, last_good: dict[str, Tensor]) -> None:
    """The stage's final loss terms and its summary in the history."""
    final = {k: v.item() for k, v in loss_terms(state.model, run.problem, run.batch, run.engine, state.plans).items()}
    final_loss = weighted_loss(final, run.problem, run.pde_weight)
    if state.sparsify:
        with torch.no_grad():
            final["sparsity"] = state.sparsify().item()
        final_loss += state.sparsify.weight * final["sparsity"]
    if not math.isfinite(final_loss):
        raise _diverged(state, run, last_good, final_loss, f"after {state.description}")
    run.history.stages.append(
        {
            "stage": state.index,
            "optimizer": state.stage.optimizer_name,
            "steps": state.stage.steps,
            "grid_size": getattr(state.model, "grid_size", None),
            "n_params": sum(p.numel() for p in state.model.parameters()),
            "n_interior": state.want[0],
            "n_boundary": state.want[1],
            "seconds": _clock() - state.started,
            "loss": final_loss,
            **final,
            **state.changes,
        }
    )
    seconds = run.history.stages[-1]["seconds"]
    log.info("%s done: loss %.3e (pde %.3e) in %.1f s", state.description, final_loss, final["pde"], seconds)
    run.report("stage_end", state.index, state.stage.steps, state.stage.steps, final_loss, state.description)


def fit(
    model: nn.Module,
    problem: Problem,
    stages: Sequence[Stage],
    *,
    sampler: Sampler | None = None,
    n_interior: int = 1000,
    n_boundary: int = 200,
    pde_weight: float = 0.01,
    engine: str = "auto",
    progress: Callable[[ProgressEvent], None] | None = None,
    on_stage_end: Callable[[int, nn.Module, History], None] | None = None,
    start_stage: int = 0,
    history: History | None = None,
) -> FitResult:
    """Train ``model`` on ``problem`` through ``stages``; points follow the model's dtype and device.

    Grid operations (``update_grid``, ``refine``) are applied only to models that have them
    (:class:`~kanpde.models.protocol.GridModel`), so a KAN and an MLP go through the same schedule.
    ``progress`` receives :class:`ProgressEvent` s (nothing is printed here); ``on_stage_end(stage_index,
    model, history)`` is called after each stage (checkpoints). A non-finite loss raises
    :class:`TrainingDiverged` carrying the last finite model. ``engine`` names the derivative engine
    (``"auto"``: forward propagation when the model supports it, else autograd); the forward engine's
    derivative plans are probed once per stage. Optimizers with ``needs_residuals = True`` (such as
    :class:`~kanpde.training.lm.LevenbergMarquardt`) get the loss as a least-squares system
    (:class:`~kanpde.training.loss.PinnLeastSquares`) through their ``attach`` method.

    Resuming: ``start_stage=k`` with the ``model`` and ``history`` saved after stage ``k - 1`` skips the
    first ``k`` stages (their point draws are replayed on ``sampler``, a fresh one made with the same
    seed, so later stages see the same points) and gives the same result as an uninterrupted fit.
    """
    if not stages:
        raise ValueError("fit needs at least one stage")
    if not 0 <= start_stage <= len(stages) or (start_stage > 0) != (history is not None):
        raise ValueError(f"start_stage={start_stage} needs 0 <= start_stage <= {len(stages)} and a history iff > 0")
    dtype, device = module_dtype_device(model)
    history = history if history is not None else History()
    start = _clock() - sum(float(s["seconds"]) for s in history.stages)
    run = _Run(problem, stages, sampler if sampler is not None else Sampler(), (n_interior, n_boundary), pde_weight,
               engine, progress, history, start)
    for index, stage in enumerate(stages):
        started = _clock()
        want = run.draw(index, stage, dtype, device)
        if index < start_stage:  # finished before the resume: its draws replayed, its training kept
            continue
        state = _prepare_stage(run, index, stage, model, want, started)
        last_good = _run_steps(run, state)
        _finish_stage(run, state, last_good)
        model = state.model
        if on_stage_end:
            on_stage_end(index, model, history)
    return FitResult(model, history, _clock() - start)
