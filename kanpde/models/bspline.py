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
from torch.nn import functional as F

from kanpde.models._kernels import under_transform

__all__ = [
    "uniform_grid",
    "adaptive_grid",
    "subdivide_grid",
    "extend_grid",
    "bspline_basis",
    "bspline_local",
    "power_basis",
    "conversion_matrix",
    "knot_interval",
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


def _pad_knots(grid: Tensor, k: int) -> Tensor:
    """``k`` more knots on each side, ``(in, K) -> (in, K + 2k)``, continuing the outer interval widths.

    The local recursion on an extension interval ``[t_mu, t_{mu+1})`` with ``mu < k`` reaches knots
    ``t_{mu-k} ...`` below ``t_0``; they only enter basis functions with a negative index, whose
    coefficients are zero, so any strictly increasing values do.
    """
    steps = torch.arange(1, k + 1, dtype=grid.dtype, device=grid.device)  # (k,)
    left = grid[:, :1] - (grid[:, 1:2] - grid[:, :1]) * steps.flip(0)  # (in, k)
    right = grid[:, -1:] + (grid[:, -1:] - grid[:, -2:-1]) * steps  # (in, k)
    return torch.cat([left, grid, right], dim=1)


def _raise_order(b: Tensor, x: Tensor, t: Tensor, k: int, p: int) -> Tensor:
    """One Cox–de Boor step on the local triangle: order ``p - 1`` -> ``p``.

    ``b``: ``(n, in, p)`` values ``B_{mu-p+1..mu, p-1}(x)``; ``x``: ``(n, in, 1)``; ``t``: ``(n, in, 2k + 2)``
    local knots ``t_{mu-k} ... t_{mu+k+1}``. Returns ``(n, in, p + 1)`` values ``B_{mu-p..mu, p}(x)``:
    ``B_{j,p} = (x - t_j) / (t_{j+p} - t_j) B_{j,p-1} + (t_{j+p+1} - x) / (t_{j+p+1} - t_{j+1}) B_{j+1,p-1}``.
    """
    t_j, t_jp = t[..., k - p : k + 1], t[..., k : k + p + 1]  # (n, in, p+1) each
    t_j1, t_jp1 = t[..., k - p + 1 : k + 2], t[..., k + 1 : k + p + 2]
    zero = torch.zeros_like(b[..., :1])  # (n, in, 1)
    left = torch.cat([zero, b], dim=-1)  # B_{j, p-1} for j = mu-p .. mu
    right = torch.cat([b, zero], dim=-1)  # B_{j+1, p-1}
    return (x - t_j) / (t_jp - t_j) * left + (t_jp1 - x) / (t_jp1 - t_j1) * right


def _differentiate(b: Tensor, t: Tensor, k: int, p: int) -> Tensor:
    """Derivative step: ``(n, in, p)`` values of some derivative of ``B_{mu-p+1..mu, p-1}`` -> ``(n, in, p + 1)``
    values of the next derivative of ``B_{mu-p..mu, p}``, by
    ``B'_{j,p} = p [B_{j,p-1} / (t_{j+p} - t_j) - B_{j+1,p-1} / (t_{j+p+1} - t_{j+1})]``."""
    t_j, t_jp = t[..., k - p : k + 1], t[..., k : k + p + 1]
    t_j1, t_jp1 = t[..., k - p + 1 : k + 2], t[..., k + 1 : k + p + 2]
    zero = torch.zeros_like(b[..., :1])
    left = torch.cat([zero, b], dim=-1)
    right = torch.cat([b, zero], dim=-1)
    return p * (left / (t_jp - t_j) - right / (t_jp1 - t_j1))


def bspline_local(x: Tensor, grid: Tensor, k: int, n_derivatives: int = 0) -> tuple[list[Tensor], Tensor]:
    """The ``k + 1`` non-zero B-splines at each input, and their derivatives, by the local de Boor triangle.

    For ``t_mu <= x < t_{mu+1}`` only ``B_{mu-k} ... B_{mu}`` are non-zero. The interval ``mu`` is found by
    ``searchsorted`` on each input's knots; the triangle then costs ``O(k^2)`` per input, independent of
    the grid size ``G``. Works with any strictly increasing knots (e.g. from :func:`adaptive_grid`).

    ``x``: ``(n, in)``; ``grid``: ``(in, G + 2k + 1)``. Returns ``(values, start)``:

    * ``values``: a list of ``n_derivatives + 1`` tensors ``(n, in, k + 1)``; ``values[d][..., r]`` is the
      ``d``-th derivative of ``B_{start + r}`` at ``x`` (zero for ``d > k``).
    * ``start``: ``(n, in)`` int64 index of the first non-zero basis, in the *padded* numbering
      ``j + k`` with ``j`` the index of :func:`bspline_basis` (so ``start = mu``, from ``0`` to
      ``G + 2k - 1``). Gathering from coefficients padded with ``k`` zeros on both sides,
      ``c_pad[..., start + r]``, reproduces ``sum_j c_j B_j(x) = sum_r c_pad[start + r] values[0][..., r]``.

    Matches :func:`bspline_basis` (to rounding): bases on ``[t_0, t_{G+2k})``, half-open intervals, zero
    outside. Pure tensor code (``searchsorted``, ``gather``, arithmetic): differentiable in ``x`` and
    ``grid`` by autograd and usable under ``torch.func`` transforms; dtype/device follow ``x``.
    """
    n_in, n_knots = grid.shape
    knots = _pad_knots(grid, k)  # (in, K + 2k)
    mu = knot_interval(x.T, grid).T  # (n, in), K-1 outside
    inside = mu <= n_knots - 2  # (n, in): x in [t_0, t_{K-1})
    mu = mu.clamp(max=n_knots - 2)
    # The padded knot index of t_{mu-k+r} is mu + r; flatten (input, knot) to gather in one go.
    offsets = torch.arange(2 * k + 2, device=x.device)  # (2k+2,)
    rows = torch.arange(n_in, device=x.device).unsqueeze(-1) * knots.shape[1]  # (in, 1)
    t = knots.reshape(-1)[mu.unsqueeze(-1) + offsets + rows]  # (n, in, 2k+2): t_{mu-k} .. t_{mu+k+1}
    xe = torch.where(inside, x, t[..., k]).unsqueeze(-1)  # (n, in, 1); outside points parked on a knot
    b = inside.to(x.dtype).unsqueeze(-1)  # (n, in, 1) order-0 basis B_{mu,0} (0 outside)
    levels = [b]
    for p in range(1, k + 1):
        b = _raise_order(b, xe, t, k, p)
        levels.append(b)  # levels[p]: (n, in, p+1)
    values = [levels[k]]
    for d in range(1, n_derivatives + 1):
        if d > k:
            values.append(torch.zeros_like(levels[k]))
            continue
        v = levels[k - d]
        for p in range(k - d + 1, k + 1):
            v = _differentiate(v, t, k, p)
        values.append(v)
    return values, mu


def knot_interval(xt: Tensor, grid: Tensor) -> Tensor:
    """Index ``mu`` of the knot interval ``t_mu <= x < t_{mu+1}`` for points-last inputs ``xt`` ``(in, n)``.

    ``grid``: ``(in, K)`` strictly increasing knots. Returns ``(in, n)`` int64; points outside
    ``[t_0, t_{K-1})`` get ``mu = K - 1`` (one past the last interval), so a table with an extra
    all-zero interval per input makes them vanish.
    """
    n_knots = grid.shape[1]
    if under_transform():
        # Inside vmap/jacrev (the Levenberg-Marquardt Jacobians, a point or a few per call) the batching
        # rule hands searchsorted a non-contiguous physical tensor whatever the logical layout, and torch
        # warns of the copy; counting the knots <= x is the same index (NaN: none, -1, as below).
        mu = (xt.unsqueeze(-1) >= grid.unsqueeze(1)).sum(-1) - 1  # (in, n, K) -> (in, n)
    else:
        mu = torch.searchsorted(grid.contiguous(), xt.contiguous(), right=True) - 1  # (in, n), -1 .. K-1
    return torch.where(mu < 0, n_knots - 1, mu)


def power_basis(grid: Tensor, k: int) -> Tensor:
    """Taylor coefficients of the local B-splines at the left end of every knot interval.

    On ``t_mu <= x < t_{mu+1}`` each non-zero B-spline is a polynomial of degree ``k``:

        B_{mu-k+r}(x) = sum_d  M[i, mu, d, r] (x - t_mu)^d,      d, r = 0 .. k,

    with ``M[i, mu, d, r] = B^{(d)}_{mu-k+r}(t_mu) / d!`` from :func:`bspline_local`. A spline
    ``sum_j c_j B_j`` is therefore, on interval ``mu``, the polynomial with coefficients
    ``a_d = sum_r M[mu, d, r] c_pad[mu + r]`` (``c_pad``: ``k`` zeros padded on each side) -- evaluating it
    needs no division and no recursion per point. ``grid``: ``(in, G + 2k + 1)``; returns
    ``(in, G + 2k, k + 1, k + 1)`` (all ``G + 2k`` intervals of the extended knot vector).
    """
    left = grid[:, :-1].T  # (G+2k, in): left ends of the intervals
    values, _ = bspline_local(left, grid, k, k)  # k+1 tensors (G+2k, in, k+1)
    factorial = 1.0
    rows = []
    for d, v in enumerate(values):
        factorial *= max(d, 1)
        rows.append(v / factorial)
    return torch.stack(rows, dim=2).permute(1, 0, 2, 3)  # (in, G+2k, k+1 powers, k+1 bases)


def conversion_matrix(grid: Tensor, k: int) -> Tensor:
    """The linear map from B-spline coefficients to per-interval polynomial coefficients.

    ``grid``: ``(in, G + 2k + 1)``; returns ``(in, (k + 1) * (G + 2k + 1), G + k)``: row
    ``d * (G + 2k + 1) + mu`` of input ``i`` holds ``M[i, mu, d, r]`` (:func:`power_basis`) at column
    ``j = mu - k + r`` for the ``k + 1`` B-splines ``B_j`` alive on interval ``mu`` (banded); the last
    interval of every power, ``mu = G + 2k``, is an all-zero row for points outside the knots. Applied to
    a spline's coefficients ``c`` ``(G + k,)`` it gives the coefficients ``a_d`` of ``(x - t_mu)^d`` on
    every interval. It depends only on the knots.
    """
    basis = power_basis(grid, k)  # (in, G+2k, k+1 powers, k+1 bases)
    n_in, n_int = basis.shape[:2]
    n_coef = n_int - k  # G + k
    blocks = []
    for r in range(k + 1):  # B_{mu-k+r} lives in column mu - k + r, dropped where out of range
        shifted = F.pad(basis[..., r].permute(0, 2, 1), (0, 1))  # (in, k+1, G+2k+1): + zero interval
        band = torch.zeros(n_int + 1, n_coef + 2 * k, dtype=grid.dtype, device=grid.device)
        band[torch.arange(n_int), torch.arange(n_int) + r] = 1.0  # padded column mu + r
        blocks.append(shifted.unsqueeze(-1) * band[:, k : k + n_coef])  # (in, k+1, G+2k+1, G+k)
    return torch.stack(blocks).sum(0).reshape(n_in, (k + 1) * (n_int + 1), n_coef)


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
