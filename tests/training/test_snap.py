"""Symbolic snapping (kanpde.training.snap): fits of every
library function with known parameters, the choice between near ties, auto_symbolic and the formula."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch

from kanpde import KAN
from kanpde.models.symbolic import LIBRARY, LIBRARY_NAMES, formula_text
from kanpde.training.snap import auto_symbolic, fit_edge, fit_function
from tests.helpers import F64, REPO_ROOT


X = np.linspace(-1.0, 1.0, 201)


# (a, b, c, d) per library function, inside the default search box, with a x + b in the function's domain.
KNOWN = {
    "x^2": (1.3, 0.4, 0.7, -0.2),
    "x^3": (0.8, -0.3, 1.5, 0.1),
    "x^4": (1.1, 0.2, 0.5, 0.3),
    "1/x": (0.5, 2.0, 1.2, 0.3),
    "sqrt": (1.5, 2.0, 0.8, -0.4),
    "exp": (1.7, 0.5, 0.6, 0.2),
    "log": (1.2, 2.5, 0.9, 0.1),
    "sin": (2.3, 0.7, 1.1, -0.3),
    "cos": (3.0, -0.5, 0.5, 0.5),
    "tan": (0.9, 0.2, 0.7, 0.0),
    "tanh": (2.5, -0.8, 1.3, 0.2),
    "sigmoid": (3.5, 1.0, 2.0, -1.0),
    "abs": (1.0, 0.3, 0.8, 0.1),
    "x": (1.0, 0.0, 2.0, 0.5),
}


def _np(name: str):
    return LIBRARY[LIBRARY_NAMES.index(name)].numpy


def test_every_library_function_has_a_known_case() -> None:
    assert set(KNOWN) | {"0"} == set(LIBRARY_NAMES)


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_fit_recovers_known_parameters(name: str) -> None:
    """Noiseless samples of c f(a x + b) + d: the fit is exact (R^2 = 1, values to ~1e-12) and the parameters
    are the known ones up to the function's own symmetries (checked on the identifiable combinations)."""
    a, b, c, d = KNOWN[name]
    y = c * _np(name)(a * X + b) + d
    fit = fit_function(X, y, name)
    assert fit.name == name
    assert fit.r2 > 1 - 1e-12
    assert np.abs(fit(X) - y).max() < 1e-9 * max(1.0, np.abs(y).max())
    # Identifiable combinations: powers, 1/x, sqrt, log and abs are fixed up to rescaling of (a, b) (and
    # the sign for even functions), exp up to a shift of b into c; the rest up to the period / symmetry.
    fa, fb, fc, fd = fit.a, fit.b, fit.c, fit.d
    if name in ("x^2", "x^4", "abs"):
        p = {"x^2": 2, "x^4": 4, "abs": 1}[name]
        assert fb / fa == pytest.approx(b / a, rel=1e-7) and fc * abs(fa) ** p == pytest.approx(c * a**p, rel=1e-7)
        assert fd == pytest.approx(d, abs=1e-7)
    elif name in ("x^3", "1/x"):
        p = 3 if name == "x^3" else -1
        assert fb / fa == pytest.approx(b / a, rel=1e-7) and fc * fa**p == pytest.approx(c * a**p, rel=1e-7)
        assert fd == pytest.approx(d, abs=1e-7)
    elif name == "sqrt":
        assert fb / fa == pytest.approx(b / a, rel=1e-7) and fc * math.sqrt(fa) == pytest.approx(c * math.sqrt(a), rel=1e-7)
    elif name == "log":
        assert fb / fa == pytest.approx(b / a, rel=1e-7) and fc == pytest.approx(c, rel=1e-7)
    elif name == "exp":
        assert fa == pytest.approx(a, rel=1e-7) and fc * math.exp(fb) == pytest.approx(c * math.exp(b), rel=1e-7)
        assert fd == pytest.approx(d, abs=1e-7)
    elif name in ("sin", "cos", "tan", "tanh", "sigmoid"):
        assert abs(fa) == pytest.approx(a, rel=1e-7) and abs(fc) == pytest.approx(c, rel=1e-7)
        if name in ("tanh", "sigmoid", "tan"):  # odd about their centre: (a, b, c) -> (-a, -b, -c) for tan/tanh
            if fa * a > 0:
                assert (fb, fc, fd) == pytest.approx((b, c, d), abs=1e-7)
        else:
            assert fd == pytest.approx(d, abs=1e-7)
    else:  # x
        assert fc * fa == pytest.approx(c * a) and fd + fc * fb == pytest.approx(d + c * b)


def test_fit_edge_prefers_the_simplest_near_tie_and_finds_distinct_functions() -> None:
    line = 0.7 * X - 0.2
    choice, fits = fit_edge(X, line)
    assert choice.name == "x" and choice.r2 > 1 - 1e-12
    assert fits[0].r2 >= choice.r2 - 1e-12  # sorted, best first
    quad = 2.0 * (X + 0.3) ** 2
    assert fit_edge(X, quad)[0].name == "x^2"
    wave = 0.5 * np.cos(np.pi * X + 0.2)
    assert fit_edge(X, wave)[0].name in ("sin", "cos")  # one and the same function, shifted


@pytest.mark.slow
def test_auto_symbolic_and_formula_round_trip(tmp_path: Path) -> None:
    """A [2, 1, 1] KAN whose edges are fitted to x, y^2 and cos: auto_symbolic snaps them, the formula text
    parses with SymPy and evaluates to the network's output."""
    torch.manual_seed(0)
    model = KAN([2, 1, 1], grid_size=10, grid_range=(-1.0, 2.0), dtype=F64)
    x = torch.rand(400, 2, dtype=F64) * 2 - 1
    from kanpde.models.bspline import fit_coefficients

    with torch.no_grad():
        l0, l1 = model.layers
        l0.base_weight.zero_()
        l1.base_weight.zero_()
        l0.spline_weight.copy_(fit_coefficients(x, torch.stack([0.5 * x[:, 0], 0.5 * x[:, 1] ** 2], 1)[:, :, None], l0.grid, 3))
        h = model.layers[0](x)
        l1.spline_weight.copy_(fit_coefficients(h, torch.cos(math.pi * h)[:, :, None], l1.grid, 3))
    sym, records = auto_symbolic(model, x, r2_threshold=0.999)
    assert [r["name"] for r in records] == ["x", "x^2", "cos"] or [r["name"] for r in records][:2] == ["x", "x^2"]
    assert sym.fully_symbolic
    text = formula_text(sym, ("x", "y"))
    expr = sympy.sympify(text.strip())
    assert {s.name for s in expr.free_symbols} == {"x", "y"}
    f = sympy.lambdify(sympy.symbols("x y"), expr, "numpy")
    xn = x.numpy()
    assert np.abs(f(xn[:, 0], xn[:, 1]) - sym(x)[:, 0].detach().numpy()).max() < 1e-10
    u = np.cos(np.pi * (0.5 * xn[:, 0] + 0.5 * xn[:, 1] ** 2))
    assert np.abs(f(xn[:, 0], xn[:, 1]) - u).max() < 1e-3  # the splines were fits of this


# A small snap-and-polish pipeline whose printout (every stage loss, the polish, the formula) must not depend
# on the interpreter's string hashing: SciPy's MINPACK "lm" gave other iterates from process to process.
_PIPELINE = """
import functools, torch
from kanpde import KAN, Sampler, Stage, fit
from kanpde.models.symbolic import formula_text
from kanpde.problems.poisson2d import Poisson2D
torch.manual_seed(0)
adam = functools.partial(torch.optim.Adam, lr=0.01)
lbfgs = functools.partial(torch.optim.LBFGS, line_search_fn="strong_wolfe", max_iter=5)
stages = [Stage(adam, 20), Stage(lbfgs, 1, prune=True, symbolic={"layers": [0], "lib": ["x", "x^2"], "r2_threshold": 0.0}),
          Stage(lbfgs, 1, symbolic={"layers": [1], "lib": ["sin"], "r2_threshold": 0.0}),
          Stage(lbfgs, 1, symbolic={"layers": [], "polish": True})]
r = fit(KAN([2, 2, 1], dtype=torch.float64), Poisson2D(), stages, sampler=Sampler(seed=0), n_interior=64, n_boundary=32)
print([repr(s["loss"]) for s in r.history.stages], repr(r.history.stages[-1]["polish"]))
print(formula_text(r.model, ("x", "y")))
"""


@pytest.mark.slow
@pytest.mark.subprocess
def test_snap_and_polish_do_not_depend_on_the_string_hash_seed() -> None:
    """The same seeded pipeline under PYTHONHASHSEED=1 and 2: identical losses, polish and formula, bit for bit."""
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO_ROOT)}
        proc = subprocess.run([sys.executable, "-c", _PIPELINE], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.append(proc.stdout)
    assert "sin" in outputs[0] and outputs[0] == outputs[1]


@pytest.mark.slow
def test_polish_takes_a_perturbed_exact_network_to_the_exact_formula() -> None:
    """The [2, 2, 1] network of u = sin(pi x) sin(pi y^2) = 1/2 sin(pi (x - y^2) + pi/2) + 1/2 sin(pi (x + y^2) + 3 pi/2),
    every affine parameter perturbed by ~1e-3: the polish brings the PINN loss to rounding level and the
    formula to the exact solution (the gates of the symbolic preset rely on reaching max_loss 1e-12)."""
    from kanpde import Sampler
    from kanpde.models.symbolic import EdgeFit, SymbolicKAN, fix_symbolic
    from kanpde.problems.poisson2d import Poisson2D
    from kanpde.training.snap import polish_affine

    problem = Poisson2D()
    batch = problem.sample(Sampler(seed=0), 256, 64).to(F64, torch.device("cpu"))
    model = SymbolicKAN([2, 2, 1], dtype=F64)
    r = np.random.default_rng(1).normal(scale=1e-3, size=12)
    edges = {(0, 0, 0): EdgeFit("x", 1.0, 0.0, 1 + r[0], r[1], 1.0), (0, 0, 1): EdgeFit("x^2", 1 + r[2], r[3], -1 + r[4], 0.0, 1.0),
             (0, 1, 0): EdgeFit("x", 1.0, 0.0, 1 + r[5], r[6], 1.0), (0, 1, 1): EdgeFit("x^2", 1 + r[7], r[8], 1.0, 0.0, 1.0),
             (1, 0, 0): EdgeFit("sin", math.pi + r[9], math.pi / 2, 0.5, 0.0, 1.0),
             (1, 0, 1): EdgeFit("sin", math.pi, 1.5 * math.pi + r[10], 0.5 + r[11], 0.0, 1.0)}
    for (layer, out, inp), edge in edges.items():
        fix_symbolic(model, layer, out, inp, edge)
    before, after = polish_affine(model, problem, batch)
    assert before > 1e-8 and after < 1e-24
    f = sympy.lambdify(sympy.symbols("x y"), sympy.sympify(formula_text(model, ("x", "y")).strip()), "numpy")
    g = np.linspace(-1.0, 1.0, 101)
    X, Y = np.meshgrid(g, g, indexing="ij")
    assert np.abs(f(X, Y) - np.sin(np.pi * X) * np.sin(np.pi * Y**2)).max() < 1e-10
