"""Kolmogorov–Arnold Network layers (Liu et al. 2024, arXiv 2404.19756).

Each edge ``(i -> o)`` of a :class:`KANLinear` carries a learnable 1-D function

    phi_oi(x) = w_b[o, i] * silu(x) + w_s[o, i] * sum_j c[o, i, j] * B_j(x)

with cubic (``k = 3``) B-splines ``B_j`` on a grid of ``G`` intervals, and every output node sums its
incoming edges: ``y_o = sum_i phi_oi(x_i)``. The forward pass builds the basis tensor once and does one
dense contraction; there is no loop over edges.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kanpde.models.bspline import adaptive_grid, bspline_basis, fit_coefficients, subdivide_grid, uniform_grid

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

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"KANLinear expects input of shape (n, {self.in_features}), got {tuple(x.shape)}")
        n = x.shape[0]
        base = F.linear(self.base_activation(x), self.base_weight)  # (n, out)
        basis = self.basis(x).reshape(n, -1)  # (n, in*C)
        spline = F.linear(basis, self.scaled_spline_weight.reshape(self.out_features, -1))  # (n, out)
        return base + spline

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
