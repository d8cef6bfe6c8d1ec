"""Edge activations of a KAN, the sparsification regulariser and node pruning (Liu et al. 2024, §2.5).

For a layer with inputs ``x`` at ``N`` samples, the L1 norm of edge ``i -> o`` is its mean absolute
activation ``A_oi = (1/N) sum_s |phi_oi(x_i^(s))|``. The regulariser of a layer is

    |Phi|_1 + mu * S(Phi),    |Phi|_1 = sum_oi A_oi,    S(Phi) = - sum_oi (A_oi / |Phi|_1) log(A_oi / |Phi|_1),

summed over layers and multiplied by ``lambda`` in the loss (:func:`sparsity_penalty`). A hidden node's
importance is ``min(max incoming A, max outgoing A)``; :func:`prune` removes hidden nodes below a threshold
and returns a smaller network of the same class whose remaining edges keep their functions exactly.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

__all__ = ["edge_activations", "edge_scores", "node_scores", "sparsity_penalty", "prune"]

log = logging.getLogger(__name__)


def _layer_edges(layer: nn.Module, xt: Tensor) -> Tensor:
    """Every edge's activation ``phi_oi(x_i)`` at points-last inputs ``xt`` ``(in, n)``: ``(out, in, n)``."""
    if hasattr(layer, "edge_values"):
        return layer.edge_values(xt, 0)[0]
    (spline,) = layer.local_spline(xt, 0)
    return torch.addcmul(spline, layer.base_activation(xt).unsqueeze(0), layer.base_weight.unsqueeze(-1))


def edge_activations(model: nn.Module, x: Tensor) -> list[tuple[Tensor, Tensor]]:
    """``[(inputs, edges), ...]`` per layer of a KAN fed ``x`` ``(n, widths[0])``: the layer inputs ``(n, in)``
    and edge activations ``(out, in, n)``. Differentiable in the parameters."""
    out = []
    h = x
    for layer in model.layers:
        edges = _layer_edges(layer, h.T)
        out.append((h, edges))
        h = edges.sum(1).T
    return out


def edge_scores(model: nn.Module, x: Tensor) -> list[Tensor]:
    """Mean absolute activation ``A_oi`` of every edge, one ``(out, in)`` tensor per layer."""
    return [edges.abs().mean(-1) for _, edges in edge_activations(model, x)]


def sparsity_penalty(model: nn.Module, x: Tensor, mu: float = 1.0) -> Tensor:
    """``sum_layers |Phi|_1 + mu * S(Phi)`` (module docstring) at the samples ``x`` ``(n, widths[0])``; a 0-d tensor."""
    total = x.new_zeros(())
    for scores in edge_scores(model, x):
        l1 = scores.sum()
        p = scores / (l1 + 1e-12)
        entropy = -(p * torch.log(p + 1e-12)).sum()
        total = total + l1 + mu * entropy
    return total


@torch.no_grad()
def node_scores(model: nn.Module, x: Tensor) -> list[Tensor]:
    """Importance ``min(max incoming A, max outgoing A)`` of the hidden nodes of each hidden layer, ``(width,)`` each."""
    scores = edge_scores(model, x)
    return [torch.minimum(scores[l].max(dim=1).values, scores[l + 1].max(dim=0).values) for l in range(len(scores) - 1)]


@torch.no_grad()
def prune(model: nn.Module, x: Tensor, threshold: float = 1e-2) -> nn.Module:
    """A copy of the KAN ``model`` without the hidden nodes whose importance (:func:`node_scores` at ``x``) is
    below ``threshold``; at least the most important node of every hidden layer is kept.

    The new network has the same class and constructor arguments except the shrunk ``widths`` (so
    :func:`kanpde.load_run` rebuilds it); every remaining edge keeps its parameters, knots and (for a
    :class:`~kanpde.models.symbolic.SymbolicKAN`) its symbolic state, so the outputs change only by the removed
    nodes' outgoing edges. ``model`` itself is returned when nothing is removed.
    """
    keep = [torch.arange(model.widths[0])]
    for scores in node_scores(model, x):
        kept = torch.nonzero(scores >= threshold).flatten()
        keep.append(kept if kept.numel() else scores.argmax().reshape(1))
    keep.append(torch.arange(model.widths[-1]))
    widths = [len(k) for k in keep]
    if widths == model.widths:
        return model
    log.info("pruning %s -> %s (node importance threshold %g)", model.widths, widths, threshold)
    ref = model.layers[0].base_weight
    new = type(model)(**{**model.config, "widths": widths}, dtype=ref.dtype, device=ref.device)
    for l, (src, dst) in enumerate(zip(model.layers, new.layers)):
        rows, cols = keep[l + 1].to(ref.device), keep[l].to(ref.device)
        state = {}
        for name, value in src.state_dict().items():
            state[name] = value[cols] if name == "grid" else value[rows][:, cols]
        dst.load_state_dict(state)
        dst.grid_size = src.grid_size
    return new
