"""The derivative accessor (kanpde.derivatives.field): values and derivatives against closed forms, caching, errors."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from tests.helpers import F64, FunctionModule
from kanpde.derivatives.field import AutogradField, Field, make_field

A, B = 1.3, -0.7
TOL = 1e-12


def u2(x: Tensor) -> Tensor:
    """sin(a x) exp(b y) + x^3 y."""
    X, Y = x[:, 0], x[:, 1]
    return torch.sin(A * X) * torch.exp(B * Y) + X**3 * Y


def u2_derivatives(x: Tensor) -> dict[str, Tensor]:
    X, Y = x[:, 0], x[:, 1]
    s, c, e = torch.sin(A * X), torch.cos(A * X), torch.exp(B * Y)
    return {
        "x": A * c * e + 3 * X**2 * Y,
        "y": B * s * e + X**3,
        "xx": -(A**2) * s * e + 6 * X * Y,
        "yy": B**2 * s * e,
        "xy": A * B * c * e + 3 * X**2,
        "xxy": -(A**2) * B * s * e + 6 * X,
    }


@pytest.fixture
def pts2() -> Tensor:
    return torch.rand(50, 2, dtype=F64) * 4 - 2


def test_2d_values_and_derivatives(pts2: Tensor) -> None:
    model = FunctionModule(u2)
    u = AutogradField(model, pts2, ("x", "y"))
    exact = u2_derivatives(pts2)
    assert u.value.shape == (50,)
    torch.testing.assert_close(u.value, u2(pts2), rtol=0, atol=TOL)
    for spec in ("x", "y", "xx", "yy", "xy", "xxy"):
        torch.testing.assert_close(u.d(spec), exact[spec], rtol=0, atol=TOL, msg=spec)
    torch.testing.assert_close(u.d("yx"), exact["xy"], rtol=0, atol=TOL)
    torch.testing.assert_close(u.d("yxx"), exact["xxy"], rtol=0, atol=TOL)
    torch.testing.assert_close(u.grad(), torch.stack([exact["x"], exact["y"]], 1), rtol=0, atol=TOL)
    torch.testing.assert_close(u.laplacian(), exact["xx"] + exact["yy"], rtol=0, atol=TOL)
    torch.testing.assert_close(u.laplacian(["x"]), exact["xx"], rtol=0, atol=TOL)
    assert model.calls == 1  # one forward pass per field, derivatives by autograd on it


def u3(x: Tensor) -> Tensor:
    """sin(x1) x2^2 exp(x3) + x1 x2 x3."""
    return torch.sin(x[:, 0]) * x[:, 1] ** 2 * torch.exp(x[:, 2]) + x[:, 0] * x[:, 1] * x[:, 2]


def test_3d_with_multi_character_coordinate_names() -> None:
    x = torch.rand(40, 3, dtype=F64) * 2 - 1
    x1, x2, x3 = x.unbind(1)
    s, c, e = torch.sin(x1), torch.cos(x1), torch.exp(x3)
    u = make_field(FunctionModule(u3), x, ("x1", "x2", "x3"))
    expected = {
        "x1": c * x2**2 * e + x2 * x3,
        "x1x2": 2 * x2 * c * e + x3,
        "x2x1": 2 * x2 * c * e + x3,
        "x2x3": 2 * x2 * s * e + x1,
        "x3x3": s * x2**2 * e,
        "x1x1": -s * x2**2 * e,
        "x2x2": 2 * s * e,
        "x1x2x3": 2 * x2 * c * e + 1,
    }
    for spec, value in expected.items():
        torch.testing.assert_close(u.d(spec), value, rtol=0, atol=TOL, msg=spec)
    torch.testing.assert_close(u.d(("x1", "x1")), expected["x1x1"], rtol=0, atol=TOL)
    torch.testing.assert_close(u.laplacian(), 2 * s * e, rtol=0, atol=TOL)
    assert u.grad().shape == (40, 3)


def test_laplacian_excludes_time() -> None:
    """u = sin(2x) t^3: the default laplacian is u_xx only when a coordinate is called "t"."""
    f = lambda x: torch.sin(2 * x[:, 0]) * x[:, 1] ** 3  # noqa: E731
    x = torch.rand(30, 2, dtype=F64) + 0.5
    X, T = x.unbind(1)
    u = make_field(FunctionModule(f), x, ("x", "t"))
    assert u.time_coord == "t"
    torch.testing.assert_close(u.laplacian(), -4 * torch.sin(2 * X) * T**3, rtol=0, atol=TOL)
    torch.testing.assert_close(u.d("t"), 3 * torch.sin(2 * X) * T**2, rtol=0, atol=TOL)
    torch.testing.assert_close(
        u.laplacian(("x", "t")), -4 * torch.sin(2 * X) * T**3 + 6 * torch.sin(2 * X) * T, rtol=0, atol=TOL
    )
    # without a time coordinate every coordinate counts
    v = make_field(FunctionModule(f), x, ("x", "t"), time_coord=None)
    torch.testing.assert_close(v.laplacian(), u.laplacian(("x", "t")), rtol=0, atol=TOL)


def two_outputs(x: Tensor) -> Tensor:
    """u = x^2 y, v = sin(x) + y^3."""
    X, Y = x.unbind(1)
    return torch.stack([X**2 * Y, torch.sin(X) + Y**3], dim=1)


def test_multi_output_field(pts2: Tensor) -> None:
    X, Y = pts2.unbind(1)
    f = make_field(FunctionModule(two_outputs), pts2, ("x", "y"), outputs=("u", "v"))
    assert f.value.shape == (50, 2)
    torch.testing.assert_close(f.value, two_outputs(pts2), rtol=0, atol=TOL)
    torch.testing.assert_close(f["v"].d("x"), torch.cos(X), rtol=0, atol=TOL)
    torch.testing.assert_close(f["v"].d("yy"), 6 * Y, rtol=0, atol=TOL)
    torch.testing.assert_close(f["u"].d("xy"), 2 * X, rtol=0, atol=TOL)
    torch.testing.assert_close(f["u"].value, X**2 * Y, rtol=0, atol=TOL)
    torch.testing.assert_close(f["u"].laplacian(), 2 * Y, rtol=0, atol=TOL)
    with pytest.raises(ValueError, match="select one"):
        f.d("x")
    with pytest.raises(ValueError, match="select one"):
        f.grad()


def test_derivatives_are_cached(pts2: Tensor) -> None:
    u = make_field(FunctionModule(u2), pts2, ("x", "y"))
    assert u.d("x") is u.d("x")
    assert u.d("xy") is u.d("yx") is u.d(("y", "x"))
    assert u.d("xx") is u.d(["x", "x"])
    f = make_field(FunctionModule(two_outputs), pts2, ("x", "y"), outputs=("u", "v"))
    first = f["v"].d("x")
    assert f["v"].d("x") is first  # views share one cache
    assert f["u"].d("x") is not first


def test_derivatives_build_a_graph_to_the_parameters(pts2: Tensor) -> None:
    model = FunctionModule(u2)
    model.dummy.data.fill_(0.0)
    w = torch.nn.Parameter(torch.tensor(2.0, dtype=F64))
    u = make_field(lambda x: w * model(x), pts2, ("x", "y"))
    (g,) = torch.autograd.grad(u.d("xx").sum(), w)
    assert g.item() == pytest.approx(u2_derivatives(pts2)["xx"].sum().item(), rel=1e-12)


def test_output_independent_of_points_has_zero_derivatives() -> None:
    x = torch.rand(10, 2, dtype=F64)
    c = torch.nn.Parameter(torch.tensor(3.0, dtype=F64))
    u = make_field(lambda x: c.expand(x.shape[0]), x, ("x", "y"))
    assert torch.equal(u.d("x"), torch.zeros(10, dtype=F64))
    assert torch.equal(u.d("xy"), torch.zeros(10, dtype=F64))
    assert torch.equal(u.value, torch.full((10,), 3.0, dtype=F64))


def test_field_follows_input_dtype() -> None:
    x = torch.rand(10, 2, dtype=torch.float32)
    u = make_field(FunctionModule(u2, dtype=torch.float32), x, ("x", "y"))
    assert u.d("xx").dtype == torch.float32 and u.grad().dtype == torch.float32
    torch.testing.assert_close(u.d("xx"), u2_derivatives(x.double())["xx"].float(), rtol=1e-4, atol=1e-4)


def test_errors(pts2: Tensor) -> None:
    u = make_field(FunctionModule(u2), pts2, ("x", "y"))
    with pytest.raises(KeyError, match="cannot read derivative 'z'"):
        u.d("z")
    with pytest.raises(KeyError, match="unknown coordinate 'q'"):
        u.d(("x", "q"))
    with pytest.raises(KeyError, match="unknown coordinate 'z'"):
        u.laplacian(["z"])
    with pytest.raises(KeyError, match="empty"):
        u.d("")
    with pytest.raises(KeyError, match="unknown output 'w'"):
        u["w"]
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        make_field(FunctionModule(u2), pts2, ("x", "y", "z"))
    with pytest.raises(ValueError, match="expected"):
        make_field(FunctionModule(u2), pts2, ("x", "y"), outputs=("u", "v"))
    with pytest.raises(ValueError, match="unknown derivative engine"):
        make_field(FunctionModule(u2), pts2, ("x", "y"), engine="jet")
    with pytest.raises(NotImplementedError):
        Field(pts2, ("x", "y")).value
