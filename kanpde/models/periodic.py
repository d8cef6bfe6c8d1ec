"""Exact periodicity by embedding (Dong & Ni 2021): a network fed ``(cos, sin)`` of its periodic coordinates.

For every coordinate ``x_i`` that a problem declares periodic on a box (:func:`kanpde.pde.periodic.periodic_axes`:
a ``Periodic`` condition on its two faces, period ``P_i = hi_i - lo_i``), :class:`PeriodicEmbedding` replaces
``x_i`` in the network's input by ``(cos theta_i, sin theta_i)``, ``theta_i = 2 pi (x_i - lo_i) / P_i``, and
leaves the other coordinates as they are:

    u(x) = N(e(x)),   e(x) = (..., cos theta_i, sin theta_i, ..., x_j, ...)   (n, d + k) for k periodic axes.

``u`` is then ``P_i``-periodic in ``x_i``: ``u`` and all its derivatives agree at ``x_i = lo_i`` and
``x_i = hi_i`` to rounding, whatever the weights, so the ``Periodic`` conditions' loss terms go
(:func:`kanpde.pde.periodic.unperiodic_problem`). The wrapped network takes ``d + k`` inputs. Any network
(KAN, MLP, ...) can be wrapped; derivatives come from the autograd engine (no ``forward_jet``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from kanpde.models.hard import rebuild_parts
from kanpde.models.registry import register_model
from kanpde.pde import Problem
from kanpde.pde.periodic import periodic_axes

__all__ = ["PeriodicEmbedding"]


@register_model
class PeriodicEmbedding(nn.Module):
    """``u(x) = N(e(x))`` (module docstring): ``net`` sees ``(cos, sin)`` of the periodic coordinates of ``problem``.

    ``net``: a network ``(n, d + k) -> (n, n_out)`` (its parameters are kept, not copied); ``problem``: a
    :class:`~kanpde.pde.Problem` with ``k >= 1`` periodic box coordinates (else ``ValueError``, one line).
    ``(n, d) -> (n, n_out)``; dtype/device follow the network and the inputs. ``config`` holds the network's
    class and constructor arguments and the problem's :attr:`~kanpde.pde.Problem.spec`; :meth:`from_config`
    rebuilds the wrapper from it (checkpoints, :func:`kanpde.load_run`). Grid operations go to the network
    on embedded points; it is a :class:`~kanpde.models.protocol.Wrapper`.
    """

    def __init__(self, net: nn.Module, problem: Problem) -> None:
        super().__init__()
        if not isinstance(problem, Problem):
            raise TypeError(f"PeriodicEmbedding needs a kanpde Problem, got {type(problem).__name__}")
        self.axes = periodic_axes(problem)
        self.net = net
        self.problem = problem
        self.dim = problem.dim
        widths = getattr(net, "widths", None)
        if widths and widths[0] != self.in_features:
            raise ValueError(f"PeriodicEmbedding: the network takes {widths[0]} inputs, but {problem.name} embeds "
                             f"{self.dim} coordinates into {self.in_features} (widths[0] must be {self.in_features})")
        net_spec = {"class": f"{type(net).__module__}:{type(net).__qualname__}", "config": dict(getattr(net, "config", {}))}
        self.config = {"net": net_spec, "problem": problem.spec}

    @property
    def in_features(self) -> int:
        """The network's input count: ``d`` plus one per periodic coordinate."""
        return self.dim + len(self.axes)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        resolve: Callable[[str], Any],
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> PeriodicEmbedding:
        """The wrapper described by ``config`` with a fresh network; ``resolve`` gates the class paths (as
        :meth:`kanpde.models.HardDirichlet.from_config`)."""
        return cls(*rebuild_parts(config, resolve, dtype, device, cls.__name__))

    def with_net(self, net: nn.Module) -> PeriodicEmbedding:
        """The same embedding around another network (after pruning or grid extension)."""
        return PeriodicEmbedding(net, self.problem)

    def embed(self, x: Tensor) -> Tensor:
        """``e(x)``: ``(n, d) -> (n, d + k)``, each periodic coordinate replaced by its ``(cos, sin)`` pair."""
        cols = []
        for i in range(self.dim):
            if i in self.axes:
                lo, period = self.axes[i]
                theta = (2 * math.pi / period) * (x[:, i] - lo)
                cols += [torch.cos(theta), torch.sin(theta)]
            else:
                cols.append(x[:, i])
        return torch.stack(cols, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.embed(x))

    # -- what the trainer and the outputs ask of a model ---------------------------------------------------
    @property
    def widths(self) -> list[int]:
        return list(getattr(self.net, "widths", self.config["net"]["config"].get("widths", [])))

    @property
    def grid_size(self) -> int | None:
        return getattr(self.net, "grid_size", None)

    def update_grid(self, x: Tensor, **kwargs: Any) -> None:
        """The network's grid update (a KAN's) on the embedded points, or nothing."""
        if hasattr(self.net, "update_grid"):
            self.net.update_grid(self.embed(x), **kwargs)

    def refine(self, grid_size: int, x: Tensor | None = None) -> PeriodicEmbedding:
        """Grid extension of the network on the embedded points, wrapped the same way; ``self`` without a grid."""
        if not hasattr(self.net, "refine"):
            return self
        return self.with_net(self.net.refine(grid_size, None if x is None else self.embed(x)))
