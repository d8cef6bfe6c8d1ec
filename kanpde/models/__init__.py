"""Solution ansatzes: the KAN and the MLP baselines (plain and modified, optionally with Fourier features), all ``nn.Module``s ``(n, dim) -> (n, n_out)``, the
hard-constraint and periodic-embedding wrappers, the adapter to DeepXDE (:mod:`kanpde.models.interop`), and symbolic KANs (:mod:`kanpde.models.symbolic`, imported on use: SymPy).

Capabilities are asked through :mod:`kanpde.models.protocol`; the compiled CPU kernels
(:mod:`kanpde.models._kernels`) are private to this package: :func:`warm_up` starts them and
:func:`tensor_path` turns them off in a block (plain torch operations instead), :func:`fused_available`
says where they apply, and :func:`compile_seconds` / :func:`compiled_kernels` / :func:`kernels_cached` tell
how much of this thread's time went into compiling them (training clocks leave it out). Run files may name only the
model classes declared with :func:`register_model` (:mod:`kanpde.models.registry`).
"""

from kanpde.models._kernels import (
    compile_seconds, compiled_kernels, fused_available, kernels_cached, tensor_path, warm_up,
)
from kanpde.models.hard import HardDirichlet
from kanpde.models.interop import deepxde_net
from kanpde.models.kan import KAN, KANLinear
from kanpde.models.mlp import MLP
from kanpde.models.modified_mlp import ModifiedMLP
from kanpde.models.periodic import PeriodicEmbedding
from kanpde.models.protocol import module_dtype_device, rewrap, unwrap
from kanpde.models.registry import register_model

__all__ = ["KAN", "KANLinear", "MLP", "ModifiedMLP", "PeriodicEmbedding", "HardDirichlet", "deepxde_net", "unwrap", "rewrap", "module_dtype_device", "warm_up",
           "tensor_path", "register_model", "compile_seconds", "compiled_kernels", "fused_available", "kernels_cached"]
