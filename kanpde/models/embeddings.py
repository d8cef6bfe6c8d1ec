"""Input embeddings of the MLP-family models: random Fourier features (Tancik et al. 2020; Wang, Wang &
Perdikaris 2021), ``x -> [cos(2 pi B x), sin(2 pi B x)]`` with a fixed Gaussian matrix ``B``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from kanpde.derivatives.jet import DerivativePlan, Jet, elementwise_jet, linear_jet

__all__ = ["FourierFeatures", "fourier_config"]


def fourier_config(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``{"count": m, "scale": sigma}`` checked (``None``: no features); raises ``ValueError`` in one line."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or set(spec) - {"count", "scale"} or "count" not in spec:
        raise ValueError(f"fourier_features must be null or {{count: m, scale: sigma}}, got {spec!r}")
    count, scale = spec["count"], spec.get("scale", 1.0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"fourier_features.count must be a positive integer, got {count!r}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
        raise ValueError(f"fourier_features.scale must be a positive number, got {scale!r}")
    return {"count": int(count), "scale": float(scale)}


class FourierFeatures(nn.Module):
    """``(n, d) -> (n, 2 m)``: ``[cos(2 pi x B^T), sin(2 pi x B^T)]`` with ``B`` ``(m, d)`` drawn once from
    ``N(0, scale^2)`` by torch's generator at construction (seed it first for a reproducible draw). ``B`` is a
    buffer: not trained, saved in ``state_dict`` and moved with the module (dtype/device as given)."""

    def __init__(self, dim: int, count: int, scale: float = 1.0, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.register_buffer("B", scale * torch.randn(count, dim, dtype=dtype, device=device))

    @property
    def out_features(self) -> int:
        return 2 * self.B.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        z = 2 * math.pi * x @ self.B.T  # (n, m)
        return torch.cat([torch.cos(z), torch.sin(z)], dim=1)

    def forward_jet(self, x: Tensor, plan: DerivativePlan) -> Jet:
        """The features and their input derivatives (points last): ``z = 2 pi B x`` is linear, then
        ``cos z`` (derivatives ``-sin z``, ``-cos z``) and ``sin z`` (``cos z``, ``-sin z``) elementwise."""
        z = linear_jet(Jet(x.T), plan, 2 * math.pi * self.B)  # (m, n)
        c, s = torch.cos(z.value), torch.sin(z.value)
        if not plan.m:
            return Jet(torch.cat([c, s]))
        cos = elementwise_jet(z, plan, c, -s, -c if plan.p else None)
        sin = elementwise_jet(z, plan, s, c, -s if plan.p else None)
        second = torch.cat([cos.second, sin.second]) if plan.p else None
        return Jet(torch.cat([cos.value, sin.value]), torch.cat([cos.first, sin.first]), second)
