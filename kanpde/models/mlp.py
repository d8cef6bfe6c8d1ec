"""Multilayer perceptron baseline with the same call shape as :class:`kanpde.models.KAN`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from kanpde.derivatives.jet import DerivativePlan, Jet, elementwise_jet, linear_jet
from kanpde.models.activations import Sin, activation_derivatives, has_derivatives
from kanpde.models._kernels import fused_available
from kanpde.models._kernels.elementwise import activation_jet, elementwise_jet_fused
from kanpde.models.embeddings import FourierFeatures, fourier_config
from kanpde.models.registry import register_model

__all__ = ["MLP"]


_ACTIVATIONS = {"tanh": nn.Tanh, "silu": nn.SiLU, "sin": Sin, "gelu": nn.GELU, "softplus": nn.Softplus}


def input_stage(widths: list[int], activation: str, fourier_features: dict | None, dtype: torch.dtype | None,
                device: torch.device | str | None) -> tuple[dict, FourierFeatures | None, int]:
    """What the MLP-like models share before their layers: the activation checked, the ``config`` (with
    ``fourier_features`` only where given, so run files of plain models are unchanged), the optional random
    Fourier features and the first layer's input size."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {sorted(_ACTIVATIONS)}")
    features = fourier_config(fourier_features)
    config: dict = {"widths": widths, "activation": activation}
    if features is not None:
        config["fourier_features"] = features
    embedding = None if features is None else FourierFeatures(widths[0], **features, dtype=dtype, device=device)
    return config, embedding, widths[0] if embedding is None else embedding.out_features


@register_model
class MLP(nn.Module):
    """A fully connected network ``(n, widths[0]) -> (n, widths[-1])``.

    ``y = W_L a(... a(W_1 x + b_1) ...) + b_L`` with activation ``a`` (``tanh`` by default) between
    layers, Xavier-normal weights and zero biases (the usual PINN initialisation). ``config`` holds
    the constructor arguments for rebuilding a saved model. dtype/device follow the module.

    ``fourier_features={"count": m, "scale": sigma}``: the input first goes through random Fourier
    features ``[cos(2 pi B x), sin(2 pi B x)]`` (:class:`~kanpde.models.embeddings.FourierFeatures`, ``B``
    ``(m, widths[0])`` from ``N(0, sigma^2)``, fixed), so the first layer takes ``2 m`` inputs.
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
        if len(widths) < 2 or any(w < 1 for w in widths):
            raise ValueError(f"MLP widths must list at least two positive sizes, got {widths}")
        self.config, self.features, d_in = input_stage(widths, activation, fourier_features, dtype, device)
        sizes = [d_in, *widths[1:]]
        self.linears = nn.ModuleList(
            nn.Linear(w_in, w_out, dtype=dtype, device=device) for w_in, w_out in zip(sizes[:-1], sizes[1:])
        )
        self.activation = _ACTIVATIONS[activation]()
        for linear in self.linears:
            nn.init.xavier_normal_(linear.weight)
            nn.init.zeros_(linear.bias)

    @property
    def widths(self) -> list[int]:
        return list(self.config["widths"])

    def forward(self, x: Tensor) -> Tensor:
        if self.features is not None:
            x = self.features(x)
        for linear in self.linears[:-1]:
            x = self.activation(linear(x))
        return self.linears[-1](x)

    @property
    def supports_jet(self) -> bool:
        """Whether :meth:`forward_jet` can run: the activation has closed-form derivatives."""
        return has_derivatives(self.activation)

    def forward_jet(self, x: Tensor, plan: DerivativePlan) -> Jet:
        """Outputs and their input derivatives listed in ``plan``, propagated forward layer by layer.

        ``x``: ``(n, widths[0])``. Returns a points-last :class:`kanpde.derivatives.jet.Jet`: value ``(n_out, n)``,
        first ``(n_out, plan.m, n)`` and second ``(n_out, plan.p, n)`` (``None`` where not planned).
        Per layer ``z = W a + b`` maps derivatives by ``W`` (one matrix product for all directions);
        ``a = f(z)`` by ``da = f'(z) dz`` and ``d2a = f''(z) dz_s dz_r + f'(z) d2z``.
        """
        jet = Jet(x.T) if self.features is None else self.features.forward_jet(x, plan)
        # the fused kernels pay off on second derivatives; first-only plans (boundary fluxes, the evaluation's
        # gradient) take the tensor path, at about the same speed, and need no kernel compiled for them
        fused = plan.p > 0 and fused_available(x, self.linears[0].weight)
        for linear in self.linears[:-1]:
            jet = linear_jet(jet, plan, linear.weight, linear.bias)
            acts = activation_jet(self.activation, jet.value) if fused else None
            if acts is not None:  # the fused CPU kernel (kanpde.models._kernels): one pass each way
                jet = Jet(*elementwise_jet_fused(jet.value, jet.first, jet.second, acts, plan))
                jet.second = jet.second if plan.p else None
            else:
                jet = elementwise_jet(jet, plan, *activation_derivatives(self.activation, jet.value, plan.order))
        jet = linear_jet(jet, plan, self.linears[-1].weight, self.linears[-1].bias)
        if plan.p and jet.second is None:  # a single linear layer: zero curvature
            jet.second = jet.value.new_zeros(jet.value.shape[0], plan.p, jet.value.shape[1])
        return jet
