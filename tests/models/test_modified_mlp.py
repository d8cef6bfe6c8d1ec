"""The modified MLP (kanpde.models.modified_mlp): the gated formula, its checks, and rebuilding from config."""

from __future__ import annotations

import pytest
import torch

from kanpde.derivatives.field import make_field, resolve_engine
from kanpde.io.files import resolve_class
from kanpde.models import ModifiedMLP
from kanpde.models.registry import class_path, registered_model

F64 = torch.float64


def test_forward_is_the_gated_formula() -> None:
    torch.manual_seed(0)
    model = ModifiedMLP([2, 6, 6, 6, 3], dtype=F64)
    x = torch.rand(20, 2, dtype=F64) * 2 - 1
    U, V = torch.tanh(model.encoder_u(x)), torch.tanh(model.encoder_v(x))
    H = x
    for lin in model.linears[:-1]:
        Z = torch.tanh(H @ lin.weight.T + lin.bias)
        H = (1 - Z) * U + Z * V
    expected = H @ model.linears[-1].weight.T + model.linears[-1].bias
    out = model(x)
    assert out.shape == (20, 3) and out.dtype == F64
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=1e-14)
    # 2 encoders (2*6+6 each), 3 gate layers (2*6+6, 6*6+6, 6*6+6), output 6*3+3
    assert sum(p.numel() for p in model.parameters()) == 2 * 18 + 18 + 42 + 42 + 21


@pytest.mark.parametrize("widths,message", [([2, 5, 6, 1], "hidden widths must all be equal"),
                                            ([2, 1], "at least one hidden"), ([2, 0, 1], "at least one hidden")])
def test_bad_widths_are_refused(widths, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModifiedMLP(widths)


def test_bad_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown activation 'relu6'"):
        ModifiedMLP([2, 4, 1], activation="relu6")


def test_gradcheck_inputs() -> None:
    torch.manual_seed(1)
    model = ModifiedMLP([2, 4, 4, 1], activation="sin", fourier_features={"count": 3, "scale": 0.5}, dtype=F64)
    x = torch.rand(5, 2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,))


def test_derivatives_match_finite_differences() -> None:
    torch.manual_seed(2)
    model = ModifiedMLP([2, 8, 8, 1], dtype=F64)
    x = torch.rand(10, 2, dtype=F64)
    u = make_field(model, x, ("x", "y"), engine="autograd")
    h = 1e-6
    e = torch.tensor([h, 0.0], dtype=F64)
    fd = (model(x + e) - model(x - e))[:, 0] / (2 * h)
    torch.testing.assert_close(u.d("x"), fd, rtol=1e-7, atol=1e-8)


def test_registered_and_rebuilt_from_config() -> None:
    torch.manual_seed(3)
    model = ModifiedMLP([3, 5, 5, 2], activation="silu", fourier_features={"count": 4, "scale": 2.0}, dtype=F64)
    assert registered_model(class_path(ModifiedMLP)) is ModifiedMLP
    cls = resolve_class(class_path(ModifiedMLP))
    again = cls(**model.config, dtype=F64)
    again.load_state_dict(model.state_dict())
    x = torch.rand(7, 3, dtype=F64)
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    assert model.widths == [3, 5, 5, 2] and model.config["fourier_features"] == {"count": 4, "scale": 2.0}


@pytest.mark.parametrize("activation", ["tanh", "sin", "silu"])
@pytest.mark.parametrize("features", [None, {"count": 3, "scale": 1.0}], ids=["plain", "fourier"])
@pytest.mark.parametrize("widths", [[3, 6, 2], [3, 6, 6, 6, 2]], ids=["one_gate", "three_gates"])
def test_forward_jet_matches_autograd(activation: str, features, widths) -> None:
    torch.manual_seed(4)
    model = ModifiedMLP(widths, activation=activation, fourier_features=features, dtype=F64)
    assert resolve_engine("auto", model) == "forward"
    x = torch.rand(7, 3, dtype=F64)
    coords, outputs = ("x", "y", "z"), ("u", "v")
    fwd = make_field(model, x, coords, outputs=outputs, engine="forward")
    ag = make_field(model, x, coords, outputs=outputs, engine="autograd")
    for c in outputs:
        torch.testing.assert_close(fwd[c].value, ag[c].value, rtol=0, atol=1e-14)
        for spec in ("x", "y", "z", "xx", "xy", "yz", "zz"):
            torch.testing.assert_close(fwd[c].d(spec), ag[c].d(spec), rtol=1e-10, atol=1e-11)
        torch.testing.assert_close(fwd[c].laplacian(), ag[c].laplacian(), rtol=1e-10, atol=1e-11)

