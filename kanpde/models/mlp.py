"""Multilayer perceptron baseline with the same call shape as :class:`kanpde.models.KAN`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["MLP"]


class Sin(nn.Module):
    """``sin(x)``, the SIREN-style activation common in PINNs."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)


_ACTIVATIONS = {"tanh": nn.Tanh, "silu": nn.SiLU, "sin": Sin, "gelu": nn.GELU, "softplus": nn.Softplus}


class MLP(nn.Module):
    """A fully connected network ``(n, widths[0]) -> (n, widths[-1])``.

    ``y = W_L a(... a(W_1 x + b_1) ...) + b_L`` with activation ``a`` (``tanh`` by default) between
    layers, Xavier-normal weights and zero biases (the usual PINN initialisation). ``config`` holds
    the constructor arguments for rebuilding a saved model. dtype/device follow the module.
    """

    def __init__(
        self,
        widths: Sequence[int],
        activation: str = "tanh",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2 or any(w < 1 for w in widths):
            raise ValueError(f"MLP widths must list at least two positive sizes, got {widths}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {sorted(_ACTIVATIONS)}")
        self.config = {"widths": widths, "activation": activation}
        self.linears = nn.ModuleList(
            nn.Linear(w_in, w_out, dtype=dtype, device=device) for w_in, w_out in zip(widths[:-1], widths[1:])
        )
        self.activation = _ACTIVATIONS[activation]()
        for linear in self.linears:
            nn.init.xavier_normal_(linear.weight)
            nn.init.zeros_(linear.bias)

    @property
    def widths(self) -> list[int]:
        return list(self.config["widths"])

    def forward(self, x: Tensor) -> Tensor:
        for linear in self.linears[:-1]:
            x = self.activation(linear(x))
        return self.linears[-1](x)
