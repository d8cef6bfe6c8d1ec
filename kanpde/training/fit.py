"""Staged training: one closure loop for Adam, L-BFGS, Levenberg–Marquardt and any other ``torch.optim`` optimizer.

    loss = pde_weight * mean |r_pde|^2 + sum_c weight_c * mean |r_c|^2

A run is a list of :class:`Stage` s. Before each stage the trainer (re)samples points if asked, adapts
a KAN's grid to the interior points, extends it when the stage names a new ``grid_size``, and builds a
fresh optimizer for the (possibly new) model's parameters.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from kanpde.derivatives import DerivativePlan
from kanpde.models import compile_seconds
from kanpde.models.protocol import GridModel, is_edge_model, module_dtype_device, rewrap, unwrap
from kanpde.models.kan import KAN
from kanpde.models.unknowns import WithUnknowns
from kanpde.pde import Batch, Problem, Sampler
from kanpde.training.adaptive import Causal, causal_slabs, resample, slab_losses
from kanpde.training.auto import AutoOptimizer
from kanpde.training.loss import (PinnLeastSquares, accumulate_loss, derivative_plans, fits_one_chunk, loss_terms,
                                  pde_residual_norms, term_gradient_norms, weighted_loss)
from kanpde.training.prune import prune, sparsity_penalty
from kanpde.training.stage import FitResult, History, ProgressEvent, Stage, SymbolicFailed, TrainingDiverged

__all__ = [
    "Stage",
    "History",
    "FitResult",
    "ProgressEvent",
    "TrainingDiverged",
    "SymbolicFailed",
    "fit",
    "DIVERGENCE_FACTOR",
    "CHUNK_SIZE",
]

log = logging.getLogger(__name__)

# A stage whose step-start loss exceeds its best so far by this factor has diverged. Healthy stages stay far
# below it (docs/configuration.md, "Divergence"); Adam at a runaway learning rate passes it within a step.
DIVERGENCE_FACTOR = 1e6
# Points per chunk of the loss and its gradient: one chunk's graph is what training holds in memory.
CHUNK_SIZE = 32768


def _clock() -> float:
    """Training time: wall time less what this thread spent compiling CPU kernels (first use after installing)."""
    return time.perf_counter() - compile_seconds()


@dataclass
class _Sparsity:
    """A stage's sparsification term (edge networks only): ``weight * penalty()``, the penalty
    (:func:`kanpde.training.prune.sparsity_penalty`) of the network's edge activations on the interior points."""

    model: nn.Module
    points: Tensor
    weight: float
    mu: float

    @classmethod
    def of(cls, stage: Stage, model: nn.Module, points: Tensor) -> _Sparsity | None:
        if not stage.sparsify or not is_edge_model(model):
            return None
        weight, mu = float(stage.sparsify.get("lambda", 1e-3)), float(stage.sparsify.get("mu", 1.0))
        return cls(unwrap(model), points, weight, mu)

    def __call__(self) -> Tensor:
        return sparsity_penalty(self.model, self.points, self.mu)


def _spread(points: Tensor, chunk_size: int | None) -> Tensor:
    """At most ``chunk_size`` of ``points``, evenly strided (all of them when they fit): what grid
    adaptation, grid extension, pruning and the sparsity term see, so their memory is bounded too."""
    n = points.shape[0]
    if chunk_size is None or n <= chunk_size:
        return points
    return points[torch.linspace(0, n - 1, chunk_size, device=points.device).round().long()]


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class _Causal:
    """Causal weights in a fit (:class:`~kanpde.training.adaptive.Causal`): the stage's options, the time
    axis and its interval in the domain, the position in the epsilon schedule and the slab weights."""

    options: Causal
    axis: int
    lo: float
    hi: float
    level: int = 0
    weights: Tensor | None = None  # (bins,); None: all 1 (before the first update)

    @classmethod
    def of(cls, options: Causal, problem: Problem, previous: _Causal | None) -> _Causal:
        """A stage's causal state; the schedule position carries over from ``previous`` when the stage
        has the same epsilon schedule."""
        axis = problem.coords.index(problem.time_coord)
        lo, hi = problem.geometry.bounding_box
        level = previous.level if previous is not None and previous.options.epsilon == options.epsilon else 0
        return cls(options, axis, float(lo[axis]), float(hi[axis]), level)

    @property
    def epsilon(self) -> float:
        return self.options.epsilon[self.level]

    def slabs(self, x: Tensor) -> Tensor:
        return causal_slabs(x[:, self.axis], self.lo, self.hi, self.options.bins)

    def point_weights(self, x: Tensor) -> Tensor:
        """Each point's causal weight ``(n,)`` (its slab's), in ``x``'s dtype."""
        if self.weights is None:
            return torch.ones_like(x[:, 0])
        return self.weights.to(x)[self.slabs(x)]

    def update(self, x: Tensor, square: Tensor) -> None:
        """New slab weights from the squared PDE residuals ``square`` ``(n,)`` at the interior points ``x``."""
        losses = slab_losses(square.to(torch.float64), self.slabs(x), self.options.bins)
        self.weights, self.level = self.options.weights(losses, self.level)


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
    divergence_factor: float | None = None
    chunk_size: int | None = None
    batch: Batch | None = None
    sizes: tuple[int, int] | None = None
    attention: Tensor | None = None  # RBA weights of the interior points (times the causal ones: batch.weights)
    causal: _Causal | None = None
    balance: dict[str, float] | None = None  # global term weights {label: lambda}, updated in place
    max_seconds: float | None = None
    out_of_time: bool = False  # the wall-clock budget ran out: the current stage ended early, the rest are skipped

    def over_budget(self) -> bool:
        """Whether the fit's training time has reached ``max_seconds`` (sets :attr:`out_of_time`)."""
        if self.max_seconds is not None and _clock() - self.start >= self.max_seconds:
            self.out_of_time = True
        return self.out_of_time

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
            self.attention = None  # new points: attention starts again at 1
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

    def terms(self, run: _Run, backward: bool = False) -> tuple[dict[str, Tensor], Tensor]:
        """The loss terms (with the sparsity term when the stage has one) and the weighted loss; with
        ``backward`` (and a finite loss) the loss's gradient is accumulated in the parameters' ``.grad``.
        A batch with a point set larger than ``run.chunk_size`` is summed over chunks
        (:func:`~kanpde.training.loss.accumulate_loss`), each back-propagated at once: the terms and
        loss are then detached."""
        if fits_one_chunk(run.batch, run.chunk_size):
            terms = loss_terms(self.model, run.problem, run.batch, run.engine, self.plans)
            loss = weighted_loss(terms, run.problem, run.pde_weight, run.balance)
            if self.sparsify:
                terms["sparsity"] = self.sparsify()
                loss = loss + self.sparsify.weight * terms["sparsity"]
            if backward and torch.isfinite(loss):
                loss.backward()
            return terms, loss
        terms, loss = accumulate_loss(self.model, run.problem, run.batch, run.pde_weight, run.engine, self.plans,
                                      run.chunk_size, backward, run.balance)
        if self.sparsify:
            part = self.sparsify.weight * self.sparsify()
            if backward and torch.isfinite(part):
                part.backward()
            terms["sparsity"] = part.detach() / self.sparsify.weight
            loss = loss + part.detach()
        if backward and not torch.isfinite(loss):  # some chunks were back-propagated: no partial gradient
            for p in self.model.parameters():
                p.grad = None
        return terms, loss


def _interpret(model: nn.Module, stage: Stage, run: _Run) -> tuple[nn.Module, dict[str, object]]:
    """A stage's pruning and symbolic snapping, before its optimizer is built; returns the (possibly
    new) model and what changed, for the stage summary. They act on the network inside any wrapper
    (:func:`~kanpde.models.protocol.unwrap`) and apply to edge networks (KANs) only: another model (the
    MLP baseline running the main model's schedule) goes through the stage without them.

    A symbolic stage records the loss of the model before its snap (``loss_before_snap``); with a
    ``min_r2`` gate, a snap with an edge fitted below it is rejected: :class:`SymbolicFailed` carries the
    model as it was before the snap."""
    changes: dict[str, object] = {}
    if not (stage.prune is not False or stage.symbolic):
        return model, changes
    if stage.prune is not False or (stage.symbolic and stage.symbolic_field is None):
        if not is_edge_model(model):
            log.info("%s has no edge functions: the stage's prune/symbolic steps do not apply", type(unwrap(model)).__name__)
            return model, changes
    if stage.prune is not False:
        threshold = stage.prune_threshold
        model = rewrap(model, prune(unwrap(model), _spread(run.batch.interior, run.chunk_size), threshold))
        changes["widths"] = unwrap(model).widths
        _check_pruned(run, stage, model)
    if stage.symbolic:
        model = _snap(model, stage, run, changes)
    return model, changes


def _check_pruned(run: _Run, stage: Stage, model: nn.Module) -> None:
    """The gate ``prune.max_width``: a pruned network that kept more hidden nodes than allowed raises
    :class:`SymbolicFailed` (carrying the pruned model). A per-layer list matches the hidden layers: ``fit``
    checks its length before training, and pruning keeps the number of layers."""
    limit = stage.prune_max_width
    if limit is None:
        return
    widths = unwrap(model).widths
    hidden = widths[1:-1]
    limits = limit if isinstance(limit, list) else [limit] * len(hidden)
    over = [(l + 1, w, k) for l, (w, k) in enumerate(zip(hidden, limits)) if w > k]
    if over:
        layer, width, most = over[0]
        raise SymbolicFailed(f"pruning rejected: hidden layer {layer} kept {width} nodes > max_width {most} "
                             f"(widths {widths}, importance threshold {stage.prune_threshold:g})", model,
                             run.history, _clock() - run.start)


def _snap(model: nn.Module, stage: Stage, run: _Run, changes: dict[str, object]) -> nn.Module:
    """A stage's symbolic snap (and polish) of the model's network, or of the unknown field it targets
    (``symbolic.target: field:<name>``: that field's KAN in the problem is replaced by its snapped copy, and
    the model, which holds the problem's unknowns, trains it from there); returns the model."""
    from kanpde.training.snap import auto_symbolic, polish_affine  # sympy only when snapping

    batch, problem, field = run.batch, run.problem, stage.symbolic_field
    options = dict(stage.symbolic) if isinstance(stage.symbolic, dict) else {}
    options.pop("target", None)
    polish = options.pop("polish", False)
    gates = {k: options.pop(k) for k in stage.gates}
    fields = problem.unknowns.fields if field is not None else None
    net = unwrap(model) if field is None else fields[field]
    changes["loss_before_snap"] = weighted_loss(
        {k: v.item() for k, v in loss_terms(model, problem, batch, run.engine).items()}, problem, run.pde_weight)
    if options.get("layers", None) != []:
        before = None
        if "min_r2" in gates:  # auto_symbolic fixes edges in place
            before = copy.deepcopy(model) if field is None else copy.deepcopy(net)
        snapped, records = auto_symbolic(net, _spread(batch.all_points(), run.chunk_size), **options)
        changes["symbolic" if field is None else f"symbolic:{field}"] = records
        worst = min(records, key=lambda r: r["r2"], default=None)
        if before is not None and worst is not None and not worst["r2"] >= gates["min_r2"]:
            if field is not None:  # the problem's field back as it was: the model holds it
                fields[field], before = before, model
            raise SymbolicFailed(
                f"snap rejected: edge {worst['in']}->{worst['out']} of layer {worst['layer']}"
                f"{'' if field is None else f' of field {field}'} fits {worst['name']} "
                f"with R^2 {worst['r2']:.4g} < min_r2 {gates['min_r2']:g} (loss before the snap "
                f"{changes['loss_before_snap']:.3e}); the network was kept unsnapped",
                before, run.history, _clock() - run.start)
        if field is None:
            model = rewrap(model, snapped)
        else:
            fields[field] = snapped
    if polish:
        changes["polish" if field is None else f"polish:{field}"] = polish_affine(
            model, problem, batch, run.pde_weight, net=None if field is None else fields[field])
    return model


def _check_snapped(run: _Run, state: _StageState, loss: float) -> None:
    """A symbolic stage's final check (``max_loss``, ``max_loss_ratio``: its loss against a bound and
    against the loss of the unsnapped network before the fit's first snap); :class:`SymbolicFailed` if it fails."""
    gates = state.stage.gates
    if not ({"max_loss", "max_loss_ratio"} & set(gates)):
        return
    unsnapped = next((float(s["loss_before_snap"]) for s in run.history.stages if "loss_before_snap" in s), math.nan)
    failed = []
    if "max_loss" in gates and not loss <= gates["max_loss"]:
        failed.append(f"loss {loss:.3e} > max_loss {gates['max_loss']:g}")
    if "max_loss_ratio" in gates and not loss <= gates["max_loss_ratio"] * unsnapped:
        failed.append(f"loss {loss:.3e} > max_loss_ratio {gates['max_loss_ratio']:g} x the unsnapped network's {unsnapped:.3e}")
    run.history.stages[-1]["check"] = "; ".join(failed) or "passed"
    if not failed:
        log.info("%s: snapped model passes its check (loss %.3e, unsnapped %.3e)", state.description, loss, unsnapped)
        return
    formula = None
    net = unwrap(state.model)
    if getattr(net, "fully_symbolic", False):
        from kanpde.models.symbolic import formula_text

        formula = formula_text(net, run.problem.coords).strip()
    raise SymbolicFailed(f"snapped model rejected after {state.description}: {'; '.join(failed)}", state.model,
                         run.history, _clock() - run.start, formula)


def _prepare_stage(run: _Run, index: int, stage: Stage, model: nn.Module, want: tuple[int, int], started: float) -> _StageState:
    """Interpretation, grid update and extension, a fresh optimizer (with the residual system for
    optimizers that need one) and the forward engine's derivative plans for one stage."""
    stage, notes = _resolve_causal(stage, run.problem)
    _setup_weights(run, stage)
    batch = run.batch
    model, changes = _interpret(model, stage, run)  # before the grid follows the new inputs
    changes.update(notes)
    points = _spread(batch.all_points(), run.chunk_size)
    if stage.update_grid is not False and isinstance(model, GridModel):
        model.update_grid(points, only_outside=stage.update_grid is None)
    if stage.grid_size is not None and isinstance(model, GridModel) and stage.grid_size != model.grid_size:
        model = model.refine(stage.grid_size, points)
    stage = _resolve_optimizer(index, stage, model, batch, changes)
    grid = getattr(model, "grid_size", None)
    description = f"stage {index + 1}/{len(run.stages)} {stage.optimizer_name}" + (f" grid {grid}" if grid else "")
    log.info("%s: %d steps, %d interior + %d boundary points", description, stage.steps, *want)
    run.report("stage", index, 0, stage.steps, description=description)
    optimizer = stage.optimizer(model.parameters())
    plans = derivative_plans(model, run.problem, batch, run.engine)
    _attach(run, optimizer, model, plans)
    sparsify = _Sparsity.of(stage, model, _spread(batch.interior, run.chunk_size))
    return _StageState(index, stage, model, description, optimizer, plans, sparsify, changes, want, started)


def _resolve_causal(stage: Stage, problem: Problem) -> tuple[Stage, dict[str, object]]:
    """The stage with ``causal: auto`` settled for ``problem`` (on with a time coordinate, else off), and
    the stage summary's ``causal_auto`` entry (``"on"`` / ``"off"``); other stages as they are."""
    if stage.causal is None or not stage.causal.auto:
        return stage, {}
    on = stage.causal.applies(problem)
    return (stage if on else dataclasses.replace(stage, causal=None)), {"causal_auto": "on" if on else "off"}


def _log_causal_auto(stages: Sequence[Stage], problem: Problem) -> None:
    """One line for the stages with ``causal: auto``: whether the problem turns them on."""
    auto = [i + 1 for i, st in enumerate(stages) if st.causal is not None and st.causal.auto]
    if not auto:
        return
    which = f"stage{'s' if len(auto) > 1 else ''} {', '.join(map(str, auto))}"
    if problem.is_time_dependent:
        log.info("%s: causal auto -> on (time coordinate %r)", which, problem.time_coord)
    else:
        log.info("%s: causal auto -> off (coords %s: no time coordinate %r)", which, list(problem.coords),
                 problem.time_coord)


def _resolve_optimizer(index: int, stage: Stage, model: nn.Module, batch: Batch, changes: dict[str, object]) -> Stage:
    """The stage with ``optimizer: auto`` (:class:`~kanpde.training.auto.AutoOptimizer`) resolved for the
    model as it enters its steps and the stage's points; logged, and recorded in ``changes["auto"]``."""
    if not isinstance(stage.optimizer, AutoOptimizer):
        return stage
    n_params = sum(p.numel() for p in model.parameters())
    choice = stage.optimizer.choose(n_params, batch.all_points().shape[0])
    log.info("stage %d (%s): optimizer auto -> %s", index + 1, type(unwrap(model)).__name__, choice.describe())
    changes["auto"] = choice.record()
    return dataclasses.replace(stage, optimizer=choice.factory)


def _setup_weights(run: _Run, stage: Stage) -> None:
    """The stage's adaptive weights before it starts: RBA attention (carried over from the stage before
    on the same points, else 1), causal state, global term weights (carried over, else 1); a stage
    without one of them trains without it. The batch gets the product as its point weights."""
    interior = run.batch.interior
    if stage.rba is None:
        run.attention = None
    elif run.attention is None or run.attention.shape[0] != interior.shape[0]:
        run.attention = torch.ones_like(interior[:, 0])
    run.causal = None if stage.causal is None else _Causal.of(stage.causal, run.problem, run.causal)
    if stage.balance is None:
        run.balance = None
    elif run.balance is None:
        run.balance = {"pde": 1.0, **{c.label: 1.0 for c in run.problem.conditions}}
    run.batch = Batch(interior, run.batch.boundary, _point_weights(run, interior))


def _point_weights(run: _Run, interior: Tensor) -> Tensor | None:
    """What multiplies the PDE residual at each interior point: the RBA weight times the square root of
    the causal weight (so the squared residual is weighted by the causal weight); None without either."""
    if run.attention is None and run.causal is None:
        return None
    w = torch.ones_like(interior[:, 0]) if run.attention is None else run.attention.clone()
    if run.causal is not None:
        w = w * run.causal.point_weights(interior).sqrt()
    return w


def _attach(run: _Run, optimizer: torch.optim.Optimizer, model: nn.Module, plans: dict[str, DerivativePlan] | None) -> None:
    """Give an optimizer that needs residuals (second order) the loss on the run's batch as a least-squares
    system (with the run's point weights, through the batch, and global term weights, by reference)."""
    if getattr(optimizer, "needs_residuals", False):  # second order: the residual vector, not only the loss
        chunk = getattr(optimizer, "chunk_size", 1024)
        optimizer.attach(PinnLeastSquares(model, run.problem, run.batch, run.pde_weight, run.engine, plans, chunk,
                                          loss_chunk_size=run.chunk_size, balance=run.balance))


def _adapt(run: _Run, state: _StageState, step: int) -> None:
    """Adaptive collocation before ``step`` of the stage (:mod:`kanpde.training.adaptive`): candidates from
    the domain's sampler, their PDE residuals, and the interior points redrawn (RAD) or extended (RAR-D)
    by the residual density; then what depends on the batch is rebuilt (derivative plans, a second-order
    optimizer's least-squares system, the sparsity term's points). The optimizer's state is kept. The
    resampling is recorded in the stage summary's ``adaptive`` list (global step, interior points after
    it, mean |r| over the candidates)."""
    opts, batch = state.stage.adaptive, run.batch
    plan = state.plans.get("pde") if state.plans else None
    rng = np.random.default_rng([run.sampler.seed, 0xADA, state.index, step])
    new, residual = resample(state.model, run.problem, batch.interior, run.sampler, opts, rng, run.engine, plan,
                             run.chunk_size)
    attention = run.attention
    if attention is not None:  # new points start with attention 1; causal weights follow their slabs
        fresh = torch.ones_like(new[: new.shape[0] - (0 if opts.method == "rad" else attention.shape[0]), 0])
        run.attention = fresh if opts.method == "rad" else torch.cat([attention, fresh])
    run.batch = Batch(new, batch.boundary, _point_weights(run, new))
    state.plans = derivative_plans(state.model, run.problem, run.batch, run.engine)
    _attach(run, state.optimizer, state.model, state.plans)
    if state.sparsify:
        state.sparsify.points = _spread(new, run.chunk_size)
    record = {"step": len(run.history.steps), "points": new.shape[0], "mean_residual": float(residual.mean())}
    state.changes.setdefault("adaptive", []).append(record)
    log.info("%s: %s before step %d: %d interior points, mean |r| %.3e over %d candidates", state.description,
             opts.method, step + 1, new.shape[0], record["mean_residual"], opts.candidates)


def _reweigh(run: _Run, state: _StageState, step: int) -> None:
    """Adaptive weights before ``step`` of the stage, from the current PDE residuals at the interior
    points: residual-based attention (:class:`~kanpde.training.adaptive.RBA`, every step) and causal
    weights (:class:`~kanpde.training.adaptive.Causal`, when due) written in place into the batch's
    point weights, so the loss, the LM system (which holds the same batch) and the history see them;
    then the global term weights (:class:`~kanpde.training.adaptive.Balance`, when due) updated in
    place from the gradient norms of the terms."""
    stage, batch = state.stage, run.batch
    causal = stage.causal is not None and stage.causal.due(step)
    if stage.rba is not None or causal:
        plan = state.plans.get("pde") if state.plans else None
        residual = pde_residual_norms(state.model, run.problem, batch.interior, run.engine, plan, run.chunk_size)
        if stage.rba is not None:
            run.attention = stage.rba.update(run.attention, residual)
        if causal:
            run.causal.update(batch.interior, residual.pow(2))
        batch.weights.copy_(_point_weights(run, batch.interior))
    if stage.balance is not None and stage.balance.due(step):
        norms = term_gradient_norms(state.model, run.problem, batch, run.pde_weight, run.engine, state.plans,
                                    run.chunk_size)
        run.balance.update(stage.balance.update(run.balance, norms))


def _weight_records(run: _Run, stage: Stage) -> dict[str, float]:
    """The adaptive weights of a step for the history: ``rba_mean``, ``rba_max``, ``causal_min``,
    ``causal_epsilon`` and ``balance:<label>``, for those the stage uses."""
    out: dict[str, float] = {}
    if stage.rba is not None:
        out.update(rba_mean=float(run.attention.mean()), rba_max=float(run.attention.max()))
    if stage.causal is not None:
        w = run.causal.weights
        out.update(causal_min=1.0 if w is None else float(w.min()), causal_epsilon=run.causal.epsilon)
    if stage.balance is not None:
        out.update({f"balance:{k}": v for k, v in run.balance.items()})
    return out


def _weight_summary(run: _Run, stage: Stage) -> dict[str, object]:
    """The stage summary's entries for its adaptive weights (``rba``, ``causal``, ``balance``)."""
    out: dict[str, object] = {}
    if stage.rba is not None:
        out["rba"] = {"gamma": stage.rba.gamma, "eta": stage.rba.eta, "mean": float(run.attention.mean()),
                      "max": float(run.attention.max())}
    if stage.causal is not None:
        w = run.causal.weights
        out["causal"] = {"epsilon": run.causal.epsilon, "schedule": list(stage.causal.epsilon),
                         "bins": stage.causal.bins, "every": stage.causal.every, "delta": stage.causal.delta,
                         "min": 1.0 if w is None else float(w.min()),
                         "weights": [1.0] * stage.causal.bins if w is None else [float(v) for v in w]}
    if stage.balance is not None:
        out["balance"] = {"method": stage.balance.method, "every": stage.balance.every, "alpha": stage.balance.alpha,
                          **{k: v for k, v in run.balance.items()}}
    return out


@dataclass
class _Best:
    """The stage's lowest step-start loss and the parameters it was reached with."""

    loss: float
    state: dict[str, Tensor]

    def offer(self, loss: float, state: dict[str, Tensor]) -> None:
        if math.isfinite(loss) and loss < self.loss:
            self.loss, self.state = loss, state

    def exceeded(self, loss: float, factor: float | None) -> bool:
        """Whether ``loss`` marks a divergence: non-finite, or above ``factor`` times the best."""
        if not math.isfinite(loss):
            return True
        return factor is not None and math.isfinite(self.loss) and loss > factor * self.loss


def _diverged(state: _StageState, run: _Run, best: _Best, loss: float, where: str) -> TrainingDiverged:
    state.model.load_state_dict(best.state)
    if math.isfinite(loss):
        what = f"loss {loss:.3e} exceeds divergence_factor {run.divergence_factor:g} x the stage's best {best.loss:.3e}"
    else:
        what = f"non-finite loss ({loss})"
    kept = f"its best loss ({best.loss:.3e})" if math.isfinite(best.loss) else "the stage's start"
    return TrainingDiverged(
        f"diverged: {what} {where}; the model was restored to the parameters of {kept}",
        state.model, run.history, _clock() - run.start, state.index,
    )


def _run_steps(run: _Run, state: _StageState) -> _Best:
    """The stage's optimizer steps; the loss each step starts from goes into the history. Returns the
    stage's best step-start loss and its parameters. A step starting from a non-finite loss, or from
    one above ``divergence_factor`` times the stage's best, raises :class:`TrainingDiverged` with the
    model restored to the best-loss parameters. The best is taken anew after each adaptive resampling
    (a loss on the new points does not compare with one on the old)."""
    model, stage, optimizer, recorded, nonfinite = state.model, state.stage, state.optimizer, state.recorded, state.nonfinite

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        terms, loss = state.terms(run, backward=True)
        if not recorded:  # the first evaluation of a step: the parameters it starts from
            recorded.update({"loss": loss.item(), **{k: v.item() for k, v in terms.items()}})
            if run.problem.unknowns is not None:
                recorded.update({f"param:{k}": v for k, v in run.problem.unknowns.values().items()})
        if not torch.isfinite(loss):
            nonfinite.append(loss.item())
        return loss

    best = _Best(math.inf, _snapshot(model))
    for step in range(stage.steps):
        if step > 0 and run.over_budget():  # a stage always takes one step, so it ends with a finite loss
            log.info("%s: wall-clock budget of %g s reached after %d steps", state.description, run.max_seconds, step)
            state.changes["budget_stop"] = step
            break
        if stage.adaptive is not None and stage.adaptive.due(step):
            _adapt(run, state, step)
            # losses on other points do not compare: the divergence check starts again from these points
            best = _Best(math.inf, _snapshot(model))
        recorded.clear()
        _reweigh(run, state, step)
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
            best.offer(recorded.get("loss", math.nan), before)  # the step started from finite parameters
            recorded["loss"] = nonfinite[0]
        if best.exceeded(recorded["loss"], run.divergence_factor):
            where = f"in {state.description}, step {step + 1}/{stage.steps}"
            raise _diverged(state, run, best, recorded["loss"], where)
        best.offer(recorded["loss"], before)
        recorded.update(_weight_records(run, stage))
        global_step = len(run.history.steps)
        run.history.steps.append(
            {"stage": float(state.index), "step": float(global_step), "time": _clock() - run.start, **recorded}
        )
        run.report("step", state.index, step + 1, stage.steps, recorded["loss"], state.description)
    return best


def _finish_stage(run: _Run, state: _StageState, best: _Best) -> None:
    """The stage's final loss terms and its summary in the history."""
    if fits_one_chunk(run.batch, run.chunk_size):
        terms = loss_terms(state.model, run.problem, run.batch, run.engine, state.plans)
    else:
        terms, _ = accumulate_loss(state.model, run.problem, run.batch, run.pde_weight, run.engine, state.plans,
                                   run.chunk_size)
    final = {k: v.item() for k, v in terms.items()}
    final_loss = weighted_loss(final, run.problem, run.pde_weight, run.balance)
    if state.sparsify:
        with torch.no_grad():
            final["sparsity"] = state.sparsify().item()
        final_loss += state.sparsify.weight * final["sparsity"]
    if best.exceeded(final_loss, run.divergence_factor):
        raise _diverged(state, run, best, final_loss, f"after {state.description}")
    run.history.stages.append(
        {
            "stage": state.index,
            "optimizer": state.stage.optimizer_name,
            "steps": state.stage.steps,
            "grid_size": getattr(state.model, "grid_size", None),
            "n_params": sum(p.numel() for p in state.model.parameters()),
            "n_interior": run.batch.interior.shape[0],
            "n_boundary": state.want[1],
            "seconds": _clock() - state.started,
            "loss": final_loss,
            **final,
            **_weight_summary(run, state.stage),
            **state.changes,
        }
    )
    seconds = run.history.stages[-1]["seconds"]
    log.info("%s done: loss %.3e (pde %.3e) in %.1f s", state.description, final_loss, final["pde"], seconds)
    run.report("stage_end", state.index, state.stage.steps, state.stage.steps, final_loss, state.description)
    _check_snapped(run, state, final_loss)


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
    on_block_stage_end: Callable[[int, nn.Module, History], None] | None = None,
    start_stage: int = 0,
    history: History | None = None,
    divergence_factor: float | None = DIVERGENCE_FACTOR,
    chunk_size: int | None = CHUNK_SIZE,
    max_seconds: float | None = None,
) -> FitResult:
    """Train ``model`` on ``problem`` through ``stages``; points follow the model's dtype and device.

    Grid operations (``update_grid``, ``refine``) are applied only to models that have them
    (:class:`~kanpde.models.protocol.GridModel`), so a KAN and an MLP go through the same schedule.
    ``progress`` receives :class:`ProgressEvent` s (nothing is printed here); ``on_stage_end(stage_index,
    model, history)`` is called after each stage (checkpoints), never after a diverged one; inside a restart
    block only after its last stage, for the chosen candidate. ``on_block_stage_end`` (observers such as
    plots, never checkpoints: a resume cannot start inside the block) is called, once the block has chosen
    its candidate, for each earlier stage of the block with that candidate's model and history at the
    stage's end (copies kept while the candidates train), then the block's last stage goes to
    ``on_stage_end``.

    Divergence: a stage stops when the loss a step starts from (or the stage's final loss) is
    non-finite or exceeds ``divergence_factor`` times the lowest step-start loss of the stage so far
    (``None``: only non-finite losses count); :class:`TrainingDiverged` is raised carrying the model with
    the parameters of that best loss. Memory: a point set larger than ``chunk_size`` points has its loss
    and gradient accumulated over chunks of ``chunk_size`` (equal to the unchunked ones to rounding;
    ``None``: never chunked), and grid adaptation, grid extension, pruning, snapping and the sparsity
    term use at most ``chunk_size`` points, evenly strided through the batch. ``engine`` names the derivative engine
    (``"auto"``: forward propagation when the model supports it, else autograd); the forward engine's
    derivative plans are probed once per stage. Wall-clock budget: with ``max_seconds``, once the fit's
    training time (the clock of ``train_seconds``, resumed stages included) reaches it, the current stage
    ends after its current step (every stage takes at least one) with its usual summary, which records
    ``budget_stop`` (the steps taken), and the stages after it are skipped: the fit returns normally with
    ``FitResult.out_of_time`` set. Optimizers with ``needs_residuals = True`` (such as
    :class:`~kanpde.training.lm.LevenbergMarquardt`) get the loss as a least-squares system
    (:class:`~kanpde.training.loss.PinnLeastSquares`) through their ``attach`` method.

    ``auto`` settings are settled at each stage start: an :class:`~kanpde.training.auto.AutoOptimizer`
    (``optimizer: auto``) chooses its optimizer from the model's parameter count there and the stage's
    points, and ``causal: auto`` is on only when ``problem`` has a time coordinate; both are logged and
    recorded in the stage summary (``auto``, ``causal_auto``).

    Inverse problems: the unknowns a problem declares (:meth:`kanpde.Problem.unknown`) are trained with the
    model's parameters, in place in the problem, and recorded in the history as ``param:<name>``.

    Resuming: ``start_stage=k`` with the ``model`` and ``history`` saved after stage ``k - 1`` skips the
    first ``k`` stages (their point draws are replayed on ``sampler``, a fresh one made with the same
    seed, so later stages see the same points) and gives the same result as an uninterrupted fit.
    """
    if not stages:
        raise ValueError("fit needs at least one stage")
    if not 0 <= start_stage <= len(stages) or (start_stage > 0) != (history is not None):
        raise ValueError(f"start_stage={start_stage} needs 0 <= start_stage <= {len(stages)} and a history iff > 0")
    if divergence_factor is not None and not (isinstance(divergence_factor, (int, float))
                                              and not isinstance(divergence_factor, bool) and divergence_factor > 1
                                              and math.isfinite(divergence_factor)):
        raise ValueError(f"divergence_factor must be a finite number > 1 or None, got {divergence_factor!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float))
                                    or not 0 < max_seconds < math.inf):
        raise ValueError(f"max_seconds must be a finite number > 0 or None, got {max_seconds!r}")
    for i, st in enumerate(stages):
        if st.adaptive is not None:
            try:
                st.adaptive.check_points(st.n_interior or n_interior)
            except ValueError as exc:
                raise ValueError(f"stage {i}: {exc}") from None
        limit, widths = st.prune_max_width, getattr(unwrap(model), "widths", None)
        if isinstance(limit, list) and widths is not None and len(limit) != len(widths) - 2:
            raise ValueError(f"stage {i}: prune.max_width gives {len(limit)} widths for a network with "
                             f"{len(widths) - 2} hidden layers ({list(widths)})")
        if st.causal is not None and not st.causal.auto and not problem.is_time_dependent:
            raise ValueError(f"stage {i}: causal weights need a time coordinate, but {type(problem).__name__} has "
                             f"coords {problem.coords} without {problem.time_coord!r}")
    restart = [i for i, st in enumerate(stages) if st.restart_count > 1]
    if len(restart) > 1:
        raise ValueError(f"at most one stage may restart, got stages {restart}")
    restart_at = restart[0] if restart and start_stage <= restart[0] else None
    if restart_at is not None and problem.unknowns is not None:
        raise ValueError("restarts train several initialisations of the network, but a problem's unknowns are "
                         "trained in place: restarts are not available for a problem that declares unknowns")
    if restart_at is not None and start_stage > 0:
        raise ValueError(f"start_stage={start_stage} lies inside the restart block (stages 0..{restart_at})")
    dtype, device = module_dtype_device(model)
    if problem.unknowns is not None:  # an inverse problem: its unknowns train with the model
        problem.unknowns.build_fields(lambda widths, grid: KAN(widths, grid_size=grid, dtype=dtype, device=device))
        model = WithUnknowns(model, problem.unknowns.to(dtype=dtype, device=device))
    _check_field_targets(stages, problem)
    _log_causal_auto(stages, problem)
    history = history if history is not None else History()
    start = _clock() - sum(float(s["seconds"]) for s in history.stages)
    run = _Run(problem, stages, sampler if sampler is not None else Sampler(), (n_interior, n_boundary), pde_weight,
               engine, progress, history, start, None if divergence_factor is None else float(divergence_factor),
               chunk_size, max_seconds=None if max_seconds is None else float(max_seconds))
    first = 0
    if restart_at is not None:
        model, run, snapshots = _best_start(run, model, restart_at, observe=on_block_stage_end is not None)
        first = restart_at + 1
        for index, snap_model, snap_history in snapshots:
            on_block_stage_end(index, snap_model, snap_history)
        if on_stage_end:
            on_stage_end(restart_at, model, run.history)
    model = _train_stages(run, model, first, dtype, device, start_stage, on_stage_end)
    return FitResult(_without_unknowns(model), run.history, _clock() - start, run.out_of_time)


def _check_field_targets(stages: Sequence[Stage], problem: Problem) -> None:
    """A symbolic stage's ``target: field:<name>`` must name an unknown field of the problem that is a KAN."""
    fields = problem.unknowns.fields if problem.unknowns is not None else {}
    for i, st in enumerate(stages):
        name = st.symbolic_field if st.symbolic else None
        if name is None:
            continue
        if name not in fields:
            raise ValueError(f"stage {i}: symbolic target field:{name} names no unknown field of "
                             f"{type(problem).__name__}; declared: {list(fields)}")
        if not is_edge_model(fields[name]):
            raise ValueError(f"stage {i}: symbolic target field:{name} is a {type(fields[name]).__name__}, not a "
                             "network with edge functions (a KAN): it cannot be snapped")


def _train_stages(run: _Run, model: nn.Module, first: int, dtype: torch.dtype, device: torch.device, start_stage: int,
                  on_stage_end: Callable[[int, nn.Module, History], None] | None, last: int | None = None) -> nn.Module:
    """Stages ``first`` .. ``last`` (default: the end) of ``run`` on ``model``; stages before ``start_stage``
    only replay their point draws."""
    for index, stage in enumerate(run.stages):
        if index < first:
            continue
        if last is not None and index > last:
            break
        started = _clock()
        want = run.draw(index, stage, dtype, device)
        if index < start_stage:  # finished before the resume: its draws replayed, its training kept
            continue
        if index > start_stage and run.over_budget():
            log.info("wall-clock budget of %g s reached: stages %d-%d skipped", run.max_seconds, index + 1, len(run.stages))
            break
        state = _prepare_stage(run, index, stage, model, want, started)
        try:
            best = _run_steps(run, state)
            _finish_stage(run, state, best)
        except (TrainingDiverged, SymbolicFailed) as exc:
            exc.model = _without_unknowns(exc.model)
            raise
        model = state.model
        if on_stage_end:
            on_stage_end(index, _without_unknowns(model), run.history)
    return model


def _without_unknowns(model: nn.Module) -> nn.Module:
    """The model as the caller gave it: the trainer's :class:`WithUnknowns` taken off (the unknowns stay
    trained in the problem)."""
    return model.net if isinstance(model, WithUnknowns) else model


def _fresh(model: nn.Module) -> nn.Module:
    """A new initialisation of the network inside ``model``: same class and constructor arguments
    (``config``), built on the CPU from torch's CPU generator, then moved to the model's dtype and device."""
    net = unwrap(model)
    config = getattr(net, "config", None)
    if not isinstance(config, dict):
        raise ValueError(f"restarts need a network with its constructor arguments in .config, not {type(net).__name__}")
    dtype, device = module_dtype_device(net)
    kwargs = {"dtype": dtype} if "dtype" in inspect.signature(type(net)).parameters else {}
    return rewrap(model, type(net)(**config, **kwargs).to(dtype=dtype, device=device))


def _best_start(run: _Run, model: nn.Module, last: int, observe: bool = False
                ) -> tuple[nn.Module, _Run, list[tuple[int, nn.Module, History]]]:
    """Stages ``0 .. last`` for ``stages[last].restarts`` initialisations, each on a copy of the run's
    sampler (the same points); returns the model and run state of the one with the lowest final loss of
    stage ``last`` (the first at or below ``good_loss`` when set), and, with ``observe``, copies of that
    candidate's model and history at the end of each stage before ``last``. A candidate that diverges or
    fails a symbolic gate counts as an infinite loss; when all do, the first one's error is raised."""
    stage = run.stages[last]
    count, good = stage.restart_count, stage.restart_good_loss
    dtype, device = module_dtype_device(model)
    with torch.random.fork_rng(devices=[]):  # candidates drawn after the given model, torch's RNG left as it was
        inits = [model] + [_fresh(model) for _ in range(count - 1)]
    sampler0 = copy.deepcopy(run.sampler)
    best: tuple[float, nn.Module, _Run, list] | None = None
    losses: list[float | None] = []
    errors: list[Exception] = []
    for r, candidate in enumerate(inits):
        cand = _Run(run.problem, run.stages, copy.deepcopy(sampler0), run.n_points, run.pde_weight, run.engine,
                    run.progress, History(), run.start, run.divergence_factor, run.chunk_size)
        log.info("restart %d/%d: stages 1-%d", r + 1, count, last + 1)
        snapshots: list[tuple[int, nn.Module, History]] = []

        def keep(index: int, m: nn.Module, h: History, snapshots: list = snapshots) -> None:
            if index < last:
                snapshots.append((index, copy.deepcopy(m), copy.deepcopy(h)))

        try:
            trained = _train_stages(cand, candidate, 0, dtype, device, 0, keep if observe else None, last)
        except (TrainingDiverged, SymbolicFailed) as exc:
            log.warning("restart %d/%d failed: %s", r + 1, count, exc)
            losses.append(None)
            errors.append(exc)
            continue
        loss = float(cand.history.stages[-1]["loss"])
        losses.append(loss)
        log.info("restart %d/%d: loss %.3e after stage %d", r + 1, count, loss, last + 1)
        if best is None or loss < best[0]:
            best = (loss, trained, cand, snapshots)
        if good is not None and loss <= good:
            break
    if best is None:  # every candidate failed: the first one's error, saying that all were tried
        first = errors[0]
        first.args = (f"all {count} initialisations failed (restarts); the first: {first}",)
        raise first
    loss, model, chosen, kept = best
    summary = chosen.history.stages[-1]
    summary["restarts"], summary["restart"] = losses, losses.index(loss)
    # every candidate's time counts: the stage's seconds hold the others' too, so the stage seconds sum up
    summary["seconds"] = float(summary["seconds"]) + (_clock() - run.start) - sum(
        float(s["seconds"]) for s in chosen.history.stages)
    log.info("restarts: losses %s; candidate %d goes on", ["failed" if v is None else f"{v:.3e}" for v in losses],
             summary["restart"] + 1)
    return model, chosen, kept
