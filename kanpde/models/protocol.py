"""What the trainer, the evaluators and the outputs may ask of a model, without naming its class.

Outside :mod:`kanpde.models` capabilities are asked through these protocols and :func:`unwrap`, never by
``isinstance`` on a model class: a :class:`~kanpde.models.hard.HardDirichlet` around a KAN is not a
``KAN``, yet its grid can be extended and its network pruned.

* :class:`JetModel`: carries derivatives forward (``forward_jet``), so the forward engine applies.
* :class:`GridModel`: has a spline grid (``grid_size``, ``update_grid``, ``refine``).
* :func:`is_edge_model`: whether the network is made of edge functions (a KAN), which sparsification,
  pruning, symbolic snapping and activation plots work on.
* :class:`Wrapper`: a model around a network (``net``) that can be rebuilt around another one
  (``with_net``); :func:`unwrap` finds the network, :func:`rewrap` puts a new one in its place.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from kanpde.derivatives import DerivativePlan, Jet

__all__ = ["JetModel", "GridModel", "Wrapper", "WrapsNet", "unwrap", "rewrap", "is_edge_model", "module_dtype_device"]


@runtime_checkable
class JetModel(Protocol):
    def forward_jet(self, x: Tensor, plan: DerivativePlan) -> Jet: ...


@runtime_checkable
class GridModel(Protocol):
    grid_size: int | None

    def update_grid(self, x: Tensor, **kwargs: object) -> None: ...

    def refine(self, grid_size: int, x: Tensor | None = None) -> nn.Module: ...


@runtime_checkable
class Wrapper(Protocol):
    net: nn.Module

    def with_net(self, net: nn.Module) -> nn.Module: ...


class WrapsNet:
    """What a :class:`Wrapper` passes through to its network ``self.net``: ``supports_jet``, ``widths``,
    ``grid_size``, ``update_grid`` and ``refine`` (grid extension, then ``with_net`` around the result).
    ``net_input`` maps the wrapper's points to the network's (the identity; an embedding overrides it)."""

    net: nn.Module

    def with_net(self, net: nn.Module) -> nn.Module:  # pragma: no cover - every wrapper defines it
        raise NotImplementedError

    def net_input(self, x: Tensor) -> Tensor:
        return x

    @property
    def supports_jet(self) -> bool:
        return callable(getattr(self.net, "forward_jet", None)) and bool(getattr(self.net, "supports_jet", True))

    @property
    def widths(self) -> list[int]:
        widths = getattr(self.net, "widths", None)
        if widths is None:  # a network without widths: those of its saved configuration, if any
            widths = getattr(self, "config", {}).get("net", {}).get("config", {}).get("widths", [])
        return list(widths)

    @property
    def grid_size(self) -> int | None:
        return getattr(self.net, "grid_size", None)

    def update_grid(self, x: Tensor, **kwargs: object) -> None:
        """The network's grid update (a KAN's) on its inputs, or nothing."""
        if hasattr(self.net, "update_grid"):
            self.net.update_grid(self.net_input(x), **kwargs)

    def refine(self, grid_size: int, x: Tensor | None = None) -> nn.Module:
        """Grid extension of the network on its inputs, wrapped the same way; ``self`` without a grid."""
        if not hasattr(self.net, "refine"):
            return self  # type: ignore[return-value]
        return self.with_net(self.net.refine(grid_size, None if x is None else self.net_input(x)))


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside any :class:`Wrapper` s around ``model`` (``model`` itself when it wraps nothing)."""
    while isinstance(model, Wrapper):
        model = model.net
    return model


def rewrap(model: nn.Module, net: nn.Module) -> nn.Module:
    """``model`` with its innermost network replaced by ``net`` (``net`` itself when ``model`` wraps nothing)."""
    if isinstance(model, Wrapper):
        return model.with_net(rewrap(model.net, net))
    return net


def is_edge_model(model: nn.Module) -> bool:
    """Whether the network inside ``model`` is made of edge functions (a KAN): what sparsification,
    pruning and symbolic snapping need."""
    from kanpde.models.kan import KAN

    return isinstance(unwrap(model), KAN)


def module_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """dtype and device of a module's first parameter (or buffer); the defaults for a module with neither."""
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), torch.empty(0))
    return tensor.dtype, tensor.device
