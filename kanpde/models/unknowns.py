"""The model the trainer trains on an inverse problem: the network with the problem's unknowns inside.

:class:`WithUnknowns` holds the network (``net``) and the problem's :class:`~kanpde.pde.unknowns.Unknowns`
module as submodules, so every optimizer sees the unknowns among ``parameters()``, Levenberg–Marquardt's
Jacobian (``functional_call`` over ``named_parameters()``) differentiates by them, and the residual, which
reads them through the problem, sees the values being tried. It computes what the network computes and is a
:class:`~kanpde.models.protocol.Wrapper`, so grid extension, pruning and snapping act on the network.
:func:`kanpde.fit` wraps and unwraps it: nothing outside the trainer sees it.
"""

from __future__ import annotations


from torch import Tensor, nn

from kanpde.derivatives.jet import DerivativePlan, Jet
from kanpde.models.protocol import WrapsNet

__all__ = ["WithUnknowns"]


class WithUnknowns(WrapsNet, nn.Module):
    """``net`` with ``unknowns`` (a module whose parameters are trained alongside ``net``'s)."""

    def __init__(self, net: nn.Module, unknowns: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.unknowns = unknowns

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def forward_jet(self, x: Tensor, plan: DerivativePlan) -> Jet:
        return self.net.forward_jet(x, plan)

    def with_net(self, net: nn.Module) -> WithUnknowns:
        return WithUnknowns(net, self.unknowns)
