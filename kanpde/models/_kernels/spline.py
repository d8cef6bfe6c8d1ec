"""Fused kernels for a KAN layer on a jet (see :mod:`kanpde.models._kernels` for where they apply).

:meth:`kanpde.KANLinear.forward_jet` in plain torch evaluates every edge's spline and its derivatives
as ``(out, in, n)`` tensors and contracts them with the input jet: some thirty elementwise passes
forward and more for their autograd backward, each a full sweep over memory. :func:`spline_jet` does
the same arithmetic point by point in compiled loops, with a hand-written backward, so every
``(out, in, n)`` intermediate stays in registers. For a layer ``y_o = sum_i phi_oi(x_i)`` with edges
``phi_oi = w_b[o, i] act(x_i) + s_oi(x_i)``:

    y0[o, n]    = sum_i phi_oi(x_in)
    y1[o, s, n] = sum_i phi'_oi(x_in) F[i, s, n]
    y2[o, q, n] = sum_i phi''_oi(x_in) P[i, q, n] + phi'_oi(x_in) S[i, q, n],
    P[i, q, n]  = sum_{(a, b) in row q} F[i, a, n] F[i, b, n]

with ``s_oi = w_s * sum_j c_j B_j`` evaluated from the layer's piecewise polynomial table (simultaneous
Horner steps give the spline and its first two derivatives, and the third in the backward), ``F`` and
``S`` the input jet's first and second derivatives (``F`` the identity on the plan's directions for the
network input, ``S`` zero when absent) and the pairs of row ``q`` one of the plan's pairs or all the
pure pairs of one of its traces (a Laplacian carried as one row). Each point's knot interval
comes from a bucket table (one or two comparisons, adaptive knots included); the forward keeps it for
the backward.

The backward returns the gradients with respect to the inputs ``x`` (through the spline and the base
activation, whose derivatives up to the third are given), the input jet, ``w_b`` and the polynomial
table; the table's gradient (per-thread partial sums, no atomics) is mapped onto ``c`` and ``w_s``
through the same coefficient-to-polynomial map (:func:`kanpde.models.bspline.conversion_matrix`).

:func:`kan_layer_jet` is the layer's one entry point: it checks that the kernels apply, and lays the
layer's parameters and knots out for them (the polynomial table in the kernel's order, the knots'
bucket tables, kept in the layer's knot-keyed store).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from kanpde.derivatives.jet import DerivativePlan, Jet
from kanpde.models._kernels import _blocks, _built, _entry_arrays, _logged, _np, fused_available, numba
from kanpde.models._kernels.elementwise import activation_jet

if numba is not None:
    from numba import njit, prange

if TYPE_CHECKING:
    from kanpde.models.kan import KANLinear

__all__ = ["kan_layer_jet", "knot_tables", "spline_jet"]

_BLOCK = 256  # points per inner block: every per-block scratch row stays in L1


# The kernels below call _interval and _setup (inlined): they stay in this file, since numba's disk cache
# checks a kernel's own source file only, and would keep stale kernels after an edit to a helper elsewhere.
if numba is not None:

    @njit(cache=True, inline="always")
    def _interval(grid, buckets, scale, i, xv):
        """Knot interval ``mu`` with ``t_mu <= xv < t_{mu+1}``; ``K - 1`` (the table's zero interval)
        outside ``[t_0, t_{K-1})`` and for NaN.

        ``buckets[i, b]`` is the interval holding the left end of the ``b``-th of ``L`` equal buckets
        over the knot range (``scale[i] = L / (t_{K-1} - t_0)``): the point's bucket gives its interval
        up to the few knots inside that bucket, found by stepping. With ``L`` a few times ``K`` this is
        one or two comparisons even on adaptive (non-uniform) knots -- a binary search would be a chain
        of dependent loads per point.
        """
        n_knots = grid.shape[1]
        if not (xv >= grid[i, 0] and xv < grid[i, n_knots - 1]):
            return n_knots - 1
        b = min(int((xv - grid[i, 0]) * scale[i]), buckets.shape[1] - 1)
        mu = buckets[i, b]
        while mu > 0 and grid[i, mu] > xv:  # round-off at a bucket edge
            mu -= 1
        while grid[i, mu + 1] <= xv:
            mu += 1
        return mu

    @njit(cache=True, inline="always")
    def _setup(x, grid, buckets, scale, MU, U, search, F, start, ea, eb, per_point, m, p, i, j0, nb, mu, u, f, pp):
        """Interval and local coordinate of input ``i`` at a block of points -- found (``search``, the
        forward pass, which keeps them in ``MU``/``U``) or read back (the backward pass) -- and, for a
        per-point input jet, ``dx_i/ds`` and the pair products summed per second-derivative row (the
        row ``q`` sums the entries ``start[q] <= e < start[q + 1]``, factors ``ea[e]``, ``eb[e]``)."""
        last = grid.shape[1] - 1
        for jj in range(nb):
            if search:
                xv = x[i, j0 + jj]
                mi = _interval(grid, buckets, scale, i, xv)
                mu[jj] = mi
                u[jj] = xv - grid[i, mi] if mi < last else 0.0
                MU[i, j0 + jj] = mi
                U[i, j0 + jj] = u[jj]
            else:
                mu[jj] = MU[i, j0 + jj]
                u[jj] = U[i, j0 + jj]
            if per_point:
                for s in range(m):
                    f[s, jj] = F[i, s, j0 + jj]
                for q in range(p):
                    t = 0.0
                    for e in range(start[q], start[q + 1]):
                        t += f[ea[e], jj] * f[eb[e], jj]
                    pp[q, jj] = t

    @njit(cache=True)
    def _search_tables(grid):  # pragma: no cover - compiled
        """Bucket tables for :func:`_interval`: ``4 (K - 1)`` equal buckets over each input's knot range;
        the interval holding each bucket's left end ``(in, L)`` and ``L / (t_{K-1} - t_0)`` ``(in,)``."""
        n_in, n_knots = grid.shape
        n_buckets = 4 * (n_knots - 1)
        buckets = np.empty((n_in, n_buckets), dtype=np.int64)
        scale = np.empty(n_in, dtype=grid.dtype)
        for i in range(n_in):
            lo, hi = grid[i, 0], grid[i, n_knots - 1]
            scale[i] = n_buckets / (hi - lo)
            mu = 0
            for b in range(n_buckets):
                edge = lo + (hi - lo) * (b / n_buckets)
                while mu < n_knots - 2 and grid[i, mu + 1] <= edge:
                    mu += 1
                buckets[i, b] = mu
        return buckets, scale


    _SEARCH_TABLES = _logged(_search_tables, "knot search tables")


def _make_kernels(k1: int, m: int, p: int) -> tuple:
    """Forward and backward kernels for layers of spline order ``k1 - 1`` on plans of ``m`` directions and
    ``p`` second-derivative rows. These three are compile-time constants (numba freezes closure variables:
    the Horner steps and the loops over directions and rows unroll into straight-line code per point, a
    quarter of the step time at the default sizes); the rest of the configuration -- the rows' pair table
    (``start``, ``eq``, ``ea``, ``eb``), whether the input jet is the network input and whether it has
    second derivatives -- is a runtime argument, so plans that differ only there share one compilation
    (the first run after installing compiles half as many kernels as with one per configuration)."""
    k = k1 - 1
    mf, pf = max(m, 1), max(p, 1)

    @njit(parallel=True, cache=True)
    def _forward(
        grid, buckets, scale, MU, U, x, tab, wb, a0, a1, a2, F, sel, S, y0, y1, y2, n_chunks, start, ea, eb, per_point, has_s,
    ):  # pragma: no cover - compiled
        """The layer's value, first and second derivatives (see the module docstring); ``per_point``: the
        input jet ``F`` is given per point (else the network input, selected by ``sel``)."""
        n_in, n = x.shape
        n_out = tab.shape[2]
        chunk = (n + n_chunks - 1) // n_chunks
        for c in prange(n_chunks):
            mu = np.empty(_BLOCK, dtype=np.int64)
            u = np.empty(_BLOCK, dtype=x.dtype)
            f = np.empty((mf, _BLOCK), dtype=x.dtype)
            pp = np.empty((pf, _BLOCK), dtype=x.dtype)
            end = min(n, (c + 1) * chunk)
            for j0 in range(c * chunk, end, _BLOCK):
                nb = min(_BLOCK, end - j0)
                for o in range(n_out):
                    for jj in range(nb):
                        y0[o, j0 + jj] = 0.0
                        for s in range(m):
                            y1[o, s, j0 + jj] = 0.0
                        for q in range(p):
                            y2[o, q, j0 + jj] = 0.0
                for i in range(n_in):
                    _setup(x, grid, buckets, scale, MU, U, True, F, start, ea, eb, per_point, m, p, i, j0, nb, mu, u, f, pp)
                    si = sel[i, 0]
                    for o in range(n_out):
                        w = wb[o, i]
                        for jj in range(nb):
                            j, mi, ui = j0 + jj, mu[jj], u[jj]
                            v = tab[i, mi, o, k]
                            d1 = 0.0
                            d2 = 0.0
                            for d in range(k - 1, -1, -1):  # simultaneous Horner: s, s', s''
                                d2 = d2 * ui + 2.0 * d1
                                d1 = d1 * ui + v
                                v = v * ui + tab[i, mi, o, d]
                            y0[o, j] += v + w * a0[i, j]  # the edge: phi = w_b act + spline
                            if m > 0:
                                d1 += w * a1[i, j]
                                if per_point:
                                    for s in range(m):
                                        y1[o, s, j] += d1 * f[s, jj]
                                elif si >= 0:  # network input: dx_i/ds = 1 for s = si only
                                    y1[o, si, j] += d1
                            if p > 0:
                                d2 += w * a2[i, j]
                                if per_point:
                                    for q in range(p):
                                        t = d2 * pp[q, jj]
                                        if has_s:
                                            t += d1 * S[i, q, j]
                                        y2[o, q, j] += t
                                else:  # network input: the rows holding the pure pair (si, si) see input i
                                    for q in range(p):
                                        if sel[i, 1 + q]:
                                            y2[o, q, j] += d2

    @njit(parallel=True, cache=True)
    def _backward(
        grid, buckets, scale, MU, U, x, tab, wb, a0, a1, a2, a3, F, sel, S, g0, g1, g2, gtab, gwb, gx, gF, gS, need_x, n_chunks,
        start, eq, ea, eb, per_point, has_s,
    ):  # pragma: no cover - compiled
        """The gradients of :func:`_forward`'s outputs' loss (see the module docstring). One function of about
        80 lines on purpose: numba compiles each kernel whole, and every per-edge quantity (the Horner steps,
        the gradients ``c0..c2``, ``phi'``, ``phi''``) stays in registers only while the loops share one body."""
        n_in, n = x.shape
        n_out = tab.shape[2]
        ne = eq.shape[0] if p > 0 else 0
        chunk = (n + n_chunks - 1) // n_chunks
        for c in prange(n_chunks):
            mu = np.empty(_BLOCK, dtype=np.int64)
            u = np.empty(_BLOCK, dtype=x.dtype)
            f = np.empty((mf, _BLOCK), dtype=x.dtype)
            pp = np.empty((pf, _BLOCK), dtype=x.dtype)
            end = min(n, (c + 1) * chunk)
            for j0 in range(c * chunk, end, _BLOCK):
                nb = min(_BLOCK, end - j0)
                for i in range(n_in):
                    _setup(x, grid, buckets, scale, MU, U, False, F, start, ea, eb, per_point, m, p, i, j0, nb, mu, u, f, pp)
                    si = sel[i, 0]
                    for o in range(n_out):
                        w = wb[o, i]
                        gw = 0.0
                        for jj in range(nb):
                            j, mi, ui = j0 + jj, mu[jj], u[jj]
                            # c0, c1, c2: gradients of the loss w.r.t. phi, phi', phi'' of edge i -> o
                            c0 = g0[o, j]
                            c1 = 0.0
                            c2 = 0.0
                            if per_point:
                                for s in range(m):
                                    c1 += g1[o, s, j] * f[s, jj]
                                for q in range(p):
                                    c2 += g2[o, q, j] * pp[q, jj]
                                    if has_s:
                                        c1 += g2[o, q, j] * S[i, q, j]
                            else:
                                if m > 0 and si >= 0:
                                    c1 = g1[o, si, j]
                                for q in range(p):
                                    if sel[i, 1 + q]:
                                        c2 += g2[o, q, j]
                            v = tab[i, mi, o, k]
                            s1 = 0.0
                            s2 = 0.0
                            s3 = 0.0
                            for d in range(k - 1, -1, -1):
                                s3 = s3 * ui + 3.0 * s2
                                s2 = s2 * ui + 2.0 * s1
                                s1 = s1 * ui + v
                                v = v * ui + tab[i, mi, o, d]
                            # d s^(r) / d a_d = d!/(d-r)! u^(d-r): c0 u^d + c1 d u^(d-1) + c2 d(d-1) u^(d-2)
                            w0, w1, w2 = 1.0, 0.0, 0.0
                            for d in range(k1):
                                gtab[c, i, mi, o, d] += c0 * w0 + c1 * w1 + c2 * w2
                                w2 = w2 * ui + 2.0 * w1
                                w1 = w1 * ui + w0
                                w0 = w0 * ui
                            if need_x:  # phi^(r+1) = s^(r+1) + w_b act^(r+1)
                                gxo = c0 * (s1 + w * a1[i, j]) + c1 * (s2 + w * a2[i, j]) + c2 * (s3 + w * a3[i, j])
                                gx[i, j] = gxo + (gx[i, j] if o > 0 else 0.0)
                            gw += c0 * a0[i, j]
                            if m > 0:
                                gw += c1 * a1[i, j]
                                phi1 = s1 + w * a1[i, j]
                                if per_point:
                                    for s in range(m):
                                        gF[i, s, j] = g1[o, s, j] * phi1 + (gF[i, s, j] if o > 0 else 0.0)
                                if has_s:
                                    for q in range(p):
                                        gS[i, q, j] = g2[o, q, j] * phi1 + (gS[i, q, j] if o > 0 else 0.0)
                            if p > 0:
                                gw += c2 * a2[i, j]
                                if per_point:
                                    phi2 = s2 + w * a2[i, j]
                                    for e in range(ne):
                                        t = g2[o, eq[e], j] * phi2
                                        gF[i, ea[e], j] += t * f[eb[e], jj]
                                        gF[i, eb[e], j] += t * f[ea[e], jj]
                        gwb[c, o, i] += gw

    return _forward, _backward


def _layer_kernels(k1: int, m: int, p: int) -> tuple:
    """The KAN layer's (forward, backward) pair for ``(k1, m, p)`` (:func:`_make_kernels`), built once and logged."""
    return _built("KAN layer", _make_kernels, (k1, m, p))


def knot_tables(grid: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the kernels need of the knots ``grid`` ``(in, K)``: a numpy view of them and their bucket
    tables (:func:`_search_tables`). It depends on the knots only: the layer keeps it with them."""
    grid_np = grid.detach().contiguous().numpy()
    return (grid_np, *_SEARCH_TABLES(grid_np))


@functools.lru_cache(maxsize=256)
def _input_selection(n_in: int, dirs: tuple[int, ...], entries: tuple[tuple[int, int, int], ...], p: int) -> np.ndarray:
    """For the network input (``dx_i/dx_s = delta``): ``(in, 1 + p)`` with, per input column ``i``, its
    position ``s`` among the plan's directions (-1: none), then a 1 for every second-derivative row that
    holds the pure pair ``(s, s)`` (its own pair or a trace over ``s``)."""
    sel = np.zeros((n_in, 1 + p), dtype=np.int64)
    sel[:, 0] = -1
    for s, col in enumerate(dirs):
        if col < n_in:
            sel[col, 0] = s
            for q, a, b in entries:
                if a == b == s:
                    sel[col, 1 + q] = 1
    return sel


class _SplineJet(torch.autograd.Function):
    """:func:`spline_jet`'s autograd function: ``xt``, ``sw`` (``c``), ``sc`` (``w_s``), ``wb``, ``first`` and
    ``second`` get gradients; ``table``, ``conversion``, ``acts`` and the knot tables are constants of the call."""

    @staticmethod
    def forward(ctx, xt, sw, sc, wb, first, second, table, conversion, acts, grid_tables, dirs, p, entries):
        (n_in, n), n_out, dtype = xt.shape, table.shape[2], xt.dtype
        m = len(dirs)
        config = (table.shape[3], m, p, *_entry_arrays(entries, p), first is not None, second is not None)
        y0 = torch.empty(n_out, n, dtype=dtype)
        y1 = torch.empty(n_out, m, n, dtype=dtype)
        y2 = torch.empty(n_out, p, n, dtype=dtype)
        grid_np, buckets, scale = grid_tables
        ins = (xt, table, wb, *acts[:3])
        sel = _input_selection(n_in, dirs, entries, p)
        mu = np.empty((n_in, n), dtype=np.int64)  # each point's knot interval and local coordinate,
        u = np.empty((n_in, n), dtype=grid_np.dtype)  # found by the forward kernel, reused by the backward
        args = (grid_np, buckets, scale, mu, u, *(_np(t, t.ndim, dtype) for t in ins), _np(first, 3, dtype), sel, _np(second, 3, dtype))
        start, eq, ea, eb = config[3:7]
        _layer_kernels(*config[:3])[0](*args, y0.numpy(), y1.numpy(), y2.numpy(), _blocks(n), start, ea, eb, *config[7:])
        ctx.save_for_backward(xt, sw, sc, table, conversion, wb, first, second, *acts)
        ctx.meta = (config, sel, grid_np, buckets, scale, mu, u, xt.requires_grad)
        return y0, y1, y2

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g0, g1, g2):
        xt, sw, sc, table, conversion, wb, first, second, a0, a1, a2, a3 = ctx.saved_tensors
        config, sel, grid_np, buckets, scale, mu, u, need_x = ctx.meta
        m, p = config[1], config[2]
        dtype, (n_in, n), n_out = xt.dtype, xt.shape, table.shape[2]
        g0 = torch.zeros(n_out, n, dtype=dtype) if g0 is None else g0
        g1 = torch.zeros(n_out, m, n, dtype=dtype) if g1 is None else g1
        g2 = torch.zeros(n_out, p, n, dtype=dtype) if g2 is None else g2
        blocks = _blocks(n)
        gtab = torch.zeros((blocks, *table.shape), dtype=dtype)
        gwb = torch.zeros((blocks, *wb.shape), dtype=dtype)
        gx = torch.empty(n_in, n, dtype=dtype) if need_x else None
        gF = torch.empty(n_in, m, n, dtype=dtype) if first is not None else None
        gS = torch.empty(n_in, p, n, dtype=dtype) if second is not None else None
        ins = (xt, table, wb, a0, a1, a2, a3)
        _layer_kernels(*config[:3])[1](
            grid_np, buckets, scale, mu, u, *(_np(t, t.ndim, dtype) for t in ins), _np(first, 3, dtype), sel,
            _np(second, 3, dtype), _np(g0, 2, dtype), _np(g1, 3, dtype), _np(g2, 3, dtype),
            gtab.numpy(), gwb.numpy(), _np(gx, 2, dtype), _np(gF, 3, dtype), _np(gS, 3, dtype), need_x, blocks, *config[3:],
        )
        # table[i, mu, o, d] = sum_c conversion[i, d K + mu, c] coef[i, o, c] with coef = (sc * sw) transposed
        n_coef_rows = table.shape[1] * table.shape[3]
        gtab = gtab.sum(0).permute(0, 2, 3, 1).reshape(n_in, n_out, n_coef_rows)  # (in, out, (k+1) K)
        gcoef = torch.bmm(gtab, conversion).transpose(0, 1)  # (out, in, G+k)
        return (
            gx, gcoef * sc.unsqueeze(-1), (gcoef * sw).sum(-1), gwb.sum(0), gF if ctx.needs_input_grad[4] else None,
            gS if ctx.needs_input_grad[5] else None, None, None, None, None, None, None, None,
        )


def spline_jet(
    xt: Tensor,
    spline_weight: Tensor,
    spline_scaler: Tensor,
    table: Tensor,
    conversion: Tensor,
    base_weight: Tensor,
    acts: tuple[Tensor, Tensor, Tensor, Tensor],
    grid_tables: tuple[np.ndarray, np.ndarray, np.ndarray],
    first: Tensor | None,
    second: Tensor | None,
    plan: DerivativePlan,
) -> tuple[Tensor, Tensor, Tensor]:
    """A KAN layer's output jet, fused (see the module docstring).

    ``xt`` ``(in, n)`` layer inputs; ``spline_weight`` ``(out, in, C)`` and ``spline_scaler`` ``(out, in)``
    the layer's ``c`` and ``w_s``; ``table`` ``(in, K, out, k + 1)`` every edge's spline ``w_s c`` as
    polynomial coefficients per knot interval (powers of ``x - t_mu``; the last interval, all zero,
    serves points outside the knots), equal to ``conversion`` ``(in, (k + 1) K, C)`` applied to
    ``w_s c`` (:func:`kanpde.models.bspline.conversion_matrix`); ``base_weight`` ``(out, in)``; ``acts`` the base
    activation and its first three derivatives at ``xt`` (``(in, n)`` each, taken as constants: their
    dependence on ``xt`` is part of the kernel's gradient); ``grid_tables`` the knots' :func:`knot_tables`; ``first``
    ``(in, m, n)`` or ``None`` (the network input: identity on the columns ``dirs``); ``second``
    ``(in, p, n)`` or ``None`` (zero); ``plan`` the derivatives carried (``first`` holds its directions,
    ``second`` its rows: pairs and traces).
    Returns value ``(out, n)``, first ``(out, m, n)`` and second ``(out, p, n)`` derivatives,
    differentiable in ``xt``, ``spline_weight``, ``spline_scaler``, ``base_weight``, ``first`` and
    ``second``.
    """
    acts = tuple(a.detach() for a in acts)
    return _SplineJet.apply(
        xt, spline_weight, spline_scaler, base_weight, first, second, table.detach(), conversion.detach(), acts,
        grid_tables, plan.dirs, plan.p, plan.entries,
    )


@torch.no_grad()
def kernel_table(layer: KANLinear) -> Tensor:
    """The layer's :meth:`~kanpde.KANLinear.polynomial_table` in the kernel's layout ``(in, G + 2k + 1, out, k + 1)``,
    without a graph: the kernel's backward maps its gradient through the conversion itself."""
    return layer.polynomial_table().permute(2, 3, 1, 0).contiguous()


def layer_knot_tables(layer: KANLinear) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`knot_tables` of the layer's knots, kept in the layer's knot-keyed store
    (:meth:`~kanpde.KANLinear._knot_constants`) and rebuilt when the knots change."""
    store = layer._knot_constants()
    if "kernel_grid" not in store:
        store["kernel_grid"] = knot_tables(layer.grid)
    return store["kernel_grid"]


def kan_layer_jet(layer: KANLinear, jet: Jet, plan: DerivativePlan) -> Jet | None:
    """:meth:`KANLinear.forward_jet <kanpde.KANLinear.forward_jet>` by the fused CPU kernel
    (:func:`spline_jet`): the same chain rule, every ``(out, in, n)`` edge quantity kept in registers.
    ``None`` where the kernels do not apply (:func:`~kanpde.models._kernels.fused_available`) or the
    base activation has no third-derivative formula (the kernel's input gradient needs it); the layer
    then takes its tensor path."""
    xt = jet.value
    if plan.order == 0:  # values only (e.g. Dirichlet data): the layer's plain forward, no kernel to compile
        return None
    if not fused_available(xt, jet.first, jet.second, layer.spline_weight):
        return None
    acts = activation_jet(layer.base_activation, xt)
    if acts is None:
        return None
    first_in = jet.first if plan.m else None
    second_in = jet.second if plan.p else None
    grid_tables = layer_knot_tables(layer)
    value, first, second = spline_jet(
        xt, layer.spline_weight, layer.spline_scaler, kernel_table(layer), layer._conversion(), layer.base_weight,
        acts, grid_tables, first_in, second_in, plan,
    )
    return Jet(value, first if plan.m else None, second if plan.p else None)
