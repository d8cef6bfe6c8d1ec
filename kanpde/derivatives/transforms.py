"""Whether a ``torch.func`` transform is active: code that branches on values or uses storage (fused
kernels, caches, checks) steps aside then."""

from __future__ import annotations

import torch

__all__ = ["under_transform"]


def under_transform() -> bool:
    """Whether a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``, ...) is active: tensors are then
    wrapped, without storage. The one use of the private ``torch._C._functorch`` API in kanpde."""
    return torch._C._functorch.peek_interpreter_stack() is not None
