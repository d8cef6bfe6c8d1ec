"""Solution ansatzes: the KAN and the MLP baseline, both ``nn.Module``s ``(n, dim) -> (n, n_out)``."""

from kanpde.models.kan import KAN, KANLinear
from kanpde.models.mlp import MLP

__all__ = ["KAN", "KANLinear", "MLP"]
