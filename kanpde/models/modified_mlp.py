"""The modified MLP of Wang, Teng & Perdikaris (2021, SIAM J. Sci. Comput. 43(5), A3055), a stronger PINN
baseline than the plain MLP: two encoders of the input gate every hidden layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from kanpde.derivatives.jet import DerivativePlan, Jet, elementwise_jet, linear_jet, rows_of_entries
from kanpde.models.activations import activation_derivatives, has_derivatives
from kanpde.models.mlp import _ACTIVATIONS, input_stage
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
    :class:`~kanpde.models.MLP`). ``config`` holds the constructor arguments; dtype/device as given. ``forward_jet``
    carries derivatives forward (the product rule at each gate) when the activation has closed-form derivatives.
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
        self.config, self.features, d_in = input_stage(widths, activation, fourier_features, dtype, device)
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

    @property
    def supports_jet(self) -> bool:
        """Whether :meth:`forward_jet` can run: the activation has closed-form derivatives."""
        return has_derivatives(self.activation)

    def _act(self, jet: Jet, plan: DerivativePlan) -> Jet:
        return elementwise_jet(jet, plan, *activation_derivatives(self.activation, jet.value, plan.order))

    def forward_jet(self, x: Tensor, plan: DerivativePlan) -> Jet:
        """Outputs and their input derivatives in ``plan`` (points last, :mod:`kanpde.derivatives.jet`). Each gate
        ``H = U + Z (V - U)`` by the product rule: ``d(Z D)_s = Z_s D + Z D_s``,
        ``d2(Z D)_sr = Z_sr D + Z_s D_r + Z_r D_s + Z D_sr`` (summed over a trace row's pairs)."""
        x_jet = Jet(x.T) if self.features is None else self.features.forward_jet(x, plan)
        u = self._act(linear_jet(x_jet, plan, self.encoder_u.weight, self.encoder_u.bias), plan)
        v = self._act(linear_jet(x_jet, plan, self.encoder_v.weight, self.encoder_v.bias), plan)
        d = Jet(v.value - u.value, None if not plan.m else v.first - u.first, None if not plan.p else v.second - u.second)
        h = x_jet
        for linear in self.linears[:-1]:
            z = self._act(linear_jet(h, plan, linear.weight, linear.bias), plan)
            first = second = None
            if plan.m:
                first = u.first + z.first * d.value[:, None] + z.value[:, None] * d.first
            if plan.p:
                a, b = plan.pair_dirs
                cross = rows_of_entries(z.first[:, a] * d.first[:, b] + z.first[:, b] * d.first[:, a], plan)
                second = u.second + z.second * d.value[:, None] + cross + z.value[:, None] * d.second
            h = Jet(u.value + z.value * d.value, first, second)
        return linear_jet(h, plan, self.linears[-1].weight, self.linears[-1].bias)
