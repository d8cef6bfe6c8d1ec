"""Snapping a trained KAN to formulas: fitting library functions to its edges, and the affine polish.

:func:`fit_function` fits one edge's samples ``y ~ c f(a x + b) + d``: ``(a, b)`` by a grid search that
is refined around its best point for a few rounds (``(c, d)`` by linear least squares at every grid
point, so the score is the squared correlation R^2), then polished by a trust-region least-squares solve
on ``(a, b)`` with ``(c, d)`` eliminated (SciPy's ``trf``). :func:`auto_symbolic` fits every edge layer by layer and fixes the
best function above an R^2 threshold (simpler functions win near-ties), giving a
:class:`~kanpde.models.symbolic.SymbolicKAN`. :func:`polish_affine` fits the affine parameters of the
symbolic edges to the PINN loss (the scaled residual vector of :mod:`kanpde.training.loss`).

Both solves use ``scipy.optimize.least_squares(method="trf")``: with ``method="lm"`` (MINPACK) the same
function values gave other iterates from one process to the next (SciPy 1.17; a snapped formula then
changed with ``PYTHONHASHSEED``), while ``trf`` is reproducible for a given seed and thread count.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from kanpde.models import KAN
from kanpde.models.protocol import unwrap
from kanpde.models.symbolic import (
    LIBRARY,
    LIBRARY_NAMES,
    EdgeFit,
    SymbolicFunction,
    SymbolicKAN,
    fix_symbolic,
    library_index,
    to_symbolic,
)
from kanpde.pde import Batch, Problem
from kanpde.training.loss import scaled_residuals

__all__ = ["fit_function", "fit_edge", "auto_symbolic", "polish_affine"]

log = logging.getLogger(__name__)


def _linear_fit(f: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares ``y ~ c f + d`` along the last axis of ``f`` ``(..., n)``: ``(c, d, r2)`` each ``(...)``.

    ``r2 = corr(f, y)^2`` (the R^2 of the linear fit); ``-inf`` where ``f`` is not finite, 0 where it is constant.
    """
    finite = np.isfinite(f).all(axis=-1)
    f = np.where(finite[..., None], f, 0.0)
    fm = f.mean(axis=-1, keepdims=True)
    ym = y.mean()
    fc, yc = f - fm, y - ym
    sff = (fc * fc).sum(axis=-1)
    sfy = (fc * yc).sum(axis=-1)
    syy = float((yc * yc).sum())
    # A relative floor: f constant on the samples (or numerically so) explains nothing.
    ok = finite & (sff > 1e-24 * np.maximum(1.0, (fm[..., 0] ** 2) * f.shape[-1]))
    c = np.where(ok, sfy / np.where(ok, sff, 1.0), 0.0)
    d = ym - c * fm[..., 0]
    r2 = np.where(ok, sfy**2 / np.where(ok, sff, 1.0) / max(syy, 1e-300), 0.0)
    return c, d, np.where(finite, r2, -np.inf)


def fit_function(
    x: np.ndarray | Tensor,
    y: np.ndarray | Tensor,
    name: str,
    a_range: tuple[float, float] = (-10.0, 10.0),
    b_range: tuple[float, float] = (-10.0, 10.0),
    n_grid: int = 41,
    rounds: int = 4,
    polish: bool = True,
) -> EdgeFit:
    """Fit ``y ~ c * f(a * x + b) + d`` for one library function ``name`` (samples ``x``, ``y``: ``(n,)``).

    ``(a, b)``: grid search on ``n_grid x n_grid`` points of ``a_range x b_range``, then ``rounds - 1``
    refinements, each on a grid of the same size spanning two cells of the previous one around its best
    point; then (``polish``) trust-region least squares on ``(a, b)`` from there. ``(c, d)``: linear least
    squares at every ``(a, b)``. ``R^2 = 1 - SSE / SST``. ``"x"`` needs no search (``a = 1, b = 0``); ``"0"``
    is the constant ``d = mean(y)`` with ``R^2 = 0``. Computed in float64 NumPy.
    """
    x = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64).ravel()
    y = np.asarray(y.detach().cpu() if isinstance(y, Tensor) else y, dtype=np.float64).ravel()
    fn = LIBRARY[library_index(name)]
    if name == "0":
        return EdgeFit(name, 1.0, 0.0, 0.0, float(y.mean()), 0.0)
    if name == "x":
        c, d, r2 = _linear_fit(x[None], y)
        return EdgeFit(name, 1.0, 0.0, float(c[0]), float(d[0]), float(r2[0]))
    a_lo, a_hi = a_range
    b_lo, b_hi = b_range
    best = (1.0, 0.0)
    with np.errstate(all="ignore"):
        for _ in range(rounds):
            a = np.linspace(a_lo, a_hi, n_grid)
            b = np.linspace(b_lo, b_hi, n_grid)
            z = a[:, None, None] * x + b[None, :, None]  # (na, nb, n)
            _, _, r2 = _linear_fit(fn.numpy(z), y)
            i, j = np.unravel_index(np.argmax(np.nan_to_num(r2, nan=-np.inf)), r2.shape)
            best = (float(a[i]), float(b[j]))
            da, db = (a_hi - a_lo) / (n_grid - 1), (b_hi - b_lo) / (n_grid - 1)
            a_lo, a_hi = best[0] - 2 * da, best[0] + 2 * da
            b_lo, b_hi = best[1] - 2 * db, best[1] + 2 * db
        if polish:
            best = _polish(fn, x, y, best)
        c, d, r2 = _linear_fit(fn.numpy(best[0] * x + best[1])[None], y)
    c, d = float(c[0]), float(d[0])
    with np.errstate(all="ignore"):
        pred = c * fn.numpy(best[0] * x + best[1]) + d
    sst = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - pred) ** 2).sum()) / sst if sst > 0 and np.isfinite(pred).all() else float(r2[0])
    return EdgeFit(name, best[0], best[1], c, d, r2)


def _polish(fn: SymbolicFunction, x: np.ndarray, y: np.ndarray, start: tuple[float, float]) -> tuple[float, float]:
    """Least squares on ``(a, b)`` (SciPy ``trf``) with ``(c, d)`` eliminated; keeps ``start`` unless better."""
    from scipy.optimize import least_squares

    def residual(p: np.ndarray) -> np.ndarray:
        f = fn.numpy(p[0] * x + p[1])
        if not np.isfinite(f).all():
            return np.full_like(y, 1e150)
        c, d, _ = _linear_fit(f[None], y)
        return c[0] * f + d[0] - y

    r0 = float((residual(np.array(start)) ** 2).sum())
    try:
        sol = least_squares(residual, np.array(start), method="trf", x_scale="jac", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=400)
    except (ValueError, np.linalg.LinAlgError):
        return start
    if np.isfinite(sol.x).all() and float((residual(sol.x) ** 2).sum()) <= r0:
        return float(sol.x[0]), float(sol.x[1])
    return start


def fit_edge(
    x: np.ndarray | Tensor,
    y: np.ndarray | Tensor,
    lib: Sequence[str] | None = None,
    tie: float = 1e-6,
    tie_rel: float = 0.1,
    **kwargs: object,
) -> tuple[EdgeFit, list[EdgeFit]]:
    """Fit every function of ``lib`` (default: the whole library but ``"0"``) to one edge's samples.

    Returns ``(choice, fits)``: ``fits`` sorted by R^2 (best first) and ``choice`` the simplest function
    (lowest :attr:`SymbolicFunction.complexity`, then highest R^2) among the near-ties of the best,
    ``1 - R^2 <= (1 + tie_rel) (1 - R^2_best) + tie`` and ``R^2 >= (1 - tie_rel) R^2_best``. Near-ties matter because families nest: ``(a x + b)^2``
    with a large ``b`` comes arbitrarily close to a line, ``sin(a x + b)`` with a small ``a`` too, and
    such a fit is always a little better than ``x`` on samples of a trained, not exactly linear, spline.
    ``kwargs`` go to :func:`fit_function`.
    """
    names = [n for n in (lib or LIBRARY_NAMES) if n != "0"]
    fits = sorted((fit_function(x, y, n, **kwargs) for n in names), key=lambda f: -f.r2)
    best = fits[0].r2
    near = [f for f in fits if 1.0 - f.r2 <= (1.0 + tie_rel) * (1.0 - best) + tie and f.r2 >= (1.0 - tie_rel) * best]
    choice = min(near, key=lambda f: (LIBRARY[library_index(f.name)].complexity, -f.r2))
    return choice, fits


@torch.no_grad()
def auto_symbolic(
    model: KAN,
    x: Tensor,
    lib: Sequence[str] | None = None,
    r2_threshold: float = 0.99,
    tie: float = 1e-6,
    tie_rel: float = 0.1,
    zero_tol: float = 1e-3,
    layers: Sequence[int] | None = None,
    refit: bool = False,
    **fit_kwargs: object,
) -> tuple[SymbolicKAN, list[dict[str, object]]]:
    """Snap every spline edge of ``model`` to its best library function, layer by layer.

    The samples ``x`` ``(n, widths[0])`` are fed through the network; each edge's inputs and spline values
    are fitted by :func:`fit_edge` (``lib``: names to try, default all; ``tie``, ``tie_rel``: the near-ties
    among which the simplest wins). An edge whose values vary by less than ``zero_tol`` times the largest edge spread of
    its layer (standard deviation) becomes ``"0"`` (the constant ``d``). An edge whose best R^2 is below
    ``r2_threshold`` stays a spline. Later layers are fitted on the inputs produced by the already snapped
    earlier layers. ``layers``: snap only these layers (default all), so a schedule can snap the first
    layer, retrain, then snap the next (the others keep their splines). ``refit``: symbolic edges are fitted
    again too (to their current functions), so a retrained ``(a x + b)^2`` that became a line turns into ``x``;
    an edge refitted below the threshold keeps its current symbolic function. Returns the :class:`SymbolicKAN` and one record per edge
    (``layer, out, in, name, a, b, c, d, r2, fixed``).
    """
    sym = to_symbolic(model)
    records: list[dict[str, object]] = []
    h = x
    for l, layer in enumerate(sym.layers):
        xt = h.T
        edges = layer.edge_values(xt, 0)[0]  # (out, in, n)
        spread = edges.std(dim=-1)  # (out, in)
        scale = float(spread.max()) if spread.numel() else 0.0
        for o in range(layer.out_features):
            for i in range(layer.in_features):
                if (layer.symbolic_mask[o, i] > 0 and not refit) or (layers is not None and l not in layers):
                    continue
                xi, yi = xt[i], edges[o, i]
                if float(spread[o, i]) <= zero_tol * scale:
                    choice = EdgeFit("0", 1.0, 0.0, 0.0, float(yi.mean()), 1.0)
                else:
                    choice, _ = fit_edge(xi, yi, lib, tie, tie_rel, **fit_kwargs)
                fixed = choice.r2 >= r2_threshold
                if fixed:
                    fix_symbolic(sym, l, o, i, choice)
                records.append({"layer": l, "out": o, "in": i, "name": choice.name, "a": choice.a, "b": choice.b,
                                "c": choice.c, "d": choice.d, "r2": choice.r2, "fixed": fixed})
                log.info("layer %d edge %d->%d: %s (R^2 = %.9f)%s", l, i, o, choice.name, choice.r2,
                         "" if fixed else " below threshold, kept as spline")
        h = layer(h)
    return sym, records

def polish_affine(model: nn.Module, problem: Problem, batch: Batch, pde_weight: float = 0.01, max_nfev: int = 300,
                  net: nn.Module | None = None) -> tuple[float, float]:
    """Least squares on the affine parameters ``(a, b, c, d)`` of the symbolic edges, on the PDE loss.

    The loss ``pde_weight * mean r_pde^2 + sum_c w_c * mean r_c^2`` is the squared norm of the scaled
    residual vector (:func:`kanpde.training.loss.scaled_residuals`), so
    ``scipy.optimize.least_squares(method="trf")`` minimises exactly the training loss (Jacobian by finite
    differences: a snapped network has a few dozen affine parameters). Spline edges stay as they are.
    ``model``: a :class:`~kanpde.models.symbolic.SymbolicKAN`, or a wrapper around one; ``net``: the
    :class:`~kanpde.models.symbolic.SymbolicKAN` whose affine parameters are fitted when it is another one
    than the model's (an unknown coefficient field of ``problem``, which the residual reads). Runs in float64
    NumPy around the model's forward passes (forward derivative engine); returns the loss before and
    after. Far more accurate than L-BFGS here (which stops near the loss of the network it starts from).
    """
    from scipy.optimize import least_squares

    net = unwrap(model) if net is None else net
    if not isinstance(net, SymbolicKAN):
        raise ValueError(f"polish_affine needs a SymbolicKAN (snap some edges first), got {type(net).__name__}")
    params = [layer.symbolic_affine for layer in net.layers]
    masks = [(layer.symbolic_mask > 0).unsqueeze(-1).expand_as(p) for layer, p in zip(net.layers, params)]
    dtype = params[0].dtype

    def assign(v: np.ndarray) -> None:
        i = 0
        with torch.no_grad():
            for p, m in zip(params, masks):
                n = int(m.sum())
                p[m] = torch.from_numpy(v[i : i + n]).to(dtype=dtype, device=p.device)
                i += n

    def residuals(v: np.ndarray) -> np.ndarray:
        assign(v)
        with torch.no_grad():
            out = scaled_residuals(model, problem, batch, pde_weight).double().cpu().numpy()
        return np.where(np.isfinite(out), out, 1e150)

    v0 = torch.cat([p.detach()[m] for p, m in zip(params, masks)]).double().cpu().numpy()
    if v0.size == 0:
        return math.nan, math.nan
    before = float((residuals(v0) ** 2).sum())
    sol = least_squares(residuals, v0, method="trf", x_scale="jac", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=max_nfev)
    after = float((residuals(sol.x) ** 2).sum())
    if not after <= before:
        assign(v0)
        after = before
    log.info("affine polish (least squares, %d parameters): loss %.3e -> %.3e", v0.size, before, after)
    return before, after
