"""Fused kernels for elementwise activations on a jet: an MLP layer's ``a = f(z)``, and the base
activations' derivatives up to the third that both kernel modules take as constants.

:func:`elementwise_jet_fused` applies ``a = f(z)`` to a jet in one compiled pass each way:

    a      = f(z)
    da_s   = f'(z) dz_s
    d2a_q  = f''(z) sum_{(a, b) in row q} dz_a dz_b + f'(z) d2z_q

for the plan's second-derivative rows ``q`` (one pair, or all the pure pairs of a trace). Its backward
is written by hand (first order only, see :mod:`kanpde.models._kernels`) and needs ``f'''``, which
:func:`activation_jet` supplies (compiled for ``silu`` and ``tanh``, torch formulas otherwise).
"""

from __future__ import annotations

import torch
from torch import Tensor

from kanpde.derivatives.jet import DerivativePlan
from kanpde.models._kernels import _blocks, _built, _entry_arrays, _logged, _np, numba
from kanpde.models.activations import activation_derivatives, activation_third

if numba is not None:
    from numba import njit, prange

__all__ = ["activation_jet", "elementwise_jet_fused"]


if numba is not None:

    @njit(parallel=True, cache=True)
    def _silu_jet(z, sig, a0, a1, a2, a3):  # pragma: no cover - compiled
        """silu and its first three derivatives from ``z`` and ``sigmoid(z)``, elementwise over flat arrays
        (one pass, no temporaries; the exponentials come vectorised from torch's sigmoid)."""
        for j in prange(z.shape[0]):
            x = z[j]
            s = sig[j]
            q = s * (1.0 - s)
            a0[j] = x * s
            a1[j] = s + x * q
            a2[j] = q * (2.0 + x * (1.0 - 2.0 * s))
            a3[j] = q * ((1.0 - 2.0 * s) * (3.0 + x - 2.0 * x * s) - 2.0 * x * q)


    @njit(parallel=True, cache=True)
    def _tanh_jet(t, a1, a2, a3):  # pragma: no cover - compiled
        """tanh's derivatives from ``t = tanh(z)``: ``1 - t^2``, ``-2 t f'``, ``-2 (f'^2 + t f'')``."""
        for j in prange(t.shape[0]):
            v = t[j]
            d1 = 1.0 - v * v
            d2 = -2.0 * v * d1
            a1[j] = d1
            a2[j] = d2
            a3[j] = -2.0 * (d1 * d1 + v * d2)


    _SILU_JET = _logged(_silu_jet, "silu")
    _TANH_JET = _logged(_tanh_jet, "tanh")


def activation_jet(module: torch.nn.Module, xt: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
    """The base activation and its first three derivatives at ``xt``, without a graph (the kernel's
    backward applies them itself); ``None`` for an activation without a third-derivative formula.
    ``silu`` (the KAN default) takes one compiled pass, ``tanh`` (the MLP default) one after torch's
    ``tanh``; the others go through the torch formulas of :mod:`kanpde.models.activations`."""
    with torch.no_grad():
        if type(module) is torch.nn.Tanh and numba is not None and xt.device.type == "cpu":
            t = torch.tanh(xt).contiguous()
            acts = (t, *(torch.empty_like(t) for _ in range(3)))
            _blocks(t.numel())
            _TANH_JET(t.view(-1).numpy(), *(a.view(-1).numpy() for a in acts[1:]))
            return acts
        if type(module) is torch.nn.SiLU and numba is not None and xt.device.type == "cpu":
            z = xt.detach().contiguous()
            sig = torch.sigmoid(z)
            acts = tuple(torch.empty_like(z) for _ in range(4))
            _blocks(z.numel())  # the thread count
            _SILU_JET(z.view(-1).numpy(), sig.view(-1).numpy(), *(a.view(-1).numpy() for a in acts))
            return acts
        a0, a1, a2 = activation_derivatives(module, xt, 2)
        a3 = activation_third(module, xt, a0, a1, a2)
    return None if a3 is None else (a0, a1, a2, a3)


def _make_elementwise_kernels(m: int, p: int) -> tuple:
    """Forward and backward of ``a = f(z)`` on a jet of ``m`` directions and ``p`` second-derivative rows,
    compile-time constants (their loops unroll); the rows' pair table and whether the input jet has second
    derivatives are runtime arguments, so plans that differ only there share one compilation."""

    @njit(parallel=True, cache=True)
    def _forward(f1, f2, Z1, Z2, y1, y2, start, ea, eb, has_s):  # pragma: no cover - compiled
        """``da_s = f' dz_s`` and ``d2a_q = f'' sum_{(a, b) in q} dz_a dz_b + f' d2z_q`` (the module docstring)."""
        w, n = f1.shape
        for r in prange(w):
            for j in range(n):
                d1, d2 = f1[r, j], f2[r, j]
                for s in range(m):
                    y1[r, s, j] = d1 * Z1[r, s, j]
                for q in range(p):
                    t = 0.0
                    for e in range(start[q], start[q + 1]):
                        t += Z1[r, ea[e], j] * Z1[r, eb[e], j]
                    t *= d2
                    if has_s:
                        t += d1 * Z2[r, q, j]
                    y2[r, q, j] = t

    @njit(parallel=True, cache=True)
    def _backward(f1, f2, f3, Z1, Z2, g0, g1, g2, gz, gZ1, gZ2, eq, ea, eb, has_s):  # pragma: no cover - compiled
        """The gradients of :func:`_forward`'s outputs' loss with respect to ``z``, ``Z1`` and ``Z2``."""
        w, n = f1.shape
        ne = eq.shape[0] if p > 0 else 0
        for r in prange(w):
            for j in range(n):
                d1, d2, d3 = f1[r, j], f2[r, j], f3[r, j]
                acc = g0[r, j] * d1
                for s in range(m):
                    acc += g1[r, s, j] * Z1[r, s, j] * d2
                    gZ1[r, s, j] = g1[r, s, j] * d1
                for q in range(p):
                    if has_s:
                        acc += g2[r, q, j] * d2 * Z2[r, q, j]
                        gZ2[r, q, j] = g2[r, q, j] * d1
                for e in range(ne):
                    a, b, gq = ea[e], eb[e], g2[r, eq[e], j]
                    acc += gq * d3 * Z1[r, a, j] * Z1[r, b, j]
                    t = gq * d2
                    gZ1[r, a, j] += t * Z1[r, b, j]
                    gZ1[r, b, j] += t * Z1[r, a, j]
                gz[r, j] = acc

    return _forward, _backward


def _elementwise_kernels(m: int, p: int) -> tuple:
    """The activation's (forward, backward) pair for ``(m, p)`` (:func:`_make_elementwise_kernels`), built once and logged."""
    return _built("activation", _make_elementwise_kernels, (m, p))


class _ElementwiseJet(torch.autograd.Function):
    """``a = f(z)`` on a jet: inputs with gradients ``z``, ``Z1``, ``Z2``; ``acts`` (``f .. f'''`` at ``z``)
    constants of the call (their dependence on ``z`` is in the backward)."""

    @staticmethod
    def forward(ctx, z, Z1, Z2, acts, p, entries):
        (w, n), dtype = z.shape, z.dtype
        m = Z1.shape[1]
        config = (m, p, *_entry_arrays(entries, p), Z2 is not None)
        y1 = torch.empty(w, m, n, dtype=dtype)
        y2 = torch.empty(w, p, n, dtype=dtype)
        _blocks(w)
        f0, f1, f2, f3 = acts
        _, _, start, _, ea, eb, has_s = config
        _elementwise_kernels(m, p)[0](
            _np(f1, 2, dtype), _np(f2, 2, dtype), _np(Z1, 3, dtype), _np(Z2, 3, dtype), y1.numpy(), y2.numpy(), start, ea, eb,
            has_s,
        )
        ctx.save_for_backward(Z1, Z2, f1, f2, f3)
        ctx.config = config
        return f0.clone(), y1, y2

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g0, g1, g2):
        Z1, Z2, f1, f2, f3 = ctx.saved_tensors
        m, p, _, eq, ea, eb, has_s = ctx.config
        (w, m, n), dtype = Z1.shape, f1.dtype
        g0 = torch.zeros(w, n, dtype=dtype) if g0 is None else g0
        g1 = torch.zeros(w, m, n, dtype=dtype) if g1 is None else g1
        g2 = torch.zeros(w, p, n, dtype=dtype) if g2 is None else g2
        gz, gZ1 = torch.empty(w, n, dtype=dtype), torch.empty(w, m, n, dtype=dtype)
        gZ2 = torch.empty(w, p, n, dtype=dtype) if has_s else None
        _blocks(w)
        _elementwise_kernels(m, p)[1](
            _np(f1, 2, dtype), _np(f2, 2, dtype), _np(f3, 2, dtype), _np(Z1, 3, dtype), _np(Z2, 3, dtype),
            _np(g0, 2, dtype), _np(g1, 3, dtype), _np(g2, 3, dtype), gz.numpy(), gZ1.numpy(), _np(gZ2, 3, dtype), eq, ea,
            eb, has_s,
        )
        return gz, gZ1, gZ2, None, None, None


def elementwise_jet_fused(
    z: Tensor, first: Tensor, second: Tensor | None, acts: tuple[Tensor, Tensor, Tensor, Tensor], plan: DerivativePlan
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`kanpde.derivatives.jet.elementwise_jet` in one compiled pass each way: ``a = f(z)`` with
    ``da_s = f'(z) dz_s`` and ``d2a_q = f''(z) sum_{(a, b) in q} dz_a dz_b + f'(z) d2z_q`` for the plan's
    second-derivative rows ``q`` (a pair, or the pure pairs of a trace).
    ``z`` ``(w, n)``, ``first`` ``(w, m, n)`` (``m >= 1``), ``second`` ``(w, p, n)`` or ``None`` (zero);
    ``acts`` ``f, f', f'', f'''`` at ``z``. Returns the value, first and second derivatives."""
    acts = tuple(a.detach() for a in acts)
    return _ElementwiseJet.apply(z, first, second, acts, plan.p, plan.entries)
