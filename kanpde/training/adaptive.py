"""Residual-based adaptive collocation (Wu et al. 2023, CMAME 403:115671): RAD and RAR-D.

Every ``every`` steps of a stage, ``candidates`` points are drawn from the domain's sampler
(:meth:`kanpde.pde.geometry.Geometry.sample_interior`, so every geometry works), the PDE residual
``|r(x)|`` of the current model is evaluated on them (:func:`kanpde.training.loss.pde_residual_norms`,
chunked), and points are drawn from the candidates with probability

    p(x) ∝ |r(x)|^k / mean |r|^k + c

without replacement:

* ``rad`` (residual-based adaptive distribution) replaces all interior points by as many drawn points;
* ``rar-d`` (residual-based adaptive refinement with distribution) adds ``count`` drawn points to them.

``k`` sharpens the density towards the largest residuals (``k = 0``: uniform); ``c`` mixes in a uniform
part (``c -> inf``: uniform). Wu et al. recommend ``k = 1, c = 1`` for RAD and ``k = 2, c = 0`` for RAR-D.
Boundary points are left as they are. The choice among candidates is seeded by the run's sampler seed,
the stage and the step, so a run is reproducible.

Residual-based attention (:class:`RBA`; Anagnostopoulos et al. 2024, CMAME 421:116805) weighs the PDE
residual at each interior point by ``lambda_i``, updated before every step from the current residuals:

    lambda_i <- gamma * lambda_i + eta * |r_i| / max_j |r_j|

The weights start at 1 and stay below ``max(1, eta / (1 - gamma))``.

Causal weights (:class:`Causal`; Wang, Sankaran & Perdikaris 2024, CMAME 421:116813, arXiv 2203.07404)
make an evolution equation learn its solution in the order of time. The time interval of the domain is
cut into ``M = bins`` slabs of equal width; with ``L_k`` the mean squared PDE residual over the interior
points in slab ``k`` (0 for an empty slab), slab ``i``'s weight is

    w_i = exp(-epsilon * sum_{k < i} L_k)

so ``w_0 = 1``, the weights never increase along ``t``, and a later slab counts only once the earlier
ones are solved (all are 1 when the residual is 0). A point's PDE residual is multiplied by
``sqrt(w)`` of its slab, so its part of the PDE term is ``w r^2``: the PDE term is ``mean_x w(t_x) r(x)^2``,
which for points spread evenly in ``t`` is the paper's ``(1/M) sum_i w_i L_i``. The weights are data
(never differentiated). ``epsilon`` may be a schedule (a list): training moves to the next value
once the smallest weight exceeds ``delta`` (the paper's 0.99).

Global loss balancing by gradient norms (:class:`Balance`; Wang, Teng & Perdikaris 2021, SIAM J. Sci.
Comput. 43:A3055, and Wang et al. 2023, "An expert's guide to training PINNs", arXiv 2308.08468,
Algorithm 1) multiplies the loss's terms ``T_j`` (the PDE term and each condition's, with their
configured weights) by global weights ``lambda_j``, starting at 1 and updated every ``every`` steps from
the gradients of the terms at the current parameters:

    lambda_hat_j = (sum_k ||grad T_k||) / ||grad T_j||,    lambda_j <- alpha * lambda_j + (1 - alpha) * lambda_hat_j

so that with ``alpha = 0`` every balanced term ``lambda_j T_j`` has the same gradient norm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from kanpde.derivatives import DerivativePlan
from kanpde.pde import Problem, Sampler
from kanpde.training.loss import pde_residual_norms

__all__ = ["Adaptive", "RBA", "Causal", "Balance", "METHODS", "BALANCE_METHODS", "density", "choose", "resample",
           "causal_slabs", "slab_losses", "causal_weights"]

METHODS = ("rad", "rar-d")
BALANCE_METHODS = ("grad_norm",)
_KEYS = {"method", "every", "candidates", "count", "k", "c"}


def _integer(value: object, where: str, minimum: int = 1) -> int:
    """``value`` if it is an integer (not a bool) ``>= minimum``; else ValueError naming ``stage {where}``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"stage {where} must be an integer >= {minimum}, got {value!r}")
    return value


def _number(value: object, where: str, lo: float, hi: float | None = None, closed: str = "[)") -> float:
    """``value`` as a float if it is a number (not a bool) from ``lo`` to ``hi`` (to infinity, open, where
    ``hi`` is None); ``closed`` tells in interval notation which ends belong to the range (``"[)"``:
    ``lo <= value < hi``; without ``hi`` only its first character counts). Else ValueError naming
    ``stage {where}``, with the range as ``in [lo, hi)`` or ``finite number >= lo``."""
    left, right = closed
    upper = math.inf if hi is None else hi
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not (lo <= value if left == "[" else lo < value)
            or not (value <= upper if right == "]" and hi is not None else value < upper)):
        if hi is None:
            kind = f"a finite number {'>=' if left == '[' else '>'} {lo:g}"
        else:
            kind = f"a number in {left}{lo:g}, {hi:g}{right}"
        raise ValueError(f"stage {where} must be {kind}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Adaptive:
    """A stage's adaptive collocation: ``method`` (``"rad"`` or ``"rar-d"``), ``every`` (steps between
    resamplings), ``candidates`` (points drawn to choose from), ``count`` (RAR-D: points added each time),
    and the density's exponent ``k`` and uniform part ``c`` (module docstring)."""

    method: str
    every: int
    candidates: int
    count: int | None = None
    k: float = 1.0
    c: float = 1.0

    @classmethod
    def parse(cls, value: object) -> Adaptive:
        """From a stage's ``adaptive`` mapping; a bad value raises ValueError with one line."""
        if isinstance(value, Adaptive):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"stage adaptive must be {{method: rad|rar-d, every: ..., candidates: ...}}, got {value!r}")
        extra = set(value) - _KEYS
        if extra:
            raise ValueError(f"stage adaptive: unknown key(s) {sorted(extra)}; valid: {sorted(_KEYS)}")
        method = value.get("method")
        if method not in METHODS:
            raise ValueError(f"stage adaptive.method must be one of {list(METHODS)}, got {method!r}")
        for key in ("every", "candidates"):
            if key not in value:
                raise ValueError(f"stage adaptive.{key} is required (method {method})")
        every, candidates = _integer(value["every"], "adaptive.every"), _integer(value["candidates"], "adaptive.candidates")
        count = value.get("count")
        if method == "rar-d":
            if count is None:
                raise ValueError("stage adaptive.count (points added each time) is required for rar-d")
            count = _integer(count, "adaptive.count")
            if count > candidates:
                raise ValueError(f"stage adaptive.count={count} exceeds adaptive.candidates={candidates}")
        elif count is not None:
            raise ValueError("stage adaptive.count applies to rar-d only (rad keeps the number of interior points)")
        return cls(method, every, candidates, count, _number(value.get("k", 1.0), "adaptive.k", 0),
                   _number(value.get("c", 1.0), "adaptive.c", 0))

    def check_points(self, n_interior: int) -> None:
        """RAD draws ``n_interior`` points from the candidates without replacement: there must be enough."""
        if self.method == "rad" and self.candidates < n_interior:
            raise ValueError(f"stage adaptive.candidates={self.candidates} is fewer than the stage's {n_interior} "
                             "interior points that rad redraws; use candidates >= n_interior")

    def due(self, step: int) -> bool:
        """Whether the points are redrawn before (0-based) step ``step`` of the stage (never before the first)."""
        return step > 0 and step % self.every == 0


def density(residual: Tensor, k: float, c: float) -> Tensor:
    """``p(x) = (|r|^k / mean |r|^k + c)``, normalised to sum 1 (uniform where every ``|r|^k`` is 0)."""
    r = residual.detach().abs().to(torch.float64).pow(k)
    mean = r.mean()
    p = (r / mean if mean > 0 else torch.zeros_like(r)) + c
    if not bool(torch.isfinite(p).all()) or not p.sum() > 0:
        p = torch.ones_like(r)
    return p / p.sum()


def choose(residual: Tensor, n: int, k: float, c: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` distinct candidates drawn with probability :func:`density` (sorted)."""
    p = density(residual, k, c).cpu().numpy()
    if n > p.shape[0]:
        raise ValueError(f"cannot draw {n} distinct points from {p.shape[0]} candidates")
    nonzero = int((p > 0).sum())
    if nonzero < n:  # c = 0 and too few non-zero residuals: the rest uniformly among the others
        p = p + (p == 0) * (1e-12 if p.sum() > 0 else 1.0)
        p = p / p.sum()
    return np.sort(rng.choice(p.shape[0], size=n, replace=False, p=p))


def resample(
    model: nn.Module,
    problem: Problem,
    interior: Tensor,
    sampler: Sampler,
    options: Adaptive,
    rng: np.random.Generator,
    engine: str = "auto",
    plan: DerivativePlan | None = None,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """One resampling: ``options.candidates`` points of ``problem``'s domain from ``sampler``, their
    PDE residual norms under ``model``, and the new interior points (``interior``'s dtype and device):
    RAD draws as many as ``interior`` has, RAR-D appends ``options.count`` to it. Returns the new
    interior points and the candidates' residual norms."""
    candidates = torch.from_numpy(problem.geometry.sample_interior(sampler, options.candidates)).to(interior)
    residual = pde_residual_norms(model, problem, candidates, engine, plan, chunk_size)
    n = interior.shape[0] if options.method == "rad" else options.count
    drawn = candidates[torch.from_numpy(choose(residual, n, options.k, options.c, rng)).to(interior.device)]
    return (drawn if options.method == "rad" else torch.cat([interior, drawn])), residual


@dataclass(frozen=True)
class RBA:
    """A stage's residual-based attention weights: decay ``gamma`` in ``[0, 1)`` and rate ``eta > 0``
    (module docstring; the paper's values 0.999 and 0.01 are the defaults)."""

    gamma: float = 0.999
    eta: float = 0.01

    @classmethod
    def parse(cls, value: object) -> RBA:
        """From a stage's ``rba`` value (``true`` or ``{gamma: ..., eta: ...}``); a bad one raises ValueError."""
        if isinstance(value, RBA):
            return value
        if value is True:
            return cls()
        if not isinstance(value, Mapping) or set(value) - {"gamma", "eta"}:
            raise ValueError(f"stage rba must be true or {{gamma: ..., eta: ...}}, got {value!r}")
        gamma = _number(value.get("gamma", cls.gamma), "rba.gamma", 0, 1, "[)")
        return cls(gamma, _number(value.get("eta", cls.eta), "rba.eta", 0, closed="()"))

    def update(self, weights: Tensor, residual: Tensor) -> Tensor:
        """``gamma * weights + eta * |residual| / max |residual|`` (the decay alone where every residual is 0)."""
        r = residual.detach().abs().to(weights)
        top = r.max()
        return self.gamma * weights + (self.eta * r / top if top > 0 else torch.zeros_like(r))


def causal_slabs(t: Tensor, lo: float, hi: float, bins: int) -> Tensor:
    """The slab of each time ``t`` ``(n,)``: ``floor((t - lo) / (hi - lo) * bins)`` clipped to
    ``0 .. bins - 1`` (``int64``, ``t``'s device): ``bins`` slabs of equal width over ``[lo, hi]``."""
    index = torch.floor((t.detach().to(torch.float64) - lo) / (hi - lo) * bins)
    return index.clamp(0, bins - 1).to(torch.int64)


def slab_losses(square: Tensor, slabs: Tensor, bins: int) -> Tensor:
    """``L_k``: the mean of ``square`` ``(n,)`` over the points of each slab ``(bins,)`` (0 where a slab
    has no point), in ``square``'s dtype."""
    square = square.detach()
    total = torch.zeros(bins, dtype=square.dtype, device=square.device).index_add_(0, slabs, square)
    count = torch.zeros(bins, dtype=square.dtype, device=square.device).index_add_(0, slabs, torch.ones_like(square))
    return total / count.clamp(min=1)


def causal_weights(losses: Tensor, epsilon: float) -> Tensor:
    """``w_i = exp(-epsilon * sum_{k < i} L_k)`` ``(bins,)`` for slab losses ``L`` ``(bins,)``; ``w_0 = 1``."""
    before = torch.cumsum(losses, 0) - losses  # sum over the earlier slabs
    return torch.exp(-epsilon * before)


@dataclass(frozen=True)
class Causal:
    """A stage's causal weights along time (module docstring): ``epsilon`` (one value, or a schedule of
    values moved through when the smallest weight exceeds ``delta``), ``bins`` (time slabs) and ``every``
    (steps between updates of the weights). ``auto``: on only when the problem has a time coordinate
    (:attr:`kanpde.Problem.is_time_dependent`), off otherwise, where a plain ``causal`` is refused."""

    epsilon: tuple[float, ...] = (1.0,)
    bins: int = 32
    every: int = 1
    delta: float = 0.99
    auto: bool = False

    @classmethod
    def parse(cls, value: object) -> Causal:
        """From a stage's ``causal`` value (``true``, ``"auto"`` or ``{epsilon, bins, every, delta, auto}``);
        a bad one raises ValueError with one line."""
        if isinstance(value, Causal):
            return value
        if value is True:
            return cls()
        if value == "auto":
            return cls(auto=True)
        keys = {"epsilon", "bins", "every", "delta", "auto"}
        if not isinstance(value, Mapping) or set(value) - keys:
            raise ValueError(f"stage causal must be true, auto or {{epsilon: ..., bins: ..., every: ..., delta: ..., "
                             f"auto: ...}}, got {value!r}")
        auto = value.get("auto", False)
        if not isinstance(auto, bool):
            raise ValueError(f"stage causal.auto must be true or false, got {auto!r}")
        eps = value.get("epsilon", 1.0)
        schedule = list(eps) if isinstance(eps, (list, tuple)) else [eps]
        if not schedule:
            raise ValueError("stage causal.epsilon must be a number > 0 or a non-empty list of them, got []")
        epsilon = tuple(_number(e, "causal.epsilon", 0, closed="()") for e in schedule)
        delta = _number(value.get("delta", cls.delta), "causal.delta", 0, 1, "(]")
        return cls(epsilon, _integer(value.get("bins", cls.bins), "causal.bins"),
                   _integer(value.get("every", cls.every), "causal.every"), delta, auto)

    def applies(self, problem: object) -> bool:
        """Whether the weights are on for ``problem``: always, unless ``auto`` and it has no time coordinate."""
        return not self.auto or bool(getattr(problem, "is_time_dependent", False))

    def due(self, step: int) -> bool:
        """Whether the weights are updated before (0-based) step ``step`` of the stage (always before the first)."""
        return step % self.every == 0

    def weights(self, losses: Tensor, level: int) -> tuple[Tensor, int]:
        """The slab weights ``(bins,)`` for slab losses ``losses`` at schedule position ``level``, moving on
        along the schedule while the smallest weight exceeds ``delta``; returns them and the position."""
        while True:
            w = causal_weights(losses, self.epsilon[level])
            if level + 1 < len(self.epsilon) and float(w.min()) > self.delta:
                level += 1
                continue
            return w, level


@dataclass(frozen=True)
class Balance:
    """A stage's global loss balancing (module docstring): ``method`` (``"grad_norm"``), ``every`` (steps
    between updates) and ``alpha`` (the moving average's memory, in ``[0, 1)``)."""

    method: str = "grad_norm"
    every: int = 100
    alpha: float = 0.9

    @classmethod
    def parse(cls, value: object) -> Balance:
        """From a stage's ``balance`` value (``true`` or ``{method, every, alpha}``); a bad one raises ValueError."""
        if isinstance(value, Balance):
            return value
        if value is True:
            return cls()
        if not isinstance(value, Mapping) or set(value) - {"method", "every", "alpha"}:
            raise ValueError(f"stage balance must be true or {{method: grad_norm, every: ..., alpha: ...}}, "
                             f"got {value!r}")
        method = value.get("method", cls.method)
        if method not in BALANCE_METHODS:
            raise ValueError(f"stage balance.method must be one of {list(BALANCE_METHODS)}, got {method!r}")
        alpha = _number(value.get("alpha", cls.alpha), "balance.alpha", 0, 1, "[)")
        return cls(method, _integer(value.get("every", cls.every), "balance.every"), alpha)

    def due(self, step: int) -> bool:
        """Whether the weights are updated before (0-based) step ``step`` of the stage (always before the first)."""
        return step % self.every == 0

    def update(self, weights: Mapping[str, float], norms: Mapping[str, float]) -> dict[str, float]:
        """``alpha * lambda_j + (1 - alpha) * sum_k |g_k| / |g_j|`` for each term ``j`` of ``weights``, from
        the terms' gradient norms ``norms``; a term whose gradient is 0 (or whose norms are not finite)
        keeps its weight."""
        total = sum(norms.values())
        out = dict(weights)
        for label, old in weights.items():
            g = norms[label]
            if g > 0 and math.isfinite(g) and math.isfinite(total):
                out[label] = self.alpha * old + (1 - self.alpha) * total / g
        return out
