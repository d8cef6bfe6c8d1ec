"""B-spline basis, knot vectors and least-squares fits (kanpde.models.bspline); the local-support evaluation
against the dense Cox–de Boor basis (float64)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.nn import functional as F

from tests.helpers import F64, observed_orders, parametrize_dtypes
from kanpde.models.bspline import (
    adaptive_grid,
    bspline_basis,
    bspline_local,
    conversion_matrix,
    extend_grid,
    fit_coefficients,
    knot_interval,
    power_basis,
    subdivide_grid,
    uniform_grid,
)

D = F64
ORDERS = [1, 2, 3, 4]


def nonuniform_grid(n_in: int, grid_size: int, k: int, dtype: torch.dtype = F64) -> torch.Tensor:
    """Adaptive knots from samples crowded towards -1 (clearly non-uniform)."""
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(500, n_in, generator=gen, dtype=dtype) ** 3 * 2 - 1
    return adaptive_grid(x, grid_size, k, grid_eps=0.02)


def away_from_knots(grid: torch.Tensor, k: int, per_interval: int = 3) -> torch.Tensor:
    """Points strictly inside every interior interval of each input's grid: ``(G * per_interval, in)``."""
    g = grid.shape[1] - 2 * k - 1
    interior = grid[:, k : k + g + 1]  # (in, G+1)
    fracs = torch.linspace(0.17, 0.83, per_interval, dtype=grid.dtype)
    left, width = interior[:, :-1], interior[:, 1:] - interior[:, :-1]  # (in, G)
    pts = left[:, :, None] + width[:, :, None] * fracs  # (in, G, per)
    return pts.reshape(grid.shape[0], -1).T.contiguous()


@pytest.mark.parametrize("k", ORDERS)
@pytest.mark.parametrize("kind", ["uniform", "nonuniform"])
def test_basis_gradcheck_wrt_x(k: int, kind: str) -> None:
    grid = uniform_grid(2, 4, k, -1.0, 1.0, dtype=F64) if kind == "uniform" else nonuniform_grid(2, 4, k)
    x = away_from_knots(grid, k).requires_grad_(True)
    assert gradcheck(lambda x: bspline_basis(x, grid, k), (x,), eps=1e-6, atol=1e-7)
    if k >= 2:  # PDE residuals need second derivatives of the basis
        assert gradgradcheck(lambda x: bspline_basis(x, grid, k), (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("k", ORDERS)
@pytest.mark.parametrize("kind", ["uniform", "nonuniform"])
def test_basis_partition_of_unity_inside_grid(k: int, kind: str) -> None:
    g = 6
    grid = uniform_grid(3, g, k, -1.0, 2.0, dtype=F64) if kind == "uniform" else nonuniform_grid(3, g, k)
    lo, hi = grid[:, k], grid[:, k + g]
    frac = torch.linspace(0.0, 1.0, 1001, dtype=F64)[:, None]
    x = lo + (hi - lo) * frac  # both end points included
    basis = bspline_basis(x, grid, k)
    assert basis.shape == (1001, 3, g + k)
    assert bool((basis >= 0).all())
    assert (basis.sum(-1) - 1).abs().max().item() <= 1e-13
    # local support: at most k + 1 non-zero bases at any point
    assert int((basis > 0).sum(-1).max()) <= k + 1


@pytest.mark.parametrize("k", [1, 3])
def test_basis_vanishes_outside_extended_knots(k: int) -> None:
    grid = uniform_grid(1, 5, k, -1.0, 1.0, dtype=F64)
    x = torch.tensor([[grid[0, 0].item() - 1e-3], [grid[0, -1].item() + 1e-3], [-50.0], [50.0]], dtype=F64)
    assert bspline_basis(x, grid, k).abs().max().item() == 0.0


def test_uniform_and_extended_knots() -> None:
    grid = uniform_grid(2, 4, 3, torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 4.0]), dtype=F64)
    assert grid.shape == (2, 4 + 2 * 3 + 1)
    expected0 = torch.arange(-3, 8, dtype=F64) * 0.5 - 1.0  # h = 0.5, 3 extension knots each side
    expected1 = torch.arange(-3, 8, dtype=F64) * 1.0
    torch.testing.assert_close(grid[0], expected0, rtol=0, atol=1e-15)
    torch.testing.assert_close(grid[1], expected1, rtol=0, atol=1e-15)
    # extend_grid continues the mean interval width on both sides
    pts = torch.tensor([[0.0, 0.1, 0.5, 2.0]], dtype=F64)
    ext = extend_grid(pts, 2)
    torch.testing.assert_close(ext, torch.tensor([[-4 / 3, -2 / 3, 0.0, 0.1, 0.5, 2.0, 8 / 3, 10 / 3]], dtype=F64))


def _fit_max_error(g: int, k: int = 3) -> float:
    f = lambda x: torch.sin(3 * x) + 0.5 * torch.exp(x)  # noqa: E731
    grid = uniform_grid(1, g, k, -1.0, 1.0, dtype=F64)
    x_fit = torch.linspace(-1, 1, 2001, dtype=F64)[:, None]
    coef = fit_coefficients(x_fit, f(x_fit)[:, :, None], grid, k)  # (1, 1, G+k)
    x_test = torch.linspace(-1, 1, 3001, dtype=F64)[:, None]  # end points included
    pred = (bspline_basis(x_test, grid, k) * coef[0]).sum(-1)
    return (pred - f(x_test)).abs().max().item()


def test_cubic_least_squares_converges_at_order_four() -> None:
    errors = [_fit_max_error(g) for g in (4, 8, 16, 32)]
    orders = observed_orders(errors)
    # measured: errors 1.5e-2 .. 2.5e-6, orders ~ 4.3, 4.2, 4.0
    assert errors[-1] < 1e-5
    assert all(p > 3.5 for p in orders), orders


@pytest.mark.parametrize("kind", ["uniform", "nonuniform"])
def test_fit_reproduces_a_spline(kind: str) -> None:
    """A function that already lies in the spline space is fitted back up to the tiny ridge term.

    The fit points follow the knot density (as the samples do in ``update_grid``). Measured: 1e-7 on
    uniform knots, 3e-6 on these crowded knots, where the first basis function is ~1e-5 inside the
    range and the ridge (``1e-10 * n``) shrinks its poorly determined coefficient.
    """
    k, g = 3, 6
    grid = uniform_grid(2, g, k, -1.0, 1.0, dtype=F64) if kind == "uniform" else nonuniform_grid(2, g, k)
    coef = torch.randn(3, 2, g + k, dtype=F64)  # (out, in, C)
    lo, hi = grid[:, k], grid[:, k + g]

    def draw(n: int) -> torch.Tensor:
        u = torch.rand(n, 2, dtype=F64)
        return lo + (hi - lo) * (u if kind == "uniform" else u**3)

    x = draw(800)
    y = torch.einsum("nic,oic->nio", bspline_basis(x, grid, k), coef)  # (n, in, out)
    fitted = fit_coefficients(x, y, grid, k)
    assert fitted.shape == (3, 2, g + k)
    basis = bspline_basis(draw(500), grid, k)
    err = (torch.einsum("nic,oic->nio", basis, fitted) - torch.einsum("nic,oic->nio", basis, coef)).abs().max()
    assert err.item() < (1e-6 if kind == "uniform" else 1e-5)


@pytest.mark.parametrize("old,new", [(3, 6), (5, 10), (5, 15), (4, 12), (7, 21)])
@parametrize_dtypes
def test_subdivide_grid_keeps_old_knots_for_multiples(old: int, new: int, dtype: torch.dtype) -> None:
    k = 3
    grid = nonuniform_grid(2, old, k, dtype=dtype)
    fine = subdivide_grid(grid, k, new)
    assert fine.shape == (2, new + 2 * k + 1)
    assert fine.dtype == dtype
    kept = fine[:, k : k + new + 1 : new // old]
    tol = 4 * torch.finfo(dtype).eps * grid.abs().max().item()
    assert (kept - grid[:, k : k + old + 1]).abs().max().item() <= tol
    assert bool((fine.diff(dim=1) > 0).all())


def test_subdivide_grid_non_multiple() -> None:
    k = 3
    grid = nonuniform_grid(2, 5, k)
    fine = subdivide_grid(grid, k, 7)
    assert fine.shape == (2, 7 + 2 * k + 1)
    # same range, strictly increasing
    torch.testing.assert_close(fine[:, k], grid[:, k], rtol=0, atol=1e-15)
    torch.testing.assert_close(fine[:, k + 7], grid[:, k + 5], rtol=0, atol=1e-15)
    assert bool((fine.diff(dim=1) > 0).all())
    # a uniform grid subdivides into the uniform grid of the new size
    uni = uniform_grid(1, 5, k, -1.0, 1.0, dtype=F64)
    torch.testing.assert_close(subdivide_grid(uni, k, 7), uniform_grid(1, 7, k, -1.0, 1.0, dtype=F64), rtol=0, atol=1e-15)


def test_adaptive_grid_strictly_increasing_with_repeated_samples() -> None:
    k, g = 3, 8
    x = torch.tensor([0.0] * 40 + [1.0] * 40 + [2.0] * 20, dtype=F64)[:, None]
    const = torch.full((100, 1), 3.5, dtype=F64)
    grid = adaptive_grid(torch.cat([x, const], dim=1), g, k)
    assert grid.shape == (2, g + 2 * k + 1)
    assert bool((grid.diff(dim=1) > 0).all())
    # the interior range is the sample range
    assert grid[0, k].item() == 0.0 and grid[0, k + g].item() == 2.0
    assert grid[1, k].item() <= 3.5 < grid[1, k + g].item()
    # the bases built on it still form a partition of unity on the samples
    basis = bspline_basis(torch.cat([x, const], dim=1), grid, k)
    assert (basis.sum(-1) - 1).abs().max().item() < 1e-12


def test_adaptive_grid_follows_quantiles_and_margin() -> None:
    k, g = 3, 4
    x = torch.linspace(0, 1, 1001, dtype=F64)[:, None] ** 2  # crowded near 0
    grid = adaptive_grid(x, g, k, grid_eps=0.02)
    interior = grid[0, k : k + g + 1]
    quantiles = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=F64) ** 2
    expected = 0.02 * torch.linspace(0, 1, g + 1, dtype=F64) + 0.98 * quantiles
    torch.testing.assert_close(interior, expected, rtol=0, atol=1e-12)
    wide = adaptive_grid(x, g, k, grid_eps=0.02, margin=0.1)
    assert wide[0, k].item() == pytest.approx(-0.1, abs=1e-12)
    assert wide[0, k + g].item() == pytest.approx(1.1, abs=1e-12)


def test_adaptive_grid_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n >= 2"):
        adaptive_grid(torch.zeros(1, 2), 5, 3)
    with pytest.raises(ValueError, match="grid_eps"):
        adaptive_grid(torch.rand(10, 2), 5, 3, grid_eps=0.0)


def test_float32_stays_float32() -> None:
    f32 = torch.float32
    grid = uniform_grid(2, 5, 3, -1.0, 1.0, dtype=f32)
    x = torch.rand(50, 2, dtype=f32) * 2 - 1
    basis = bspline_basis(x, grid, 3)
    adapted = adaptive_grid(x, 5, 3)
    fine = subdivide_grid(adapted, 3, 10)
    coef = fit_coefficients(x, torch.sin(x)[:, :, None], adapted, 3)
    for t in (grid, basis, adapted, fine, coef, extend_grid(grid[:, 3:9], 3)):
        assert t.dtype == f32
    assert (basis.sum(-1) - 1).abs().max().item() < 1e-5
    assert math.isfinite(coef.abs().max().item())


# -- local-support evaluation against the dense basis -------------------------------------------------------


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


def test_knot_interval_under_vmap_matches_and_does_not_warn() -> None:
    """Inside torch.func transforms (the LM Jacobians) the interval index is the same as outside, NaN and
    points outside the knots included, and torch's non-contiguous searchsorted warning never fires."""
    from torch.func import vmap

    from kanpde.models.bspline import knot_interval

    grid = torch.tensor([[-1.0, -0.5, 0.0, 0.25, 1.0], [-2.0, -1.0, 0.0, 1.0, 2.0]], dtype=torch.float64)
    x = torch.tensor([[-1.5, -1.0, -0.7, 0.0, 0.3, 0.99, 1.0, 3.0, float("nan")]] * 2, dtype=torch.float64)
    plain = knot_interval(x, grid)
    warn_always = torch.is_warn_always_enabled()
    torch.set_warn_always(True)  # torch's warn-once message every time, whatever ran before
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            batched = vmap(lambda col: knot_interval((col.unsqueeze(0) * 1.0).T * 1.0, grid).squeeze(-1))(x.T.contiguous())
    finally:
        torch.set_warn_always(warn_always)
    assert torch.equal(batched.T, plain)
