"""Kolmogorov–Arnold Network layers (Liu et al. 2024, arXiv 2404.19756).

Each edge ``(i -> o)`` of a :class:`KANLinear` carries a learnable 1-D function

    phi_oi(x) = w_b[o, i] * silu(x) + w_s[o, i] * sum_j c[o, i, j] * B_j(x)

with cubic (``k = 3``) B-splines ``B_j`` on a grid of ``G`` intervals, and every output node sums its
incoming edges: ``y_o = sum_i phi_oi(x_i)``.

The forward pass uses local support: on each knot interval only ``k + 1`` B-splines are non-zero, so
each edge's spline is kept as one polynomial per interval (:meth:`KANLinear.polynomial_table`, rebuilt
from the coefficients on every call) and evaluated at the points' intervals by Horner's rule. Cost and
memory do not grow with ``G``; there is no loop over edges and no ``(n, in, G + k)`` basis tensor.
:meth:`KANLinear.forward_jet` evaluates ``phi``, ``phi'`` and ``phi''`` from the same gathered
polynomials and applies the chain rule, for the forward derivative engine (:mod:`kanpde.derivatives.jet`).
The dense basis (:meth:`KANLinear.basis`) remains for least-squares fits (grid updates, refinement).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kanpde.derivatives.jet import DerivativePlan, Jet, contract_inputs, input_second, pair_products
from kanpde.models.activations import activation_derivatives
from kanpde.models._kernels import under_transform
from kanpde.models._kernels.spline import kan_layer_jet
from kanpde.models.registry import register_model
from kanpde.models.bspline import (
    adaptive_grid,
    bspline_basis,
    conversion_matrix,
    fit_coefficients,
    knot_interval,
    subdivide_grid,
    uniform_grid,
)

__all__ = ["KANLinear", "KAN"]

_ACTIVATIONS = {"silu": nn.SiLU, "tanh": nn.Tanh, "gelu": nn.GELU, "identity": nn.Identity}


def _check_grid_args(grid_size: int, spline_order: int, grid_range: Sequence[float]) -> tuple[float, float]:
    if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 1:
        raise ValueError(f"grid_size must be an integer >= 1, got {grid_size!r}")
    if isinstance(spline_order, bool) or not isinstance(spline_order, int) or spline_order < 1:
        raise ValueError(f"spline_order must be an integer >= 1, got {spline_order!r}")
    if len(grid_range) != 2 or not float(grid_range[0]) < float(grid_range[1]):
        raise ValueError(f"grid_range must be [lo, hi] with lo < hi, got {list(grid_range)!r}")
    return float(grid_range[0]), float(grid_range[1])


class KANLinear(nn.Module):
    """One KAN layer mapping ``(n, in_features) -> (n, out_features)``.

    Parameters: ``base_weight`` ``(out, in)`` (w_b, Xavier-uniform), ``spline_weight`` ``(out, in, G+k)``
    (the coefficients c, small uniform noise of size ``noise_scale / G``) and ``spline_scaler``
    ``(out, in)`` (w_s, ones). Buffer ``grid`` ``(in, G + 2k + 1)`` holds each input's knots.
    dtype and device follow the module (``.to(...)``); the grid moves with it.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: Sequence[float] = (-1.0, 1.0),
        noise_scale: float = 0.1,
        base_activation: str = "silu",
        grid_eps: float = 0.02,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        lo, hi = _check_grid_args(grid_size, spline_order, grid_range)
        if in_features < 1 or out_features < 1:
            raise ValueError(f"layer sizes must be >= 1, got in={in_features}, out={out_features}")
        if base_activation not in _ACTIVATIONS:
            raise ValueError(f"unknown base_activation {base_activation!r}; valid: {sorted(_ACTIVATIONS)}")
        factory = {"dtype": dtype, "device": device}
        self.in_features, self.out_features = in_features, out_features
        self.grid_size, self.spline_order = grid_size, spline_order
        self.grid_eps = grid_eps
        self.base_activation = _ACTIVATIONS[base_activation]()
        self.register_buffer("grid", uniform_grid(in_features, grid_size, spline_order, lo, hi, **factory))
        n_coef = grid_size + spline_order
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, n_coef, **factory))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.reset_parameters(noise_scale)

    @torch.no_grad()
    def reset_parameters(self, noise_scale: float = 0.1) -> None:
        """The paper's initialisation: w_b Xavier-uniform, c ~ U(-1/2, 1/2) * noise_scale / G, w_s = 1."""
        bound = math.sqrt(6.0 / (self.in_features + self.out_features))
        self.base_weight.uniform_(-bound, bound)
        self.spline_weight.uniform_(-0.5, 0.5).mul_(noise_scale / self.grid_size)
        self.spline_scaler.fill_(1.0)

    @property
    def scaled_spline_weight(self) -> Tensor:
        """``w_s * c``: ``(out, in, G + k)``."""
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def basis(self, x: Tensor) -> Tensor:
        """B-spline basis of the layer inputs: ``(n, in) -> (n, in, G + k)``."""
        return bspline_basis(x, self.grid, self.spline_order)

    def _knot_constants(self) -> dict[str, object]:
        """A store for what depends on the knots only (:meth:`_conversion`, and the fused kernel's knot
        tables, which :mod:`kanpde.models._kernels.spline` keeps here): kept between calls and emptied
        whenever ``grid`` is replaced or modified in place (tensor identity, storage and version counter
        are checked); under ``torch.func`` transforms (wrapped tensors without storage) a fresh one on
        every call."""
        grid = self.grid
        try:
            key = (grid.data_ptr(), grid._version, grid.dtype, grid.device)
        except (RuntimeError, NotImplementedError):
            return {}
        cached = getattr(self, "_knot_cache", None)
        if cached is None or cached[0] != key or cached[1] is not grid:
            cached = self._knot_cache = (key, grid, {})
        return cached[2]

    def _conversion(self) -> Tensor:
        """The linear map from B-spline coefficients to per-interval polynomial coefficients,
        ``(in, (k + 1) * (G + 2k + 1), G + k)`` (:func:`~kanpde.models.bspline.conversion_matrix`). It depends
        only on the knots, so it is kept with them (:meth:`_knot_constants`).
        """
        store = self._knot_constants()
        if "conversion" not in store:
            store["conversion"] = conversion_matrix(self.grid, self.spline_order)
        return store["conversion"]

    def polynomial_table(self) -> Tensor:
        """Every edge's spline ``w_s * sum_j c_j B_j`` as piecewise polynomials in local coordinates.

        ``table[d, o, i, mu]`` is the coefficient of ``(x - t_mu)^d`` of edge ``i -> o`` on the knot
        interval ``t_mu <= x < t_{mu+1}`` (:func:`~kanpde.models.bspline.power_basis`); the extra last
        interval ``mu = G + 2k`` is all zero and serves points outside the knots.
        Shape ``(k + 1, out, in, G + 2k + 1)`` (a strided view). One batched matrix product of the
        cached :meth:`_conversion` with ``w_s * c``, so autograd reaches ``spline_weight`` and
        ``spline_scaler``; its cost depends on ``G`` and the layer size but not on the number of points.
        """
        k = self.spline_order
        coef = self.scaled_spline_weight.transpose(0, 1)  # (in, out, G+k)
        conversion = self._conversion().transpose(1, 2)  # (in, G+k, (k+1)*(G+2k+1))
        if not under_transform():
            table = torch.bmm(coef, conversion)  # (in, out, (k+1)*(G+2k+1))
        else:
            # Under torch.func transforms (per-point Jacobians, kanpde.training.lm) one 2-D product per input:
            # vmap of mm's backward folds the points into its rows, while bmm's copies the conversion
            # once per point (10x slower at G = 80).
            table = torch.stack([coef[i] @ conversion[i] for i in range(self.in_features)])
        return table.view(self.in_features, self.out_features, k + 1, -1).permute(2, 1, 0, 3)

    def local_spline(self, xt: Tensor, order: int = 0) -> list[Tensor]:
        """Spline part of every edge and its derivatives at points-last inputs ``xt`` ``(in, n)``.

        Returns ``[s, s', ..., s^(order)]``, each ``(out, in, n)``, with
        ``s_oi(x_i) = w_s[o, i] * sum_j c[o, i, j] B_j(x_i)``, evaluated locally: the knot interval of
        each input (``searchsorted``), the ``k + 1`` polynomial coefficients of that interval gathered
        from :meth:`polynomial_table`, and Horner's rule in ``u = x - t_mu``,

            s^(m) = m! * sum_{d >= m} binom(d, m) a_d u^(d-m).

        The cost does not grow with ``G`` (``O(k * out * in * n)`` per derivative) and the largest
        intermediates are the ``k + 1`` gathered ``(out, in, n)`` coefficients -- never ``(n, out, in, G + k)``.
        Differentiable in ``xt`` and the parameters.
        """
        k, (n_in, n) = self.spline_order, xt.shape
        mu = knot_interval(xt, self.grid)  # (in, n); G+2k outside the knots
        knots = F.pad(self.grid, (0, 1))  # (in, G+2k+2): the zero interval gets a (dummy) left end
        u = xt - knots.gather(1, mu)  # (in, n), broadcast over outputs below
        table = self.polynomial_table()  # (k+1, out, in, G+2k+1)
        index = mu.expand(self.out_features, n_in, n)
        # One gather per power: their gradients scatter straight into the table, no stacking.
        a = [torch.gather(t, 2, index) for t in table.unbind(0)]  # k+1 x (out, in, n); a[d]: power d
        out = []
        for m in range(order + 1):
            if m > k:
                out.append(torch.zeros_like(a[0]))
                continue
            acc = a[k]
            for d in range(k - 1, m - 1, -1):  # acc = a_d + binom(d+1, m) / binom(d, m) * u * acc
                acc = torch.addcmul(a[d], u, acc, value=(d + 1) / (d + 1 - m))
            out.append(acc * math.factorial(m) if m > 1 else acc)
        return out

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"KANLinear expects input of shape (n, {self.in_features}), got {tuple(x.shape)}")
        return self._value(x.T).T

    def _value(self, xt: Tensor) -> Tensor:
        """``y = sum_i phi_oi(x_i)`` for points-last inputs: ``(in, n) -> (out, n)``."""
        (spline,) = self.local_spline(xt, 0)  # (out, in, n)
        return self.base_weight @ self.base_activation(xt) + spline.sum(1)

    def forward_jet(self, jet: Jet, plan: DerivativePlan) -> Jet:
        """The layer's outputs with their input derivatives listed in ``plan``, by the chain rule.

        Every edge function ``phi_oi`` and its derivatives ``phi'_oi``, ``phi''_oi`` come from one local
        spline evaluation (``(out, in, n)`` each, points last). With ``x`` the layer input:

            y_o        = sum_i phi_oi(x_i)
            dy_o/ds    = sum_i phi'_oi(x_i) dx_i/ds
            d2y_o/dsdr = sum_i [phi''_oi(x_i) dx_i/ds dx_i/dr + phi'_oi(x_i) d2x_i/dsdr]

        ``jet.first is None`` marks the network input (``dx_i/ds = delta_is``), where this reduces to
        picking columns of ``phi'`` and the diagonal of ``phi''``. Returns value ``(out, n)``, first
        ``(out, m, n)``, second ``(out, p, n)``.
        """
        xt = jet.value  # (in, n)
        if xt.ndim != 2 or xt.shape[0] != self.in_features:
            raise ValueError(f"KANLinear expects a jet of {self.in_features} inputs, got value of shape {tuple(xt.shape)}")
        order = plan.order
        fused = kan_layer_jet(self, jet, plan)  # the fused CPU kernel, where it applies
        if fused is not None:
            return fused
        if order == 0:
            return Jet(self._value(xt))
        acts = activation_derivatives(self.base_activation, xt, order)  # each (in, n)
        spline = self.local_spline(xt, order)  # order+1 x (out, in, n)
        value = self.base_weight @ acts[0] + spline[0].sum(1)  # (out, n)
        w_b = self.base_weight.unsqueeze(-1)  # (out, in, 1)
        phi1 = torch.addcmul(spline[1], acts[1], w_b)  # (out, in, n)
        first, second = self._edge_jet(jet, plan, phi1, lambda: torch.addcmul(spline[2], acts[2], w_b))
        return Jet(value, first, second)

    def _edge_jet(
        self, jet: Jet, plan: DerivativePlan, phi1: Tensor, phi2: Callable[[], Tensor]
    ) -> tuple[Tensor, Tensor | None]:
        """The chain rule from the edges to the outputs: first ``(out, m, n)`` and second ``(out, p, n)``
        derivatives (``None`` without planned second derivatives) from every edge's ``phi'`` (``phi1``,
        ``(out, in, n)``) and the input jet. ``phi2`` gives ``phi''`` and is called only when the plan has
        second derivatives, after the first derivatives are contracted (so the graph keeps the tensor
        path's order of operations). Shared with :class:`~kanpde.models.symbolic.SymbolicKANLinear`."""
        if jet.first is None:
            first = phi1 if plan.dirs == tuple(range(self.in_features)) else phi1[:, list(plan.dirs)]  # (out, m, n)
        else:
            first = contract_inputs((phi1, jet.first))  # (out, m, n)
        if not plan.p:
            return first, None
        phi2 = phi2()  # (out, in, n)
        if jet.first is None:
            return first, input_second(plan, phi2)
        if jet.second is None:
            return first, contract_inputs((phi2, pair_products(jet.first, plan)))
        return first, contract_inputs((phi2, pair_products(jet.first, plan)), (phi1, jet.second))

    def edge_splines(self, x: Tensor) -> Tensor:
        """Unscaled spline part of every edge, ``sum_j c_oij B_j(x_i)``: ``(n, in) -> (n, in, out)``."""
        return torch.einsum("nic,oic->nio", self.basis(x), self.spline_weight)

    def outside_grid(self, x: Tensor) -> bool:
        """Whether any input of ``x`` ``(n, in)`` lies outside its grid range ``[t_k, t_{G+k}]``."""
        k, g = self.spline_order, self.grid_size
        return bool(((x < self.grid[:, k]) | (x > self.grid[:, k + g])).any())

    @torch.no_grad()
    def update_grid(self, x: Tensor, margin: float = 0.0) -> None:
        """Move the knots to follow the samples ``x`` ``(n, in)`` and refit the coefficients.

        The new knots mix quantiles of ``x`` with a uniform grid over its range (weight ``grid_eps``
        on the uniform part); the coefficients are refitted by least squares so that every edge keeps
        its function on the samples (exactly where the old spline lies in the new spline space, up to
        the least-squares residual otherwise). ``w_b`` and ``w_s`` are unchanged.
        """
        target = self.edge_splines(x)  # (n, in, out)
        grid = adaptive_grid(x, self.grid_size, self.spline_order, self.grid_eps, margin)
        self.spline_weight.copy_(fit_coefficients(x, target, grid, self.spline_order))
        self.grid.copy_(grid)

    @torch.no_grad()
    def refined(self, grid_size: int, x: Tensor | None = None, points_per_interval: int = 8) -> KANLinear:
        """Grid extension: a copy of this layer on a finer grid of ``grid_size`` intervals.

        The new knots subdivide the current ones over the same range (:func:`subdivide_grid`) and each
        edge's spline is fitted by least squares to the current one on ``points_per_interval`` points
        inside every new knot interval (so crowded adaptive knots get their share), plus the optional
        layer inputs ``x`` ``(n, in)`` that fall inside the range. When ``grid_size`` is a multiple of
        the current one the fit is exact on the grid range up to round-off.
        """
        _check_grid_args(grid_size, self.spline_order, (0.0, 1.0))
        k, g = self.spline_order, self.grid_size
        new = copy.deepcopy(self)
        new.grid_size = grid_size
        new.grid = subdivide_grid(self.grid, k, grid_size)
        lo, hi = self.grid[:, k], self.grid[:, k + g]  # (in,)
        knots = new.grid[:, k : k + grid_size + 1]  # (in, G'+1) new interior knots
        frac = torch.arange(points_per_interval, dtype=lo.dtype, device=lo.device) / points_per_interval  # (p,)
        inner = knots[:, :-1, None] + (knots[:, 1:] - knots[:, :-1])[:, :, None] * frac  # (in, G', p)
        pts = torch.cat([inner.reshape(self.in_features, -1), hi[:, None]], dim=1).T  # (G'*p+1, in)
        if x is not None:
            inside = ((x >= lo) & (x <= hi)).all(dim=1)
            pts = torch.cat([pts, x[inside].to(pts)], dim=0)
        coef = fit_coefficients(pts, self.edge_splines(pts), new.grid, k)  # (out, in, new C)
        new.spline_weight = nn.Parameter(coef)
        return new

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"grid_size={self.grid_size}, spline_order={self.spline_order}"
        )


@register_model
class KAN(nn.Module):
    """A Kolmogorov–Arnold Network ``(n, widths[0]) -> (n, widths[-1])``.

    ``widths`` lists the node counts of every layer, inputs and outputs included (``[2, 10, 1]`` is the
    paper's Poisson KAN). All layers share ``grid_size``, ``spline_order``, ``grid_range`` (the initial
    knot range), ``noise_scale``, ``base_activation`` and ``grid_eps``. ``config`` holds exactly these
    constructor arguments, so ``KAN(**model.config)`` followed by ``load_state_dict`` rebuilds a model
    (grids are buffers and travel in the state dict, non-uniform knots included).
    """

    def __init__(
        self,
        widths: Sequence[int],
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: Sequence[float] = (-1.0, 1.0),
        noise_scale: float = 0.1,
        base_activation: str = "silu",
        grid_eps: float = 0.02,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2 or any(w < 1 for w in widths):
            raise ValueError(f"KAN widths must list at least two positive sizes, got {widths}")
        _check_grid_args(grid_size, spline_order, grid_range)
        self.config = {
            "widths": widths,
            "grid_size": grid_size,
            "spline_order": spline_order,
            "grid_range": [float(v) for v in grid_range],
            "noise_scale": noise_scale,
            "base_activation": base_activation,
            "grid_eps": grid_eps,
        }
        self.layers = nn.ModuleList(
            KANLinear(
                w_in,
                w_out,
                grid_size,
                spline_order,
                grid_range,
                noise_scale,
                base_activation,
                grid_eps,
                dtype=dtype,
                device=device,
            )
            for w_in, w_out in zip(widths[:-1], widths[1:])
        )

    @property
    def widths(self) -> list[int]:
        return list(self.config["widths"])

    @property
    def grid_size(self) -> int:
        return int(self.config["grid_size"])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    supports_jet = True

    def forward_jet(self, x: Tensor, plan: DerivativePlan) -> Jet:
        """Outputs and their input derivatives listed in ``plan``, propagated forward layer by layer
        (:meth:`KANLinear.forward_jet`). ``x``: ``(n, widths[0])``; returns a points-last
        :class:`~kanpde.derivatives.jet.Jet`: value ``(n_out, n)``, first ``(n_out, plan.m, n)``, second
        ``(n_out, plan.p, n)`` (``None`` where not planned)."""
        jet = Jet(x.T.contiguous())
        for layer in self.layers:
            jet = layer.forward_jet(jet, plan)
        return jet

    @torch.no_grad()
    def update_grid(self, x: Tensor, margin: float = 0.0, only_outside: bool = False) -> None:
        """Adapt every layer's knots to the inputs it sees when the network is fed ``x`` ``(n, widths[0])``.

        With ``only_outside`` a layer is adapted only when some of its inputs lie outside its grid range
        (where its splines vanish); layers whose inputs stay inside keep their knots and function exactly.
        """
        for layer in self.layers:
            if not only_outside or layer.outside_grid(x):
                layer.update_grid(x, margin)
            x = layer(x)

    @torch.no_grad()
    def refine(self, grid_size: int, x: Tensor | None = None) -> KAN:
        """Grid extension: a new KAN on ``grid_size`` intervals that reproduces this one.

        Each layer is refitted by least squares on points spread over its current grid range (and the
        layer inputs produced by ``x`` ``(n, widths[0])``, if given). ``self`` is left unchanged; the
        caller trains the returned model with a fresh optimizer.
        """
        new = copy.deepcopy(self)
        new.config["grid_size"] = grid_size
        layers = []
        for layer in self.layers:
            layers.append(layer.refined(grid_size, x))
            if x is not None:
                x = layer(x)
        new.layers = nn.ModuleList(layers)
        return new
