"""Random Fourier features (kanpde.models.embeddings) and the MLP that takes them."""

from __future__ import annotations

import math

import pytest
import torch

from kanpde.derivatives.field import make_field, resolve_engine
from kanpde.models import MLP
from kanpde.models.embeddings import FourierFeatures, fourier_config

F64 = torch.float64


def test_features_are_cos_and_sin_of_2pi_Bx() -> None:
    torch.manual_seed(0)
    ff = FourierFeatures(2, 5, scale=3.0, dtype=F64)
    x = torch.rand(11, 2, dtype=F64)
    out = ff(x)
    z = 2 * math.pi * x @ ff.B.T
    assert out.shape == (11, 10) and ff.out_features == 10
    torch.testing.assert_close(out, torch.cat([torch.cos(z), torch.sin(z)], 1), rtol=0, atol=0)


def test_B_is_a_seeded_fixed_buffer_of_the_given_scale() -> None:
    torch.manual_seed(5)
    a = FourierFeatures(3, 4000, scale=2.5, dtype=F64)
    torch.manual_seed(5)
    b = FourierFeatures(3, 4000, scale=2.5, dtype=F64)
    assert torch.equal(a.B, b.B)
    assert list(a.parameters()) == [] and "B" in a.state_dict()
    assert abs(float(a.B.std()) / 2.5 - 1) < 0.02  # 12,000 draws: std within ~3 standard errors


def test_mlp_with_features_keeps_B_in_its_state_dict_and_trains_only_the_layers() -> None:
    torch.manual_seed(1)
    model = MLP([2, 8, 1], fourier_features={"count": 6, "scale": 1.0}, dtype=F64)
    assert model.linears[0].in_features == 12 and model.widths == [2, 8, 1]
    assert "features.B" in model.state_dict()
    assert all(p is not model.features.B for p in model.parameters())
    torch.manual_seed(9)
    other = MLP(**model.config, dtype=F64)
    assert not torch.equal(other.features.B, model.features.B)
    other.load_state_dict(model.state_dict())
    x = torch.rand(4, 2, dtype=F64)
    torch.testing.assert_close(other(x), model(x), rtol=0, atol=0)
    assert "fourier_features" not in MLP([2, 8, 1]).config  # plain MLPs' run files unchanged


@pytest.mark.parametrize("activation", ["tanh", "sin"])
def test_forward_jet_with_features_matches_autograd(activation: str) -> None:
    torch.manual_seed(2)
    model = MLP([2, 7, 7, 1], activation=activation, fourier_features={"count": 4, "scale": 1.5}, dtype=F64)
    assert resolve_engine("auto", model) == "forward"
    x = torch.rand(13, 2, dtype=F64)
    fwd, ag = make_field(model, x, ("x", "y"), engine="forward"), make_field(model, x, ("x", "y"), engine="autograd")
    for spec in ("x", "y", "xx", "xy", "yy"):
        torch.testing.assert_close(fwd.d(spec), ag.d(spec), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fwd.laplacian(), ag.laplacian(), rtol=1e-10, atol=1e-10)


def test_single_layer_with_features_has_curvature_from_the_features() -> None:
    torch.manual_seed(3)
    model = MLP([1, 1], fourier_features={"count": 2, "scale": 1.0}, dtype=F64)
    x = torch.rand(6, 1, dtype=F64)
    fwd, ag = make_field(model, x, ("x",), engine="forward"), make_field(model, x, ("x",), engine="autograd")
    torch.testing.assert_close(fwd.d("xx"), ag.d("xx"), rtol=1e-10, atol=1e-10)
    assert float(fwd.d("xx").detach().abs().max()) > 1e-3


@pytest.mark.parametrize("spec,message", [({"count": 0}, "count must be a positive integer"),
                                          ({"count": 4, "scale": -1.0}, "scale must be a positive number"),
                                          ({"scale": 1.0}, "fourier_features must be null or"),
                                          ({"count": 4, "sigma": 1.0}, "fourier_features must be null or")])
def test_bad_feature_specs_are_refused(spec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fourier_config(spec)
    with pytest.raises(ValueError, match=message):
        MLP([2, 4, 1], fourier_features=spec)
