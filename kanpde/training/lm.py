"""Levenberg–Marquardt (damped Gauss–Newton) for least-squares losses, and the PINN residual system.

The trainer's loss is a sum of squares. With ``n`` interior points, ``n_c`` points of condition ``c``,
``alpha = pde_weight`` and ``w_c`` the condition weights, stack the scaled residuals

    r = [ sqrt(alpha / n) r_pde(x_1..n),  sqrt(w_c / n_c) r_c(x_1..n_c)  for every condition c ]

so that ``||r||^2 = alpha mean|r_pde|^2 + sum_c w_c mean|r_c|^2`` is exactly the trainer's loss
(a PDE with several residuals, or a periodic condition with several differences, contributes one
block per residual, each scaled by its own mean). With ``J = dr/dtheta`` (``N x P``), one step solves

    (J^T J + mu D) h = -J^T r

by Cholesky (``torch.linalg.cholesky_ex``; least squares by ``torch.linalg.lstsq`` when the factorisation
fails), tries ``theta + h`` and accepts it when the loss decreases. ``mu`` follows Nielsen's rule: after
an accepted step with gain ratio ``rho = (F(theta) - F(theta + h)) / (L(0) - L(h))`` (actual over
predicted decrease of ``F = ||r||^2 / 2``), ``mu *= max(1/3, 1 - (2 rho - 1)^3)`` and ``nu = 2``; after
a rejected one ``mu *= nu``, ``nu *= 2``. ``D`` is ``I`` (``scaling="identity"``) or Marquardt's
``diag(J^T J)`` kept as a running maximum over steps (``scaling="marquardt"``, Moré's variant, floored
so that parameters no point sees stay regular).

Memory: the Jacobian is never stored whole. :class:`PinnLeastSquares` builds it over chunks of
``chunk_size`` points and accumulates ``J^T J`` (``P x P``) and ``J^T r``, so memory is
``O(P^2 + chunk_size * P)`` and independent of the number of points: in float64 ``8 P^2`` bytes for
``J^T J`` plus the same again for the damped copy and its Cholesky factor, i.e. about ``24 P^2`` bytes
(P = 20,000 parameters: 9.6 GB; P = 30,000: 21.6 GB, about the largest that fits 24 GiB, leaving
room for one chunk of rows and their per-point intermediates -- lower ``chunk_size`` for wide
layers), with any number of points. Time grows like ``N P^2`` (the products) plus ``P^3 / 3`` per
solve. The least-squares fallback (a failed Cholesky) needs more working memory than the factorisation.

Per-point Jacobians come from ``torch.func``: ``vmap`` over points of ``jacrev`` of one point's residual
through :func:`torch.func.functional_call` of the model, evaluated by the forward derivative engine
(:class:`kanpde.derivatives.field.ForwardField`), so a point's row costs one forward and one backward pass of that
point alone. Models without a forward engine (``engine="autograd"``) use batched reverse-mode rows of
the chunk's residuals instead (correct, slower).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from kanpde.derivatives.field import make_field, resolve_engine
from kanpde.pde.problem import Batch, BoundaryPoints, Problem

__all__ = ["LevenbergMarquardt", "LeastSquares", "FunctionLeastSquares", "PinnLeastSquares", "SCALINGS"]

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


class _Residual(nn.Module):
    """One point set's residual as a module of the model, so :func:`functional_call` can swap parameters."""

    def __init__(self, model: nn.Module, residual: Callable[[Tensor, Tensor, object], Tensor], field_args: dict) -> None:
        super().__init__()
        self.model = model
        self._residual, self._field_args = residual, field_args

    def forward(self, x: Tensor, normals: Tensor) -> Tensor:
        u = make_field(self.model, x, **self._field_args)
        return self._residual(x, normals, u)


class PinnLeastSquares(LeastSquares):
    """The scaled PINN residual vector of ``problem`` on ``batch`` (module docstring) as a least-squares
    problem over ``model.parameters()``.

    ``engine`` and ``plans`` as in :func:`kanpde.training.fit.loss_terms`; ``chunk_size``: points per Jacobian
    chunk (memory ``chunk_size x P`` floats plus the per-point intermediates); ``dtype``: of ``J^T J``.
    :meth:`value` equals :func:`kanpde.training.fit.weighted_loss` of :func:`kanpde.training.fit.loss_terms`.
    Residuals must be pointwise (a point's residual depends on that point only; periodic conditions
    on their matched pairs), which every residual written against a :class:`kanpde.Field` is.
    """

    def __init__(
        self,
        model: nn.Module,
        problem: Problem,
        batch: Batch,
        pde_weight: float = 0.01,
        engine: str = "auto",
        plans: dict | None = None,
        chunk_size: int = 1024,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.model, self.problem, self.batch = model, problem, batch
        self.pde_weight, self.engine, self.plans = float(pde_weight), resolve_engine(engine, model), plans or {}
        self.chunk_size, self.dtype = int(chunk_size), dtype
        self.names = [n for n, _ in model.named_parameters()]

    # -- the loss ------------------------------------------------------------------------------------
    def value(self) -> float:
        from kanpde.training.fit import loss_terms, weighted_loss  # train imports this module

        with torch.no_grad():
            terms = loss_terms(self.model, self.problem, self.batch, self.engine, self.plans)
            return float(weighted_loss(terms, self.problem, self.pde_weight))

    # -- the point sets as units -----------------------------------------------------------------------
    def _sets(self) -> Iterable[tuple[str, float, Tensor, Tensor, Callable]]:
        """``(label, scale, x_units (u, q, d), normals_units (u, q, d), residual(x, normals, field))`` per
        point set; a unit is one point (``q = 1``) or a periodic pair (``q = 2``)."""
        problem, batch = self.problem, self.batch
        x = batch.interior

        def pde(xs: Tensor, normals: Tensor, u: object) -> Tensor:
            res = problem.pde(xs, u)
            return torch.cat([r.reshape(-1) for r in ([res] if isinstance(res, Tensor) else res)])

        yield "pde", math.sqrt(self.pde_weight / x.shape[0]), x[:, None], x[:, None], pde
        for cond in problem.conditions:
            pts = batch.boundary[cond.label]

            def residual(xs: Tensor, normals: Tensor, u: object, c=cond) -> Tensor:
                return c.residual(BoundaryPoints(xs, normals), u).reshape(-1)

            if cond.kind == "periodic":  # matched pairs: first half on one face, second half on the other
                n = pts.x.shape[0] // 2
                xu = torch.stack([pts.x[:n], pts.x[n:]], dim=1)
                nu = torch.stack([pts.normals[:n], pts.normals[n:]], dim=1)
                per_unit = 1 + len(cond.derivatives)
                yield cond.label, math.sqrt(cond.weight / (n * per_unit)), xu, nu, residual
            else:
                yield cond.label, math.sqrt(cond.weight / pts.x.shape[0]), pts.x[:, None], pts.normals[:, None], residual

    def _field_args(self, label: str) -> dict:
        p = self.problem
        return {"coords": p.coords, "outputs": p.outputs, "engine": self.engine, "time_coord": p.time_coord,
                "plan": self.plans.get(label)}

    # -- J^T J and J^T r -------------------------------------------------------------------------------
    def jacobian(self) -> tuple[Tensor, Tensor]:
        """The whole scaled Jacobian ``(N, P)`` and residual vector ``(N,)`` (small problems and tests; the
        optimizer uses :meth:`normal_equations`). Rows: set by set (PDE, then conditions), unit by unit."""
        Js, rs = [], []
        for label, scale, xu, nu, residual in self._sets():
            module = _Residual(self.model, residual, self._field_args(label))
            for start in range(0, xu.shape[0], self.chunk_size):
                J, r = self._chunk_jacobian(module, xu[start : start + self.chunk_size], nu[start : start + self.chunk_size])
                Js.append((scale * J).to(self.dtype))
                rs.append((scale * r).to(self.dtype))
        return torch.cat(Js), torch.cat(rs)

    def normal_equations(self) -> tuple[Tensor, Tensor, float]:
        params = [p for p in self.model.parameters()]
        n_params = sum(p.numel() for p in params)
        device = params[0].device
        A = torch.zeros(n_params, n_params, dtype=self.dtype, device=device)
        g = torch.zeros(n_params, dtype=self.dtype, device=device)
        f = 0.0
        for label, scale, xu, nu, residual in self._sets():
            module = _Residual(self.model, residual, self._field_args(label))
            for start in range(0, xu.shape[0], self.chunk_size):
                xs, ns = xu[start : start + self.chunk_size], nu[start : start + self.chunk_size]
                J, r = self._chunk_jacobian(module, xs, ns)
                J, r = (scale * J).to(self.dtype), (scale * r).to(self.dtype)
                A.addmm_(J.T, J)
                g.addmv_(J.T, r)
                f += float(r @ r)
        return A, g, f

    def _chunk_jacobian(self, module: _Residual, xs: Tensor, ns: Tensor) -> tuple[Tensor, Tensor]:
        """Rows of ``d r / d theta`` ``(m, P)`` and the residuals ``(m,)`` of a chunk of units, unscaled."""
        if self.engine == "forward":
            return self._vmap_jacobian(module, xs, ns)
        return self._autograd_jacobian(module, xs, ns)

    def _vmap_jacobian(self, module: _Residual, xs: Tensor, ns: Tensor) -> tuple[Tensor, Tensor]:
        params = {f"model.{n}": p.detach() for n, p in self.model.named_parameters()}

        def unit(theta: dict, xu: Tensor, nu: Tensor) -> tuple[Tensor, Tensor]:
            r = functional_call(module, theta, (xu, nu))  # (k,)
            return r, r

        jac, r = vmap(jacrev(unit, has_aux=True), in_dims=(None, 0, 0))(params, xs, ns)  # (c, k, ...), (c, k)
        rows = r.numel()
        J = torch.cat([jac[f"model.{n}"].reshape(rows, -1) for n in self.names], dim=1)
        return J, r.reshape(-1)

    def _autograd_jacobian(self, module: _Residual, xs: Tensor, ns: Tensor) -> tuple[Tensor, Tensor]:
        params = list(self.model.parameters())
        q = xs.shape[1]  # the unit's points, laid out as the set is (periodic: all first, then all second)
        x = torch.cat([xs[:, j] for j in range(q)])
        normals = torch.cat([ns[:, j] for j in range(q)])
        with torch.enable_grad():
            r = module(x, normals).reshape(-1)
            eye = torch.eye(r.shape[0], dtype=r.dtype, device=r.device)
            try:
                grads = torch.autograd.grad(r, params, eye, retain_graph=True, allow_unused=True, is_grads_batched=True)
            except RuntimeError:  # an op without a batching rule: one row at a time
                rows = [torch.autograd.grad(r[i], params, retain_graph=True, allow_unused=True) for i in range(r.shape[0])]
                grads = [torch.stack([row[k] if row[k] is not None else torch.zeros_like(p) for row in rows])
                         for k, p in enumerate(params)]
        grads = [torch.zeros(r.shape[0], *p.shape, dtype=r.dtype, device=r.device) if gr is None else gr
                 for gr, p in zip(grads, params)]
        return torch.cat([gr.reshape(r.shape[0], -1) for gr in grads], dim=1), r.detach()


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
