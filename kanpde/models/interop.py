"""Adapters that let other PINN frameworks train kanpde's networks.

DeepXDE (PyTorch backend): :func:`deepxde_net` wraps any ``nn.Module`` ``(n, dim) -> (n, n_out)`` -- a
:class:`~kanpde.models.KAN`, an :class:`~kanpde.models.MLP` -- in a subclass of DeepXDE's own network base
class (``deepxde.nn.NN``), so ``dde.Model(data, net)`` accepts it and everything DeepXDE asks of its networks
is there: ``regularizer`` (read when the model is compiled), ``auxiliary_vars``, and the feature and output
transforms (``apply_feature_transform``, ``apply_output_transform``: DeepXDE's way of imposing boundary
conditions exactly), applied as DeepXDE's fully connected networks apply them. DeepXDE is an optional
dependency (``pip install "kanpde[deepxde]"``), imported when the adapter is made; it must run its PyTorch
backend (``DDE_BACKEND=pytorch``).
"""

from __future__ import annotations

import importlib

from torch import nn

__all__ = ["deepxde_net"]


def _deepxde_base() -> type[nn.Module]:
    """DeepXDE's PyTorch network base class, after checking that DeepXDE is there and runs PyTorch."""
    try:
        backend = importlib.import_module("deepxde.backend")
    except ImportError as err:
        raise ImportError(
            f'deepxde_net needs DeepXDE: pip install "kanpde[deepxde]" (importing it failed: {err})'
        ) from err
    if backend.backend_name != "pytorch":
        raise RuntimeError(
            f"deepxde_net needs DeepXDE's PyTorch backend, but DeepXDE runs {backend.backend_name!r}: "
            "set DDE_BACKEND=pytorch before importing deepxde"
        )
    return importlib.import_module("deepxde.nn.pytorch.nn").NN


def deepxde_net(net: nn.Module, regularization: tuple[str, float] | None = None) -> nn.Module:
    """``net`` as a DeepXDE network (PyTorch backend): a ``deepxde.nn.NN`` whose ``forward`` is

        y = output_transform(x, net(feature_transform(x)))

    with either transform left out until DeepXDE's ``apply_feature_transform`` /
    ``apply_output_transform`` sets it. ``net`` is kept (not copied) as the attribute ``net``: its
    parameters are the adapter's, and training through DeepXDE trains it. ``regularization``: DeepXDE's
    ``("l1" | "l2", factor)`` (default none). dtype/device follow ``net`` and the inputs DeepXDE feeds it.

    Raises ``ImportError`` when DeepXDE is not installed and ``RuntimeError`` when it runs another backend.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"deepxde_net needs an nn.Module, got {type(net).__name__}")
    base = _deepxde_base()

    class DeepXDENet(base):  # defined here: its base class exists only once DeepXDE is imported
        """A kanpde network (``net``) as a DeepXDE network; see :func:`kanpde.deepxde_net`."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.regularizer = regularization

        def forward(self, inputs):
            x = inputs if self._input_transform is None else self._input_transform(inputs)
            y = self.net(x)
            return y if self._output_transform is None else self._output_transform(inputs, y)

    DeepXDENet.__qualname__ = "DeepXDENet"
    return DeepXDENet()
