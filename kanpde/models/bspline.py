"""B-spline bases on per-input knot vectors, and least-squares coefficient fits.

Conventions used throughout kanpde:

* ``k`` is the spline order (degree; ``k = 3`` is cubic) and ``G`` the number of grid intervals.
* A knot vector ("grid") for one input holds ``G + 2k + 1`` non-decreasing knots: the ``G + 1``
  interior grid points ``t_k ... t_{G+k}`` plus ``k`` extension knots on each side, so that the
  ``G + k`` basis functions form a partition of unity on ``[t_k, t_{G+k}]``.
* Grids for a layer with ``in`` inputs are stacked as ``(in, G + 2k + 1)``.

Every function here is pure tensor code: dtype and device follow the inputs, nothing global is set.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "uniform_grid",
    "adaptive_grid",
    "subdivide_grid",
    "extend_grid",
    "bspline_basis",
    "fit_coefficients",
]


def extend_grid(points: Tensor, k: int) -> Tensor:
    """Add ``k`` extension knots on each side of interior grid points.

    ``points``: ``(in, G + 1)`` increasing interior knots. The extension knots continue the first and
    last interval widths of a uniform grid spanning the same range, ``h = (t_G - t_0) / G``.
    Returns ``(in, G + 2k + 1)``.
    """
    n_intervals = points.shape[-1] - 1
    h = (points[:, -1:] - points[:, :1]) / n_intervals  # (in, 1)
    steps = torch.arange(1, k + 1, dtype=points.dtype, device=points.device)  # (k,)
    left = points[:, :1] - h * steps.flip(0)  # (in, k)
    right = points[:, -1:] + h * steps  # (in, k)
    return torch.cat([left, points, right], dim=1)


def uniform_grid(
    n_in: int,
    grid_size: int,
    k: int,
    lo: float | Tensor,
    hi: float | Tensor,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Uniform knot vectors ``(n_in, G + 2k + 1)`` on ``[lo, hi]`` (scalars or ``(n_in,)`` tensors)."""
    lo_t = torch.as_tensor(lo, dtype=dtype, device=device).reshape(-1, 1).expand(n_in, 1)
    hi_t = torch.as_tensor(hi, dtype=dtype, device=device).reshape(-1, 1).expand(n_in, 1)
    frac = torch.linspace(0.0, 1.0, grid_size + 1, dtype=lo_t.dtype, device=lo_t.device)  # (G+1,)
    return extend_grid(lo_t + (hi_t - lo_t) * frac, k)


def adaptive_grid(x: Tensor, grid_size: int, k: int, grid_eps: float = 0.02, margin: float = 0.0) -> Tensor:
    """Knots that follow the distribution of samples ``x``: ``(n, in) -> (in, G + 2k + 1)``.

    Interior knots are ``grid_eps * uniform + (1 - grid_eps) * quantiles`` of each input's samples
    (the KAN paper's adaptive grid); ``grid_eps > 0`` keeps them strictly increasing even when samples
    repeat. ``margin`` widens the covered range on both sides by that fraction of the sample range.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"adaptive_grid needs samples of shape (n >= 2, in), got {tuple(x.shape)}")
    if not 0.0 < grid_eps <= 1.0:
        raise ValueError(f"grid_eps must be in (0, 1], got {grid_eps}")
    xs = torch.sort(x.detach(), dim=0).values  # (n, in)
    lo, hi = xs[0], xs[-1]  # (in,)
    # A constant input still needs a non-empty range for the knots.
    tiny = 1e-6 * (1.0 + torch.maximum(lo.abs(), hi.abs()))
    hi = torch.where(hi - lo < tiny, lo + tiny, hi)
    span = hi - lo
    lo, hi = lo - margin * span, hi + margin * span
    idx = torch.linspace(0, xs.shape[0] - 1, grid_size + 1, device=x.device).round().long()  # (G+1,)
    quantiles = xs[idx].T  # (in, G+1)
    quantiles = torch.clamp(quantiles, min=lo[:, None], max=hi[:, None])
    quantiles[:, 0], quantiles[:, -1] = lo, hi
    frac = torch.linspace(0.0, 1.0, grid_size + 1, dtype=x.dtype, device=x.device)  # (G+1,)
    uniform = lo[:, None] + (hi - lo)[:, None] * frac  # (in, G+1)
    points = grid_eps * uniform + (1.0 - grid_eps) * quantiles
    points[:, 0], points[:, -1] = lo, hi  # exactly the sample range, free of mixing round-off
    return extend_grid(points, k)


def subdivide_grid(grid: Tensor, k: int, new_grid_size: int) -> Tensor:
    """Finer knots over the same range, following the spacing of an existing (possibly non-uniform) grid.

    The new interior knots are the old ones interpolated piecewise-linearly in knot index, so when
    ``new_grid_size`` is a multiple of the old ``G`` every old knot is kept and the old spline space is
    contained in the new one: grid extension is then exact on ``[t_k, t_{G+k}]``.
    ``grid``: ``(in, G + 2k + 1) -> (in, new_G + 2k + 1)``.
    """
    old_size = grid.shape[1] - 2 * k - 1
    interior = grid[:, k : k + old_size + 1]  # (in, G+1)
    pos = torch.linspace(0.0, float(old_size), new_grid_size + 1, dtype=grid.dtype, device=grid.device)
    left = torch.clamp(pos.floor().long(), max=old_size - 1)  # (new_G+1,)
    frac = pos - left.to(grid.dtype)
    points = interior[:, left] + frac * (interior[:, left + 1] - interior[:, left])  # (in, new_G+1)
    return extend_grid(points, k)


def bspline_basis(x: Tensor, grid: Tensor, k: int) -> Tensor:
    """Values of all B-spline basis functions, by the Cox–de Boor recursion.

    ``x``: ``(n, in)``; ``grid``: ``(in, G + 2k + 1)``. Returns ``(n, in, G + k)``.
    The bases are non-negative and sum to one for ``t_k <= x < t_{G+k}``; outside the extended knot
    range they vanish. Differentiable in ``x`` (piecewise polynomial) by autograd.
    """
    x = x.unsqueeze(-1)  # (n, in, 1)
    t = grid.unsqueeze(0)  # (1, in, K)
    bases = ((x >= t[..., :-1]) & (x < t[..., 1:])).to(x.dtype)  # (n, in, K-1) order-0 bases
    for p in range(1, k + 1):
        left = (x - t[..., : -(p + 1)]) / (t[..., p:-1] - t[..., : -(p + 1)])
        right = (t[..., p + 1 :] - x) / (t[..., p + 1 :] - t[..., 1:-p])
        bases = left * bases[..., :-1] + right * bases[..., 1:]  # (n, in, K-1-p)
    return bases


def fit_coefficients(x: Tensor, y: Tensor, grid: Tensor, k: int, ridge: float | None = None) -> Tensor:
    """Least-squares spline coefficients for every (input, output) edge.

    Solves, independently for each input ``i`` and output ``o``,
    ``min_c  sum_n (sum_j c_j B_j(x_ni) - y_nio)^2 + lam * |c|^2`` with ``lam = ridge * n`` and by
    default ``ridge = 10 * eps`` of the dtype: a round-off-sized damping that keeps the problem
    full-rank when some basis function sees no sample (it then gets a zero coefficient, and the same
    solver runs on GPUs, whose ``lstsq`` needs full rank) without biasing well-posed fits.

    ``x``: ``(n, in)``; ``y``: ``(n, in, out)``; ``grid``: ``(in, G + 2k + 1)``.
    Returns ``(out, in, G + k)``.
    """
    n = x.shape[0]
    if ridge is None:
        ridge = 10.0 * torch.finfo(x.dtype).eps
    basis = bspline_basis(x, grid, k).permute(1, 0, 2)  # (in, n, C)
    n_coef = basis.shape[-1]
    targets = y.permute(1, 0, 2)  # (in, n, out)
    damping = (ridge * n) ** 0.5 * torch.eye(n_coef, dtype=x.dtype, device=x.device)  # (C, C)
    a = torch.cat([basis, damping.expand(basis.shape[0], n_coef, n_coef)], dim=1)  # (in, n+C, C)
    zeros = targets.new_zeros(targets.shape[0], n_coef, targets.shape[2])  # (in, C, out)
    b = torch.cat([targets, zeros], dim=1)  # (in, n+C, out)
    driver = "gelsd" if a.device.type == "cpu" else None
    coef = torch.linalg.lstsq(a, b, driver=driver).solution  # (in, C, out)
    return coef.permute(2, 0, 1).contiguous()  # (out, in, C)
