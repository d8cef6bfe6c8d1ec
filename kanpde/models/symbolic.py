"""Symbolic snapping of KAN edges: closed-form edge functions, their fits, and the formula of a network.

Every edge of a :class:`SymbolicKANLinear` is either its spline (as in :class:`~kanpde.models.KANLinear`)
or a symbolic function of the library :data:`LIBRARY`,

    phi_oi(x) = (1 - m_oi) * phi^spline_oi(x) + m_oi * (c_oi * f_oi(a_oi * x + b_oi) + d_oi),

with a fixed mask ``m`` (buffer ``symbolic_mask``), the function's index (buffer ``symbolic_index``) and
trainable affine parameters ``(a, b, c, d)`` (parameter ``symbolic_affine``). The library holds ``f``,
``f'`` and ``f''`` in closed form, so the forward derivative engine propagates symbolic edges exactly:
``phi' = c a f'(z)``, ``phi'' = c a^2 f''(z)``, ``z = a x + b``.

:func:`to_symbolic` turns a KAN into a :class:`SymbolicKAN` computing the same function,
:func:`fix_symbolic` fixes one edge to a fitted function (:class:`EdgeFit`), and :func:`formula` returns
a fully snapped network as a SymPy expression in the problem's coordinate names. Fitting edges and
snapping a trained network is training's job (:mod:`kanpde.training.snap`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import sympy
import torch
from torch import Tensor, nn

from kanpde.derivatives.jet import DerivativePlan, Jet
from kanpde.models.activations import activation_derivatives
from kanpde.models.kan import KAN, KANLinear
from kanpde.models.registry import register_model

__all__ = [
    "SymbolicFunction",
    "LIBRARY",
    "LIBRARY_NAMES",
    "library_index",
    "EdgeFit",
    "SymbolicKANLinear",
    "SymbolicKAN",
    "to_symbolic",
    "fix_symbolic",
    "formula",
    "formula_text",
]

Derivs = Callable[[Tensor, int], list[Tensor]]


@dataclass(frozen=True)
class SymbolicFunction:
    """One library function ``f``: ``derivs(z, order) -> [f(z), f'(z), ..., f^(order)(z)]`` (torch, elementwise,
    closed form), ``numpy(z)`` for the fits, ``sympy(z)`` for formulas, and ``complexity`` (lower is simpler)."""

    name: str
    derivs: Derivs
    numpy: Callable[[np.ndarray], np.ndarray]
    sympy: Callable[[sympy.Expr], sympy.Expr]
    complexity: int


def _power(p: int) -> Derivs:
    def derivs(z: Tensor, order: int) -> list[Tensor]:
        out = [z**p]
        if order >= 1:
            out.append(p * z ** (p - 1) if p > 1 else torch.ones_like(z))
        if order >= 2:
            out.append(p * (p - 1) * z ** (p - 2) if p > 2 else torch.full_like(z, float(p * (p - 1))))
        return out

    return derivs


def _recip(z: Tensor, order: int) -> list[Tensor]:
    r = 1.0 / z
    return [r, -r * r, 2.0 * r**3][: order + 1]


def _sqrt(z: Tensor, order: int) -> list[Tensor]:
    s = torch.sqrt(z)
    return [s, 0.5 / s, -0.25 / (s * z)][: order + 1]


def _exp(z: Tensor, order: int) -> list[Tensor]:
    e = torch.exp(z)
    return [e] * (order + 1)


def _log(z: Tensor, order: int) -> list[Tensor]:
    r = 1.0 / z
    return [torch.log(z), r, -r * r][: order + 1]


def _sin(z: Tensor, order: int) -> list[Tensor]:
    s, c = torch.sin(z), torch.cos(z)
    return [s, c, -s][: order + 1]


def _cos(z: Tensor, order: int) -> list[Tensor]:
    s, c = torch.sin(z), torch.cos(z)
    return [c, -s, -c][: order + 1]


def _tan(z: Tensor, order: int) -> list[Tensor]:
    t = torch.tan(z)
    sec2 = 1.0 + t * t
    return [t, sec2, 2.0 * t * sec2][: order + 1]


def _tanh(z: Tensor, order: int) -> list[Tensor]:
    t = torch.tanh(z)
    sech2 = 1.0 - t * t
    return [t, sech2, -2.0 * t * sech2][: order + 1]


def _sigmoid(z: Tensor, order: int) -> list[Tensor]:
    s = torch.sigmoid(z)
    d1 = s * (1.0 - s)
    return [s, d1, d1 * (1.0 - 2.0 * s)][: order + 1]


def _abs(z: Tensor, order: int) -> list[Tensor]:
    return [z.abs(), torch.sign(z), torch.zeros_like(z)][: order + 1]


def _zero(z: Tensor, order: int) -> list[Tensor]:
    return [torch.zeros_like(z)] * (order + 1)


def _np_sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


# The order of this tuple is stored in models (``symbolic_index``): append, never reorder.
LIBRARY: tuple[SymbolicFunction, ...] = (
    SymbolicFunction("0", _zero, np.zeros_like, lambda z: sympy.Integer(0), 0),
    SymbolicFunction("x", _power(1), lambda z: z, lambda z: z, 1),
    SymbolicFunction("x^2", _power(2), np.square, lambda z: z**2, 2),
    SymbolicFunction("x^3", _power(3), lambda z: z**3, lambda z: z**3, 3),
    SymbolicFunction("x^4", _power(4), lambda z: z**4, lambda z: z**4, 4),
    SymbolicFunction("1/x", _recip, lambda z: 1.0 / z, lambda z: 1 / z, 4),
    SymbolicFunction("sqrt", _sqrt, np.sqrt, sympy.sqrt, 4),
    SymbolicFunction("exp", _exp, np.exp, sympy.exp, 5),
    SymbolicFunction("log", _log, np.log, sympy.log, 5),
    SymbolicFunction("sin", _sin, np.sin, sympy.sin, 5),
    SymbolicFunction("cos", _cos, np.cos, sympy.cos, 5),
    SymbolicFunction("tan", _tan, np.tan, sympy.tan, 6),
    SymbolicFunction("tanh", _tanh, np.tanh, sympy.tanh, 6),
    SymbolicFunction("sigmoid", _sigmoid, _np_sigmoid, lambda z: 1 / (1 + sympy.exp(-z)), 6),
    SymbolicFunction("abs", _abs, np.abs, sympy.Abs, 6),
)
LIBRARY_NAMES: tuple[str, ...] = tuple(f.name for f in LIBRARY)
_BY_NAME = {f.name: i for i, f in enumerate(LIBRARY)}


def library_index(name: str) -> int:
    """Index of a library function by name (``"x"``, ``"x^2"``, ``"sin"``, ...)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown symbolic function {name!r}; valid: {list(LIBRARY_NAMES)}") from None


# -- a fitted edge ---------------------------------------------------------------------------------------------

@dataclass
class EdgeFit:
    """``y ~ c * f(a * x + b) + d`` for the library function ``name``, with its coefficient of determination."""

    name: str
    a: float
    b: float
    c: float
    d: float
    r2: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        f = LIBRARY[library_index(self.name)].numpy
        return self.c * f(self.a * np.asarray(x) + self.b) + self.d

# -- the symbolic layer and network -------------------------------------------------------------------------


class SymbolicKANLinear(KANLinear):
    """A :class:`~kanpde.models.KANLinear` whose edges can be fixed to symbolic functions (module docstring).

    Extra state: buffers ``symbolic_mask`` ``(out, in)`` (1: symbolic edge), ``symbolic_index``
    ``(out, in)`` int64 (index into :data:`LIBRARY`), parameter ``symbolic_affine`` ``(out, in, 4)`` holding
    ``(a, b, c, d)``. With an all-zero mask it computes exactly what a ``KANLinear`` does.
    """

    def __init__(self, in_features: int, out_features: int, *args: object, **kwargs: object) -> None:
        super().__init__(in_features, out_features, *args, **kwargs)
        factory = {"dtype": self.base_weight.dtype, "device": self.base_weight.device}
        self.register_buffer("symbolic_mask", torch.zeros(out_features, in_features, **factory))
        self.register_buffer(
            "symbolic_index", torch.zeros(out_features, in_features, dtype=torch.long, device=factory["device"])
        )
        affine = torch.tensor([1.0, 0.0, 0.0, 0.0], **factory).repeat(out_features, in_features, 1)
        self.symbolic_affine = nn.Parameter(affine)

    @property
    def n_symbolic(self) -> int:
        return int((self.symbolic_mask > 0).sum())

    def symbolic_edges(self, xt: Tensor, order: int = 0) -> list[Tensor]:
        """``[phi, phi', ...]`` of the symbolic branch of every edge at points-last inputs ``xt`` ``(in, n)``:
        each ``(out, in, n)``, zero on spline edges."""
        a, b, c, d = (p.unsqueeze(-1) for p in self.symbolic_affine.unbind(-1))  # (out, in, 1) each
        z = a * xt.unsqueeze(0) + b  # (out, in, n)
        f = [torch.zeros_like(z) for _ in range(order + 1)]
        active = self.symbolic_mask > 0
        for idx in torch.unique(self.symbolic_index[active]).tolist():
            sel = (active & (self.symbolic_index == idx)).unsqueeze(-1)  # (out, in, 1)
            safe = torch.where(sel, z, torch.full_like(z, 0.5))  # keeps log/sqrt/1/x finite off the edge
            values = LIBRARY[idx].derivs(safe, order)
            f = [torch.where(sel, v, fm) for v, fm in zip(values, f)]
        out = [c * f[0] + d]
        if order >= 1:
            out.append(c * a * f[1])
        if order >= 2:
            out.append(c * a * a * f[2])
        return out

    def spline_edges(self, xt: Tensor, order: int = 0) -> list[Tensor]:
        """``[phi, phi', ...]`` of the spline branch ``w_b silu(x) + w_s spline(x)`` of every edge, ``(out, in, n)`` each."""
        acts = activation_derivatives(self.base_activation, xt, order)
        spline = self.local_spline(xt, order)
        w_b = self.base_weight.unsqueeze(-1)
        return [torch.addcmul(spline[m], acts[m].unsqueeze(0), w_b) for m in range(order + 1)]

    def edge_values(self, xt: Tensor, order: int = 0) -> list[Tensor]:
        """``[phi, phi', ...]`` of every edge (mask applied) at points-last inputs ``xt`` ``(in, n)``, ``(out, in, n)`` each."""
        n_sym = self.n_symbolic
        if n_sym == 0:
            return self.spline_edges(xt, order)
        sym = self.symbolic_edges(xt, order)
        if n_sym == self.symbolic_mask.numel():
            return sym
        m = self.symbolic_mask.unsqueeze(-1)
        return [torch.lerp(s, t, m) for s, t in zip(self.spline_edges(xt, order), sym)]

    def _value(self, xt: Tensor) -> Tensor:
        if self.n_symbolic == 0:
            return super()._value(xt)
        return self.edge_values(xt, 0)[0].sum(1)

    def forward_jet(self, jet: Jet, plan: DerivativePlan) -> Jet:
        """As :meth:`KANLinear.forward_jet`, with every edge's ``phi, phi', phi''`` from :meth:`edge_values`."""
        if self.n_symbolic == 0:
            return super().forward_jet(jet, plan)
        phis = self.edge_values(jet.value, plan.order)
        value = phis[0].sum(1)  # (out, n)
        if plan.order == 0:
            return Jet(value)
        return Jet(value, *self._edge_jet(jet, plan, phis[1], lambda: phis[2]))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", symbolic_edges={self.n_symbolic}"


@register_model
class SymbolicKAN(KAN):
    """A :class:`~kanpde.models.KAN` of :class:`SymbolicKANLinear` layers; same constructor arguments
    (``config``), so :func:`kanpde.load_run` rebuilds it and its state dict restores masks and functions."""

    def __init__(self, widths: Sequence[int], *args: object, **kwargs: object) -> None:
        super().__init__(widths, *args, **kwargs)
        cfg = self.config
        ref = self.layers[0].base_weight
        self.layers = nn.ModuleList(
            SymbolicKANLinear(
                w_in,
                w_out,
                cfg["grid_size"],
                cfg["spline_order"],
                cfg["grid_range"],
                cfg["noise_scale"],
                cfg["base_activation"],
                cfg["grid_eps"],
                dtype=ref.dtype,
                device=ref.device,
            )
            for w_in, w_out in zip(cfg["widths"][:-1], cfg["widths"][1:])
        )

    @property
    def fully_symbolic(self) -> bool:
        return all(layer.n_symbolic == layer.symbolic_mask.numel() for layer in self.layers)

    def formula_text(self, coords: Sequence[str], simplify: bool = True) -> str:
        """:func:`formula_text` of this network (every edge symbolic) in the coordinate names ``coords``."""
        return formula_text(self, coords, simplify)


def to_symbolic(model: KAN) -> SymbolicKAN:
    """A :class:`SymbolicKAN` computing exactly what ``model`` does (all edges still splines); ``model``
    itself is returned when it already is one."""
    if isinstance(model, SymbolicKAN):
        return model
    ref = model.layers[0].base_weight
    new = SymbolicKAN(**model.config, dtype=ref.dtype, device=ref.device)
    for src, dst in zip(model.layers, new.layers):
        if src.grid_size != dst.grid_size:  # per-layer grids are all the model's; defensive
            raise ValueError("layers with different grid sizes are not supported")
        missing, unexpected = dst.load_state_dict(src.state_dict(), strict=False)
        assert not unexpected and all(k.startswith("symbolic_") for k in missing)
    return new


@torch.no_grad()
def fix_symbolic(model: SymbolicKAN, layer: int, out: int, inp: int, fit: EdgeFit | str) -> None:
    """Fix edge ``inp -> out`` of ``layer`` to a symbolic function: an :class:`EdgeFit` (its ``a, b, c, d``) or
    a library name (``a = 1, b = 0, c = 1, d = 0``). Its affine parameters stay trainable."""
    fit = fit if isinstance(fit, EdgeFit) else EdgeFit(fit, 1.0, 0.0, 1.0, 0.0, math.nan)
    lay = model.layers[layer]
    lay.symbolic_index[out, inp] = library_index(fit.name)
    lay.symbolic_mask[out, inp] = 1.0
    lay.symbolic_affine[out, inp] = torch.tensor([fit.a, fit.b, fit.c, fit.d], dtype=lay.symbolic_affine.dtype)

def formula(model: SymbolicKAN, coords: Sequence[str], simplify: bool = True) -> list[sympy.Expr]:
    """The network's outputs as SymPy expressions in the symbols ``coords`` (one per output).

    Every edge must be symbolic (``ValueError`` otherwise). Floats keep full double precision; the
    constants ``d`` of all edges sum into one. ``simplify``: expand products and powers (:func:`sympy.expand`:
    ``c (a y + b)^2`` becomes ``c a^2 y^2 + 2 c a b y + c b^2``, also inside function arguments) -- cheap and
    exact. :func:`sympy.simplify` is not applied: on some snapped networks (nested ``Abs``, ``sqrt``) it ran
    for minutes; call it on the result if wanted.
    """
    if not isinstance(model, SymbolicKAN) or not model.fully_symbolic:
        raise ValueError("formula needs a SymbolicKAN whose every edge is symbolic (auto_symbolic found no fit for some)")
    if len(coords) != model.widths[0]:
        raise ValueError(f"{len(coords)} coordinate names for a network with {model.widths[0]} inputs")
    nodes: list[sympy.Expr] = list(sympy.symbols(list(coords), real=True))
    for layer in model.layers:
        affine = layer.symbolic_affine.detach().cpu().double().tolist()
        index = layer.symbolic_index.cpu().tolist()
        out = []
        for o in range(layer.out_features):
            total = sympy.Integer(0)
            for i in range(layer.in_features):
                a, b, c, d = (sympy.Float(v, 17) for v in affine[o][i])
                fn = LIBRARY[index[o][i]]
                total += (c * fn.sympy(a * nodes[i] + b) if fn.name != "0" else 0) + d
            out.append(total)
        nodes = out
    if simplify:
        nodes = [sympy.expand(e) for e in nodes]
    return nodes


def formula_text(model: SymbolicKAN, coords: Sequence[str], simplify: bool = True) -> str:
    """:func:`formula` as text, one SymPy-parsable expression per line (one line per output)."""
    return "\n".join(str(e) for e in formula(model, coords, simplify)) + "\n"
