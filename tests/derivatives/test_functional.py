"""The functional derivative API (kanpde.derivatives.functional: kanpde.value, grad, laplacian, partials)
against plain nested torch.autograd.grad, written out here as the oracle.

float64: values, gradients, Laplacians and named partials (orders 1 to 3) of KANs, MLPs and a plain
nn.Sequential with 1, 2 and 3 inputs and one or two outputs agree to 1e-10 relative, by both engines, and
so do the gradients of a loss made of them with respect to the parameters; float32 to single-precision
rounding; then the device, and the errors for bad input (raised before the model runs).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

import kanpde
from kanpde import KAN, MLP, HardDirichlet
from kanpde.models import tensor_path
from kanpde.problems.poisson2d import Poisson2D
from tests.helpers import DEVICES, F64, FunctionModule, parametrize_devices, perturb

TOL64 = 1e-10


def rel(a: Tensor, b: Tensor) -> float:
    return float(((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).detach())


@pytest.fixture
def kernels() -> None:
    """Asked for by the tests that run the forward engine's compiled CPU kernels (see ``_tensor_path``)."""


@pytest.fixture(autouse=True)
def _tensor_path(request: pytest.FixtureRequest) -> Iterator[None]:
    """The forward engine's plain-torch path, except in tests that ask for ``kernels``: each configuration of
    the compiled CPU kernels costs seconds to build (tests/models/test_kernels.py holds them to the tensor path)."""
    if "kernels" in request.fixturenames:
        yield
        return
    with tensor_path():
        yield


def oracle(model: nn.Module, x: Tensor, index: tuple[int, ...]) -> Tensor:
    """``d^|index| u / dx_index`` of every output, ``(n, n_out)``, by nested torch.autograd.grad."""
    leaf = x.detach().requires_grad_(True)
    out = model(leaf)
    out = out.unsqueeze(1) if out.ndim == 1 else out
    columns = []
    for o in range(out.shape[1]):
        f = out[:, o]
        for i in index:
            (g,) = torch.autograd.grad(f.sum(), leaf, create_graph=True)
            f = g[:, i]
        columns.append(f)
    return torch.stack(columns, dim=1)


def make_model(kind: str, dim: int, n_out: int, dtype: torch.dtype = F64, device: str = "cpu") -> nn.Module:
    torch.manual_seed(dim + 10 * n_out)
    if kind == "kan":
        return perturb(KAN([dim, 4, n_out], grid_size=4, dtype=dtype, device=device), scale=0.2)
    if kind == "mlp":
        return MLP([dim, 8, 8, n_out], dtype=dtype, device=device)
    return nn.Sequential(nn.Linear(dim, 8), nn.Tanh(), nn.Linear(8, 8), nn.SiLU(), nn.Linear(8, n_out)).to(dtype=dtype, device=device)


def points(dim: int, n: int = 40, dtype: torch.dtype = F64, device: str = "cpu") -> Tensor:
    gen = torch.Generator().manual_seed(dim)
    return (torch.rand(n, dim, generator=gen, dtype=F64) * 1.8 - 0.9).to(dtype=dtype, device=device)


CASES = [(kind, dim, n_out) for kind in ("kan", "mlp", "sequential") for dim in (1, 2, 3) for n_out in (1, 2)]
ENGINES = ["auto", "autograd"]


@pytest.mark.parametrize("kind,dim,n_out", CASES)
@pytest.mark.parametrize("engine", ENGINES)
def test_every_derivative_matches_autograd_in_float64(kind: str, dim: int, n_out: int, engine: str) -> None:
    model, x = make_model(kind, dim, n_out), points(dim)
    coords = kanpde.derivatives.functional.default_coords(dim)
    assert torch.equal(kanpde.value(model, x), model(x))

    g = kanpde.grad(model, x, engine=engine)
    assert g.shape == (x.shape[0], n_out, dim)
    for i in range(dim):
        assert rel(g[:, :, i], oracle(model, x, (i,))) < TOL64

    lap = kanpde.laplacian(model, x, engine=engine)
    assert lap.shape == (x.shape[0], n_out)
    assert rel(lap, sum(oracle(model, x, (i, i)) for i in range(dim))) < TOL64

    pairs = list(itertools.combinations_with_replacement(range(dim), 2))
    specs = ["".join(coords[i] for i in pair) for pair in pairs] + [coords[0] * 3]  # an order-3 one too
    got = kanpde.partials(model, x, specs, engine=engine)
    assert list(got) == specs
    for spec, index in zip(specs, [*pairs, (0, 0, 0)]):
        assert got[spec].shape == (x.shape[0], n_out)
        assert rel(got[spec], oracle(model, x, index)) < TOL64, spec


def test_auto_uses_the_forward_engine_for_kanpde_models_and_autograd_otherwise(monkeypatch) -> None:
    """The forward engine builds no autograd graph over the points: counted through torch.autograd.grad."""
    calls = []
    real = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = points(2)
    for kind in ("kan", "mlp"):
        kanpde.laplacian(make_model(kind, 2, 1), x)
        kanpde.partials(make_model(kind, 2, 1), x, ["x", "xy"])
    assert calls == []
    kanpde.laplacian(make_model("sequential", 2, 1), x)
    assert len(calls) == 3  # u_x, u_y (one grad), then u_xx and u_yy (one each)


def test_partials_names_and_coords() -> None:
    """Mixed partials are symmetric; tuple specs and multi-letter names; the Laplacian over some coordinates."""
    model, x = make_model("kan", 3, 1), points(3)
    coords = ("x1", "x2", "t")
    got = kanpde.partials(model, x, ["x1x2", "x2x1", ("x1", "x2"), "t"], coords=coords)
    assert torch.equal(got["x1x2"], got["x2x1"]) and torch.equal(got["x1x2"], got[("x1", "x2")])
    assert rel(got["t"], oracle(model, x, (2,))) < TOL64
    lap = kanpde.laplacian(model, x, over=("x1", "x2"), coords=coords)
    assert rel(lap, oracle(model, x, (0, 0)) + oracle(model, x, (1, 1))) < TOL64
    one = kanpde.laplacian(model, x, over="t", coords=coords)
    assert rel(one, oracle(model, x, (2, 2))) < TOL64


@pytest.mark.parametrize("kind", ["kan", "mlp", "sequential"])
@pytest.mark.parametrize("engine", ENGINES)
def test_parameter_gradients_match_autograd(kind: str, engine: str) -> None:
    """A PINN-style loss of Laplacian, first and mixed partials and values back-propagates to the
    parameters exactly as the same loss by plain autograd."""
    model, x = make_model(kind, 2, 2), points(2)
    d = kanpde.partials(model, x, ["x", "xy"], engine=engine)
    loss = ((kanpde.laplacian(model, x, engine=engine) - 1.0) ** 2).mean() + (d["x"] * d["xy"]).mean()
    loss = loss + (kanpde.value(model, x) ** 2).mean()
    got = torch.autograd.grad(loss, list(model.parameters()))
    lap = oracle(model, x, (0, 0)) + oracle(model, x, (1, 1))
    ref = ((lap - 1.0) ** 2).mean() + (oracle(model, x, (0,)) * oracle(model, x, (0, 1))).mean() + (model(x) ** 2).mean()
    expected = torch.autograd.grad(ref, list(model.parameters()))
    assert all(g is not None for g in got)
    for g, e in zip(got, expected):
        assert rel(g, e) < TOL64


def test_loss_backward_fills_every_parameter_gradient() -> None:
    model, x = make_model("kan", 2, 1), points(2)
    (kanpde.laplacian(model, x) ** 2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_the_compiled_kernels_agree_too(kernels: None) -> None:
    """The CPU kernels (where numba is present) on a PINN loss: Laplacian, partials and parameter gradients."""
    model, x = make_model("kan", 2, 1), points(2)
    lap, d = kanpde.laplacian(model, x), kanpde.partials(model, x, ["x", "xy"])
    lap_ref = oracle(model, x, (0, 0)) + oracle(model, x, (1, 1))
    assert rel(lap, lap_ref) < TOL64 and rel(d["xy"], oracle(model, x, (0, 1))) < TOL64
    params = list(model.parameters())
    got = torch.autograd.grad((lap**2).mean() + (d["x"] ** 2).mean(), params)
    expected = torch.autograd.grad((lap_ref**2).mean() + (oracle(model, x, (0,)) ** 2).mean(), params)
    assert all(rel(g, e) < TOL64 for g, e in zip(got, expected))


def test_points_are_data_and_stay_untouched() -> None:
    x = points(2).requires_grad_(True)
    out = kanpde.laplacian(make_model("kan", 2, 1), x)
    assert out.requires_grad  # through the parameters
    (g,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
    assert g is None


@pytest.mark.parametrize("kind", ["kan", "mlp", "sequential"])
def test_float32_matches_float64_to_single_precision(kind: str) -> None:
    m64, x64 = make_model(kind, 2, 1), points(2)
    m32, x32 = make_model(kind, 2, 1, dtype=torch.float32), x64.float()
    m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
    lap = kanpde.laplacian(m32, x32)
    assert lap.dtype == torch.float32
    assert rel(lap.double(), kanpde.laplacian(m64, x64)) < 1e-4
    assert rel(kanpde.grad(m32, x32).double(), kanpde.grad(m64, x64)) < 1e-5


@parametrize_devices
def test_dtype_and_device_follow_the_points(device: str) -> None:
    model, x = make_model("kan", 2, 2, device=device), points(2, device=device)
    for out in (kanpde.value(model, x), kanpde.grad(model, x), kanpde.laplacian(model, x), kanpde.partials(model, x, ["xy"])["xy"]):
        assert out.dtype == F64 and out.device.type == device


@pytest.mark.skipif("cuda" not in DEVICES, reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    model, x = make_model("kan", 2, 1), points(2)
    cpu = kanpde.partials(model, x, ["xx", "xy"])
    gpu = kanpde.partials(model.to("cuda"), x.to("cuda"), ["xx", "xy"])
    assert all(rel(gpu[k].cpu(), cpu[k]) < TOL64 for k in cpu)


@pytest.mark.slow
def test_a_wrapped_model_runs_by_its_forward_jet() -> None:
    """HardDirichlet has a forward_jet of its own: auto picks the forward engine and agrees with autograd."""
    model, x = HardDirichlet(make_model("kan", 2, 1), Poisson2D()), points(2)
    assert rel(kanpde.laplacian(model, x), oracle(model, x, (0, 0)) + oracle(model, x, (1, 1))) < TOL64


# -- bad input: one ValueError, before the model runs ----------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x: kanpde.laplacian(m, x[:, 0]), r"points must be a 2-D floating-point tensor \(n, dim\), got \(40,\)"),
        (lambda m, x: kanpde.grad(m, x.long()), "floating-point"),
        (lambda m, x: kanpde.value(m, x.tolist()), "got list"),
        (lambda m, x: kanpde.partials(m, x, ["xz"]), r"cannot read derivative 'xz' with coordinates \('x', 'y'\)"),
        (lambda m, x: kanpde.partials(m, x, [""]), "cannot read derivative ''"),
        (lambda m, x: kanpde.partials(m, x, "xx"), "specs must be a non-empty list"),
        (lambda m, x: kanpde.partials(m, x, []), "specs must be a non-empty list"),
        (lambda m, x: kanpde.partials(m, x, ["xx"], coords=("x",)), "coords must name the 2 columns"),
        (lambda m, x: kanpde.partials(m, x, ["xx"], coords=("x", "x")), "distinct names"),
        (lambda m, x: kanpde.laplacian(m, x, over=("x", "q")), "'over' must name distinct coordinates"),
        (lambda m, x: kanpde.laplacian(m, x, over=()), "names no coordinate"),
        (lambda m, x: kanpde.laplacian(m, x, engine="fast"), "unknown derivative engine 'fast'"),
        (lambda m, x: kanpde.grad(m, x, engine="forward"), "FunctionModule has no forward derivative engine"),
    ],
)
def test_bad_input_is_one_clear_error_before_the_model_runs(call, message: str) -> None:
    model = FunctionModule(lambda x: x.sum(dim=1))
    with pytest.raises(ValueError, match=message):
        call(model, points(2))
    assert model.calls == 0


@pytest.mark.parametrize("kind", ["kan", "mlp", "sequential"])
def test_points_with_the_wrong_number_of_columns(kind: str) -> None:
    name = {"kan": "KAN", "mlp": "MLP", "sequential": "Sequential"}[kind]
    with pytest.raises(ValueError, match=f"points have 3 columns but {name} takes 2 inputs"):
        kanpde.laplacian(make_model(kind, 2, 1), points(3))


def test_points_of_another_dtype_than_the_model() -> None:
    with pytest.raises(ValueError, match="points are torch.float32 on cpu but the model's parameters are torch.float64"):
        kanpde.grad(make_model("kan", 2, 1), points(2, dtype=torch.float32))
