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

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor, nn

from kanpde.derivatives import DerivativePlan, Jet
from kanpde.pde import Problem

__all__ = ["JetModel", "GridModel", "Wrapper", "WrapsNet", "unwrap", "rewrap", "is_edge_model", "module_dtype_device"]

_W = TypeVar("_W", bound="WrapsNet")


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
    ``net_input`` maps the wrapper's points to the network's (the identity; an embedding overrides it).

    A wrapper made as ``cls(net, problem)`` keeps its ``config`` as :meth:`wrapper_config` gives it, and
    :meth:`from_config` makes it again from that (checkpoints and :func:`kanpde.load_run`)."""

    net: nn.Module

    @staticmethod
    def wrapper_config(net: nn.Module, problem: Problem) -> dict[str, Any]:
        """``{"net": {"class", "config"}, "problem": spec}``: the network's class path and constructor
        arguments and the problem's :attr:`~kanpde.pde.Problem.spec`, as plain data."""
        net_spec = {"class": f"{type(net).__module__}:{type(net).__qualname__}", "config": dict(getattr(net, "config", {}))}
        return {"net": net_spec, "problem": problem.spec}

    @classmethod
    def from_config(
        cls: type[_W],
        config: Mapping[str, Any],
        resolve: Callable[[str], Any],
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> _W:
        """The wrapper described by ``config`` (its :meth:`wrapper_config`), with a fresh network. ``resolve``
        turns the class paths stored there into classes and is the gate of what a run file may name: run
        files pass :func:`kanpde.io.files.resolve_class` (an allow-list; ``config`` is checked to be plain
        data before). The resolved network class must be an ``nn.Module`` and the problem class a
        :class:`~kanpde.pde.Problem` before either is called. Also reads the first run-file format, whose
        problem was ``{"_target_": "module.Class", **kwargs}``."""
        who = cls.__name__
        net_path = str(config["net"]["class"])
        net_cls = resolve(net_path)
        if not (isinstance(net_cls, type) and issubclass(net_cls, nn.Module)):
            raise ValueError(f"{who}: saved network class {net_path!r} is not a torch.nn.Module")
        kwargs = dict(config["net"].get("config", {}))
        if {"dtype", "device"} <= set(inspect.signature(net_cls).parameters):
            kwargs.update(dtype=dtype, device=device)
        spec = dict(config["problem"])
        if "_target_" in spec:  # format 1
            problem_path, problem_kwargs = str(spec.pop("_target_")), spec
        else:
            problem_path, problem_kwargs = str(spec["class"]), dict(spec.get("kwargs", {}))
        problem_cls = resolve(problem_path)
        if not (isinstance(problem_cls, type) and issubclass(problem_cls, Problem)):
            raise ValueError(f"{who}: saved problem class {problem_path!r} is not a kanpde Problem")
        return cls(net_cls(**kwargs), problem_cls(**problem_kwargs))  # type: ignore[call-arg]

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
