"""The fused CPU kernels of the forward engine (kanpde.models._kernels) against the pure-tensor path.

The fused path is the default on CPU, so tests/derivatives/test_field.py already checks it against the autograd
engine; here both forward-engine paths are compared directly (values, derivatives and parameter
gradients, float64, to rounding) across the configurations that specialise the compiled code, the
custom backward passes go through gradcheck, and the pieces the kernels rely on (interval search on
adaptive knots, third derivatives of activations, the switch to the tensor path) are checked alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kanpde import KAN, MLP
from kanpde.derivatives.jet import DerivativePlan
from kanpde.models import _kernels as kernels
from kanpde.models._kernels import elementwise, spline
from kanpde.models.activations import Sin, activation_derivatives, activation_third
from kanpde.models.bspline import knot_interval

D = torch.float64
pytestmark = pytest.mark.skipif(kernels.numba is None, reason="numba is not installed")


def _jet_and_grads(model: nn.Module, x: torch.Tensor, plan: DerivativePlan, path: str, monkeypatch) -> list[torch.Tensor]:
    """Value, derivatives and parameter gradients of a loss touching every output of the jet."""
    monkeypatch.setenv("KANPDE_KERNEL", path)
    model.zero_grad(set_to_none=True)
    jet = model.forward_jet(x, plan)
    parts = [jet.value] + [t for t in (jet.first, jet.second) if t is not None]
    gen = torch.Generator().manual_seed(0)  # a random cotangent for every output: a full check of the VJP
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in parts)
    loss.backward()
    return [t.detach() for t in parts] + [p.grad.clone() for p in model.parameters()]


def _assert_paths_agree(model: nn.Module, x: torch.Tensor, plan: DerivativePlan, monkeypatch, rtol: float = 1e-11) -> None:
    fused = _jet_and_grads(model, x, plan, "auto", monkeypatch)
    plain = _jet_and_grads(model, x, plan, "torch", monkeypatch)
    assert len(fused) == len(plain)
    for a, b in zip(fused, plain):
        scale = b.abs().max().clamp(min=1e-300)
        assert ((a - b).abs().max() / scale).item() <= rtol


def _perturbed(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


PLANS = {
    1: [DerivativePlan.of([(0,)]), DerivativePlan.of([(0, 0)])],
    2: [DerivativePlan(), DerivativePlan.of([(0,), (1,)]), DerivativePlan.of([(0, 0), (1, 1)]), DerivativePlan.of([(0, 1)]),
        DerivativePlan.of([], [(0, 1)])],
    3: [DerivativePlan.of([(0, 0), (0, 1), (1, 2), (2, 2)]), DerivativePlan.of([(2,), (1, 1)]),
        DerivativePlan.of([(0, 1), (2, 2)], [(0, 2), (0, 1, 2)])],
}


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("k", [2, 3])
def test_kan_fused_path_equals_tensor_path(dim: int, k: int, monkeypatch) -> None:
    torch.manual_seed(dim + 10 * k)
    model = _perturbed(KAN([dim, 4, 3, 2], grid_size=6, spline_order=k, noise_scale=1.0, dtype=D))
    x = torch.rand(300, dim, dtype=D) * 2.6 - 1.3  # some points outside the knots [-1, 1] (+ extension)
    # Every plan with cubic splines; the spline order only changes the Horner loops, so quadratics take
    # the richest plan of each dimension (each plan compiles kernels of its own on a cold cache).
    for plan in PLANS[dim] if k == 3 else PLANS[dim][-1:]:
        _assert_paths_agree(model, x, plan, monkeypatch)


def test_plans_share_compiled_kernels_beyond_their_sizes(monkeypatch) -> None:
    """A kernel is compiled per spline order and plan size (directions ``m``, second-derivative rows ``p``)
    only: the rows' pairs (a pair or a trace), whether the input jet is the network input and whether it
    has second derivatives are runtime arguments, so plans and layers that differ only there share one
    compilation (one float64 overload) -- the first run after installing compiles a handful of kernels."""
    monkeypatch.setattr(kernels, "_KERNELS", {})
    x = torch.rand(40, 3, dtype=D)
    plans = [DerivativePlan.of([(0, 0), (0, 1), (1, 2), (2, 2)]), DerivativePlan.of([(0, 1), (1, 2)], [(0, 2), (0, 1, 2)]),
             DerivativePlan.of([(0, 0)], [(0, 1), (0, 1, 2)])]  # all with m = 3 directions and p = 4 or 3 rows
    wanted = set()
    for plan in plans:
        for model in (_perturbed(KAN([3, 4, 3, 1], grid_size=5, dtype=D)), MLP([3, 6, 5, 1], dtype=D)):
            _jet_and_grads(model, x, plan, "auto", monkeypatch)
        wanted |= {("KAN layer", 4, plan.m, plan.p), ("activation", plan.m, plan.p)}
    assert set(kernels._KERNELS) == wanted and len(wanted) == 4
    for pair in kernels._KERNELS.values():
        assert [sum("float64" in str(sig[0]) for sig in k.dispatcher.signatures) for k in pair] == [1, 1]


def test_kan_fused_path_with_adaptive_knots_and_other_base_activations(monkeypatch) -> None:
    torch.manual_seed(1)
    x = torch.randn(500, 2, dtype=D) ** 3  # heavy-tailed: crowded quantile knots in the middle
    plan = DerivativePlan.of([(0, 0), (0, 1), (1, 1)])
    for act in ("silu", "tanh", "gelu", "identity"):
        model = _perturbed(KAN([2, 5, 1], grid_size=12, base_activation=act, noise_scale=1.0, dtype=D))
        model.update_grid(x)
        spacing = torch.diff(model.layers[0].grid[0])
        assert spacing.max() / spacing.min() > 10  # the knots really are non-uniform
        # Fresh points: update_grid puts knots exactly on the extreme samples, where the third derivative
        # (in the gradient of a second derivative) jumps and either side is right up to rounding.
        _assert_paths_agree(model, torch.randn(500, 2, dtype=D) ** 3, plan, monkeypatch)


def test_kan_fused_path_float32(monkeypatch) -> None:
    torch.manual_seed(2)
    model = _perturbed(KAN([2, 5, 1], grid_size=8, noise_scale=1.0, dtype=torch.float32))
    x = torch.rand(200, 2) * 2 - 1
    fused = _jet_and_grads(model, x, DerivativePlan.of([(0, 0), (1, 1)]), "auto", monkeypatch)
    plain = _jet_and_grads(model, x, DerivativePlan.of([(0, 0), (1, 1)]), "torch", monkeypatch)
    for a, b in zip(fused, plain):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-5 * b.abs().max().item())


@pytest.mark.parametrize("activation", ["tanh", "silu", "sin", "gelu"])
def test_mlp_fused_activations_equal_tensor_path(activation: str, monkeypatch) -> None:
    torch.manual_seed(3)
    for dim, plan in ((2, DerivativePlan.of([(0, 0), (1, 1)])), (3, PLANS[3][0]), (2, DerivativePlan.of([(0,), (1,)])),
                      (3, PLANS[3][2])):
        model = _perturbed(MLP([dim, 8, 6, 2], activation=activation, dtype=D))
        x = torch.rand(200, dim, dtype=D) * 2 - 1
        _assert_paths_agree(model, x, plan, monkeypatch)


def test_fused_kernel_gradcheck() -> None:
    """The hand-written backward of the KAN layer kernel, every differentiable input at once."""
    torch.manual_seed(4)
    layer = KAN([2, 3, 2], grid_size=4, noise_scale=1.0, dtype=D).layers[1]
    n_in, n = 3, 7
    plan = DerivativePlan.of([(0, 0), (0, 1), (1, 1)], [(0, 1)])  # three pairs and a trace
    xt = (torch.rand(n_in, n, dtype=D) * 2.4 - 1.2).requires_grad_()
    first = torch.randn(n_in, 2, n, dtype=D, requires_grad=True)
    second = torch.randn(n_in, 4, n, dtype=D, requires_grad=True)
    sw = layer.spline_weight.detach().clone().requires_grad_()
    sc = layer.spline_scaler.detach().clone().requires_grad_()
    wb = layer.base_weight.detach().clone().requires_grad_()
    conversion = layer._conversion()

    def f(xt, sw, sc, wb, first, second):
        with torch.no_grad():
            coef = (sw * sc.unsqueeze(-1)).transpose(0, 1)
            table = torch.bmm(coef, conversion.transpose(1, 2)).view(n_in, 2, 4, -1).permute(0, 3, 1, 2).contiguous()
        acts = elementwise.activation_jet(nn.SiLU(), xt)
        return spline.spline_jet(xt, sw, sc, table, conversion, wb, acts, spline.knot_tables(layer.grid), first, second, plan)

    assert torch.autograd.gradcheck(f, (xt, sw, sc, wb, first, second), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_elementwise_kernel_gradcheck() -> None:
    torch.manual_seed(5)
    w, n = 3, 5
    plan = DerivativePlan.of([(0, 0), (0, 1)], [(0, 1)])  # two pairs and a trace
    z = torch.randn(w, n, dtype=D, requires_grad=True)
    z1 = torch.randn(w, 2, n, dtype=D, requires_grad=True)
    z2 = torch.randn(w, 3, n, dtype=D, requires_grad=True)

    def f(z, z1, z2):
        return elementwise.elementwise_jet_fused(z, z1, z2, elementwise.activation_jet(nn.Tanh(), z), plan)

    assert torch.autograd.gradcheck(f, (z, z1, z2), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_bucket_interval_search_matches_searchsorted() -> None:
    torch.manual_seed(6)
    x = torch.randn(400, 3, dtype=D) ** 3
    layer = KAN([3, 1], grid_size=17, dtype=D).layers[0]
    layer.update_grid(x)
    grid = layer.grid
    probe = torch.cat([x, grid.T, grid.T - 1e-13, torch.full((2, 3), 1e3, dtype=D), torch.full((1, 3), float("nan"), dtype=D)])
    buckets, scale = spline._search_tables(grid.numpy())
    got = torch.tensor([[spline._interval(grid.numpy(), buckets, scale, i, float(v)) for i, v in enumerate(row)] for row in probe])
    torch.testing.assert_close(got, knot_interval(probe.T.contiguous(), grid).T, rtol=0, atol=0)


@pytest.mark.parametrize("module", [nn.Tanh(), nn.SiLU(), Sin(), nn.GELU(), nn.Softplus(beta=2.0, threshold=4.0)])
def test_activation_third_derivative_matches_autograd(module: nn.Module) -> None:
    z = torch.linspace(-4, 4, 97, dtype=D, requires_grad=True)
    f0, f1, f2 = activation_derivatives(module, z, 2)
    (ref,) = torch.autograd.grad(f2.sum(), z)
    got = activation_third(module, z.detach(), f0.detach(), f1.detach(), f2.detach())
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    jet = elementwise.activation_jet(module, z.detach())
    torch.testing.assert_close(jet[3], ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(jet[0], module(z).detach(), rtol=1e-15, atol=1e-15)


def test_kernel_switch_and_transforms_use_the_tensor_path(monkeypatch) -> None:
    x = torch.rand(4, 2, dtype=D)
    monkeypatch.setenv("KANPDE_KERNEL", "auto")
    assert kernels.fused_available(x)
    assert not kernels.fused_available(x.to(torch.float16))
    monkeypatch.setenv("KANPDE_KERNEL", "torch")
    assert not kernels.fused_available(x)
    monkeypatch.setenv("KANPDE_KERNEL", "auto")
    seen = []
    torch.func.vmap(lambda row: seen.append((kernels.fused_available(row), kernels.under_transform())) or row.sum())(x)
    assert seen == [(False, True)] and not kernels.under_transform()


def test_without_numba_the_tensor_path_runs(monkeypatch) -> None:
    """numba is a dependency, but a missing or broken install must only cost speed."""
    torch.manual_seed(7)
    model = _perturbed(KAN([2, 4, 1], grid_size=5, noise_scale=1.0, dtype=D))
    x = torch.rand(50, 2, dtype=D)
    plan = DerivativePlan.of([(0, 0), (1, 1)])
    with_kernel = _jet_and_grads(model, x, plan, "auto", monkeypatch)
    monkeypatch.setattr(kernels, "numba", None)
    assert not kernels.fused_available(x)
    without = _jet_and_grads(model, x, plan, "auto", monkeypatch)
    for a, b in zip(with_kernel, without):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11 * b.abs().max().item())


def test_disabled_block_uses_the_tensor_path(monkeypatch) -> None:
    monkeypatch.setenv("KANPDE_KERNEL", "auto")
    x = torch.rand(4, 2, dtype=D)
    with kernels.tensor_path():
        assert not kernels.fused_available(x)
        with kernels.tensor_path():
            assert not kernels.fused_available(x)
        assert not kernels.fused_available(x)
    assert kernels.fused_available(x)


def test_cached_knot_tables_follow_update_grid(monkeypatch) -> None:
    """A layer keeps its knots' bucket tables while the knots are unchanged; moving the knots in place
    (update_grid) or replacing them (grid extension) rebuilds them. (Stale tables would cost only speed:
    the interval search steps from the bucket's guess to the right interval of the live knots.)"""
    torch.manual_seed(8)
    model = _perturbed(KAN([2, 4, 1], grid_size=6, noise_scale=1.0, dtype=D))
    x = torch.rand(200, 2, dtype=D) * 2 - 1
    plan = DerivativePlan.of([], [(0, 1)])

    def tables_are_fresh(m: KAN) -> bool:
        grid = m.layers[0].grid
        cached, fresh = m.layers[0]._knot_constants()["kernel_grid"], spline._search_tables(grid.numpy())
        return bool(np.array_equal(cached[1], fresh[0]) and np.array_equal(cached[2], fresh[1]))

    _assert_paths_agree(model, x, plan, monkeypatch)  # tables cached for the uniform knots
    assert tables_are_fresh(model)
    model.update_grid(torch.randn(300, 2, dtype=D) ** 3 * 0.5)  # the same buffers, moved in place
    _assert_paths_agree(model, x, plan, monkeypatch)
    assert tables_are_fresh(model)
    refined = model.refine(12)  # new knot tensors
    _assert_paths_agree(refined, x, plan, monkeypatch)
    assert tables_are_fresh(refined)


@pytest.mark.slow
@pytest.mark.subprocess
def test_warm_up_starts_numba_in_a_fresh_process() -> None:
    """kernels.warm_up loads a cached kernel (numba's one-off start); with KANPDE_KERNEL=torch it does nothing."""
    import os
    import subprocess
    import sys

    code = (
        "from kanpde.models import _kernels as kernels\n"
        "from kanpde.models._kernels import spline\n"
        "assert not spline._search_tables.overloads\n"
        "assert kernels.warm_up() is WANT\n"
        "assert bool(spline._search_tables.overloads) is WANT\n"
    )
    for setting, want in (("auto", True), ("torch", False)):
        env = {**os.environ, "KANPDE_KERNEL": setting}
        result = subprocess.run([sys.executable, "-c", code.replace("WANT", str(want))], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
