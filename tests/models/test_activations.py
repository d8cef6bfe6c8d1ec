"""Closed-form derivatives of the activations (kanpde.models.activations) against autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kanpde.models.activations import activation_derivatives

D = torch.float64


@pytest.mark.parametrize(
    "module",
    [nn.Tanh(), nn.SiLU(), nn.GELU(), nn.GELU(approximate="tanh"), nn.Softplus(), nn.Softplus(beta=2.0, threshold=5.0), nn.Identity()],
    ids=lambda m: repr(m),
)
def test_activation_derivatives_match_autograd(module: nn.Module) -> None:
    z = torch.linspace(-12.0, 12.0, 401, dtype=D).requires_grad_(True)
    f0, f1, f2 = activation_derivatives(module, z.detach(), 2)
    ref0 = module(z)
    ref1 = torch.autograd.grad(ref0.sum(), z, create_graph=True)[0]
    ref2 = torch.autograd.grad(ref1.sum(), z)[0] if ref1.requires_grad else torch.zeros_like(z)
    torch.testing.assert_close(f0, ref0.detach(), rtol=0, atol=0)
    torch.testing.assert_close(f1, ref1.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(f2, ref2, rtol=1e-12, atol=1e-13)
