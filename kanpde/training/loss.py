"""The PINN loss, assembled in one place.

    loss = pde_weight * mean |r_pde|^2 + sum_c weight_c * mean |r_c|^2

A problem's residuals live on point sets (:class:`ResidualSet`): the interior points (label ``"pde"``,
weight ``pde_weight``) and each condition's boundary points (its label and weight). On a set with
``n`` residual entries per residual tensor, a block's scaled residual is ``sqrt(weight / n) r``, so the
squared norm of all scaled blocks stacked is exactly the loss (a PDE with several residuals, or a
periodic condition with several differences, contributes the mean of each). Everything that needs the
loss builds on :func:`residual_sets` and :func:`residual_blocks`:

* :func:`loss_terms` / :func:`weighted_loss`: the scalar loss and its unweighted terms (the trainer, the
  history, the benchmarks);
* :class:`PinnLeastSquares`: the scaled residual vector as a least-squares system (``J^T J``, ``J^T r``)
  for second-order optimizers such as :class:`~kanpde.training.lm.LevenbergMarquardt`;
* :func:`scaled_residuals`: the scaled residual vector itself (the symbolic affine polish).

:class:`PinnLeastSquares` never stores the whole Jacobian: it builds it over chunks of ``chunk_size``
units and accumulates ``J^T J`` (``P x P``) and ``J^T r``, so its memory is ``O(P^2 + chunk_size * P)``
whatever the number of points. Per-unit Jacobians come from ``torch.func``: ``vmap`` over units of
``jacrev`` of one unit's residual through :func:`torch.func.functional_call`, evaluated by the forward
derivative engine, so a unit's rows cost one forward and one backward pass of that unit alone. Models
without a forward engine (``engine="autograd"``) use batched reverse-mode rows of the chunk instead.
A unit is one point, or a periodic condition's matched pair of points.

Global term weights (``balance``, a mapping ``{label: lambda}``; :class:`~kanpde.training.adaptive.Balance`)
multiply each set's weight, so the loss is ``sum_j lambda_j weight_j mean |r_j|^2`` and a block's scale
``sqrt(lambda_j weight_j / n)``: they enter the least-squares residual vector as square roots.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from kanpde.derivatives import DerivativePlan, Field, make_field, probe_plan, resolve_engine
from kanpde.pde import Batch, BoundaryPoints, Problem

__all__ = [
    "ResidualSet",
    "ResidualBlock",
    "residual_sets",
    "residual_blocks",
    "loss_terms",
    "weighted_loss",
    "scaled_residuals",
    "pde_residual_norms",
    "term_gradient_norms",
    "accumulate_loss",
    "fits_one_chunk",
    "derivative_plans",
    "PinnLeastSquares",
]

Residual = Callable[[Tensor, Tensor, Field], list[Tensor]]


@dataclass(frozen=True)
class ResidualSet:
    """One point set of the loss: ``x`` ``(n, d)`` with ``normals``, the per-point data sliced with ``x``
    (a condition's :meth:`~kanpde.pde.BoundaryPoints.aux`: outward normals ``(n, d)``, then an
    observation's values; the interior's are ``x`` itself, unused), its ``label`` and ``weight``, and ``residual(x, normals, field) -> [r, ...]``.

    ``unit``: points per residual unit (1; 2 for a periodic condition, whose first half of points is
    matched by the second); ``entries``: residual entries per unit and residual tensor, so that
    ``scale = sqrt(weight / (units * entries))`` turns the set's residuals into its part of the loss."""

    label: str
    weight: float
    x: Tensor
    normals: Tensor
    residual: Residual
    unit: int = 1
    entries: int = 1

    @property
    def units(self) -> int:
        return self.x.shape[0] // self.unit

    @property
    def scale(self) -> float:
        return math.sqrt(self.weight / (self.units * self.entries))

    def unit_points(self) -> tuple[Tensor, Tensor]:
        """``x`` and ``normals`` laid out by unit: ``(units, unit, d)`` each."""
        if self.unit == 1:
            return self.x[:, None], self.normals[:, None]
        n = self.units
        return (torch.stack([self.x[:n], self.x[n:]], dim=1), torch.stack([self.normals[:n], self.normals[n:]], dim=1))


@dataclass(frozen=True)
class ResidualBlock:
    """One residual tensor of a set evaluated on all its points: ``residual`` (any shape), with the
    set's ``label`` and ``scale``."""

    label: str
    scale: float
    residual: Tensor


def residual_sets(problem: Problem, batch: Batch, pde_weight: float = 1.0,
                  balance: Mapping[str, float] | None = None) -> list[ResidualSet]:
    """The point sets of ``problem``'s loss on ``batch``: the PDE's first, then one per condition, in the
    problem's order (the order in which the loss sums them). With ``batch.weights`` the PDE residual at
    each interior point is multiplied by its weight (the set's aux gets the weights as a last column);
    with ``balance`` each set's weight is multiplied by ``balance[label]`` (1 where absent)."""
    balance = balance or {}

    weighted = batch.weights is not None

    def pde(x: Tensor, normals: Tensor, u: Field) -> list[Tensor]:
        res = problem.pde(x, u)
        res = [res] if isinstance(res, Tensor) else list(res)
        if weighted:  # the per-point weight rides in the last aux column, sliced with x
            w = normals[:, -1]
            res = [r * w.reshape(-1, *([1] * (r.dim() - 1))) for r in res]
        return res

    aux = torch.cat([batch.interior, batch.weights[:, None]], dim=1) if weighted else batch.interior
    sets = [ResidualSet("pde", float(pde_weight) * balance.get("pde", 1.0), batch.interior, aux, pde)]
    for cond in problem.conditions:
        pts = batch.boundary[cond.label]

        def residual(x: Tensor, normals: Tensor, u: Field, c=cond) -> list[Tensor]:
            return [c.residual(BoundaryPoints.from_aux(x, normals), u)]

        periodic = cond.kind == "periodic"
        weight = float(cond.weight) * balance.get(cond.label, 1.0)
        sets.append(ResidualSet(cond.label, weight, pts.x, pts.aux(), residual,
                                unit=2 if periodic else 1, entries=1 + len(cond.derivatives) if periodic else 1))
    return sets


def _field(model: nn.Module, problem: Problem, x: Tensor, engine: str, plan: DerivativePlan | None) -> Field:
    return make_field(model, x, problem.coords, problem.outputs, engine, problem.time_coord, plan=plan)


def residual_blocks(
    model: nn.Module,
    problem: Problem,
    batch: Batch,
    engine: str = "auto",
    plans: dict[str, DerivativePlan] | None = None,
    pde_weight: float = 1.0,
    balance: Mapping[str, float] | None = None,
) -> list[ResidualBlock]:
    """Every residual of ``model`` on ``batch``, set by set (:func:`residual_sets`), each set's residual
    tensors in the order its residual returns them. ``engine`` and ``plans`` as in :func:`loss_terms`."""
    engine = resolve_engine(engine, model)
    plans = plans or {}
    blocks = []
    for s in residual_sets(problem, batch, pde_weight, balance):
        u = _field(model, problem, s.x, engine, plans.get(s.label))
        blocks += [ResidualBlock(s.label, s.scale, r) for r in s.residual(s.x, s.normals, u)]
    return blocks


def loss_terms(
    model: nn.Module,
    problem: Problem,
    batch: Batch,
    engine: str = "auto",
    plans: dict[str, DerivativePlan] | None = None,
) -> dict[str, Tensor]:
    """Unweighted mean squared residuals: ``{"pde": ..., <condition label>: ...}``, each a 0-d tensor
    (a set with several residuals: the sum of their means).

    ``engine``: ``"auto"`` (forward when the model supports it), ``"forward"`` or ``"autograd"``;
    ``plans``: the forward engine's derivative plans per point set (:func:`derivative_plans`); without
    them the forward engine discovers the derivatives on first use (one extra pass per new one).
    """
    terms: dict[str, Tensor] = {}
    for block in residual_blocks(model, problem, batch, engine, plans):
        square = block.residual.pow(2).mean()
        terms[block.label] = terms[block.label] + square if block.label in terms else square
    return terms


def weighted_loss(terms: dict[str, Tensor], problem: Problem, pde_weight: float,
                  balance: Mapping[str, float] | None = None) -> Tensor:
    """``pde_weight * terms["pde"] + sum_c weight_c * terms[c]``; with ``balance``, each term also times
    ``balance[label]`` (1 where absent)."""
    lam = balance or {}
    return (pde_weight * lam.get("pde", 1.0) * terms["pde"]
            + sum(c.weight * lam.get(c.label, 1.0) * terms[c.label] for c in problem.conditions))


def scaled_residuals(
    model: nn.Module,
    problem: Problem,
    batch: Batch,
    pde_weight: float,
    engine: str = "auto",
    plans: dict[str, DerivativePlan] | None = None,
) -> Tensor:
    """The scaled residual vector ``[sqrt(weight / n) r, ...]`` ``(N,)``: its squared norm is the loss."""
    blocks = residual_blocks(model, problem, batch, engine, plans, pde_weight)
    return torch.cat([(b.residual.reshape(-1) * b.scale) for b in blocks])


def pde_residual_norms(
    model: nn.Module,
    problem: Problem,
    x: Tensor,
    engine: str = "auto",
    plan: DerivativePlan | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """``|r(x)|`` ``(n,)``: the Euclidean norm of the PDE's residuals at each point of ``x`` (all its
    residual tensors and components), detached, over chunks of at most ``chunk_size`` points (``None``:
    all at once). What adaptive collocation (:mod:`kanpde.training.adaptive`) weighs candidates by."""
    engine = resolve_engine(engine, model)

    def residual(xc: Tensor, normals: Tensor, u: Field) -> list[Tensor]:
        res = problem.pde(xc, u)
        return [res] if isinstance(res, Tensor) else list(res)

    rset, out = ResidualSet("pde", 1.0, x, x, residual), []
    with torch.set_grad_enabled(engine == "autograd"):
        for m, res in _residual_chunks(model, problem, rset, engine, plan, chunk_size):
            square = sum(r.detach().reshape(m, -1).pow(2).sum(dim=1) for r in res)
            out.append(square.sqrt())
    return torch.cat(out)


def term_gradient_norms(
    model: nn.Module,
    problem: Problem,
    batch: Batch,
    pde_weight: float,
    engine: str = "auto",
    plans: dict[str, DerivativePlan] | None = None,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """``{label: ||grad_theta T_j||}``: the Euclidean norm, over all of ``model.parameters()``, of the
    gradient of each term ``T_j = weight_j mean |r_j|^2`` of the loss (the PDE term with ``pde_weight``
    and ``batch.weights``; each condition's with its weight; no global term weights), each summed over
    chunks of at most ``chunk_size`` points (``None``: all at once). What gradient-norm balancing
    (:class:`~kanpde.training.adaptive.Balance`) weighs the terms by."""
    engine = resolve_engine(engine, model)
    plans = plans or {}
    params = [p for p in model.parameters() if p.requires_grad]
    norms: dict[str, float] = {}
    with torch.enable_grad():
        for s in residual_sets(problem, batch, pde_weight):
            grad = [torch.zeros_like(p) for p in params]
            for m, res in _residual_chunks(model, problem, s, engine, plans.get(s.label), chunk_size):
                part = s.weight * _mean_square_part(res, m, s.units)
                if not part.requires_grad:  # a term no parameter reaches
                    continue
                for g, d in zip(grad, torch.autograd.grad(part, params, allow_unused=True)):
                    if d is not None:
                        g.add_(d)
            norm = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grad])) if grad else torch.zeros(())
            norms[s.label] = float(norm)
    return norms


def _residual_chunks(model: nn.Module, problem: Problem, s: ResidualSet, engine: str, plan: DerivativePlan | None,
                     chunk_size: int | None) -> Iterator[tuple[int, list[Tensor]]]:
    """The residuals of ``model`` on set ``s``, chunk by chunk of at most ``chunk_size`` points in whole
    units (``None``: the set in one piece): yields each chunk's number of units ``m`` and its residual
    tensors (as ``s.residual`` returns them). The one chunk loop of :func:`accumulate_loss`,
    :func:`term_gradient_norms` and :func:`pde_residual_norms`."""
    xu, nu = s.unit_points()
    units = xu.shape[0]
    step = units if chunk_size is None else max(1, chunk_size // s.unit)
    for start in range(0, units, step):
        x, normals = _unit_layout(xu[start : start + step]), _unit_layout(nu[start : start + step])
        yield x.shape[0] // s.unit, s.residual(x, normals, _field(model, problem, x, engine, plan))


def _mean_square_part(res: list[Tensor], m: int, units: int) -> Tensor:
    """A chunk of ``m`` of a set's ``units`` units: its part of the set's mean squared residual (the sum
    over the set's residual tensors of their means)."""
    return sum(r.pow(2).sum() * (m / r.numel()) / units for r in res)


def _unit_layout(xs: Tensor) -> Tensor:
    """Points of units ``(m, unit, d)`` laid out as their set is: ``(m * unit, d)``, all first points of
    the units, then all second points (a periodic condition's matched halves)."""
    return xs[:, 0] if xs.shape[1] == 1 else torch.cat([xs[:, j] for j in range(xs.shape[1])])


def fits_one_chunk(batch: Batch, chunk_size: int | None) -> bool:
    """Whether every point set of ``batch`` has at most ``chunk_size`` points (``None``: no chunking)."""
    sizes = [batch.interior.shape[0], *(b.x.shape[0] for b in batch.boundary.values())]
    return chunk_size is None or max(sizes) <= chunk_size


def accumulate_loss(
    model: nn.Module,
    problem: Problem,
    batch: Batch,
    pde_weight: float,
    engine: str = "auto",
    plans: dict[str, DerivativePlan] | None = None,
    chunk_size: int | None = None,
    backward: bool = False,
    balance: Mapping[str, float] | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """:func:`loss_terms` and :func:`weighted_loss` summed over chunks of at most ``chunk_size`` points
    per point set (``None``: each set in one piece), so memory holds one chunk's graph, not the batch's.

    Every residual is pointwise, so a set's mean square is the sum over its chunks of
    ``sum |r_chunk|^2 / n_entries`` and the loss is ``sum_sets weight * sum_chunks (...)``: the same
    numbers as the unchunked loss up to the order of summation (rounding). With ``backward`` each
    chunk's part of the loss is back-propagated as soon as it is computed and its graph freed, so the
    parameters' ``.grad`` accumulates the gradient of the whole loss; a chunk with a non-finite part is
    not back-propagated (the total is then non-finite too). Returns detached 0-d terms and loss.
    ``balance``: global term weights (module docstring), in the loss, not in the terms.
    """
    engine = resolve_engine(engine, model)
    plans = plans or {}
    terms: dict[str, Tensor] = {}
    total = torch.zeros((), dtype=batch.interior.dtype, device=batch.interior.device)
    for s in residual_sets(problem, batch, pde_weight, balance):
        for m, res in _residual_chunks(model, problem, s, engine, plans.get(s.label), chunk_size):
            part = _mean_square_part(res, m, s.units)  # this chunk's part of the mean over the set
            if backward and bool(torch.isfinite(part)):
                (s.weight * part).backward()
            part = part.detach()
            terms[s.label] = terms[s.label] + part if s.label in terms else part
            total = total + s.weight * part
    return terms, total


def derivative_plans(
    model: nn.Module, problem: Problem, batch: Batch, engine: str = "auto", n_probe: int = 4
) -> dict[str, DerivativePlan] | None:
    """Which derivatives each point set's residual needs: ``{"pde": plan, <condition label>: plan}``.

    Found once by running the residuals on the first ``n_probe`` points of each set with a recording
    field (:func:`kanpde.derivatives.probe_plan`), so the forward engine carries exactly those
    derivatives (the PDE needs one trace row for a Laplacian; a Dirichlet condition needs no derivative
    at all). ``None`` when ``engine`` resolves to autograd, which needs no plan.
    """
    if resolve_engine(engine, model) != "forward":
        return None
    args = (problem.coords, problem.outputs, problem.time_coord)
    plans = {}
    for s in residual_sets(problem, batch):
        x, normals = s.x[:n_probe], s.normals[:n_probe]
        plans[s.label] = probe_plan(lambda u, s=s, x=x, nx=normals: s.residual(x, nx, u), model, x, *args)
    return plans


class _UnitResidual(nn.Module):
    """One set's residual as a module of the model, so :func:`functional_call` can swap parameters."""

    def __init__(self, model: nn.Module, problem: Problem, rset: ResidualSet, engine: str, plan: DerivativePlan | None) -> None:
        super().__init__()
        self.model = model
        self._problem, self._set, self._engine, self._plan = problem, rset, engine, plan

    def forward(self, x: Tensor, normals: Tensor) -> Tensor:
        u = _field(self.model, self._problem, x, self._engine, self._plan)
        return torch.cat([r.reshape(-1) for r in self._set.residual(x, normals, u)])


class PinnLeastSquares:
    """The scaled PINN residual vector of ``problem`` on ``batch`` (module docstring) as a least-squares
    problem over ``model.parameters()``: the :class:`~kanpde.training.lm.LeastSquares` interface.

    ``engine`` and ``plans`` as in :func:`loss_terms`; ``chunk_size``: units per Jacobian chunk (memory
    ``chunk_size x P`` floats plus the per-point intermediates); ``dtype``: of ``J^T J``;
    ``loss_chunk_size``: points per chunk of :meth:`value` (``None``: all at once); ``balance``: global
    term weights (module docstring), read at each use, so updating the mapping in place updates the system.
    :meth:`value` equals :func:`weighted_loss` of :func:`loss_terms`. Residuals must be pointwise (a
    point's residual depends on that point only; periodic conditions on their matched pairs), which
    every residual written against a :class:`kanpde.Field` is.
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
        loss_chunk_size: int | None = None,
        balance: Mapping[str, float] | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.model, self.problem, self.batch = model, problem, batch
        self.pde_weight, self.engine, self.plans = float(pde_weight), resolve_engine(engine, model), plans or {}
        self.chunk_size, self.dtype = int(chunk_size), dtype
        self.loss_chunk_size = loss_chunk_size
        self.balance = balance  # read at each use: the trainer updates it in place
        self.names = [n for n, _ in model.named_parameters()]
        # modules whose forward jet has parameter-free parts (hard constraints' lift): given per chunk
        self._holders = [m for m in model.modules() if callable(getattr(m, "jet_constants", None))]
        self._constants: dict[tuple[str, int], list[tuple]] = {}

    def value(self) -> float:
        """``||r||^2``, the loss at the current parameters, over chunks of ``loss_chunk_size`` points
        (:func:`accumulate_loss`; no graph is kept; the autograd engine builds each chunk's derivatives)."""
        with torch.set_grad_enabled(self.engine == "autograd"):
            if fits_one_chunk(self.batch, self.loss_chunk_size):
                terms = loss_terms(self.model, self.problem, self.batch, self.engine, self.plans)
                return float(weighted_loss(terms, self.problem, self.pde_weight, self.balance).detach())
            _, loss = accumulate_loss(self.model, self.problem, self.batch, self.pde_weight, self.engine, self.plans,
                                      self.loss_chunk_size, balance=self.balance)
            return float(loss)

    def _chunks(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Scaled ``(J, r)`` chunk by chunk: set by set (PDE, then conditions), unit by unit."""
        for s in residual_sets(self.problem, self.batch, self.pde_weight, self.balance):
            module = _UnitResidual(self.model, self.problem, s, self.engine, self.plans.get(s.label))
            xu, nu = s.unit_points()
            for start in range(0, xu.shape[0], self.chunk_size):
                stop = start + self.chunk_size
                J, r = self._chunk_jacobian(module, xu[start:stop], nu[start:stop], (s.label, start))
                yield (s.scale * J).to(self.dtype), (s.scale * r).to(self.dtype)

    def jacobian(self) -> tuple[Tensor, Tensor]:
        """The whole scaled Jacobian ``(N, P)`` and residual vector ``(N,)`` (small problems and tests; the
        optimizer uses :meth:`normal_equations`)."""
        Js, rs = zip(*self._chunks())
        return torch.cat(Js), torch.cat(rs)

    def normal_equations(self) -> tuple[Tensor, Tensor, float]:
        """``(J^T J, J^T r, ||r||^2)`` accumulated over chunks, in ``dtype``."""
        params = list(self.model.parameters())
        n_params = sum(p.numel() for p in params)
        device = params[0].device
        A = torch.zeros(n_params, n_params, dtype=self.dtype, device=device)
        g = torch.zeros(n_params, dtype=self.dtype, device=device)
        f = 0.0
        for J, r in self._chunks():
            A.addmm_(J.T, J)
            g.addmv_(J.T, r)
            f += float(r @ r)
        return A, g, f

    def _chunk_jacobian(self, module: _UnitResidual, xs: Tensor, ns: Tensor, key: tuple[str, int]
                        ) -> tuple[Tensor, Tensor]:
        """Rows of ``d r / d theta`` ``(m, P)`` and the residuals ``(m,)`` of a chunk of units, unscaled.
        ``key``: the chunk's (set label, first unit), under which its parameter-free jet constants are kept."""
        if self.engine == "forward":
            return self._vmap_jacobian(module, xs, ns, key)
        return self._autograd_jacobian(module, xs, ns)

    def _jet_constants(self, module: _UnitResidual, xs: Tensor, key: tuple[str, int]) -> list[tuple]:
        """The parameter-free parts of the forward jet at the chunk's points (a hard-constraint wrapper's
        lift and its derivatives: ``jet_constants``), computed once per chunk outside ``vmap`` and kept for
        the life of this system (its points do not change): ``(units, unit, ...)`` per holder, per part."""
        if module._plan is None or not self._holders:
            return []
        cached = self._constants.get(key)
        if cached is not None:
            return cached
        c, k = xs.shape[:2]
        flat = xs.reshape(c * k, *xs.shape[2:])
        out = [tuple(None if t is None else t.reshape(c, k, *t.shape[1:]) for t in m.jet_constants(flat, module._plan))
               for m in self._holders]
        self._constants[key] = out
        return out

    def _vmap_jacobian(self, module: _UnitResidual, xs: Tensor, ns: Tensor, key: tuple[str, int]
                       ) -> tuple[Tensor, Tensor]:
        params = {f"model.{n}": p.detach() for n, p in self.model.named_parameters()}
        constants = self._jet_constants(module, xs, key)

        def unit(theta: dict, xu: Tensor, nu: Tensor, cu: list[tuple]) -> tuple[Tensor, Tensor]:
            with contextlib.ExitStack() as given:
                for holder, parts in zip(self._holders, cu):
                    given.enter_context(holder.given_jet_constants(parts, module._plan))
                r = functional_call(module, theta, (xu, nu))  # (k,)
            return r, r

        dims = [tuple(None if t is None else 0 for t in parts) for parts in constants]  # a part may be None
        jac, r = vmap(jacrev(unit, has_aux=True), in_dims=(None, 0, 0, dims))(params, xs, ns, constants)  # (c, k, ...), (c, k)
        rows = r.numel()
        J = torch.cat([jac[f"model.{n}"].reshape(rows, -1) for n in self.names], dim=1)
        return J, r.reshape(-1)

    def _autograd_jacobian(self, module: _UnitResidual, xs: Tensor, ns: Tensor) -> tuple[Tensor, Tensor]:
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
