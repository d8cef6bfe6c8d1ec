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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from kanpde.evaluate import module_dtype_device
from kanpde.derivatives.field import make_field, probe_plan, resolve_engine
from kanpde.derivatives.jet import DerivativePlan
from kanpde.training.lm import LevenbergMarquardt, PinnLeastSquares
from kanpde.models.kan import KAN
from kanpde.pde.problem import Batch, BoundaryPoints, Problem
from kanpde.training.prune import prune, sparsity_penalty
from kanpde.pde.sampling import Sampler

__all__ = [
    "Stage",
    "History",
    "FitResult",
    "ProgressEvent",
    "TrainingDiverged",
    "fit",
    "loss_terms",
    "weighted_loss",
    "derivative_plans",
]

log = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


@dataclass
class Stage:
    """One training stage.

    ``optimizer``: a factory ``params -> torch.optim.Optimizer`` (e.g. ``functools.partial(torch.optim.LBFGS,
    line_search_fn="strong_wolfe")``, or a Hydra ``_partial_: true`` config); ``steps``: number of
    ``optimizer.step`` calls (an L-BFGS step runs up to its ``max_iter`` iterations); ``grid_size``: extend a
    KAN's grid to this many intervals first; ``n_interior`` / ``n_boundary``: point counts for this stage
    (default: the ``fit`` arguments); ``resample``: draw fresh points; ``update_grid``: adapt a KAN's
    knots to the stage's points first — ``True``: every layer, ``False``: none, ``None`` (default): only
    the layers whose inputs have left their grid range. Re-fitting a trained spline onto moved knots
    keeps its values only roughly and its second derivatives worse, which costs PDE accuracy, so the
    default moves knots only where the data demands it; grid extension onto subdivided knots is exact.

    Interpretability (KAN only, :mod:`kanpde.training.prune`, :mod:`kanpde.models.symbolic`): ``sparsify``
    ``{"lambda": 1e-3, "mu": 1.0}`` adds ``lambda * (sum L1 + mu * entropy)`` of the edge activations on
    the interior points to the loss (history column ``sparsity``, unweighted); ``prune``: ``True`` (threshold
    1e-2) or a threshold removes unimportant hidden nodes before the optimizer is built; ``symbolic``:
    ``True`` or keyword arguments of :func:`kanpde.models.symbolic.auto_symbolic` snaps the edges to library
    functions (after pruning), so the stage trains the affine parameters of the symbolic edges; its
    ``polish: true`` first fits those by Levenberg–Marquardt on the loss (:func:`kanpde.models.symbolic.polish_affine`),
    and ``layers: []`` snaps nothing (a polish-only stage).
    """

    optimizer: OptimizerFactory
    steps: int
    grid_size: int | None = None
    n_interior: int | None = None
    n_boundary: int | None = None
    resample: bool = False
    update_grid: bool | None = None
    sparsify: dict[str, float] | None = None
    prune: bool | float = False
    symbolic: bool | dict[str, object] | None = None

    def __post_init__(self) -> None:
        if not callable(self.optimizer):
            raise ValueError(f"stage optimizer must be a factory params -> Optimizer, got {self.optimizer!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"stage steps must be a positive integer, got {self.steps!r}")
        if self.grid_size is not None and (not isinstance(self.grid_size, int) or self.grid_size < 1):
            raise ValueError(f"stage grid_size must be an integer >= 1, got {self.grid_size!r}")
        for key in ("n_interior", "n_boundary"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"stage {key} must be a positive integer, got {value!r}")
        if self.sparsify is not None and (not isinstance(self.sparsify, dict) or set(self.sparsify) - {"lambda", "mu"}):
            raise ValueError(f"stage sparsify must be {{lambda: ..., mu: ...}}, got {self.sparsify!r}")
        if not isinstance(self.prune, bool) and (not isinstance(self.prune, (int, float)) or self.prune < 0):
            raise ValueError(f"stage prune must be true/false or a threshold >= 0, got {self.prune!r}")

    @property
    def optimizer_name(self) -> str:
        target = getattr(self.optimizer, "func", self.optimizer)
        return getattr(target, "__name__", type(target).__name__)


@dataclass
class History:
    """Loss terms per optimizer step and a summary per stage.

    ``steps``: one dict per step with ``stage``, ``step`` (global), ``time`` (seconds since the start),
    ``loss`` (weighted total) and every unweighted term (``pde`` and one per condition label), all taken
    at the parameters the step started from. ``stages``: one dict per stage (optimizer, steps,
    grid_size, n_params, seconds, final loss and terms).
    """

    steps: list[dict[str, float]] = field(default_factory=list)
    stages: list[dict[str, object]] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        """The step records as columns: ``{name: (n_steps,) float64 array}``."""
        names = list(dict.fromkeys(n for rec in self.steps for n in rec))  # stages may add terms (sparsity)
        return {n: np.array([rec.get(n, np.nan) for rec in self.steps], dtype=np.float64) for n in names}


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained (possibly grid-extended) ``model``, its ``history`` and ``seconds``."""

    model: nn.Module
    history: History
    seconds: float


@dataclass
class ProgressEvent:
    """Progress report handed to the ``progress`` callback of :func:`fit`.

    ``kind`` is ``"stage"`` (a stage starts), ``"step"`` (a step finished) or ``"stage_end"``.
    """

    kind: str
    stage: int
    n_stages: int
    step: int
    steps: int
    loss: float = math.nan
    description: str = ""


class TrainingDiverged(RuntimeError):
    """A non-finite loss stopped training; ``model`` holds the last parameters with a finite loss."""

    def __init__(self, message: str, model: nn.Module, history: History, seconds: float) -> None:
        super().__init__(message)
        self.model, self.history, self.seconds = model, history, seconds


def derivative_plans(
    model: nn.Module, problem: Problem, batch: Batch, engine: str = "auto", n_probe: int = 4
) -> dict[str, DerivativePlan] | None:
    """Which derivatives each point set's residual needs: ``{"pde": plan, <condition label>: plan}``.

    Found once by running the residuals on the first ``n_probe`` points of each set with a recording
    field (:func:`kanpde.derivatives.field.probe_plan`), so the forward engine carries exactly those derivatives
    (the PDE needs ``u_xx, u_yy`` for a Laplacian; a Dirichlet condition needs no derivative at all).
    ``None`` when ``engine`` resolves to autograd, which needs no plan.
    """
    if resolve_engine(engine, model) != "forward":
        return None
    args = (problem.coords, problem.outputs, problem.time_coord)
    x = batch.interior[:n_probe]
    plans = {"pde": probe_plan(lambda u: problem.pde(x, u), model, x, *args)}
    for cond in problem.conditions:
        pts = batch.boundary[cond.label]
        probe = BoundaryPoints(pts.x[:n_probe], pts.normals[:n_probe])
        plans[cond.label] = probe_plan(lambda u, c=cond, b=probe: c.residual(b, u), model, probe.x, *args)
    return plans


def loss_terms(
    model: nn.Module,
    problem: Problem,
    batch: Batch,
    engine: str = "auto",
    plans: dict[str, DerivativePlan] | None = None,
) -> dict[str, Tensor]:
    """Unweighted mean squared residuals: ``{"pde": ..., <condition label>: ...}``, each a 0-d tensor.

    ``engine``: ``"auto"`` (forward when the model supports it), ``"forward"`` or ``"autograd"``;
    ``plans``: the forward engine's derivative plans per point set (:func:`derivative_plans`); without
    them the forward engine discovers the derivatives on first use (one extra pass per new one).
    """
    engine = resolve_engine(engine, model)
    plans = plans or {}
    args = (problem.coords, problem.outputs, engine, problem.time_coord)
    u = make_field(model, batch.interior, *args, plan=plans.get("pde"))
    residual = problem.pde(batch.interior, u)
    residuals = [residual] if isinstance(residual, Tensor) else list(residual)
    terms = {"pde": sum(r.pow(2).mean() for r in residuals)}
    for cond in problem.conditions:
        pts = batch.boundary[cond.label]
        ub = make_field(model, pts.x, *args, plan=plans.get(cond.label))
        terms[cond.label] = cond.residual(pts, ub).pow(2).mean()
    return terms


def weighted_loss(terms: dict[str, Tensor], problem: Problem, pde_weight: float) -> Tensor:
    """``pde_weight * terms["pde"] + sum_c weight_c * terms[c]``."""
    return pde_weight * terms["pde"] + sum(c.weight * terms[c.label] for c in problem.conditions)


def _interpret(
    model: nn.Module, stage: Stage, batch: Batch, problem: Problem, pde_weight: float
) -> tuple[nn.Module, dict[str, object]]:
    """A stage's pruning and symbolic snapping (KANs only), before its optimizer is built; returns the
    (possibly new) model and what changed, for the stage summary."""
    changes: dict[str, object] = {}
    if not isinstance(model, KAN):  # an MLP runs the same schedule without these steps
        return model, changes
    if stage.prune is not False:
        threshold = 1e-2 if stage.prune is True else float(stage.prune)
        model = prune(model, batch.interior, threshold)
        changes["widths"] = model.widths
    if stage.symbolic:
        from kanpde.models.symbolic import auto_symbolic, polish_affine  # sympy only when snapping

        options = dict(stage.symbolic) if isinstance(stage.symbolic, dict) else {}
        polish = options.pop("polish", False)
        if options.get("layers", None) != []:
            model, records = auto_symbolic(model, batch.all_points(), **options)
            changes["symbolic"] = records
        if polish:
            changes["polish"] = polish_affine(model, problem, batch, pde_weight)
    return model, changes


@dataclass
class _Sparsity:
    """A stage's sparsification term (KANs only): ``weight * penalty()``, the penalty
    (:func:`kanpde.training.prune.sparsity_penalty`) of the model's edge activations on the interior points."""

    model: KAN
    points: Tensor
    weight: float
    mu: float

    @classmethod
    def of(cls, stage: Stage, model: nn.Module, batch: Batch) -> _Sparsity | None:
        if not stage.sparsify or not isinstance(model, KAN):
            return None
        return cls(model, batch.interior, float(stage.sparsify.get("lambda", 1e-3)), float(stage.sparsify.get("mu", 1.0)))

    def __call__(self) -> Tensor:
        return sparsity_penalty(self.model, self.points, self.mu)


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


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

    Grid operations (``update_grid``, ``refine``) are applied only to models that have them, so a KAN
    and an MLP go through the same schedule. ``progress`` receives :class:`ProgressEvent` s (nothing is
    printed here); ``on_stage_end(stage_index, model, history)`` is called after each stage (checkpoints).
    A non-finite loss raises :class:`TrainingDiverged` carrying the last finite model.
    ``engine`` names the derivative engine (``"auto"``: forward propagation when the model supports it,
    else autograd); the forward engine's derivative plans are probed once per stage.

    Resuming: ``start_stage=k`` with the ``model`` and ``history`` saved after stage ``k - 1`` skips the
    first ``k`` stages (their point draws are replayed on ``sampler``, a fresh one made with the same
    seed, so later stages see the same points) and gives the same result as an uninterrupted fit.
    """
    if not stages:
        raise ValueError("fit needs at least one stage")
    if not 0 <= start_stage <= len(stages) or (start_stage > 0) != (history is not None):
        raise ValueError(f"start_stage={start_stage} needs 0 <= start_stage <= {len(stages)} and a history iff > 0")
    sampler = sampler if sampler is not None else Sampler()
    dtype, device = module_dtype_device(model)
    history = history if history is not None else History()
    start = time.perf_counter() - sum(float(s["seconds"]) for s in history.stages)
    batch, sizes, global_step = None, None, len(history.steps)
    for index, stage in enumerate(stages):
        stage_start = time.perf_counter()
        want = (stage.n_interior or n_interior, stage.n_boundary or n_boundary)
        if batch is None or stage.resample or want != sizes:
            if stage.resample:
                sampler.reseed(index)
            batch, sizes = problem.sample(sampler, *want).to(dtype, device), want
        if index < start_stage:  # finished before the resume: its draws replayed, its training kept
            continue
        model, changes = _interpret(model, stage, batch, problem, pde_weight)  # before the grid follows the new inputs
        if stage.update_grid is not False and hasattr(model, "update_grid"):
            model.update_grid(batch.all_points(), only_outside=stage.update_grid is None)
        if stage.grid_size is not None and hasattr(model, "refine") and stage.grid_size != model.grid_size:
            model = model.refine(stage.grid_size, batch.all_points())
        grid = getattr(model, "grid_size", None)
        description = f"stage {index + 1}/{len(stages)} {stage.optimizer_name}" + (f" grid {grid}" if grid else "")
        log.info("%s: %d steps, %d interior + %d boundary points", description, stage.steps, *want)
        if progress:
            progress(ProgressEvent("stage", index, len(stages), 0, stage.steps, description=description))
        optimizer = stage.optimizer(model.parameters())
        plans = derivative_plans(model, problem, batch, engine)
        if isinstance(optimizer, LevenbergMarquardt):  # second order: it needs the residuals, not only the loss
            optimizer.attach(PinnLeastSquares(model, problem, batch, pde_weight, engine, plans, optimizer.chunk_size))
        recorded: dict[str, float] = {}
        sparsify = _Sparsity.of(stage, model, batch)

        def closure() -> Tensor:
            optimizer.zero_grad(set_to_none=True)
            terms = loss_terms(model, problem, batch, engine, plans)
            loss = weighted_loss(terms, problem, pde_weight)
            if sparsify:
                terms["sparsity"] = sparsify()
                loss = loss + sparsify.weight * terms["sparsity"]
            if not recorded:  # the first evaluation of a step: the parameters it starts from
                recorded.update({"loss": loss.item(), **{k: v.item() for k, v in terms.items()}})
            if torch.isfinite(loss):
                loss.backward()
            else:
                nonfinite.append(loss.item())
            return loss

        last_good = _snapshot(model)
        nonfinite: list[float] = []  # non-finite losses met inside the current step (e.g. in a line search)
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
                model.load_state_dict(last_good)
                seconds = time.perf_counter() - start
                raise TrainingDiverged(
                    f"non-finite loss ({recorded['loss']}) in {description}, step {step + 1}/{stage.steps}; "
                    "the model was restored to its last parameters with a finite loss",
                    model,
                    history,
                    seconds,
                )
            last_good = before
            history.steps.append(
                {"stage": float(index), "step": float(global_step), "time": time.perf_counter() - start, **recorded}
            )
            global_step += 1
            if progress:
                progress(ProgressEvent("step", index, len(stages), step + 1, stage.steps, recorded["loss"], description))
        final = {k: v.item() for k, v in loss_terms(model, problem, batch, engine, plans).items()}
        final_loss = weighted_loss(final, problem, pde_weight)
        if sparsify:
            with torch.no_grad():
                final["sparsity"] = sparsify().item()
            final_loss += sparsify.weight * final["sparsity"]
        if not math.isfinite(final_loss):
            model.load_state_dict(last_good)
            raise TrainingDiverged(
                f"non-finite loss ({final_loss}) after {description}; "
                "the model was restored to its last parameters with a finite loss",
                model,
                history,
                time.perf_counter() - start,
            )
        history.stages.append(
            {
                "stage": index,
                "optimizer": stage.optimizer_name,
                "steps": stage.steps,
                "grid_size": grid,
                "n_params": sum(p.numel() for p in model.parameters()),
                "n_interior": want[0],
                "n_boundary": want[1],
                "seconds": time.perf_counter() - stage_start,
                "loss": final_loss,
                **final,
                **changes,
            }
        )
        log.info("%s done: loss %.3e (pde %.3e) in %.1f s", description, final_loss, final["pde"], history.stages[-1]["seconds"])
        if progress:
            progress(ProgressEvent("stage_end", index, len(stages), stage.steps, stage.steps, final_loss, description))
        if on_stage_end:
            on_stage_end(index, model, history)
    return FitResult(model, history, time.perf_counter() - start)
