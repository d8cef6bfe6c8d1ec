"""Levenberg–Marquardt (damped Gauss–Newton) for least-squares losses.

The optimizer minimises ``||r(theta)||^2`` over its parameters for any :class:`LeastSquares` system
attached to it; the trainer attaches the PINN's scaled residual vector
(:class:`kanpde.training.loss.PinnLeastSquares`, whose squared norm is exactly the trainer's loss)
to every optimizer that declares ``needs_residuals = True``. With ``J = dr/dtheta`` (``N x P``), one
step solves

    (J^T J + mu D) h = -J^T r

by Cholesky (``torch.linalg.cholesky_ex``; least squares by ``torch.linalg.lstsq`` when the factorisation
fails), tries ``theta + h`` and accepts it when the loss decreases. ``mu`` follows Nielsen's rule: after
an accepted step with gain ratio ``rho = (F(theta) - F(theta + h)) / (L(0) - L(h))`` (actual over
predicted decrease of ``F = ||r||^2 / 2``), ``mu *= max(1/3, 1 - (2 rho - 1)^3)`` and ``nu = 2``; after
a rejected one ``mu *= nu``, ``nu *= 2``. ``D`` is ``I`` (``scaling="identity"``) or Marquardt's
``diag(J^T J)`` kept as a running maximum over steps (``scaling="marquardt"``, Moré's variant, floored
so that parameters no point sees stay regular).

Memory: in float64 ``8 P^2`` bytes for ``J^T J`` plus the same again for the damped copy and its
Cholesky factor, i.e. about ``24 P^2`` bytes (P = 20,000 parameters: 9.6 GB; P = 30,000: 21.6 GB, about
the largest that fits 24 GiB, leaving room for one chunk of Jacobian rows -- lower ``chunk_size`` for
wide layers), with any number of points (the PINN system accumulates ``J^T J`` over chunks of points).
Time grows like ``N P^2`` (the products) plus ``P^3 / 3`` per solve. The least-squares fallback (a
failed Cholesky) needs more working memory than the factorisation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor
from torch.func import jacrev


__all__ = ["LevenbergMarquardt", "LeastSquares", "FunctionLeastSquares", "SCALINGS"]

log = logging.getLogger(__name__)

SCALINGS = ("marquardt", "identity")


class LeastSquares:
    """What :class:`LevenbergMarquardt` needs of a least-squares problem ``min ||r(theta)||^2`` over the
    optimizer's parameters, always at their *current* values.

    ``normal_equations() -> (A, g, f)``: ``A = J^T J`` ``(P, P)``, ``g = J^T r`` ``(P,)`` (float64, the
    parameters flattened in the optimizer's order) and ``f = ||r||^2``; ``value() -> ||r||^2`` (no graph).
    """

    def normal_equations(self) -> tuple[Tensor, Tensor, float]:
        raise NotImplementedError

    def value(self) -> float:
        raise NotImplementedError


class FunctionLeastSquares(LeastSquares):
    """The residuals ``fn(*params) -> (m,)`` of a plain function of tensors; ``J`` by :func:`torch.func.jacrev`."""

    def __init__(self, fn: Callable[..., Tensor], params: Sequence[Tensor], dtype: torch.dtype = torch.float64) -> None:
        self.fn, self.params, self.dtype = fn, list(params), dtype

    def value(self) -> float:
        with torch.no_grad():
            r = self.fn(*[p.detach() for p in self.params]).reshape(-1)
        return float(r.to(self.dtype).pow(2).sum())

    def normal_equations(self) -> tuple[Tensor, Tensor, float]:
        args = [p.detach() for p in self.params]
        jac = jacrev(lambda *a: self.fn(*a).reshape(-1), argnums=tuple(range(len(args))))(*args)
        with torch.no_grad():
            r = self.fn(*args).reshape(-1).to(self.dtype)
        J = torch.cat([j.reshape(r.shape[0], -1) for j in jac], dim=1).to(self.dtype)  # (m, P)
        return J.T @ J, J.T @ r, float(r @ r)


class LevenbergMarquardt(torch.optim.Optimizer):
    """Levenberg–Marquardt with Nielsen's damping update (module docstring) as a ``torch.optim`` optimizer.

    One :meth:`step` computes ``J^T J`` and ``J^T r`` once and tries up to ``max_tries`` damped steps
    (a rejected try costs one residual evaluation and one solve), so the trainer's ``steps`` count
    Jacobians. Before stepping, a :class:`LeastSquares` system must be attached (:meth:`attach`);
    :func:`kanpde.fit` does this for every stage with the PINN residuals of its points. The ``closure``
    is called once per step, only so that the trainer records the loss the step starts from.

    ``damping``: initial ``mu``, relative (times ``max diag(J^T J)`` with ``scaling="identity"``; with
    ``"marquardt"`` the scaling already carries the size); ``damping_min`` / ``damping_max``: bounds of
    ``mu`` (a step whose tries all fail up to ``damping_max`` leaves the parameters unchanged);
    ``scaling``: ``"marquardt"`` or ``"identity"``; ``dtype``: precision of the normal equations and the
    solve (float64 by default, whatever the model's dtype); ``chunk_size``: points per Jacobian chunk,
    read by :func:`kanpde.fit` when it builds the system; ``tolerance_change``: the step is *converged*
    once ``patience`` consecutive steps lowered the loss by less than this fraction (or none could
    lower it with ``mu`` at ``damping_max``); later steps then only call the closure (no Jacobian), so a
    stage's ``steps`` is an upper bound. ``0`` (the default) never stops early.
    """

    needs_residuals = True  # the trainer attaches its residual system (attach) before the first step

    def __init__(
        self,
        params: Iterable[Tensor],
        damping: float = 1e-3,
        damping_min: float = 1e-15,
        damping_max: float = 1e15,
        scaling: str = "marquardt",
        max_tries: int = 10,
        chunk_size: int = 1024,
        dtype: torch.dtype | str = torch.float64,
        tolerance_change: float = 0.0,
        patience: int = 3,
    ) -> None:
        dtype = getattr(torch, dtype) if isinstance(dtype, str) and hasattr(torch, dtype) else dtype
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"LevenbergMarquardt dtype must be a floating dtype such as float64, got {dtype!r}")
        for name, value in (("damping", damping), ("damping_min", damping_min), ("damping_max", damping_max)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"LevenbergMarquardt {name} must be a finite number > 0, got {value!r}")
        if not damping_min <= damping <= damping_max:
            raise ValueError(
                f"LevenbergMarquardt needs damping_min <= damping <= damping_max, got {damping_min}, {damping}, {damping_max}"
            )
        if scaling not in SCALINGS:
            raise ValueError(f"LevenbergMarquardt scaling must be one of {list(SCALINGS)}, got {scaling!r}")
        if isinstance(tolerance_change, bool) or not isinstance(tolerance_change, (int, float)) or not 0 <= tolerance_change < 1:
            raise ValueError(f"LevenbergMarquardt tolerance_change must be in [0, 1), got {tolerance_change!r}")
        for name, value in (("max_tries", max_tries), ("chunk_size", chunk_size), ("patience", patience)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LevenbergMarquardt {name} must be a positive integer, got {value!r}")
        defaults = {"damping": float(damping)}
        super().__init__(params, defaults)
        self.damping_min, self.damping_max = float(damping_min), float(damping_max)
        self.scaling, self.max_tries, self.chunk_size, self.dtype = scaling, max_tries, chunk_size, dtype
        self.system: LeastSquares | None = None
        self.mu: float | None = None  # set on the first step from ``damping``
        self.nu = 2.0
        self._diag: Tensor | None = None
        self.tolerance_change, self.patience = float(tolerance_change), patience
        self.converged, self._small = False, 0
        self.last: dict[str, float] = {}

    def attach(self, system: LeastSquares) -> LevenbergMarquardt:
        """Use ``system``'s residuals over this optimizer's parameters (in their order)."""
        self.system = system
        return self

    @property
    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def _add(self, h: Tensor, sign: float = 1.0) -> None:
        offset = 0
        for p in self._params:
            n = p.numel()
            p.add_(h[offset : offset + n].view_as(p).to(p.dtype), alpha=sign)
            offset += n

    def _scaling(self, A: Tensor) -> Tensor:
        diag = A.diagonal().clone()
        if self.scaling == "identity":
            return torch.ones_like(diag)
        if self._diag is not None and self._diag.shape == diag.shape:
            diag = torch.maximum(diag, self._diag)
        self._diag = diag
        floor = 1e-10 * float(diag.max()) if float(diag.max()) > 0 else 1.0
        return diag.clamp_min(floor)

    def _solve(self, M: Tensor, rhs: Tensor) -> Tensor:
        L, info = torch.linalg.cholesky_ex(M)
        if int(info) == 0:
            return torch.cholesky_solve(rhs[:, None], L)[:, 0]
        return torch.linalg.lstsq(M, rhs[:, None]).solution[:, 0]

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """One Levenberg–Marquardt iteration (one Jacobian, up to ``max_tries`` damped solves).
        Returns the closure's loss (the loss the step started from), or ``None`` without a closure."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
            if not torch.isfinite(torch.as_tensor(loss)).all():
                return loss
        if self.converged:
            return loss
        if self.system is None:
            raise RuntimeError("LevenbergMarquardt needs its least-squares system: call attach(system) before step")
        A, g, f0 = self.system.normal_equations()
        if not math.isfinite(f0):
            return loss
        D = self._scaling(A)
        if self.mu is None:
            base = 1.0 if self.scaling == "marquardt" else max(float(A.diagonal().max()), 1e-300)
            self.mu = min(max(self.param_groups[0]["damping"] * base, self.damping_min), self.damping_max)
        accepted, tries, f1 = False, 0, f0
        while tries < self.max_tries and not accepted:
            tries += 1
            M = A.clone()  # A + mu D without a dense diag(D): three P x P arrays in all (A, M, its factor)
            M.diagonal().add_(self.mu * D)
            h = self._solve(M, -g)
            del M
            predicted = 0.5 * float(h @ (self.mu * D * h - g))  # L(0) - L(h) for F = ||r||^2 / 2
            self._add(h)
            f1 = self.system.value()
            actual = 0.5 * (f0 - f1)
            if math.isfinite(f1) and predicted > 0 and actual > 0:
                rho = actual / predicted
                self.mu = max(self.mu * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), self.damping_min)
                self.nu, accepted = 2.0, True
            else:
                self._add(h, -1.0)
                if self.mu >= self.damping_max:
                    break
                self.mu = min(self.mu * self.nu, self.damping_max)
                self.nu *= 2.0
        small = not accepted or (f0 - f1) < self.tolerance_change * f0
        self._small = self._small + 1 if small else 0
        stuck = not accepted and self.mu >= self.damping_max
        self.converged = stuck or (self.tolerance_change > 0 and self._small >= self.patience)
        self.last = {"loss": f0, "new_loss": f1 if accepted else f0, "damping": self.mu, "tries": float(tries),
                     "accepted": float(accepted)}
        return loss
