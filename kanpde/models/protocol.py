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

__all__ = ["JetModel", "GridModel", "Wrapper", "unwrap", "rewrap", "is_edge_model", "module_dtype_device"]


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
