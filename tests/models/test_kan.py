"""KAN layers and networks (kanpde.models.kan): gradients, the edge formula, the local-support forward against the
dense basis, initialisation, grid extension and grid updates, dtypes."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call
from torch.nn import functional as F

import kanpde.models.kan as kan_module
from kanpde.derivatives.field import make_field
from kanpde.models import KAN, MLP, KANLinear
from kanpde.models.bspline import bspline_basis
from tests.helpers import (
    F64, inside_grids, layer_ranges, max_rel, parametrize_devices, parametrize_dtypes, smooth_kan, smooth_layer,
)

D = F64


def cox_de_boor(j: int, p: int, x: float, t: list[float]) -> float:
    """Scalar B-spline ``B_{j,p}(x)`` on knots ``t`` straight from the textbook recursion."""
    if p == 0:
        return 1.0 if t[j] <= x < t[j + 1] else 0.0
    left = (x - t[j]) / (t[j + p] - t[j]) * cox_de_boor(j, p - 1, x, t)
    right = (t[j + p + 1] - x) / (t[j + p + 1] - t[j + 1]) * cox_de_boor(j + 1, p - 1, x, t)
    return left + right


def randomize(layer: KANLinear) -> KANLinear:
    """Non-trivial w_b, c and w_s (w_s != 1) so that every factor of the edge formula is exercised."""
    with torch.no_grad():
        layer.base_weight.normal_()
        layer.spline_weight.normal_()
        layer.spline_scaler.uniform_(0.5, 1.5)
    return layer


# -- gradients -------------------------------------------------------------------------------------------


def test_kanlinear_gradcheck_wrt_input() -> None:
    layer = randomize(KANLinear(3, 2, grid_size=4, dtype=F64))
    x = (torch.rand(6, 3, dtype=F64) * 1.8 - 0.9).requires_grad_(True)
    assert gradcheck(layer, (x,), eps=1e-6, atol=1e-7)
    assert gradgradcheck(layer, (x,), eps=1e-6, atol=1e-6)


def test_kanlinear_gradcheck_wrt_parameters() -> None:
    layer = randomize(KANLinear(3, 2, grid_size=4, dtype=F64))
    x = torch.rand(6, 3, dtype=F64) * 1.8 - 0.9
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for _, p in layer.named_parameters())
    assert names == ["base_weight", "spline_weight", "spline_scaler"]

    def f(*ps: torch.Tensor) -> torch.Tensor:
        return functional_call(layer, dict(zip(names, ps)), (x,))

    assert gradcheck(f, params, eps=1e-6, atol=1e-7)


# -- the forward pass --------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3])
def test_forward_equals_naive_edge_sum(k: int) -> None:
    layer = randomize(KANLinear(3, 2, grid_size=5, spline_order=k, grid_range=(-1.0, 2.0), dtype=F64))
    x = torch.rand(10, 3, dtype=F64) * 3 - 1
    x[0] = torch.tensor([-1.0, 0.4, 1.999])  # the range start and a point near its end
    got = layer(x)
    wb, c, ws = layer.base_weight, layer.spline_weight, layer.spline_scaler
    expected = torch.zeros(10, 2, dtype=F64)
    for n in range(10):
        for o in range(2):
            for i in range(3):
                xi = x[n, i].item()
                knots = layer.grid[i].tolist()
                spline = sum(c[o, i, j].item() * cox_de_boor(j, k, xi, knots) for j in range(5 + k))
                silu = xi / (1 + math.exp(-xi))
                expected[n, o] += wb[o, i].item() * silu + ws[o, i].item() * spline
    assert (got - expected).abs().max().item() <= 1e-12


def test_output_shapes_and_input_checks() -> None:
    model = KAN([3, 4, 5, 2], grid_size=6, dtype=F64)
    x = torch.rand(7, 3, dtype=F64)
    assert model(x).shape == (7, 2)
    assert [layer.grid.shape for layer in model.layers] == [(3, 13), (4, 13), (5, 13)]
    assert model.layers[0].basis(x).shape == (7, 3, 9)
    assert model.layers[0].edge_splines(x).shape == (7, 3, 4)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == (3 * 4 + 4 * 5 + 5 * 2) * (6 + 3 + 2)  # per edge: G + k coefficients, w_b, w_s
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        model(torch.rand(7, 2, dtype=F64))
    for bad in ({"grid_size": 0}, {"spline_order": 0}, {"grid_range": (1.0, -1.0)}, {"base_activation": "relu6"}):
        with pytest.raises(ValueError):
            KAN([2, 3, 1], **bad)
    with pytest.raises(ValueError):
        KAN([2])


# -- initialisation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise_scale,grid_size", [(0.1, 5), (0.5, 3)])
def test_initialisation(noise_scale: float, grid_size: int) -> None:
    layer = KANLinear(40, 30, grid_size=grid_size, noise_scale=noise_scale, dtype=F64)
    assert torch.equal(layer.spline_scaler, torch.ones(30, 40, dtype=F64))
    c_bound = noise_scale / grid_size / 2
    assert layer.spline_weight.abs().max().item() <= c_bound
    assert layer.spline_weight.abs().max().item() > 0.9 * c_bound  # U(-1/2, 1/2) fills its range
    assert abs(layer.spline_weight.std().item() - 2 * c_bound / math.sqrt(12)) < 0.05 * c_bound
    xavier = math.sqrt(6.0 / (40 + 30))
    assert layer.base_weight.abs().max().item() <= xavier
    assert abs(layer.base_weight.std().item() - xavier / math.sqrt(3)) < 0.05 * xavier
    grid = layer.grid
    torch.testing.assert_close(grid[:, 3], torch.full((40,), -1.0, dtype=F64))
    torch.testing.assert_close(grid[:, 3 + grid_size], torch.full((40,), 1.0, dtype=F64))


# -- grid extension (refine) --------------------------------------------------------------------------------


def _refine_setup() -> tuple[KAN, torch.Tensor]:
    """A smooth 2-4-1 KAN whose every layer's grid covers its inputs, and points inside all grids."""
    model = KAN([2, 4, 1], grid_size=5, dtype=F64)
    x = torch.rand(3000, 2, dtype=F64) * 2 - 1
    h = x
    for i, layer in enumerate(model.layers):
        if i > 0:  # hidden layer: move its knots over the (margin-widened) range of its inputs
            layer.update_grid(h, margin=0.1)
        smooth_layer(layer, freq=0.5)
        h = layer(h).detach()
    mask = inside_grids(model, x)
    assert mask.float().mean().item() > 0.99
    return model, x[mask]


@pytest.mark.parametrize("new_size,tol", [(10, 1e-7), (20, 1e-7), (7, 1e-6), (6, 1e-6)])
def test_refine_preserves_the_function(new_size: int, tol: float) -> None:
    """Measured: 1.4e-8 / 1.6e-8 for the multiples 5 -> 10 / 20; 1.4e-7 / 1.9e-7 for 5 -> 7 / 6."""
    model, x = _refine_setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    y0 = model(x)
    fine = model.refine(new_size)
    assert fine is not model
    assert fine.grid_size == new_size and fine.config["grid_size"] == new_size
    assert all(layer.grid_size == new_size for layer in fine.layers)
    assert all(layer.spline_weight.shape[-1] == new_size + 3 for layer in fine.layers)
    assert (fine(x) - y0).abs().max().item() <= tol
    # the original model is unchanged
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the new coefficients are trainable parameters of the new model
    assert {n for n, _ in fine.named_parameters()} == {n for n, _ in model.named_parameters()}


def test_refine_multiple_is_exact_up_to_the_ridge(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the ridge switched off a 5 -> 10 refine reproduces the layer to round-off (measured 1e-15)."""
    layer = KANLinear(2, 3, grid_size=5, dtype=F64)
    smooth_layer(layer, freq=1.0)
    x = torch.rand(2000, 2, dtype=F64) * 2 - 1
    original = kan_module.fit_coefficients
    monkeypatch.setattr(kan_module, "fit_coefficients", lambda *a: original(*a, ridge=0.0))
    assert (layer.refined(10)(x) - layer(x)).abs().max().item() <= 1e-12


def test_refine_multiple_is_round_off_exact() -> None:
    layer = KANLinear(2, 3, grid_size=5, dtype=F64)
    smooth_layer(layer, freq=1.0)
    x = torch.rand(2000, 2, dtype=F64) * 2 - 1
    assert (layer.refined(10)(x) - layer(x)).abs().max().item() <= 1e-10


def test_refine_preserves_function_on_adapted_crowded_grid() -> None:
    layer = KANLinear(2, 2, grid_size=5, dtype=F64)
    samples = torch.rand(2000, 2, dtype=F64) ** 5 * 2 - 1  # crowded near -1
    layer.update_grid(samples)
    smooth_layer(layer, freq=1.0)
    lo, hi = layer.grid[:, 3], layer.grid[:, 8]
    x = lo + (hi - lo) * torch.rand(5000, 2, dtype=F64)
    assert (layer.refined(10)(x) - layer(x)).abs().max().item() <= 1e-6


def test_refine_with_samples_on_adapted_crowded_grid() -> None:
    """Passing the samples to refine mostly fixes the crowded-grid case above (measured 1.1e-5)."""
    layer = KANLinear(2, 2, grid_size=5, dtype=F64)
    samples = torch.rand(2000, 2, dtype=F64) ** 5 * 2 - 1
    layer.update_grid(samples)
    smooth_layer(layer, freq=1.0)
    assert (layer.refined(10, samples)(samples) - layer(samples)).abs().max().item() <= 1e-4


def test_refine_rejects_bad_grid_size() -> None:
    model = KAN([2, 3, 1], dtype=F64)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="grid_size"):
            model.refine(bad)


# -- grid update ---------------------------------------------------------------------------------------------


def test_update_grid_keeps_outputs_and_covers_the_samples() -> None:
    """Samples in [0, 3]^2 for a smooth KAN with knots on [-2, 5].

    Measured relative change of the outputs on the samples: 1.6e-4 (2.6e-5 with other seeds).
    """
    model = smooth_kan([2, 3, 1], grid_size=5, freq=0.5, grid_range=(-2.0, 5.0))
    x = torch.rand(500, 2, dtype=F64) * 3
    weights = [(layer.base_weight.clone(), layer.spline_scaler.clone()) for layer in model.layers]
    old_grids = [layer.grid.clone() for layer in model.layers]
    y0 = model(x).detach()
    model.update_grid(x)
    assert max_rel(model(x).detach(), y0) <= 1e-3
    # every layer's knots now span exactly the range of that layer's inputs, non-uniformly
    h = x
    for layer, (lo, hi), old in zip(model.layers, layer_ranges(model), old_grids):
        torch.testing.assert_close(lo, h.min(0).values, rtol=0, atol=1e-12)
        torch.testing.assert_close(hi, h.max(0).values, rtol=0, atol=1e-12)
        assert bool((layer.grid.diff(dim=1) > 0).all())
        assert not torch.allclose(layer.grid, old)
        h = layer(h).detach()
    assert 0.0 < model.layers[0].grid[0, 3].item() < 0.01 and 2.99 < model.layers[0].grid[0, 8].item() < 3.0
    # w_b and w_s are untouched
    for layer, (wb, ws) in zip(model.layers, weights):
        assert torch.equal(layer.base_weight, wb) and torch.equal(layer.spline_scaler, ws)


# -- dtypes and devices ----------------------------------------------------------------------------------


@parametrize_devices
@parametrize_dtypes
def test_models_follow_their_dtype_and_device(dtype: torch.dtype, device: str) -> None:
    on = {"dtype": dtype, "device": device}
    for model in (KAN([2, 3, 1], **on), MLP([2, 5, 1], **on)):
        x = torch.rand(20, 2, **on)
        y = model(x)
        assert y.dtype == dtype and y.device.type == device
        assert all(t.dtype == dtype and t.device.type == device for t in model.state_dict().values())
    kan = KAN([2, 3, 1], **on)
    x = torch.rand(50, 2, **on) * 2 - 1
    kan.update_grid(x)
    fine = kan.refine(7, x)
    assert all(t.dtype == dtype and t.device.type == device for t in fine.state_dict().values())
    assert fine(x).dtype == dtype and fine(x).device.type == device
    assert bool(torch.isfinite(fine(x)).all())


def test_to_dtype_moves_grids_and_agrees() -> None:
    model = KAN([2, 3, 1], dtype=torch.float32)
    model.update_grid(torch.rand(64, 2) * 2 - 1)
    x = torch.rand(100, 2) * 2 - 1
    y32 = model(x)
    model64 = model.to(torch.float64)
    assert model64.layers[0].grid.dtype == F64 and model64.layers[0].spline_weight.dtype == F64
    y64 = model64(x.double())
    assert y64.dtype == F64
    assert (y64 - y32.double()).abs().max().item() < 1e-5
    assert model64.refine(10)(x.double()).dtype == F64


# -- gradients reach every parameter -------------------------------------------------------------------------


def _assert_all_grads(model: torch.nn.Module) -> None:
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert bool(torch.isfinite(p.grad).all()), name
        assert p.grad.abs().max().item() > 0, name


def test_kan_parameters_get_gradients_from_second_derivatives_alone() -> None:
    model = KAN([2, 4, 3, 1], dtype=F64)
    x = torch.rand(64, 2, dtype=F64) * 2 - 1
    u = make_field(model, x, ("x", "y"))
    (u.d("xx") + u.d("yy") - torch.sin(x[:, 0])).pow(2).mean().backward()
    _assert_all_grads(model)


@pytest.mark.parametrize("make", [lambda: KAN([2, 4, 3, 1], dtype=F64), lambda: MLP([2, 8, 8, 1], dtype=F64)])
def test_every_parameter_gets_a_gradient_from_a_pinn_loss(make) -> None:
    """PDE residual (second derivatives) plus a boundary value term, as in every PINN loss.

    (The MLP's output bias cannot reach a loss made of derivatives alone, hence the value term.)
    """
    model = make()
    x = torch.rand(64, 2, dtype=F64) * 2 - 1
    xb = torch.cat([torch.rand(16, 1, dtype=F64), torch.ones(16, 1, dtype=F64)], dim=1)
    u, ub = make_field(model, x, ("x", "y")), make_field(model, xb, ("x", "y"))
    loss = (u.laplacian() - torch.sin(x[:, 0])).pow(2).mean() + ub.value.pow(2).mean()
    loss.backward()
    _assert_all_grads(model)


# -- rebuilding from config ---------------------------------------------------------------------------------


def test_rebuild_from_config_after_update_grid_and_refine() -> None:
    model = KAN([2, 4, 1], grid_size=4, dtype=F64)
    x = torch.rand(200, 2, dtype=F64) ** 2 * 2 - 1
    model.update_grid(x)
    model = model.refine(7, x)
    model.layers[1].update_grid(model.layers[0](x).detach())
    assert not torch.allclose(model.layers[0].grid.diff(dim=1), model.layers[0].grid.diff(dim=1).mean())
    rebuilt = KAN(**model.config, dtype=F64)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.grid_size == 7
    for a, b in zip(rebuilt.layers, model.layers):
        assert torch.equal(a.grid, b.grid)
    x_new = torch.rand(100, 2, dtype=F64) * 2 - 1
    assert torch.equal(rebuilt(x_new), model(x_new))
    mlp = MLP([2, 6, 1], activation="sin", dtype=F64)
    again = MLP(**mlp.config, dtype=F64)
    again.load_state_dict(mlp.state_dict())
    assert torch.equal(again(x_new), mlp(x_new))


def test_update_grid_only_outside_moves_just_the_layers_that_need_it() -> None:
    """``only_outside``: a layer whose inputs stay inside its grid keeps its knots and function exactly."""
    torch.manual_seed(0)
    model = KAN([2, 4, 1], grid_size=5, dtype=F64)
    with torch.no_grad():
        model.layers[0].base_weight.mul_(20.0)  # hidden values far outside [-1, 1]
    x = torch.rand(500, 2, dtype=F64) * 2 - 1
    grids = [layer.grid.clone() for layer in model.layers]
    assert not model.layers[0].outside_grid(x) and model.layers[1].outside_grid(model.layers[0](x))
    before = model.layers[0](x)
    model.update_grid(x, only_outside=True)
    assert torch.equal(model.layers[0].grid, grids[0]) and torch.equal(model.layers[0](x), before)
    hidden = model.layers[0](x)
    assert not torch.equal(model.layers[1].grid, grids[1])
    assert not model.layers[1].outside_grid(hidden)  # the knots now cover the hidden range


def _dense_layer_forward(layer: KANLinear, x: torch.Tensor) -> torch.Tensor:
    """The foundation's dense forward: the full basis tensor and one contraction."""
    base = F.linear(layer.base_activation(x), layer.base_weight)
    basis = bspline_basis(x, layer.grid, layer.spline_order).reshape(x.shape[0], -1)
    return base + F.linear(basis, layer.scaled_spline_weight.reshape(layer.out_features, -1))


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("grid_size", [3, 10, 50])
def test_kan_layer_local_forward_matches_dense(k: int, grid_size: int) -> None:
    torch.manual_seed(grid_size + k)
    layer = KANLinear(3, 4, grid_size=grid_size, spline_order=k, noise_scale=2.0, dtype=D)
    x = torch.rand(400, 3, dtype=D) * 3 - 1.5  # reaches beyond the knots
    torch.testing.assert_close(layer(x), _dense_layer_forward(layer, x), rtol=0, atol=1e-13)
    layer.update_grid(torch.rand(300, 3, dtype=D) ** 2)  # non-uniform knots
    torch.testing.assert_close(layer(x), _dense_layer_forward(layer, x), rtol=0, atol=1e-13)


def test_power_basis_cache_follows_grid_changes() -> None:
    torch.manual_seed(0)
    model = KAN([2, 3, 1], grid_size=4, noise_scale=1.0, dtype=D)
    x = torch.rand(100, 2, dtype=D) * 2 - 1
    before = model(x)
    model.update_grid(x**3)  # in-place knot change: the cached table must not be reused
    layer = model.layers[0]
    torch.testing.assert_close(layer(x), _dense_layer_forward(layer, x), rtol=0, atol=1e-13)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = KAN(**model.config, dtype=D)
    fresh(x)  # fills its cache with the uniform grid
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=1e-14)
    torch.testing.assert_close(before, model(x), rtol=0, atol=0.5)  # the refit keeps the function roughly


def test_kan_layer_gradcheck_wrt_parameters_and_inputs() -> None:
    torch.manual_seed(1)
    layer = KANLinear(2, 2, grid_size=4, noise_scale=1.0, dtype=D)
    x = (torch.rand(12, 2, dtype=D) * 2 - 1).requires_grad_(True)
    params = (layer.base_weight, layer.spline_weight, layer.spline_scaler)

    def f(xx, *ps):
        out = torch.func.functional_call(layer, dict(zip(("base_weight", "spline_weight", "spline_scaler"), ps)), (xx,))
        return out

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-8)
    assert torch.autograd.gradgradcheck(f, (x, *params), eps=1e-6, atol=1e-7)
