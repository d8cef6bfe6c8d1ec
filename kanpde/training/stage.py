"""What a fit is made of and what it reports: :class:`Stage` (one optimizer's run between grid changes),
:class:`History`, :class:`FitResult`, :class:`ProgressEvent` and :class:`TrainingDiverged`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from kanpde.training.adaptive import RBA, Adaptive, Balance, Causal

__all__ = ["Stage", "History", "FitResult", "ProgressEvent", "TrainingDiverged", "SymbolicFailed", "OptimizerFactory",
           "SYMBOLIC_GATES"]

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]

# Keys of a stage's ``symbolic`` options that are quality gates checked by the trainer (not snap options).
SYMBOLIC_GATES = ("min_r2", "max_loss", "max_loss_ratio")


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
    1e-2), a threshold, or ``{threshold: t, max_width: k}`` removes unimportant hidden nodes before the
    optimizer is built; with ``max_width`` (an int for every hidden layer, or one per hidden layer) it is
    also a gate: a pruned network with more hidden nodes than that raises :class:`SymbolicFailed` (so
    ``restarts`` go on to the next initialisation at once); ``symbolic``:
    ``True`` or keyword arguments of :func:`kanpde.models.symbolic.auto_symbolic` snaps the edges to library
    functions (after pruning), so the stage trains the affine parameters of the symbolic edges; its
    ``polish: true`` first fits those by least squares on the loss (:func:`kanpde.models.symbolic.polish_affine`),
    and ``layers: []`` snaps nothing (a polish-only stage). ``target: "field:<name>"`` snaps (and polishes)
    the network of the problem's unknown coefficient field ``<name>`` (:meth:`kanpde.Problem.unknown_field`,
    a KAN) instead of the model, fitted on the stage's points; ``target: "model"`` (the default) is the model.

    Quality gates in ``symbolic`` (:data:`SYMBOLIC_GATES`; a failed gate raises :class:`SymbolicFailed`):
    ``min_r2``: every edge the stage fits must reach this R^2, else the snap is rejected and the model
    stays as it was before it; ``max_loss``: the stage's final loss must be at most this; ``max_loss_ratio``:
    at most this times the loss of the model before the fit's first snap (the unsnapped network, on the
    same points).

    ``restarts``: ``N`` or ``{count: N, good_loss: L}``: this stage and all before it are run for ``N``
    initialisations of the model (the given one first, then fresh models of the same class and
    constructor arguments, drawn from torch's RNG as it is at the start of the fit, without advancing it)
    on the same points; the one with the lowest final loss of this stage goes on. With ``good_loss``
    the first candidate whose loss is at most ``L`` is taken at once (no further restarts). At most one
    stage of a fit may restart.

    Adaptive points and weights (:mod:`kanpde.training.adaptive`): ``adaptive`` (RAD / RAR-D resampling),
    ``rba`` (residual-based attention point weights), ``causal`` (causal weights along time, for
    time-dependent problems only; ``"auto"``: on where the problem has a time coordinate, off elsewhere)
    and ``balance`` (global weights of the loss terms by gradient norms); each is recorded in the history.

    ``optimizer`` may be a :class:`~kanpde.training.auto.AutoOptimizer` (``optimizer: auto``): :func:`kanpde.fit`
    chooses LM, a dense quasi-Newton method or L-BFGS at the stage start by its rule.
    """

    optimizer: OptimizerFactory  # or an AutoOptimizer (optimizer: auto), resolved by fit at the stage start
    steps: int
    grid_size: int | None = None
    n_interior: int | None = None
    n_boundary: int | None = None
    resample: bool = False
    update_grid: bool | None = None
    sparsify: dict[str, float] | None = None
    prune: bool | float | dict[str, object] = False
    symbolic: bool | dict[str, object] | None = None
    restarts: int | dict[str, float] = 1
    adaptive: Adaptive | dict[str, object] | None = None
    rba: RBA | bool | dict[str, float] | None = None
    causal: Causal | bool | str | dict[str, object] | None = None
    balance: Balance | bool | dict[str, object] | None = None

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
        _prune_options(self.prune)
        if self.symbolic is not None and not isinstance(self.symbolic, (bool, dict)):
            raise ValueError(f"stage symbolic must be true/false or a dict of options, got {self.symbolic!r}")
        _symbolic_target(self.symbolic)
        for key in SYMBOLIC_GATES:
            value = self.symbolic.get(key) if isinstance(self.symbolic, dict) else None
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0):
                raise ValueError(f"stage symbolic.{key} must be a number >= 0, got {value!r}")
        _restarts(self.restarts)
        if self.adaptive is not None:
            self.adaptive = Adaptive.parse(self.adaptive)
        self.rba = None if self.rba is None or self.rba is False else RBA.parse(self.rba)
        self.causal = None if self.causal is None or self.causal is False else Causal.parse(self.causal)
        self.balance = None if self.balance is None or self.balance is False else Balance.parse(self.balance)

    @property
    def restart_count(self) -> int:
        """How many initialisations ``restarts`` asks for (1: none)."""
        return _restarts(self.restarts)[0]

    @property
    def restart_good_loss(self) -> float | None:
        """``restarts.good_loss``: the loss at which a candidate is taken at once, or None."""
        return _restarts(self.restarts)[1]

    @property
    def prune_threshold(self) -> float | None:
        """The importance threshold of the stage's pruning, or None when it does not prune."""
        return _prune_options(self.prune)[0]

    @property
    def prune_max_width(self) -> list[int] | int | None:
        """``prune.max_width``: the most hidden nodes a pruned layer may keep (one int for every hidden
        layer, or one per hidden layer), or None (no gate)."""
        return _prune_options(self.prune)[1]

    @property
    def gates(self) -> dict[str, float]:
        """The stage's symbolic quality gates that are set (``{name: value}``)."""
        options = self.symbolic if isinstance(self.symbolic, dict) else {}
        return {k: float(options[k]) for k in SYMBOLIC_GATES if options.get(k) is not None}

    @property
    def symbolic_field(self) -> str | None:
        """The unknown field a symbolic stage snaps (its ``target: "field:<name>"``), or None (the model)."""
        return _symbolic_target(self.symbolic)

    @property
    def optimizer_name(self) -> str:
        target = getattr(self.optimizer, "func", self.optimizer)
        return getattr(target, "__name__", type(target).__name__)


def _symbolic_target(symbolic: object) -> str | None:
    """The field name of a stage's ``symbolic.target`` (``"field:<name>"``), None for the model; a bad value raises."""
    target = symbolic.get("target", "model") if isinstance(symbolic, dict) else "model"
    if target == "model":
        return None
    name = target[len("field:"):] if isinstance(target, str) and target.startswith("field:") else ""
    if not name.isidentifier():
        raise ValueError(f"stage symbolic.target must be \"model\" or \"field:<name>\" (an unknown field), got {target!r}")
    return name


def _prune_options(value: object) -> tuple[float | None, list[int] | int | None]:
    """``(threshold, max_width)`` of a stage's ``prune`` (``False``/``True``/a threshold/``{threshold, max_width}``)."""
    if value is False:
        return None, None
    if value is True:
        return 1e-2, None
    if isinstance(value, dict):
        if set(value) - {"threshold", "max_width"}:
            raise ValueError(f"stage prune must be true/false, a threshold or {{threshold: t, max_width: k}}, got {value!r}")
        threshold, width = value.get("threshold", 1e-2), value.get("max_width")
    else:
        threshold, width = value, None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold >= 0:
        raise ValueError(f"stage prune must be true/false or a threshold >= 0, got {value!r}")
    many = isinstance(width, (list, tuple))
    values = list(width) if many else [width]
    if width is not None and (not values or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in values)):
        raise ValueError(f"stage prune.max_width must be a positive integer or a list of them (one per hidden layer), "
                         f"got {width!r}")
    return float(threshold), values if many else width


def _restarts(value: object) -> tuple[int, float | None]:
    """``(count, good_loss)`` of a stage's ``restarts`` (``N`` or ``{count: N, good_loss: L}``)."""
    count, good = value, None
    if isinstance(value, dict):
        if set(value) - {"count", "good_loss"} or "count" not in value:
            raise ValueError(f"stage restarts must be N or {{count: N, good_loss: L}}, got {value!r}")
        count, good = value["count"], value.get("good_loss")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"stage restarts must be a positive integer count, got {value!r}")
    if good is not None and (isinstance(good, bool) or not isinstance(good, (int, float)) or not good >= 0):
        raise ValueError(f"stage restarts.good_loss must be a number >= 0, got {good!r}")
    return count, None if good is None else float(good)


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
    """What :func:`fit` returns: the trained (possibly grid-extended) ``model``, its ``history`` and ``seconds``;
    ``out_of_time``: training stopped at the fit's wall-clock budget (``max_seconds``)."""

    model: nn.Module
    history: History
    seconds: float
    out_of_time: bool = False


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


class SymbolicFailed(RuntimeError):
    """A symbolic quality gate failed (:attr:`Stage.gates`): the snap or the snapped model does not hold.

    ``model``: at a rejected snap (``min_r2``) the model as it was before that snap; at a rejected final
    check (``max_loss``, ``max_loss_ratio``) the trained snapped model. ``formula``: that model's formula
    text when it is fully symbolic (not a solution: it failed its gate), else None."""

    def __init__(self, message: str, model: nn.Module, history: History, seconds: float,
                 formula: str | None = None) -> None:
        super().__init__(message)
        self.model, self.history, self.seconds, self.formula = model, history, seconds, formula


class TrainingDiverged(RuntimeError):
    """A stage diverged (a non-finite loss, or one far above the stage's best); ``model`` holds the
    parameters of the stage's best loss, ``stage`` the index of the diverged stage (the stages before it
    finished normally)."""

    def __init__(self, message: str, model: nn.Module, history: History, seconds: float, stage: int = -1) -> None:
        super().__init__(message)
        self.model, self.history, self.seconds, self.stage = model, history, seconds, stage
