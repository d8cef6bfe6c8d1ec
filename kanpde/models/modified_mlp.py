"""The modified MLP of Wang, Teng & Perdikaris (2021, SIAM J. Sci. Comput. 43(5), A3055), a stronger PINN
baseline than the plain MLP: two encoders of the input gate every hidden layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from kanpde.models.embeddings import FourierFeatures, fourier_config
from kanpde.models.mlp import _ACTIVATIONS
from kanpde.models.registry import register_model

__all__ = ["ModifiedMLP"]


@register_model
class ModifiedMLP(nn.Module):
    """``(n, widths[0]) -> (n, widths[-1])``, hidden layers all of one width ``h``:

        U = a(X W_u + b_u),  V = a(X W_v + b_v)                  (the two encoders, (n, h))
        H_0 = X;  Z_k = a(H_{k-1} W_k + b_k),  H_k = (1 - Z_k) * U + Z_k * V   (k = 1 .. L, L = len(widths) - 2)
        u = H_L W + b

    with activation ``a`` (``tanh`` by default), Xavier-normal weights and zero biases. ``X`` is the input, or its
    random Fourier features with ``fourier_features={"count": m, "scale": sigma}`` (as in
    :class:`~kanpde.models.MLP`). ``config`` holds the constructor arguments; dtype/device as given. Derivatives
    come from the autograd engine (no ``forward_jet``).
    """

    def __init__(
        self,
        widths: Sequence[int],
        activation: str = "tanh",
        fourier_features: dict | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 3 or any(w < 1 for w in widths):
            raise ValueError(f"ModifiedMLP widths must list an input, at least one hidden and an output size, got {widths}")
        if len(set(widths[1:-1])) != 1:
            raise ValueError(f"ModifiedMLP hidden widths must all be equal (the encoders gate every layer), got {widths}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {sorted(_ACTIVATIONS)}")
        features = fourier_config(fourier_features)
        self.config = {"widths": widths, "activation": activation}
        if features is not None:
            self.config["fourier_features"] = features
        self.features = None if features is None else FourierFeatures(widths[0], **features, dtype=dtype, device=device)
        d_in = widths[0] if self.features is None else self.features.out_features
        sizes = [d_in, *widths[1:]]
        kw = {"dtype": dtype, "device": device}
        self.encoder_u = nn.Linear(d_in, widths[1], **kw)
        self.encoder_v = nn.Linear(d_in, widths[1], **kw)
        self.linears = nn.ModuleList(nn.Linear(w_in, w_out, **kw) for w_in, w_out in zip(sizes[:-1], sizes[1:]))
        self.activation = _ACTIVATIONS[activation]()
        for linear in (self.encoder_u, self.encoder_v, *self.linears):
            nn.init.xavier_normal_(linear.weight)
            nn.init.zeros_(linear.bias)

    @property
    def widths(self) -> list[int]:
        return list(self.config["widths"])

    def forward(self, x: Tensor) -> Tensor:
        if self.features is not None:
            x = self.features(x)
        u, v = self.activation(self.encoder_u(x)), self.activation(self.encoder_v(x))  # (n, h) each
        h = x
        for linear in self.linears[:-1]:
            z = self.activation(linear(h))
            h = u + z * (v - u)  # (1 - z) u + z v
        return self.linears[-1](h)
