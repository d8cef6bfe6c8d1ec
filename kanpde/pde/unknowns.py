"""Unknowns of an inverse problem: scalar parameters and coefficient fields, trained with the network.

A problem declares them in its constructor (:meth:`kanpde.Problem.unknown`,
:meth:`kanpde.Problem.unknown_field`) and reads them in its residual (:meth:`kanpde.Problem.param`,
:meth:`kanpde.Problem.field_of`). They live in one :class:`Unknowns` module; :func:`kanpde.fit` trains its
parameters together with the model's (every optimizer, Levenberg–Marquardt's Jacobian included: the
trainer puts this module inside the model it trains, so ``functional_call`` reaches it) and records the
scalars' trajectory in the history (columns ``param:<name>``).

A positive scalar (``positive=True``, e.g. a viscosity) is stored as its logarithm, so it stays > 0.
A true value (``true=``) is data for reporting only: the run's ``metrics.json`` gives the learned value's
relative error; nothing in training reads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["Unknowns"]


class Unknowns(nn.Module):
    """The unknown scalars (``scalars``: raw parameters, log-scaled where positive) and coefficient fields
    (``fields``: networks ``(n, d) -> (n, 1)``) of one problem."""

    def __init__(self) -> None:
        super().__init__()
        self.scalars = nn.ParameterDict()
        self.fields = nn.ModuleDict()
        self.positive: dict[str, bool] = {}
        self.true: dict[str, float | Callable[[Tensor], Tensor] | None] = {}
        self.pending: dict[str, dict[str, object]] = {}  # fields whose network the trainer makes (a KAN)

    def add_scalar(self, name: str, initial: float, positive: bool, true: float | None) -> None:
        self._check_name(name)
        initial = float(initial)
        if not math.isfinite(initial) or (positive and initial <= 0):
            raise ValueError(f"unknown {name!r} needs a finite initial value{' > 0 (positive)' if positive else ''}, got {initial}")
        raw = math.log(initial) if positive else initial
        self.scalars[name] = nn.Parameter(torch.tensor(raw, dtype=torch.float64))
        self.positive[name], self.true[name] = bool(positive), None if true is None else float(true)

    def add_field(self, name: str, net: nn.Module | None, true: Callable[[Tensor], Tensor] | None,
                  widths: list[int] | None = None, grid_size: int = 5) -> None:
        self._check_name(name)
        if net is None:
            if widths is None or len(widths) < 2 or widths[-1] != 1 or min(widths) < 1:
                raise ValueError(f"unknown field {name!r} needs a network or KAN widths [d, ..., 1], got {widths}")
            self.pending[name] = {"widths": [int(w) for w in widths], "grid_size": int(grid_size)}
        elif not isinstance(net, nn.Module):
            raise TypeError(f"unknown field {name!r} needs a network (nn.Module), got {type(net).__name__}")
        else:
            self.fields[name] = net
        self.true[name] = true

    def build_fields(self, make: Callable[[list[int], int], nn.Module]) -> None:
        """Make the networks of fields declared by their KAN ``widths`` (``make(widths, grid_size)``)."""
        for name, spec in list(self.pending.items()):
            self.fields[name] = make(spec["widths"], spec["grid_size"])
            del self.pending[name]

    def _check_name(self, name: str) -> None:
        if not name.isidentifier():
            raise ValueError(f"an unknown's name must be an identifier, got {name!r}")
        if name in self.scalars or name in self.fields or name in self.pending:
            raise ValueError(f"unknown {name!r} is declared twice")

    def value(self, name: str) -> Tensor:
        """The scalar ``name`` as a 0-d tensor (in the graph, so its gradient reaches the parameter)."""
        if name not in self.scalars:
            raise KeyError(f"no unknown scalar {name!r}; declared: {list(self.scalars)}")
        raw = self.scalars[name]
        return raw.exp() if self.positive[name] else raw

    def values(self) -> dict[str, float]:
        """Every scalar's current value."""
        with torch.no_grad():
            return {name: float(self.value(name)) for name in self.scalars}

    def forward(self) -> dict[str, Tensor]:  # pragma: no cover - a container, called through value()
        return {name: self.value(name) for name in self.scalars}
