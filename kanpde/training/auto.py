"""A stage optimizer chosen by a stated rule: ``optimizer: auto`` (:class:`AutoOptimizer`).

At the start of each stage, with ``P`` the model's parameter count there (after grid extension and
pruning) and ``N`` the stage's collocation points (interior plus boundary), the rule takes the first tier
that applies:

1. ``lm`` (:class:`~kanpde.training.lm.LevenbergMarquardt`) when ``P <= lm_max_params`` and the Jacobian's
   size ``N * P * 8`` bytes is at most ``jacobian_max_mb``. LM holds ``J^T J``, its damped copy and the
   Cholesky factor, ``24 P^2`` bytes, and builds ``J`` a chunk of points at a time; every step computes all
   ``N P`` entries of ``J`` and ``N P^2`` products for ``J^T J`` plus a ``P^3 / 3`` solve, so the two bounds
   keep both its memory and the cost of one step in hand (defaults: 5,000 parameters, 600 MB for the
   three ``P x P`` arrays and a solve of ~4e10 flops; 512 MB of Jacobian, e.g. 12,800 points at 5,000
   parameters, ``N P^2 <= 3.2e11`` flops a step).
2. ``quasi_newton`` (:class:`~kanpde.training.quasi_newton.SSBroyden` by default) when its dense float64
   inverse Hessian, ``8 P^2`` bytes, is at most ``hessian_max_mb`` (default 800 MB: ``P <= 10,000``, the
   optimizer's own ``max_params``); it needs the loss and its gradient only, so ``N`` costs one loss
   evaluation per line-search trial, not ``N P^2``.
3. ``fallback`` (:class:`torch.optim.LBFGS` by default): limited memory, for anything larger.

The choice is made once per stage and per model (the trainer logs it and records it in the stage summary
under ``auto``); points added during the stage (RAR-D) do not change it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["AutoOptimizer", "Choice", "LM_MAX_PARAMS", "JACOBIAN_MAX_MB", "HESSIAN_MAX_MB", "TIERS"]

LM_MAX_PARAMS = 5_000
JACOBIAN_MAX_MB = 512.0
HESSIAN_MAX_MB = 800.0
TIERS = ("lm", "quasi_newton", "fallback")
MB = 1e6  # bytes: the rule speaks in decimal megabytes, as the log line does


def _mb(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


@dataclass(frozen=True)
class Choice:
    """What :meth:`AutoOptimizer.choose` picked: the ``tier`` (one of :data:`TIERS`), the optimizer's
    ``name`` (its name in ``trainer.optimizers``), its ``factory``, and the quantities the rule read."""

    tier: str
    name: str
    factory: object
    n_params: int
    n_points: int
    reason: str = ""

    @property
    def jacobian_mb(self) -> float:
        """The Jacobian's size ``N * P * 8`` bytes, in MB."""
        return self.n_points * self.n_params * 8 / MB

    @property
    def hessian_mb(self) -> float:
        """A dense ``P x P`` float64 matrix, ``8 P^2`` bytes, in MB."""
        return 8 * self.n_params**2 / MB

    def describe(self) -> str:
        """The log line's part after ``optimizer auto ->``, e.g. ``lm (3,250 parameters, 4,000 points:
        Jacobian 104 MB)``."""
        return f"{self.name} ({self.n_params:,} parameters, {self.n_points:,} points: {self.reason})"

    def record(self) -> dict[str, object]:
        """The stage summary's ``auto`` entry."""
        return {"optimizer": self.name, "tier": self.tier, "n_params": self.n_params, "n_points": self.n_points,
                "jacobian_mb": self.jacobian_mb, "hessian_mb": self.hessian_mb, "reason": self.reason}


@dataclass(frozen=True)
class AutoOptimizer:
    """``optimizer: auto``: Levenberg–Marquardt, a dense quasi-Newton method or L-BFGS, chosen per stage
    from the parameter count and the number of points by the rule of the module docstring.

    ``lm``, ``quasi_newton``, ``fallback``: optimizer factories ``params -> Optimizer`` (``names`` gives
    their names for logs and records); ``lm_max_params``, ``jacobian_max_mb``, ``hessian_max_mb``: the
    rule's bounds. Calling the object with parameters (no points known) applies the rule with ``N = 0``,
    i.e. by the parameter count alone; :func:`kanpde.fit` calls :meth:`choose` with the stage's points.
    """

    lm: object
    quasi_newton: object
    fallback: object
    names: tuple[str, str, str] = ("lm", "ssbroyden", "lbfgs")
    lm_max_params: int = LM_MAX_PARAMS
    jacobian_max_mb: float = JACOBIAN_MAX_MB
    hessian_max_mb: float = HESSIAN_MAX_MB

    __name__ = "auto"  # Stage.optimizer_name of an unresolved stage

    def __post_init__(self) -> None:
        for tier in TIERS:
            if not callable(getattr(self, tier)):
                raise ValueError(f"auto optimizer {tier} must be a factory params -> Optimizer, "
                                 f"got {getattr(self, tier)!r}")
        if len(self.names) != 3 or not all(isinstance(n, str) and n for n in self.names):
            raise ValueError("auto optimizer names must be three names (lm, quasi_newton, fallback), "
                             f"got {self.names!r}")
        if isinstance(self.lm_max_params, bool) or not isinstance(self.lm_max_params, int) or self.lm_max_params < 0:
            raise ValueError(f"auto optimizer lm_max_params must be an integer >= 0, got {self.lm_max_params!r}")
        for key in ("jacobian_max_mb", "hessian_max_mb"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"auto optimizer {key} must be a finite number of MB >= 0, got {value!r}")

    @property
    def quasi_newton_max_params(self) -> int:
        """The largest ``P`` whose ``8 P^2`` bytes fit ``hessian_max_mb``."""
        p = math.isqrt(int(self.hessian_max_mb * MB) // 8)
        return p + 1 if 8 * (p + 1) ** 2 <= self.hessian_max_mb * MB else p

    def choose(self, n_params: int, n_points: int) -> Choice:
        """The tier for ``n_params`` parameters and ``n_points`` collocation points (module docstring)."""
        jacobian, hessian = n_points * n_params * 8 / MB, 8 * n_params**2 / MB
        if n_params <= self.lm_max_params and jacobian <= self.jacobian_max_mb:
            tier, reason = "lm", f"Jacobian {_mb(jacobian)} MB"
        else:
            over = (f"{n_params:,} > lm_max_params {self.lm_max_params:,}" if n_params > self.lm_max_params
                    else f"Jacobian {_mb(jacobian)} MB > jacobian_max_mb {self.jacobian_max_mb:g}")
            if n_params <= self.quasi_newton_max_params:
                tier, reason = "quasi_newton", f"{over}; inverse Hessian {_mb(hessian)} MB"
            else:
                tier = "fallback"
                reason = f"{over}; inverse Hessian {_mb(hessian)} MB > hessian_max_mb {self.hessian_max_mb:g}"
        return Choice(tier, self.names[TIERS.index(tier)], getattr(self, tier), int(n_params), int(n_points), reason)

    def __call__(self, params: Iterable[nn.Parameter], n_points: int = 0) -> torch.optim.Optimizer:
        params = list(params)
        return self.choose(sum(p.numel() for p in params), n_points).factory(params)
