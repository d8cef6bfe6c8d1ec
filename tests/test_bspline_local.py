"""Local-support B-spline evaluation against the dense Cox–de Boor basis (float64)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from kanpde.models import KAN, KANLinear
from kanpde.models.bspline import (
    adaptive_grid,
    bspline_basis,
    bspline_local,
    conversion_matrix,
    knot_interval,
    power_basis,
    uniform_grid,
)

D = torch.float64


def _grids(n_in: int, grid_size: int, k: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(grid_size * 10 + k)
    samples = (torch.rand(400, n_in, generator=gen, dtype=D) * 2 - 1) ** 3  # clustered near 0
    return {
        "uniform": uniform_grid(n_in, grid_size, k, -1.0, 1.0, dtype=D),
        "adaptive": adaptive_grid(samples, grid_size, k),
    }


def _points(grid: torch.Tensor, n: int = 300) -> torch.Tensor:
    """Random points over and beyond the extended knots, plus every knot and the range ends exactly."""
    gen = torch.Generator().manual_seed(n)
    lo, hi = grid[:, :1].T, grid[:, -1:].T  # (1, in)
    span = hi - lo
    x = lo - 0.1 * span + 1.2 * span * torch.rand(n, grid.shape[0], generator=gen, dtype=D)
    return torch.cat([x, grid.T, grid.T.roll(1, dims=0)], dim=0)  # knots as points, in mixed rows


def _gather_dense(dense: torch.Tensor, start: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The dense bases at the local window ``start + r`` (padded numbering) and which entries exist."""
    padded = F.pad(dense, (k, k))  # (n, in, G+3k)
    idx = start.unsqueeze(-1) + torch.arange(k + 1)  # (n, in, k+1)
    valid = (idx >= k) & (idx < dense.shape[-1] + k)
    return padded.gather(2, idx), valid


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("grid_size", [1, 3, 8, 20])
@pytest.mark.parametrize("kind", ["uniform", "adaptive"])
def test_local_values_match_dense_basis(k: int, grid_size: int, kind: str) -> None:
    grid = _grids(3, grid_size, k)[kind]
    x = _points(grid)
    dense = bspline_basis(x, grid, k)  # (n, in, G+k)
    (values,), start = bspline_local(x, grid, k, 0)
    window, valid = _gather_dense(dense, start, k)
    assert (window - values)[valid].abs().max() <= 1e-14
    # the window holds every non-zero basis function: nothing is lost outside it
    torch.testing.assert_close((window * valid).sum(-1), dense.sum(-1), rtol=0, atol=1e-14)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("kind", ["uniform", "adaptive"])
def test_local_derivatives_match_autograd_of_dense_spline(k: int, kind: str) -> None:
    grid_size = 7
    grid = _grids(2, grid_size, k)[kind]
    gen = torch.Generator().manual_seed(k)
    coef = torch.randn(2, grid_size + k, generator=gen, dtype=D)  # (in, G+k)
    lo, hi = grid[:, 0], grid[:, -1]
    x = (lo + (hi - lo) * torch.rand(500, 2, generator=gen, dtype=D)).requires_grad_(True)
    spline = (bspline_basis(x, grid, k) * coef).sum(-1)  # (n, in)
    d1 = torch.autograd.grad(spline.sum(), x, create_graph=True)[0]
    d2 = torch.autograd.grad(d1.sum(), x)[0] if d1.requires_grad else torch.zeros_like(d1)
    values, start = bspline_local(x.detach(), grid, k, 3)
    padded = F.pad(coef, (k, k)).expand(x.shape[0], -1, -1)  # (n, in, G+3k)
    local_coef = padded.gather(2, start.unsqueeze(-1) + torch.arange(k + 1))  # (n, in, k+1)
    for ref, v in ((spline, values[0]), (d1, values[1]), (d2, values[2])):
        got = (v * local_coef).sum(-1)
        assert (got - ref).abs().max() <= 1e-12 * ref.abs().max().clamp(min=1.0)
    if k < 3:  # derivatives above the degree vanish
        assert values[3].abs().max() == 0


def test_knot_interval_conventions() -> None:
    grid = uniform_grid(1, 4, 3, -1.0, 1.0, dtype=D)  # knots -2.5 .. 2.5 step 0.5
    x = torch.tensor([[-3.0, -2.5, -1.0, -0.75, 1.0, 2.49, 2.5, 7.0]], dtype=D)
    mu = knot_interval(x, grid)[0].tolist()  # points-last: (in, n)
    last = grid.shape[1] - 1  # one past the last interval: "outside"
    assert mu == [last, 0, 3, 3, 7, 9, last, last]


@pytest.mark.parametrize("k", [2, 3])
def test_power_basis_reproduces_local_bases(k: int) -> None:
    grid = _grids(2, 6, k)["adaptive"]
    x = _points(grid, 200)
    values, mu = bspline_local(x, grid, k, 0)
    inside = knot_interval(x.T, grid).T <= grid.shape[1] - 2  # (n, in); outside points have zero bases
    basis = power_basis(grid, k)  # (in, G+2k, k+1, k+1)
    u = x - grid.gather(1, mu.T).T  # (n, in)
    cols = torch.arange(2)
    m = basis[cols, mu]  # (n, in, k+1 powers, k+1 bases)
    powers = torch.stack([u**d for d in range(k + 1)], dim=-1)  # (n, in, k+1)
    got = (powers.unsqueeze(-1) * m).sum(-2)
    assert (got - values[0])[inside].abs().max() < 1e-13


@pytest.mark.parametrize("k", [1, 3])
def test_conversion_matrix_gives_the_spline_per_interval(k: int) -> None:
    """The coefficient -> piecewise-polynomial map: its polynomials, evaluated in local coordinates on
    each point's interval, are the spline; the extra last interval (points outside the knots) is zero."""
    grid = _grids(2, 6, k)["adaptive"]
    n_in, n_knots = grid.shape
    x = _points(grid, 200)  # (n, in), over and beyond the knots
    coef = torch.randn(n_in, n_knots - k - 1, generator=torch.Generator().manual_seed(k), dtype=D)  # (in, G+k)
    conversion = conversion_matrix(grid, k)
    assert conversion.shape == (n_in, (k + 1) * n_knots, n_knots - k - 1)
    poly = torch.bmm(conversion, coef.unsqueeze(-1)).view(n_in, k + 1, n_knots)  # (in, power, interval)
    assert not poly[:, :, -1].any()
    mu = knot_interval(x.T, grid)  # (in, n)
    u = x.T - F.pad(grid, (0, 1)).gather(1, mu)
    got = sum(poly[:, d].gather(1, mu) * u**d for d in range(k + 1))
    want = (bspline_basis(x, grid, k) * coef).sum(-1).T  # (in, n)
    assert (got - want).abs().max() < 1e-12

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


def test_partition_of_unity_and_factorials() -> None:
    grid = uniform_grid(1, 5, 3, 0.0, 1.0, dtype=D)
    x = torch.linspace(0.0, 0.999, 57, dtype=D)[:, None]
    values, _ = bspline_local(x, grid, 3, 2)
    torch.testing.assert_close(values[0].sum(-1), torch.ones(57, 1, dtype=D), rtol=0, atol=1e-15)
    torch.testing.assert_close(values[1].sum(-1), torch.zeros(57, 1, dtype=D), rtol=0, atol=1e-12)
    basis = power_basis(grid, 3)  # (1, G+2k, 4, 4)
    # uniform cubic B-splines: the u^3 coefficients of the four pieces are (-1, 3, -3, 1) / (3! h^3)
    h = 0.2
    expected = torch.tensor([-1.0, 3.0, -3.0, 1.0], dtype=D) / (math.factorial(3) * h**3)
    for mu in range(3, 3 + 5):  # the interior intervals
        torch.testing.assert_close(basis[0, mu, 3], expected, rtol=1e-12, atol=0)
