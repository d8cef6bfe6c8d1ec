"""Error norms with explicit quadrature, and :func:`evaluate` of a trained model: its errors against the
exact solution (when the problem has one) and its residuals (always).

On a uniform tensor grid including the boundary, integrals use the composite trapezoidal rule
(weights :func:`trapezoid_weights`, second-order accurate), so norms carry the domain measure:

    l2      = ( ∫ |e|^2 )^(1/2)                 l2_rel = l2 / ( ∫ |u|^2 )^(1/2)
    h1_semi = ( ∫ |∇e|^2 )^(1/2)                h1     = ( l2^2 + h1_semi^2 )^(1/2)
    h1_rel  = h1 / ||u||_H1                      linf   = max |e|
    mse     = mean e^2  (the KAN paper's "L2 squared")
    h1_mse  = mean (e^2 + |∇e|^2)  (its "H1 squared")

with ``e = u_model - u_exact`` summed over output components.

Residual metrics need no exact solution: ``residual_rms`` and ``residual_max`` are the RMS and the
maximum of ``|r|`` over the evaluation points inside the domain and over every residual ``r`` that
:meth:`~kanpde.pde.Problem.pde` returns; ``condition_rms`` maps each condition's label to the RMS of its
residual on a fixed quasi-random sample of its points (Sobol, seed 0: the same points for every model).

At scattered points — the nodes of reference data (:func:`point_errors`) — the same norms use equal
weights ``|Omega| / N`` (the nodes carry no quadrature weights): ``l2`` is the Monte Carlo estimate of
``( ∫ |e|^2 )^(1/2)``, ``l2_rel`` the relative RMS of the error over the nodes, ``linf`` the largest
error at a node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import math

import numpy as np
import torch
from torch import Tensor, nn

from kanpde.derivatives import make_field, probe_plan, resolve_engine
from kanpde.models.protocol import module_dtype_device
from kanpde.pde import BoundaryPoints, Problem, ReferenceData, Sampler

__all__ = ["trapezoid_weights", "lp_norm", "error_norms", "Evaluation", "evaluate", "predict", "residual_metrics",
           "relative_difference", "NO_EXACT", "PointEvaluation", "point_errors", "reference_errors"]

NO_EXACT = "no exact solution: error metrics not computed"
CONDITION_POINTS = 512  # quasi-random points per sampled condition for condition_rms


def trapezoid_weights(axes: Sequence[np.ndarray]) -> np.ndarray:
    """Tensor-product trapezoidal weights on the grid spanned by ``axes``: ``(prod n_i,)`` in "ij" order."""
    weights = np.ones(1)
    for a in axes:
        w = np.zeros_like(a, dtype=np.float64)
        h = np.diff(a)
        w[:-1] += h / 2
        w[1:] += h / 2
        weights = np.multiply.outer(weights, w).reshape(-1)
    return weights


def lp_norm(values: np.ndarray, weights: np.ndarray, p: float = 2.0) -> float:
    """``( sum_i w_i |v_i|^p )^(1/p)`` over quadrature points; ``values`` ``(N,)`` or ``(N, m)`` (summed over m)."""
    v = np.abs(values).reshape(values.shape[0], -1)
    return float((weights @ (v**p).sum(axis=1)) ** (1.0 / p))


def error_norms(
    pred: np.ndarray, exact: np.ndarray, grad_pred: np.ndarray, grad_exact: np.ndarray, weights: np.ndarray
) -> dict[str, float]:
    """All error norms of the module docstring from values ``(N, m)`` and gradients ``(N, m, d)``."""
    n = pred.shape[0]
    e = (pred - exact).reshape(n, -1)
    ge = (grad_pred - grad_exact).reshape(n, -1)
    u, gu = exact.reshape(n, -1), grad_exact.reshape(n, -1)
    l2, h1_semi = lp_norm(e, weights), lp_norm(ge, weights)
    u_l2, u_h1_semi = lp_norm(u, weights), lp_norm(gu, weights)
    h1 = float(np.hypot(l2, h1_semi))
    u_h1 = float(np.hypot(u_l2, u_h1_semi))
    return {
        "l2": l2,
        "l2_rel": l2 / u_l2 if u_l2 > 0 else float("nan"),
        "h1_semi": h1_semi,
        "h1": h1,
        "h1_rel": h1 / u_h1 if u_h1 > 0 else float("nan"),
        "linf": float(np.abs(e).max()),
        "mse": float((e**2).sum(axis=1).mean()),
        "h1_mse": float(((e**2).sum(axis=1) + (ge**2).sum(axis=1)).mean()),
    }


@torch.no_grad()
def _no_grad_forward(model: nn.Module, x: Tensor) -> Tensor:
    return model(x)


def predict(model: nn.Module, x: Tensor, chunk_size: int = 16384) -> Tensor:
    """``model(x)`` in chunks without building a graph: ``(n, d) -> (n, n_out)``."""
    return torch.cat([_no_grad_forward(model, c) for c in x.split(chunk_size)]).reshape(x.shape[0], -1)


def _predict_with_grad(model: nn.Module, problem: Problem, x: Tensor, engine: str) -> tuple[Tensor, Tensor]:
    engine = resolve_engine(engine, model)
    plan = _gradient_plan(model, problem, x, engine)
    # The forward engine needs no graph at all here: values and gradients come from one pass.
    with torch.set_grad_enabled(engine != "forward"):
        u = make_field(model, x, problem.coords, problem.outputs, engine, problem.time_coord, plan=plan)
        views = [u[name] for name in problem.outputs]
        values = torch.stack([v.value for v in views], dim=1)  # (n, m)
        grads = torch.stack([v.grad() for v in views], dim=1)  # (n, m, d)
    return values.detach(), grads.detach()


def _gradient_plan(model: nn.Module, problem: Problem, x: Tensor, engine: str):
    """The forward engine's plan for values and gradients: the PDE's own plan where it carries every first
    derivative (the Laplacian's plan does), so the evaluation runs the CPU kernels training compiled
    rather than compiling kernels of its own (a fifth of the first run's compile time); else the first
    derivatives alone. The extra second-derivative rows cost little on an evaluation grid."""
    first = [(i,) for i in range(problem.dim)]
    if engine != "forward" or x.shape[0] == 0:
        return first
    plan = probe_plan(lambda u: _pde_residuals(problem)(x[:4], u), model, x[:4], problem.coords, problem.outputs,
                      problem.time_coord)
    return plan if set(plan.dirs) == set(range(problem.dim)) else first


@dataclass
class Evaluation:
    """Errors of a model on an evaluation grid: ``metrics`` plus the fields they came from.

    ``axes``: grid coordinates per axis; ``points`` ``(N, d)``; ``predicted``, ``exact`` ``(N, m)`` and
    ``grad_predicted``, ``grad_exact`` ``(N, m, d)`` as float64 NumPy arrays (``exact`` and ``grad_exact``
    None for a problem without an exact solution); ``residual`` ``(N, k)``: the ``k`` PDE residuals.
    """

    metrics: dict[str, float]
    axes: list[np.ndarray]
    points: np.ndarray
    predicted: np.ndarray
    exact: np.ndarray | None
    grad_predicted: np.ndarray = field(repr=False)
    grad_exact: np.ndarray | None = field(repr=False)
    mask: np.ndarray | None = field(default=None, repr=False)  # (N,) bool: inside the domain (None: all)
    messages: list[str] = field(default_factory=list)  # why a metric is None (not computed), one line each
    residual: np.ndarray | None = field(default=None, repr=False)  # (N, k) PDE residuals, NaN outside the domain

    @property
    def weights(self) -> np.ndarray:
        """The trapezoidal quadrature weights of the points inside the domain (:func:`trapezoid_weights`)."""
        w = trapezoid_weights(self.axes)
        return w if self.mask is None else w[self.mask]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)

    def on_grid(self, values: np.ndarray) -> np.ndarray:
        """Reshape ``(N, m)`` values to ``(m, n_0, ..., n_{d-1})`` grid arrays."""
        return values.T.reshape((values.shape[1], *self.shape))


def evaluate(
    model: nn.Module,
    problem: Problem,
    n_per_axis: int | Sequence[int] = 201,
    *,
    engine: str = "auto",
    chunk_size: int = 8192,
    max_points: int = 250_000,
    residual_problem: Problem | None = None,
) -> Evaluation:
    """Errors of ``model`` against ``problem.exact`` and its residuals on a uniform grid of ``n_per_axis``
    points per axis.

    Values and gradients are computed in chunks of ``chunk_size`` points in the model's dtype/device
    (with ``engine`` ``"auto"``/``"forward"``: one forward pass per chunk and no autograd graph, so
    memory stays bounded by the chunk) and returned as float64 NumPy arrays. ``metrics`` holds the norms
    of :func:`error_norms` and ``n_params``. A scalar ``n_per_axis`` is lowered so the grid has at most
    ``max_points`` points (e.g. 62 per axis in 3-D, 11 in 5-D). A domain other than a :class:`Box` is
    evaluated on its bounding box's grid: norms use only the points inside (``mask``), and the returned
    full-grid arrays are NaN outside. A time-dependent problem also gets ``l2_final``, ``l2_rel_final``,
    ``linf_final`` on the final-time slice.

    A metric that cannot be trusted is ``None`` and ``messages`` says why: every error metric when
    ``problem.exact`` is not finite at some grid point; the H1 metrics when the gradient of the solution
    is unavailable (an ``exact`` without an autograd graph and no ``exact_grad``); a relative norm when
    the solution is zero to rounding at every grid point (RMS <= 1e-12, e.g. ``sin(20 pi x)`` on 21
    points per axis), where dividing by it would report noise (use more points). A problem without an
    exact solution gets every error metric ``None`` with the message :data:`NO_EXACT`.

    ``metrics`` also holds the residual metrics of :func:`residual_metrics` (``residual_rms``,
    ``residual_max``, ``condition_rms``), with or without an exact solution; ``residual_problem`` (default
    ``problem``, same PDE and coordinates) is the problem whose residuals are measured, e.g. an inverse
    problem with its learned unknowns.
    """
    dtype, device = module_dtype_device(model)
    geo = problem.geometry
    n_axis = n_per_axis
    if np.isscalar(n_per_axis):  # cap the grid in higher dimensions: max_points in total
        n_axis = max(2, min(int(n_per_axis), int(math.floor(max_points ** (1.0 / problem.dim) + 1e-9))))
    axes, points = geo.grid(n_axis)
    mask = None if getattr(geo, "is_box", False) else geo.contains(points, tol=1e-9)
    inside = points if mask is None else points[mask]
    x = torch.from_numpy(inside).to(dtype=dtype, device=device)
    has_exact = problem.has_exact
    pred, grad_pred, exact, res = [], [], [], []
    m = problem.n_outputs
    measured = residual_problem or problem
    pde = _pde_residuals(measured)
    for chunk in x.split(chunk_size):
        v, g = _predict_with_grad(model, problem, chunk, engine)
        pred.append(v.double().cpu())
        grad_pred.append(g.double().cpu())
        # the residuals right after, at the same points: parameter-free parts of the field kept from the
        # pass above (a hard-constraint lift's derivatives, HardDirichlet) are reused, not computed again
        res.append(_residual_values(model, measured, chunk, pde, engine))
        if has_exact:
            exact.append(problem.exact(chunk.double()).detach().reshape(-1, m).cpu())
    weights = trapezoid_weights(axes)
    if mask is not None:
        weights = weights[mask]
    residual = torch.cat(res).numpy()
    metrics = _residual_summary(model, measured, residual, engine, CONDITION_POINTS)
    if has_exact:
        grad_exact, messages = _exact_gradient(problem, x, chunk_size)
        arrays = [torch.cat(a).numpy() for a in (pred, exact, grad_pred)]
        arrays.append(np.full_like(arrays[2], np.nan) if grad_exact is None else grad_exact)
        errors = error_norms(arrays[0], arrays[1], arrays[2], arrays[3], weights)
        if problem.is_time_dependent:
            errors.update(_final_time_norms(problem, axes, inside, arrays[0], arrays[1], weights))
        messages += _unusable(errors, problem, inside, arrays[1], arrays[3], weights, grad_exact is not None)
    else:
        arrays = [torch.cat(pred).numpy(), None, torch.cat(grad_pred).numpy(), None]
        keys = ERROR_KEYS if problem.is_time_dependent else ERROR_KEYS[:-3]
        errors, messages = dict.fromkeys(keys), [NO_EXACT]
    metrics = {**errors, **metrics}
    arrays.append(residual)
    if mask is not None:  # full-grid arrays, NaN outside the domain
        full = []
        for arr in arrays:
            if arr is None:
                full.append(None)
                continue
            out = np.full((points.shape[0], *arr.shape[1:]), np.nan)
            out[mask] = arr
            full.append(out)
        arrays = full
    metrics["n_params"] = int(sum(p.numel() for p in model.parameters()))
    return Evaluation(metrics, axes, points, arrays[0], arrays[1], arrays[2], arrays[3], mask, messages, arrays[4])


@dataclass
class PointEvaluation:
    """Errors of a model at scattered points (the nodes of reference data): ``metrics`` (the norms of
    :func:`error_norms` with equal weights ``|Omega| / N``; a metric not computed is None and ``messages``
    says why), the ``points`` ``(N, d)``, the solution ``values`` ``(N, m)`` there and the model's
    ``predicted`` ``(N, m)``, float64 NumPy; ``source`` names the data."""

    metrics: dict[str, float | None]
    points: np.ndarray
    values: np.ndarray
    predicted: np.ndarray
    source: str = ""
    messages: list[str] = field(default_factory=list)
    gradients: np.ndarray | None = field(default=None, repr=False)  # (N, m, d) of the solution, where known
    grad_predicted: np.ndarray | None = field(default=None, repr=False)  # (N, m, d)


def point_errors(
    model: nn.Module, problem: Problem, points: np.ndarray, values: np.ndarray, gradients: np.ndarray | None = None,
    *, engine: str = "auto", chunk_size: int = 8192, source: str = "data",
) -> PointEvaluation:
    """The errors of ``model`` against the solution ``values`` ``(N, m)`` known at ``points`` ``(N, d)``:
    ``l2``, ``l2_rel``, ``linf``, ``mse`` and, with the solution's ``gradients`` ``(N, m, d)``, the H1 norms
    (else None, with a message), all with equal weights ``|Omega| / N`` (module docstring). The model is
    evaluated in its dtype/device, in chunks, by ``engine`` (values and gradients in one pass)."""
    dtype, device = module_dtype_device(model)
    pts = np.asarray(points, dtype=np.float64)
    n, m, d = pts.shape[0], problem.n_outputs, problem.dim
    exact = np.asarray(values, dtype=np.float64).reshape(n, m)
    x = torch.from_numpy(pts).to(dtype=dtype, device=device)
    pred, grad_pred = [], []
    for chunk in x.split(chunk_size):
        v, g = _predict_with_grad(model, problem, chunk, engine)
        pred.append(v.double().cpu())
        grad_pred.append(g.double().cpu())
    predicted, grad_predicted = torch.cat(pred).numpy(), torch.cat(grad_pred).numpy()
    has_grad = gradients is not None
    grad_exact = np.asarray(gradients, dtype=np.float64).reshape(n, m, d) if has_grad else np.zeros_like(grad_predicted)
    weights = np.full(n, float(problem.geometry.volume) / n)
    metrics: dict[str, float | None] = dict(error_norms(predicted, exact, grad_predicted, grad_exact, weights))
    messages = []
    if not has_grad:
        for key in H1_KEYS:
            metrics[key] = None
        names = ", ".join(f"{o}_{c}" for o in problem.outputs for c in problem.coords)
        messages.append(f"h1_semi, h1, h1_rel, h1_mse not computed: {source} has no gradient ({names})")
    rms = math.sqrt(float(np.mean((exact**2).sum(axis=1))))
    grad_rms = math.sqrt(float(np.mean((grad_exact.reshape(n, -1) ** 2).sum(axis=1)))) if has_grad else math.nan
    vanishing = [k for k, small in (("l2_rel", rms), ("h1_rel", math.hypot(rms, grad_rms))) if small <= VANISHING_RMS]
    for key in vanishing:
        metrics[key] = None
    if vanishing:
        messages.append(f"{', '.join(vanishing)} not computed: the solution in {source} is zero to rounding at every point "
                        f"(RMS {rms:.1e})")
    return PointEvaluation(metrics, pts, exact, predicted, source, messages, grad_exact if has_grad else None, grad_predicted)


def reference_errors(model: nn.Module, problem: Problem, reference: ReferenceData, *, engine: str = "auto",
                     chunk_size: int = 8192) -> PointEvaluation:
    """:func:`point_errors` of ``model`` at the nodes of ``reference``
    (:class:`~kanpde.pde.reference.ReferenceData`, e.g. from :func:`~kanpde.pde.reference.read_reference`)."""
    return point_errors(model, problem, reference.points, reference.values, reference.gradients, engine=engine,
                        chunk_size=chunk_size, source=reference.source)


def _residual_values(model: nn.Module, problem: Problem, x: Tensor, residual, engine: str) -> Tensor:
    """``residual(x, field)`` (a sequence of ``(n,)`` tensors) of ``model`` at ``x`` as ``(n, k)`` float64 on
    the CPU, computed as the loss computes it: the field by ``engine`` (the forward engine carrying the
    derivatives the residual asks for, :func:`~kanpde.derivatives.probe_plan`), no graph kept."""
    engine = resolve_engine(engine, model)
    plan = None
    if engine == "forward":
        plan = probe_plan(lambda u: residual(x[:4], u), model, x[:4], problem.coords, problem.outputs, problem.time_coord)
    with torch.set_grad_enabled(engine != "forward"):
        u = make_field(model, x, problem.coords, problem.outputs, engine, problem.time_coord, plan=plan)
        values = [r.detach().reshape(x.shape[0], -1).double().cpu() for r in residual(x, u)]
    return torch.cat(values, dim=1)


def _pde_residuals(problem: Problem):
    def residual(x: Tensor, u) -> list[Tensor]:
        res = problem.pde(x, u)
        return [res] if isinstance(res, Tensor) else list(res)

    return residual


def residual_metrics(
    model: nn.Module, problem: Problem, x: Tensor, *, engine: str = "auto", chunk_size: int = 8192,
    n_condition: int = CONDITION_POINTS,
) -> tuple[np.ndarray, dict[str, object]]:
    """The PDE residuals of ``model`` at the points ``x`` ``(N, d)`` (in the model's dtype, in chunks):
    ``(N, k)`` float64 for the ``k`` residuals of ``problem.pde``, and the metrics ``residual_rms`` (the RMS
    over all points and residuals), ``residual_max`` (the largest ``|r|``) and ``condition_rms`` (each
    condition's label -> the RMS of its residual on ``n_condition`` points per sampled condition from
    ``problem.sample`` with ``Sampler("sobol", seed=0)``; a point or observation condition on its own points)."""
    pde = _pde_residuals(problem)
    res = torch.cat([_residual_values(model, problem, c, pde, engine) for c in x.split(chunk_size)]).numpy()
    return res, _residual_summary(model, problem, res, engine, n_condition)


def _residual_summary(model: nn.Module, problem: Problem, res: np.ndarray, engine: str, n_condition: int
                      ) -> dict[str, object]:
    """:func:`residual_metrics`' metrics from the PDE residuals ``res`` ``(N, k)``, with the conditions'."""
    dtype, device = module_dtype_device(model)
    metrics: dict[str, object] = {
        "residual_rms": float(np.sqrt(np.mean(res**2))),
        "residual_max": float(np.abs(res).max()),
    }
    sampled = sum(1 for c in problem.conditions if c.kind not in ("point", "observation"))
    batch = problem.sample(Sampler("sobol", seed=0), 1, n_condition * max(sampled, 1)).to(dtype, device)
    rms = {}
    for cond in problem.conditions:
        pts = batch.boundary[cond.label]

        def residual(xs: Tensor, u, c=cond, p=pts) -> list[Tensor]:  # a periodic pair stays whole: one chunk
            n = xs.shape[0]  # the derivative probe passes the first few points
            return [c.residual(BoundaryPoints(xs, p.normals[:n], None if p.values is None else p.values[:n]), u)]

        r = _residual_values(model, problem, pts.x, residual, engine)
        rms[cond.label] = float(torch.sqrt(torch.mean(r**2)))
    metrics["condition_rms"] = rms
    return metrics


def relative_difference(a: Evaluation, b: Evaluation) -> float:
    """``||u_a - u_b|| / ||u_a||`` of two evaluations on the same grid: the L2 norms with the domain's
    trapezoidal weights (:func:`lp_norm`), summed over the outputs; NaN when ``u_a`` is zero on the grid."""
    if [len(ax) for ax in a.axes] != [len(ax) for ax in b.axes]:
        raise ValueError(f"evaluations on different grids: {a.shape} and {b.shape}")
    inside = slice(None) if a.mask is None else a.mask
    pa, pb, w = a.predicted[inside], b.predicted[inside], a.weights
    norm = lp_norm(pa, w)
    return lp_norm(pa - pb, w) / norm if norm > 0 else math.nan


H1_KEYS = ("h1_semi", "h1", "h1_rel", "h1_mse")
ERROR_KEYS = ("l2", "l2_rel", "h1_semi", "h1", "h1_rel", "linf", "mse", "h1_mse", "l2_final", "l2_rel_final", "linf_final")
VANISHING_RMS = 1e-12  # an exact solution whose RMS on the grid is below this is zero to rounding there


def _exact_gradient(problem: Problem, x: Tensor, chunk_size: int) -> tuple[np.ndarray | None, list[str]]:
    """``exact_grad`` on the points ``(N, m, d)`` float64, or None and why (an ``exact`` without an
    autograd graph, e.g. interpolated reference data, and no ``exact_grad``)."""
    m, d = problem.n_outputs, problem.dim
    try:
        grads = [problem.exact_grad(c.double()).detach().reshape(-1, m, d).cpu() for c in x.split(chunk_size)]
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        return None, [f"h1_semi, h1, h1_rel, h1_mse not computed: the gradient of {type(problem).__name__}.exact "
                      f"failed ({first}); give the problem an exact_grad(x)"]
    return torch.cat(grads).numpy(), []


def _unusable(metrics: dict[str, float | None], problem: Problem, points: np.ndarray, exact: np.ndarray,
              grad_exact: np.ndarray, weights: np.ndarray, has_grad: bool) -> list[str]:
    """Set to None the metrics that cannot be trusted on this grid, and say why: all error metrics when
    ``exact`` is not finite somewhere, the H1 ones without a gradient of the solution, and a relative
    norm whose denominator (the solution's norm) is zero to rounding on the grid."""
    name = type(problem).__name__
    bad = ~np.isfinite(exact).all(axis=1)
    if bad.any():
        for key in ERROR_KEYS:
            if key in metrics:
                metrics[key] = None
        where = ", ".join(f"{c}={v:.6g}" for c, v in zip(problem.coords, points[np.argmax(bad)]))
        return [f"error metrics not computed: {name}.exact returned non-finite values at {int(bad.sum())} of "
                f"{len(bad)} evaluation points (first at {where})"]
    messages = []
    if not has_grad:
        for key in H1_KEYS:
            metrics[key] = None
    measure = float(weights.sum())
    rms = math.sqrt(lp_norm(exact, weights) ** 2 / measure)
    grad_rms = math.sqrt(lp_norm(grad_exact, weights) ** 2 / measure) if has_grad else math.nan
    vanishing = [k for k, small in (("l2_rel", rms), ("h1_rel", math.hypot(rms, grad_rms))) if small <= VANISHING_RMS]
    if "l2_rel_final" in metrics and metrics["l2_rel_final"] is None:
        vanishing.append("l2_rel_final")  # zero to rounding on the final-time slice (_final_time_norms)
    for key in vanishing:
        metrics[key] = None
    if vanishing:
        messages.append(f"{', '.join(vanishing)} not computed: the exact solution is zero to rounding at every "
                        f"evaluation point (RMS {rms:.1e}), so the grid cannot resolve it; use more evaluation "
                        "points (eval.n_per_axis)")
    return messages


def _final_time_norms(problem: Problem, axes, points, pred, exact, weights) -> dict[str, float | None]:
    """``l2_final``, ``l2_rel_final``, ``linf_final`` on the slice ``t = t_final`` of the evaluation grid."""
    k = problem.coords.index(problem.time_coord)
    t_final = axes[k][-1]
    sel = np.isclose(points[:, k], t_final)
    w = weights[sel] / (axes[k][-1] - axes[k][-2]) * 2  # trapezoid end weight h/2 removed from the time axis
    e = (pred[sel] - exact[sel]).reshape(int(sel.sum()), -1)
    l2, u_l2 = lp_norm(e, w), lp_norm(exact[sel], w)
    vanishing = not u_l2 > VANISHING_RMS * math.sqrt(float(w.sum()))  # NaN exact included: flagged by the caller
    return {
        "l2_final": l2,
        "l2_rel_final": None if vanishing else l2 / u_l2,
        "linf_final": float(np.abs(e).max()),
    }


