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

__all__ = ["Sin", "activation_derivatives", "activation_third", "has_derivatives"]

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

    The value is ``module(z)`` itself, so a field's value equals the model's output bit for bit.
    ``z``: any shape; results have its shape, dtype and device. Raises ``TypeError`` for an unknown module.
    """
    try:
        rule = _DERIVATIVES[type(module)]
    except KeyError:
        raise TypeError(f"no closed-form derivatives for activation {type(module).__name__}") from None
    f0 = module(z)
    if order == 0:
        return f0, None, None
    f1, f2 = rule(module, z, f0, order)
    return f0, f1, (f2 if order >= 2 else None)


def activation_third(module: nn.Module, z: Tensor, f0: Tensor, f1: Tensor, f2: Tensor) -> Tensor | None:
    """The third derivative of an activation at ``z`` given ``f``, ``f'``, ``f''`` there (the fused KAN
    kernel's gradient with respect to the layer inputs needs it), or ``None`` without a formula here."""
    kind = type(module)
    if kind is nn.Tanh:  # f' = 1 - t^2, f'' = -2 t f'  ->  f''' = -2 (f'^2 + t f'')
        return -2.0 * (f1 * f1 + f0 * f2)
    if kind is nn.SiLU:  # with q = s (1 - s): f''' = q [(1 - 2 s)(3 + z - 2 z s) - 2 z q]
        s = torch.sigmoid(z)
        q = s * (1.0 - s)
        return q * ((1.0 - 2.0 * s) * (3.0 + z - 2.0 * z * s) - 2.0 * z * q)
    if kind is Sin:
        return -f1
    if kind is nn.Identity:
        return torch.zeros_like(z)
    if kind is nn.GELU and module.approximate == "none":  # f'' = phi (2 - z^2)  ->  f''' = phi z (z^2 - 4)
        return _INV_SQRT_2PI * torch.exp(-0.5 * z * z) * z * (z * z - 4.0)
    if kind is nn.Softplus:
        beta, threshold = float(module.beta), float(module.threshold)
        s = torch.sigmoid(z * beta)
        return torch.where(z * beta > threshold, torch.zeros_like(s), beta * beta * s * (1.0 - s) * (1.0 - 2.0 * s))
    return None


Rule = tuple[Tensor, Tensor | None]


def _tanh(module: nn.Module, z: Tensor, t: Tensor, order: int) -> Rule:
    d1 = 1.0 - t * t
    return d1, (-2.0 * t * d1 if order >= 2 else None)


def _silu(module: nn.Module, z: Tensor, f0: Tensor, order: int) -> Rule:
    # silu' = s (1 + z (1 - s)) = s + f0 (1 - s),  silu'' = s (1 - s) (2 + z (1 - 2 s)) = q (2 + z - 2 f0)
    s = torch.sigmoid(z)
    one_minus = 1.0 - s
    f1 = torch.addcmul(s, f0, one_minus)
    if order < 2:
        return f1, None
    q = s * one_minus
    return f1, torch.addcmul(2.0 * q, q, torch.add(z, f0, alpha=-2.0))


def _sin(module: nn.Module, z: Tensor, f0: Tensor, order: int) -> Rule:
    return torch.cos(z), (-f0 if order >= 2 else None)


def _identity(module: nn.Module, z: Tensor, f0: Tensor, order: int) -> Rule:
    return torch.ones_like(z), (torch.zeros_like(z) if order >= 2 else None)


def _gelu(module: nn.Module, z: Tensor, f0: Tensor, order: int) -> Rule:
    if module.approximate == "tanh":
        # 0.5 z (1 + tanh(w)),  w = sqrt(2/pi) (z + 0.044715 z^3)
        t = torch.tanh(_SQRT_2_PI * (z + 0.044715 * z**3))
        sech2 = 1.0 - t * t
        dw = _SQRT_2_PI * (1.0 + 3.0 * 0.044715 * z * z)
        f1 = 0.5 * (1.0 + t) + 0.5 * z * sech2 * dw
        if order < 2:
            return f1, None
        ddw = _SQRT_2_PI * 6.0 * 0.044715 * z
        return f1, sech2 * dw + 0.5 * z * (sech2 * ddw - 2.0 * t * sech2 * dw * dw)
    # exact: z Phi(z);  gelu' = Phi + z phi,  gelu'' = phi (2 - z^2)
    cdf = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))
    pdf = _INV_SQRT_2PI * torch.exp(-0.5 * z * z)
    return cdf + z * pdf, (pdf * (2.0 - z * z) if order >= 2 else None)


def _softplus(module: nn.Module, z: Tensor, f0: Tensor, order: int) -> Rule:
    beta, threshold = float(module.beta), float(module.threshold)
    linear = z * beta > threshold  # torch's softplus is exactly z there, with derivatives 1 and 0
    s = torch.sigmoid(z * beta)
    f1 = torch.where(linear, torch.ones_like(s), s)
    return f1, (torch.where(linear, torch.zeros_like(s), beta * s * (1.0 - s)) if order >= 2 else None)


_DERIVATIVES = {
    nn.Tanh: _tanh,
    nn.SiLU: _silu,
    Sin: _sin,
    nn.GELU: _gelu,
    nn.Softplus: _softplus,
    nn.Identity: _identity,
}
