"""Activation functions with closed-form first and second derivatives, for the forward derivative engine.

:func:`activation_derivatives` returns ``f(z), f'(z), f''(z)`` for the activation modules kanpde's models
use; :func:`has_derivatives` says whether a module is one of them (otherwise the field falls back to
autograd). The formulas follow torch's own definitions exactly (``GELU`` with ``approximate="none"``
or ``"tanh"``, ``Softplus`` with its ``beta`` and linear ``threshold`` region), so the forward engine
agrees with autograd to rounding.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["Sin", "activation_derivatives", "has_derivatives"]

_SQRT_2_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class Sin(nn.Module):
    """``sin(x)``, the SIREN-style activation common in PINNs."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)


def has_derivatives(module: nn.Module) -> bool:
    """Whether :func:`activation_derivatives` knows ``module``."""
    return type(module) in _DERIVATIVES


def activation_derivatives(module: nn.Module, z: Tensor, order: int = 2) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``(f(z), f'(z), f''(z))`` of an activation module, elementwise; derivatives above ``order`` are ``None``.

    ``z``: any shape; results have its shape, dtype and device. Raises ``TypeError`` for an unknown module.
    """
    try:
        rule = _DERIVATIVES[type(module)]
    except KeyError:
        raise TypeError(f"no closed-form derivatives for activation {type(module).__name__}") from None
    f0, f1, f2 = rule(module, z, order)
    return f0, (f1 if order >= 1 else None), (f2 if order >= 2 else None)


def _tanh(module: nn.Module, z: Tensor, order: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
    t = torch.tanh(z)
    d1 = 1.0 - t * t if order >= 1 else None
    return t, d1, (-2.0 * t * d1 if order >= 2 else None)


def _silu(module: nn.Module, z: Tensor, order: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
    s = torch.sigmoid(z)
    f0 = z * s
    if order == 0:
        return f0, None, None
    # silu' = s (1 + z (1 - s)) = s + f0 (1 - s),  silu'' = s (1 - s) (2 + z (1 - 2 s)) = q (2 + z - 2 f0)
    one_minus = 1.0 - s
    f1 = torch.addcmul(s, f0, one_minus)
    f2 = None
    if order >= 2:
        q = s * one_minus
        f2 = torch.addcmul(2.0 * q, q, torch.add(z, f0, alpha=-2.0))
    return f0, f1, f2


def _sin(module: nn.Module, z: Tensor, order: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
    s = torch.sin(z)
    return s, (torch.cos(z) if order >= 1 else None), (-s if order >= 2 else None)


def _identity(module: nn.Module, z: Tensor, order: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
    return z, torch.ones_like(z), torch.zeros_like(z)


def _gelu(module: nn.Module, z: Tensor, order: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
    if module.approximate == "tanh":
        # 0.5 z (1 + tanh(u)),  u = sqrt(2/pi) (z + 0.044715 z^3)
        u = _SQRT_2_PI * (z + 0.044715 * z**3)
        t = torch.tanh(u)
        f0 = 0.5 * z * (1.0 + t)
        if order == 0:
            return f0, None, None
        sech2 = 1.0 - t * t
        du = _SQRT_2_PI * (1.0 + 3.0 * 0.044715 * z * z)
        f1 = 0.5 * (1.0 + t) + 0.5 * z * sech2 * du
        f2 = None
        if order >= 2:
            ddu = _SQRT_2_PI * 6.0 * 0.044715 * z
            f2 = sech2 * du + 0.5 * z * (sech2 * ddu - 2.0 * t * sech2 * du * du)
        return f0, f1, f2
    # exact: z Phi(z);  gelu' = Phi + z phi,  gelu'' = phi (2 - z^2)
    cdf = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))
    f0 = z * cdf
    if order == 0:
        return f0, None, None
    pdf = _INV_SQRT_2PI * torch.exp(-0.5 * z * z)
    return f0, cdf + z * pdf, (pdf * (2.0 - z * z) if order >= 2 else None)


def _softplus(module: nn.Module, z: Tensor, order: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
    beta, threshold = float(module.beta), float(module.threshold)
    f0 = nn.functional.softplus(z, beta, threshold)
    if order == 0:
        return f0, None, None
    linear = z * beta > threshold  # torch's softplus is exactly z there, with derivatives 1 and 0
    s = torch.sigmoid(z * beta)
    f1 = torch.where(linear, torch.ones_like(s), s)
    f2 = torch.where(linear, torch.zeros_like(s), beta * s * (1.0 - s)) if order >= 2 else None
    return f0, f1, f2


_DERIVATIVES = {
    nn.Tanh: _tanh,
    nn.SiLU: _silu,
    Sin: _sin,
    nn.GELU: _gelu,
    nn.Softplus: _softplus,
    nn.Identity: _identity,
}
