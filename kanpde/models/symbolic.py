"""Symbolic snapping of KAN edges: closed-form edge functions, their fits, and the formula of a network.

Every edge of a :class:`SymbolicKANLinear` is either its spline (as in :class:`~kanpde.models.KANLinear`)
or a symbolic function of the library :data:`LIBRARY`,

    phi_oi(x) = (1 - m_oi) * phi^spline_oi(x) + m_oi * (c_oi * f_oi(a_oi * x + b_oi) + d_oi),

with a fixed mask ``m`` (buffer ``symbolic_mask``), the function's index (buffer ``symbolic_index``) and
trainable affine parameters ``(a, b, c, d)`` (parameter ``symbolic_affine``). The library holds ``f``,
``f'`` and ``f''`` in closed form, so the forward derivative engine propagates symbolic edges exactly:
``phi' = c a f'(z)``, ``phi'' = c a^2 f''(z)``, ``z = a x + b``.

:func:`fit_function` fits one edge's samples ``y ~ c f(a x + b) + d``: ``(a, b)`` by a grid search that
is refined around its best point for a few rounds (``(c, d)`` by linear least squares at every grid
point, so the score is the squared correlation R^2), then polished by Levenberg–Marquardt on ``(a, b)``
with ``(c, d)`` eliminated. :func:`auto_symbolic` fits every edge layer by layer and fixes the best
function above an R^2 threshold (simpler functions win near-ties); :func:`formula` returns the network
as a SymPy expression in the problem's coordinate names.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import sympy
import torch
from torch import Tensor, nn

from kanpde.derivatives.jet import DerivativePlan, Jet, contract_inputs, input_second, pair_products
from kanpde.models.activations import activation_derivatives
from kanpde.models.kan import KAN, KANLinear

__all__ = [
    "SymbolicFunction",
    "LIBRARY",
    "LIBRARY_NAMES",
    "EdgeFit",
    "fit_function",
    "fit_edge",
    "SymbolicKANLinear",
    "SymbolicKAN",
    "to_symbolic",
    "fix_symbolic",
    "auto_symbolic",
    "formula",
    "formula_text",
    "polish_affine",
]

log = logging.getLogger(__name__)

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


# -- fitting one edge ---------------------------------------------------------------------------------------


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
    point; then (``polish``) Levenberg–Marquardt on ``(a, b)`` from there. ``(c, d)``: linear least
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
    """Levenberg–Marquardt on ``(a, b)`` with ``(c, d)`` eliminated by least squares; keeps ``start`` unless better."""
    from scipy.optimize import least_squares

    def residual(p: np.ndarray) -> np.ndarray:
        f = fn.numpy(p[0] * x + p[1])
        if not np.isfinite(f).all():
            return np.full_like(y, 1e150)
        c, d, _ = _linear_fit(f[None], y)
        return c[0] * f + d[0] - y

    r0 = float((residual(np.array(start)) ** 2).sum())
    try:
        sol = least_squares(residual, np.array(start), method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=400)
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


def polish_affine(model: SymbolicKAN, problem: object, batch: object, pde_weight: float = 0.01, max_nfev: int = 300) -> tuple[float, float]:
    """Levenberg–Marquardt on the affine parameters ``(a, b, c, d)`` of the symbolic edges, on the PDE loss.

    The loss ``pde_weight * mean r_pde^2 + sum_c w_c * mean r_c^2`` is the squared norm of the stacked
    residuals scaled by ``sqrt(weight / n)``, so ``scipy.optimize.least_squares(method="lm")`` minimises
    exactly the training loss (Jacobian by finite differences: a snapped network has a few dozen affine
    parameters). Spline edges stay as they are. Runs in float64 NumPy around the model's forward passes
    (forward derivative engine); returns the loss before and after. Far more accurate than L-BFGS here: on
    poisson2d it takes the loss of a snapped [2, 2, 1] network from ~1e-10 to ~1e-25 in a second.
    """
    from scipy.optimize import least_squares

    from kanpde.derivatives.field import make_field

    if not isinstance(model, SymbolicKAN):
        raise ValueError(f"polish_affine needs a SymbolicKAN (snap some edges first), got {type(model).__name__}")
    params = [layer.symbolic_affine for layer in model.layers]
    masks = [(layer.symbolic_mask > 0).unsqueeze(-1).expand_as(p) for layer, p in zip(model.layers, params)]
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
            u = make_field(model, batch.interior, problem.coords, problem.outputs, "auto", problem.time_coord)
            r = problem.pde(batch.interior, u)
            parts = [torch.cat([t.reshape(-1) for t in ([r] if isinstance(r, Tensor) else r)])]
            parts[0] = parts[0] * math.sqrt(pde_weight / batch.interior.shape[0])
            for cond in problem.conditions:
                pts = batch.boundary[cond.label]
                ub = make_field(model, pts.x, problem.coords, problem.outputs, "auto", problem.time_coord)
                rc = cond.residual(pts, ub).reshape(-1)
                parts.append(rc * math.sqrt(cond.weight / max(rc.numel(), 1)))
        out = torch.cat(parts).double().cpu().numpy()
        return np.where(np.isfinite(out), out, 1e150)

    v0 = torch.cat([p.detach()[m] for p, m in zip(params, masks)]).double().cpu().numpy()
    if v0.size == 0:
        return math.nan, math.nan
    before = float((residuals(v0) ** 2).sum())
    sol = least_squares(residuals, v0, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=max_nfev)
    after = float((residuals(sol.x) ** 2).sum())
    if not after <= before:
        assign(v0)
        after = before
    log.info("affine polish (Levenberg-Marquardt, %d parameters): loss %.3e -> %.3e", v0.size, before, after)
    return before, after
