"""Error norms with explicit quadrature, and :func:`evaluate` of a trained model against the exact solution.

On a uniform tensor grid including the boundary, integrals use the composite trapezoidal rule
(weights :func:`trapezoid_weights`, second-order accurate), so norms carry the domain measure:

    l2      = ( ∫ |e|^2 )^(1/2)                 l2_rel = l2 / ( ∫ |u|^2 )^(1/2)
    h1_semi = ( ∫ |∇e|^2 )^(1/2)                h1     = ( l2^2 + h1_semi^2 )^(1/2)
    h1_rel  = h1 / ||u||_H1                      linf   = max |e|
    mse     = mean e^2  (the KAN paper's "L2 squared")
    h1_mse  = mean (e^2 + |∇e|^2)  (its "H1 squared")

with ``e = u_model - u_exact`` summed over output components.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import math

import numpy as np
import torch
from torch import Tensor, nn

from kanpde.derivatives import make_field, resolve_engine
from kanpde.models.protocol import module_dtype_device
from kanpde.pde import Problem

__all__ = ["trapezoid_weights", "lp_norm", "error_norms", "Evaluation", "evaluate", "predict"]


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
    # The forward engine needs no graph at all here: values and gradients come from one pass.
    with torch.set_grad_enabled(engine != "forward"):
        first = [(i,) for i in range(problem.dim)]
        u = make_field(model, x, problem.coords, problem.outputs, engine, problem.time_coord, plan=first)
        views = [u[name] for name in problem.outputs]
        values = torch.stack([v.value for v in views], dim=1)  # (n, m)
        grads = torch.stack([v.grad() for v in views], dim=1)  # (n, m, d)
    return values.detach(), grads.detach()


@dataclass
class Evaluation:
    """Errors of a model on an evaluation grid: ``metrics`` plus the fields they came from.

    ``axes``: grid coordinates per axis; ``points`` ``(N, d)``; ``predicted``, ``exact`` ``(N, m)`` and
    ``grad_predicted``, ``grad_exact`` ``(N, m, d)`` as float64 NumPy arrays.
    """

    metrics: dict[str, float]
    axes: list[np.ndarray]
    points: np.ndarray
    predicted: np.ndarray
    exact: np.ndarray
    grad_predicted: np.ndarray = field(repr=False)
    grad_exact: np.ndarray = field(repr=False)
    mask: np.ndarray | None = field(default=None, repr=False)  # (N,) bool: inside the domain (None: all)

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
) -> Evaluation:
    """Errors of ``model`` against ``problem.exact`` on a uniform grid of ``n_per_axis`` points per axis.

    Values and gradients are computed in chunks of ``chunk_size`` points in the model's dtype/device
    (with ``engine`` ``"auto"``/``"forward"``: one forward pass per chunk and no autograd graph, so
    memory stays bounded by the chunk) and returned as float64 NumPy arrays. ``metrics`` holds the norms
    of :func:`error_norms` and ``n_params``. A scalar ``n_per_axis`` is lowered so the grid has at most
    ``max_points`` points (e.g. 62 per axis in 3-D, 11 in 5-D). A domain other than a :class:`Box` is
    evaluated on its bounding box's grid: norms use only the points inside (``mask``), and the returned
    full-grid arrays are NaN outside. A time-dependent problem also gets ``l2_final``, ``l2_rel_final``,
    ``linf_final`` on the final-time slice.
    """
    if not problem.has_exact:
        raise ValueError(f"problem {problem.name} has no exact solution to evaluate against")
    dtype, device = module_dtype_device(model)
    geo = problem.geometry
    n_axis = n_per_axis
    if np.isscalar(n_per_axis):  # cap the grid in higher dimensions: max_points in total
        n_axis = max(2, min(int(n_per_axis), int(math.floor(max_points ** (1.0 / problem.dim) + 1e-9))))
    axes, points = geo.grid(n_axis)
    mask = None if getattr(geo, "is_box", False) else geo.contains(points, tol=1e-9)
    inside = points if mask is None else points[mask]
    x = torch.from_numpy(inside).to(dtype=dtype, device=device)
    pred, grad_pred, exact, grad_exact = [], [], [], []
    m, d = problem.n_outputs, problem.dim
    for chunk in x.split(chunk_size):
        v, g = _predict_with_grad(model, problem, chunk, engine)
        pred.append(v.double().cpu())
        grad_pred.append(g.double().cpu())
        xc = chunk.double()
        exact.append(problem.exact(xc).detach().reshape(-1, m).cpu())
        grad_exact.append(problem.exact_grad(xc).detach().reshape(-1, m, d).cpu())
    arrays = [torch.cat(a).numpy() for a in (pred, exact, grad_pred, grad_exact)]
    weights = trapezoid_weights(axes)
    if mask is not None:
        weights = weights[mask]
    metrics = error_norms(arrays[0], arrays[1], arrays[2], arrays[3], weights)
    if problem.is_time_dependent:
        metrics.update(_final_time_norms(problem, axes, inside, arrays[0], arrays[1], weights))
    if mask is not None:  # full-grid arrays, NaN outside the domain
        full = []
        for arr in arrays:
            out = np.full((points.shape[0], *arr.shape[1:]), np.nan)
            out[mask] = arr
            full.append(out)
        arrays = full
    metrics["n_params"] = int(sum(p.numel() for p in model.parameters()))
    return Evaluation(metrics, axes, points, arrays[0], arrays[1], arrays[2], arrays[3], mask)


def _final_time_norms(problem: Problem, axes, points, pred, exact, weights) -> dict[str, float]:
    """``l2_final``, ``l2_rel_final``, ``linf_final`` on the slice ``t = t_final`` of the evaluation grid."""
    k = problem.coords.index(problem.time_coord)
    t_final = axes[k][-1]
    sel = np.isclose(points[:, k], t_final)
    w = weights[sel] / (axes[k][-1] - axes[k][-2]) * 2  # trapezoid end weight h/2 removed from the time axis
    e = (pred[sel] - exact[sel]).reshape(int(sel.sum()), -1)
    l2, u_l2 = lp_norm(e, w), lp_norm(exact[sel], w)
    return {
        "l2_final": l2,
        "l2_rel_final": l2 / u_l2 if u_l2 > 0 else float("nan"),
        "linf_final": float(np.abs(e).max()),
    }


