"""The DeepXDE adapter (kanpde.models.interop.deepxde_net): what DeepXDE asks of a network, checked in an
interpreter of its own (importing DeepXDE sets torch's default device where CUDA is present and picks its
backend from the environment once), and its errors without DeepXDE or with another backend."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import types

import pytest

import kanpde
from kanpde import KAN

ADAPTER_CHECKS = textwrap.dedent(
    """
    import deepxde as dde
    import numpy as np
    import torch
    import kanpde

    kan = kanpde.KAN([2, 4, 1], grid_size=3, dtype=torch.float64)
    net = kanpde.deepxde_net(kan)
    assert isinstance(net, dde.nn.NN) and net.net is kan and net.regularizer is None
    assert [id(p) for p in net.parameters()] == [id(p) for p in kan.parameters()]
    assert net.num_trainable_parameters() == sum(p.numel() for p in kan.parameters())
    x = torch.rand(20, 2, dtype=torch.float64)
    assert torch.equal(net(x), kan(x))
    net.apply_feature_transform(lambda x: 0.5 * x)
    net.apply_output_transform(lambda x, u: x[:, :1] * u + 1.0)
    assert torch.equal(net(x), x[:, :1] * kan(0.5 * x) + 1.0)
    assert kanpde.deepxde_net(kan, regularization=("l2", 1e-4)).regularizer == ("l2", 1e-4)

    # a compiled DeepXDE model trains the KAN's own parameters (one Adam step changes them)
    geom = dde.geometry.Rectangle([-1, -1], [1, 1])
    pde = lambda x, u: dde.grad.hessian(u, x, i=0, j=0) + dde.grad.hessian(u, x, i=1, j=1) + 1.0
    data = dde.data.PDE(geom, pde, [], num_domain=16)
    kan32 = kanpde.KAN([2, 4, 1], grid_size=3)
    before = [p.detach().clone() for p in kan32.parameters()]
    model = dde.Model(data, kanpde.deepxde_net(kan32))
    model.compile("adam", lr=1e-2)
    model.train(iterations=1, verbose=0)
    assert all(not torch.equal(a, p) for a, p in zip(before, kan32.parameters()))
    print("ADAPTER OK")
    """
)


@pytest.mark.slow  # importing DeepXDE (scikit-learn, matplotlib) in a fresh interpreter takes seconds
@pytest.mark.subprocess
@pytest.mark.skipif(importlib.util.find_spec("deepxde") is None,
                    reason='DeepXDE is not installed (pip install "kanpde[deepxde]"): the adapter is not exercised')
def test_deepxde_net_is_a_deepxde_network_around_the_kan() -> None:
    env = {**os.environ, "DDE_BACKEND": "pytorch", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", ADAPTER_CHECKS], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ADAPTER OK" in proc.stdout, proc.stderr[-3000:]


def test_without_deepxde_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "deepxde.backend", None)  # import deepxde.backend then fails
    with pytest.raises(ImportError, match=r'deepxde_net needs DeepXDE: pip install "kanpde\[deepxde\]"'):
        kanpde.deepxde_net(KAN([2, 3, 1]))


def test_another_deepxde_backend_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "deepxde.backend", types.SimpleNamespace(backend_name="tensorflow"))
    with pytest.raises(RuntimeError, match="needs DeepXDE's PyTorch backend, but DeepXDE runs 'tensorflow': "
                                           "set DDE_BACKEND=pytorch"):
        kanpde.deepxde_net(KAN([2, 3, 1]))


def test_only_modules_are_adapted() -> None:
    with pytest.raises(TypeError, match="deepxde_net needs an nn.Module, got function"):
        kanpde.deepxde_net(lambda x: x)
