"""Interpretability: symbolic fits of edges, symbolic layers under both derivative engines, sparsification,
pruning, activation plots, formulas and their round trip through SymPy and save/load."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch

from kanpde import KAN, Sampler, Stage, fit
from kanpde.derivatives.field import AutogradField, ForwardField
from kanpde.derivatives.jet import DerivativePlan
from kanpde.outputs.run_file import RunResult, load_run, save_run
from kanpde.training.prune import edge_scores, node_scores, prune, sparsity_penalty
from kanpde.models.symbolic import (
    LIBRARY,
    LIBRARY_NAMES,
    EdgeFit,
    SymbolicKAN,
    auto_symbolic,
    fit_edge,
    fit_function,
    fix_symbolic,
    formula,
    formula_text,
    to_symbolic,
)

F64 = torch.float64
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


def _toy_target(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2


def _regress(model: KAN, x: torch.Tensor, y: torch.Tensor, steps: int, lam: float = 0.0) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        loss = (model(x)[:, 0] - y).pow(2).mean()
        if lam:
            loss = loss + lam * sparsity_penalty(model, x, mu=1.0)
        loss.backward()
        opt.step()


def test_sparsification_reduces_the_number_of_significant_edges() -> None:
    """f(x, y) = sin(pi x) + y^2 needs 2 of the 8 edges of a [2, 4, 1] KAN (plus an output edge or two).
    Trained from the same initialisation with and without the regulariser (same steps): fewer edges with
    a mean |phi| above 1e-2 with it (measured: 12 -> 3 of 12 edges)."""
    x = torch.rand(256, 2, dtype=F64) * 2 - 1
    y = _toy_target(x)
    torch.manual_seed(3)
    base = KAN([2, 4, 1], grid_size=5, dtype=F64)
    plain, sparse = base, KAN([2, 4, 1], grid_size=5, dtype=F64)
    sparse.load_state_dict(base.state_dict())
    _regress(plain, x, y, 300)
    _regress(sparse, x, y, 300, lam=1e-2)

    def significant(m: KAN) -> int:
        return sum(int((s > 1e-2).sum()) for s in edge_scores(m, x))

    assert significant(sparse) < significant(plain)
    assert (sparse(x)[:, 0] - y).pow(2).mean() < 0.05  # still fits


def test_sparsity_penalty_is_l1_plus_mu_entropy() -> None:
    model = KAN([2, 2, 1], grid_size=3, dtype=F64)
    x = torch.rand(30, 2, dtype=F64)
    total = 0.0
    for s in edge_scores(model, x):
        s = s.detach()
        p = s / s.sum()
        total += float(s.sum() - 0.5 * (p * torch.log(p)).sum())
    assert float(sparsity_penalty(model, x, mu=0.5)) == pytest.approx(total, rel=1e-9)


def test_pruning_removes_a_dead_node_and_preserves_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = KAN([2, 3, 1], grid_size=5, dtype=F64)
    with torch.no_grad():  # hidden node 1: no incoming or outgoing function at all
        model.layers[0].base_weight[1] = 0.0
        model.layers[0].spline_weight[1] = 0.0
        model.layers[1].base_weight[:, 1] = 0.0
        model.layers[1].spline_weight[:, 1] = 0.0
    x = torch.rand(100, 2, dtype=F64) * 2 - 1
    scores = node_scores(model, x)[0]
    assert float(scores[1]) == 0.0 and bool((scores[[0, 2]] > 1e-2).all())
    small = prune(model, x)
    assert small.widths == [2, 2, 1] and small.config["widths"] == [2, 2, 1]
    assert torch.allclose(small(x), model(x), atol=1e-14, rtol=0)
    assert prune(small, x) is small  # nothing left to remove
    # the pruned widths survive save/load through the constructor config
    sym = to_symbolic(small)
    fix_symbolic(sym, 0, 1, 0, EdgeFit("sin", 1.0, 0.2, 0.5, 0.0, 1.0))
    pruned = prune(sym, x, threshold=0.0)
    assert pruned is sym
    _roundtrip(sym, x, tmp_path)


def _roundtrip(model: torch.nn.Module, x: torch.Tensor, tmp_path: Path) -> None:
    from kanpde.evaluate import evaluate
    from kanpde.problems.poisson2d import Poisson2D
    from kanpde.training.fit import History

    problem = Poisson2D()
    ev = evaluate(model, problem, 11)
    result = RunResult("kan", model, History(), ev, dict(ev.metrics))
    path = save_run(tmp_path / "solution.h5", problem.name, problem.coords, problem.outputs, result)
    back = load_run(path).main.model
    assert type(back) is type(model) and back.widths == model.widths
    assert torch.allclose(back(x), model(x), atol=1e-14, rtol=0)


def test_pruning_keeps_symbolic_edges() -> None:
    torch.manual_seed(1)
    sym = to_symbolic(KAN([1, 3, 1], grid_size=3, dtype=F64))
    fix_symbolic(sym, 0, 0, 0, EdgeFit("x^2", 1.0, 0.0, 1.0, 0.0, 1.0))
    fix_symbolic(sym, 1, 0, 0, EdgeFit("cos", 2.0, 0.0, 1.0, 0.0, 1.0))
    with torch.no_grad():
        sym.layers[0].base_weight[2] = 0.0
        sym.layers[0].spline_weight[2] = 0.0
        sym.layers[1].base_weight[:, 2] = 0.0
        sym.layers[1].spline_weight[:, 2] = 0.0
    x = torch.linspace(-1, 1, 50, dtype=F64)[:, None]
    small = prune(sym, x)
    assert small.widths == [1, 2, 1]
    assert small.layers[0].symbolic_mask[0, 0] == 1 and small.layers[1].symbolic_mask[0, 0] == 1
    assert torch.allclose(small(x), sym(x), atol=1e-14, rtol=0)


def test_activation_plot_is_written(tmp_path: Path) -> None:
    from kanpde.outputs.plots import plot_activations

    sym = to_symbolic(KAN([2, 3, 1], grid_size=3, dtype=F64))
    fix_symbolic(sym, 0, 0, 0, EdgeFit("sin", 1.0, 0.0, 1.0, 0.0, 1.0))
    x = torch.rand(64, 2, dtype=F64)
    path = plot_activations(sym, x, tmp_path / "activations.png", ("x", "y"), ("u",))
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"


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


def test_formula_needs_every_edge_symbolic() -> None:
    sym = to_symbolic(KAN([2, 2, 1], grid_size=3, dtype=F64))
    with pytest.raises(ValueError, match="every edge"):
        formula(sym, ("x", "y"))


def test_stages_sparsify_prune_and_snap_in_fit() -> None:
    """The trainer's stage options: a sparsity column in the history, pruning before the stage's optimizer
    (the summary records the new widths), snapping (records per edge); the loss stays finite throughout."""
    from kanpde.problems.poisson2d import Poisson2D

    torch.manual_seed(0)
    adam = functools.partial(torch.optim.Adam, lr=0.01)
    lbfgs = functools.partial(torch.optim.LBFGS, max_iter=5, line_search_fn="strong_wolfe")
    stages = [
        Stage(adam, 5),
        Stage(adam, 5, sparsify={"lambda": 1e-3, "mu": 1.0}),
        Stage(lbfgs, 2, prune=0.5),
        Stage(lbfgs, 2, symbolic={"r2_threshold": 0.0, "lib": ["x", "x^2", "sin"]}),
    ]
    result = fit(KAN([2, 4, 1], grid_size=3, dtype=F64), Poisson2D(), stages, n_interior=64, n_boundary=32,
                 sampler=Sampler(seed=0))
    cols = result.history.arrays()
    assert np.isnan(cols["sparsity"][:5]).all() and np.isfinite(cols["sparsity"][5:10]).all()
    summary = result.history.stages
    assert summary[2]["widths"] == result.model.widths and result.model.widths[1] < 4
    assert isinstance(result.model, SymbolicKAN) and result.model.fully_symbolic
    assert len(summary[3]["symbolic"]) == sum(a * b for a, b in zip(result.model.widths, result.model.widths[1:]))
    assert all(math.isfinite(s["loss"]) for s in summary)


def test_run_writes_formula_and_activation_plots(tmp_path: Path) -> None:
    """A tiny snapped run through run(cfg): formula.txt parses with SymPy and equals the saved model read back
    by load_run (a SymbolicKAN with the pruned widths); the activation plots before and after are written."""
    from hydra import compose, initialize_config_module

    from kanpde.app.run import run

    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "problem=poisson2d", "debug=fast", "baseline=null", "output.activations=true", "model.widths=[2,3,1]",
            "trainer.stages=[{optimizer: adam, steps: 5}, {optimizer: lbfgs, steps: 1, prune: 0.05},"
            " {optimizer: lbfgs, steps: 1, symbolic: {r2_threshold: 0.0, lib: ['x', 'x^2', 'sin']}},"
            " {optimizer: lbfgs, steps: 1, symbolic: {layers: [], polish: true}}]",
        ])
    metrics = run(cfg, tmp_path)
    for name in ("formula.txt", "activations.png", "activations_before_prune.png", "activations_before_symbolic.png"):
        assert (tmp_path / name).is_file(), name
    text = (tmp_path / "formula.txt").read_text()
    assert metrics["formula"] == text.strip()
    model = load_run(tmp_path).main.model
    assert isinstance(model, SymbolicKAN) and model.fully_symbolic and model.widths == metrics["widths"]
    x = torch.rand(50, 2, dtype=F64) * 2 - 1
    f = sympy.lambdify(sympy.symbols("x y"), sympy.sympify(text.strip()), "numpy")
    value = np.broadcast_to(f(x[:, 0].numpy(), x[:, 1].numpy()), (50,))
    assert np.abs(value - model(x)[:, 0].detach().numpy()).max() < 1e-9
