"""Sparsification and pruning (kanpde.training.prune): the penalty, fewer significant edges, dead nodes
removed with the function kept, symbolic edges kept, pruned widths through save/load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from kanpde import KAN
from kanpde.models.symbolic import EdgeFit, fix_symbolic, to_symbolic
from kanpde.io.run_file import RunResult, load_run, save_run
from kanpde.training.prune import edge_scores, node_scores, prune, sparsity_penalty
from tests.helpers import F64


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


@pytest.mark.slow
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
    assert float(sparsity_penalty(model, x, mu=0.5).detach()) == pytest.approx(total, rel=1e-9)


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
