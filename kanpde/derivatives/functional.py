"""Derivatives of any network at points, as plain functions: kanpde's derivative engine without its trainer.

For a PINN written in plain PyTorch (or another framework's loop) with a network ``model`` mapping
``(n, dim) -> (n, n_out)``:

    value(model, x)                        (n, n_out)          u
    grad(model, x)                         (n, n_out, dim)     du_o / dx_i  (the Jacobian at each point)
    laplacian(model, x)                    (n, n_out)          sum_i d2u_o / dx_i^2
    partials(model, x, ["x", "xy", ...])   {spec: (n, n_out)}  named partial derivatives

Every output keeps the model's output axis, so a scalar network gives ``(n, 1)`` (``grad``: ``(n, 1, dim)``).
Derivative specs name the input columns by ``coords`` -- ``("x",)``, ``("x", "y")``, ``("x", "y", "z")``
by default for 1, 2, 3 inputs, ``("x1", ..., "xd")`` beyond -- as a problem's :class:`~kanpde.Field`
does: ``"xx"``, ``"xy"`` (= ``"yx"``), or a tuple of names such as ``("x1", "x2")``.

``engine="auto"`` (the default) runs the forward engine when the model has ``forward_jet``
(:class:`kanpde.KAN`, :class:`kanpde.MLP`, :class:`kanpde.HardDirichlet`): one forward pass carries the
value and exactly the derivatives asked for through every layer (a Laplacian as one summed row), with no
autograd graph over the inputs. Any other ``nn.Module`` (or ``engine="autograd"``) is differentiated by
nested ``torch.autograd.grad``; derivatives of order above two always are. Both engines agree to rounding.

The results are differentiable with respect to the model's parameters: a loss built from them
back-propagates with ``loss.backward()``. ``x`` is treated as data (it is detached; no gradient reaches
it). dtype and device follow ``x``, which must match the model's parameters; nothing global is set.
Bad input -- points that are not ``(n, dim)``, a ``dim`` the model does not take, a dtype or device other
than the model's, an unknown derivative name -- raises one ``ValueError`` before the model runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from kanpde.derivatives.field import AutogradField, Field, resolve_engine, supports_forward
from kanpde.derivatives.jet import DerivativePlan, Jet

__all__ = ["value", "grad", "laplacian", "partials", "default_coords"]

Spec = str | Sequence[str]
Index = tuple[int, ...]


def default_coords(dim: int) -> tuple[str, ...]:
    """Names of ``dim`` input columns: ``x``, ``y``, ``z`` up to three, ``x1 ... xd`` beyond."""
    return ("x", "y", "z")[:dim] if dim <= 3 else tuple(f"x{i}" for i in range(1, dim + 1))


def value(model: nn.Module, x: Tensor) -> Tensor:
    """The model's output at the points ``x`` ``(n, dim)``, as ``(n, n_out)`` (a ``(n,)`` output gets its axis).

    The plain forward pass, after the same checks as the derivative functions."""
    _check_points(model, x, None)
    out = model(x.detach())
    return out.unsqueeze(1) if out.ndim == 1 else out


def grad(model: nn.Module, x: Tensor, *, engine: str = "auto") -> Tensor:
    """First derivatives of every output with respect to every input: ``(n, n_out, dim)``, entry
    ``[k, o, i] = du_o / dx_i`` at point ``k`` (the Jacobian of each point; ``[:, 0, :]`` is the gradient
    of a scalar network). ``engine``: ``"auto"``, ``"forward"`` or ``"autograd"`` (module docstring)."""
    coords = _check_points(model, x, None)
    columns = [(i,) for i in range(len(coords))]
    rows = _derivatives(model, x, coords, columns, [], engine)
    return torch.stack([rows[c] for c in columns], dim=2)


def laplacian(
    model: nn.Module,
    x: Tensor,
    *,
    over: Sequence[str] | None = None,
    coords: Sequence[str] | None = None,
    engine: str = "auto",
) -> Tensor:
    """The Laplacian ``sum_i d2u_o / dx_i^2`` of every output: ``(n, n_out)``.

    ``over``: the coordinate names summed over (default: all inputs; e.g. ``over=("x", "y")`` with
    ``coords=("x", "y", "t")`` for a space-time network). The forward engine carries the sum as a single
    row through the network, cheaper than the separate second derivatives."""
    coords = _check_points(model, x, coords)
    names = list(coords if over is None else ([over] if isinstance(over, str) else over))
    if not names:
        raise ValueError("laplacian: 'over' names no coordinate")
    unknown = [n for n in names if n not in coords]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"laplacian: 'over' must name distinct coordinates of {coords}, got {tuple(names)}")
    trace = tuple(sorted(coords.index(n) for n in names))
    return _derivatives(model, x, coords, [], [trace], engine)[trace]


def partials(
    model: nn.Module,
    x: Tensor,
    specs: Sequence[Spec],
    *,
    coords: Sequence[str] | None = None,
    engine: str = "auto",
) -> dict[Spec, Tensor]:
    """Named partial derivatives of every output, each ``(n, n_out)``, keyed by the specs as given
    (a list spec by its tuple).

    ``specs``: e.g. ``["x", "xx", "xy"]`` (a string reads coordinate names, longest first, so ``"x1x2"``
    works with ``coords=("x1", "x2")``) or tuples of names (``("x1", "x2")``); mixed partials are
    symmetric. The forward engine computes all first- and second-order ones in one pass; higher orders
    come from autograd. ``coords`` names the input columns (default :func:`default_coords`)."""
    if isinstance(specs, str) or not isinstance(specs, Sequence) or not specs:
        raise ValueError(
            f"partials: specs must be a non-empty list of derivative names such as ['xx', 'xy'], got {specs!r}"
        )
    coords = _check_points(model, x, coords)
    reader = Field(x, coords)
    indices: dict[Spec, Index] = {}
    for spec in specs:
        key = tuple(spec) if not isinstance(spec, str) else spec
        try:
            indices[key] = reader.parse(spec)
        except (KeyError, TypeError):
            raise ValueError(f"partials: cannot read derivative {spec!r} with coordinates {coords}") from None
    rows = _derivatives(model, x, coords, list(set(indices.values())), [], engine)
    return {key: rows[index] for key, index in indices.items()}


# -- the engines' part ---------------------------------------------------------------------------------------


def _derivatives(
    model: nn.Module, x: Tensor, coords: tuple[str, ...], indices: list[Index], traces: list[Index], engine: str
) -> dict[Index, Tensor]:
    """``{index: (n, n_out)}`` for every sorted column tuple in ``indices`` and every Laplacian in ``traces``
    (keyed by its sorted columns; ``indices`` and ``traces`` are never both given)."""
    engine = resolve_engine(engine, model)
    if engine == "forward" and not supports_forward(model):
        raise ValueError(
            f"{type(model).__name__} has no forward derivative engine (forward_jet); use engine='auto' or 'autograd'"
        )
    x = x.detach()
    if engine == "autograd":
        return _by_autograd(model, x, coords, indices, traces)
    low = [i for i in indices if len(i) <= 2]
    plan = DerivativePlan.of(low, traces)
    jet = model.forward_jet(x, plan)  # points last: value (n_out, n)
    out = {i: _jet_row(jet, plan, i, trace=False) for i in low}
    out.update({t: _jet_row(jet, plan, t, trace=True) for t in traces})
    high = [i for i in indices if len(i) > 2]
    if high:
        out.update(_by_autograd(model, x, coords, high, []))
    return out


def _jet_row(jet: Jet, plan: DerivativePlan, index: Index, trace: bool) -> Tensor:
    """One derivative of every output from a points-last jet, as ``(n, n_out)``."""
    if trace and len(index) == 1:  # the Laplacian over one column: its pure second derivative
        index, trace = index * 2, False
    if trace:
        rows, position = jet.second, plan.trace_position(index)
    elif len(index) == 1:
        rows, position = jet.first, plan.position(index)
    else:
        rows, position = jet.second, plan.position(index)
    if rows is None and len(index) == 1:  # the jet of the inputs themselves: the identity Jacobian
        return torch.zeros_like(jet.value.T).index_fill(1, torch.tensor(index, device=jet.value.device), 1.0)
    if rows is None:  # the jet says this derivative is zero (e.g. a linear network's curvature)
        return torch.zeros_like(jet.value.T)
    return rows[:, position].T


def _by_autograd(
    model: nn.Module, x: Tensor, coords: tuple[str, ...], indices: list[Index], traces: list[Index]
) -> dict[Index, Tensor]:
    field = AutogradField(model, x, coords, outputs=None, time_coord=None)
    n_out = len(field.outputs)
    out = {i: torch.stack([field._derivative(c, i) for c in range(n_out)], dim=1) for i in indices}
    out.update({t: torch.stack([field._laplacian(c, list(t)) for c in range(n_out)], dim=1) for t in traces})
    return out


def _input_width(model: nn.Module) -> int | None:
    """The number of inputs ``model`` declares, where it declares one: ``widths[0]`` (kanpde's models and
    wrappers around them), ``in_features`` of a linear layer or of the first layer of an ``nn.Sequential``."""
    while hasattr(model, "net") and not hasattr(model, "widths"):  # a wrapper (HardDirichlet): its network
        model = model.net
    widths = getattr(model, "widths", None)
    if isinstance(widths, Sequence) and widths:
        return int(widths[0])
    if isinstance(model, nn.Sequential) and len(model):
        model = model[0]
    width = getattr(model, "in_features", None)
    return width if isinstance(width, int) else None


def _check_points(model: nn.Module, x: Tensor, coords: Sequence[str] | None) -> tuple[str, ...]:
    """The coordinate names of ``x``'s columns, after every check that can be made before the model runs."""
    if not isinstance(x, Tensor) or x.ndim != 2 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"points must be a 2-D floating-point tensor (n, dim), got {shape}")
    dim = x.shape[1]
    width = _input_width(model)
    if width is not None and width != dim:
        raise ValueError(f"points have {dim} columns but {type(model).__name__} takes {width} inputs")
    coords = default_coords(dim) if coords is None else tuple(coords)
    if len(coords) != dim or len(set(coords)) != dim or not all(isinstance(c, str) and c for c in coords):
        raise ValueError(f"coords must name the {dim} columns of the points with distinct names, got {coords}")
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if param is not None and (param.dtype != x.dtype or param.device != x.device):
        raise ValueError(
            f"points are {x.dtype} on {x.device} but the model's parameters are {param.dtype} on {param.device}"
        )
    return coords
