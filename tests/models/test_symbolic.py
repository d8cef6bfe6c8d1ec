"""Symbolic KANs (kanpde.models.symbolic): symbolic edges under both derivative engines, to_symbolic, and the
formula's precondition. (Fitting and snapping: tests/training/test_snap.py; pruning: test_prune.py.)"""

from __future__ import annotations

import pytest
import torch

from kanpde import KAN
from kanpde.derivatives.field import AutogradField, ForwardField
from kanpde.derivatives.jet import DerivativePlan
from kanpde.models.symbolic import LIBRARY_NAMES, EdgeFit, SymbolicKAN, fix_symbolic, formula, to_symbolic

F64 = torch.float64


def test_symbolic_edges_derivatives_match_autograd() -> None:
    """Every library function on some edge (others left as splines): the forward engine's value, first and
    second derivatives (mixed included) agree with autograd through the same model."""
    torch.manual_seed(0)
    model = to_symbolic(KAN([2, 4, 3, 2], grid_size=4, dtype=F64))
    names = [n for n in LIBRARY_NAMES]
    k = 0
    for l, layer in enumerate(model.layers):
        for o in range(layer.out_features):
            for i in range(layer.in_features):
                if (l + o + i) % 5 == 4:
                    continue  # a mixed layer: some splines stay
                name = names[k % len(names)]
                k += 1
                b = 3.0 if name in ("log", "sqrt", "1/x") else 0.3  # inputs stay in the domain
                fix_symbolic(model, l, o, i, EdgeFit(name, 0.4, b, 0.9, 0.1, 1.0))
    assert k >= len(names)
    x = torch.rand(40, 2, dtype=F64) * 2 - 1
    coords, outputs = ("x", "y"), ("u", "v")
    fa = AutogradField(model, x, coords, outputs)
    ff = ForwardField(model, x, coords, outputs, plan={(0,), (1,), (0, 0), (1, 1), (0, 1)})
    for c in outputs:
        assert torch.allclose(ff[c].value, fa[c].value, atol=1e-13, rtol=0)
        for spec in ("x", "y", "xx", "yy", "xy"):
            ref = fa[c].d(spec).detach()
            assert torch.allclose(ff[c].d(spec), ref, atol=1e-11 * max(1.0, float(ref.abs().max())), rtol=0), (c, spec)
    traced = ForwardField(model, x, coords, outputs, plan=DerivativePlan.of([], [(0, 1)]))  # the Laplacian as one row
    for c in outputs:
        ref = fa[c].laplacian().detach()
        assert torch.allclose(traced[c].laplacian(), ref, atol=1e-11 * max(1.0, float(ref.abs().max())), rtol=0), c


def test_to_symbolic_keeps_the_function_and_an_unmasked_layer_is_a_kan_layer() -> None:
    model = KAN([2, 3, 1], grid_size=5, dtype=F64)
    x = torch.rand(50, 2, dtype=F64) * 2 - 1
    sym = to_symbolic(model)
    assert isinstance(sym, SymbolicKAN) and not sym.fully_symbolic
    assert torch.equal(sym(x), model(x))


def test_formula_needs_every_edge_symbolic() -> None:
    sym = to_symbolic(KAN([2, 2, 1], grid_size=3, dtype=F64))
    with pytest.raises(ValueError, match="every edge"):
        formula(sym, ("x", "y"))
