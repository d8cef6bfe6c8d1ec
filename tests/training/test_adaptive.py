"""Adaptive collocation (kanpde.training.adaptive): RAD and RAR-D densities, draws and their place in fit."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from kanpde import KAN, SSBroyden, Box, Dirichlet, Initial, Problem, Sampler, Stage, fit
from kanpde.derivatives.field import Field
from kanpde.pde import Batch
from kanpde.pde.shapes import Disk
from kanpde.problems.heat1d import Heat1D
from kanpde.training.adaptive import (RBA, Adaptive, Balance, Causal, causal_slabs, causal_weights, choose, density,
                                      resample, slab_losses)
from kanpde.training.lm import LevenbergMarquardt
from kanpde.training.loss import pde_residual_norms

F64 = torch.float64


class Step(Problem):
    """``u = g`` with ``g = 10`` where ``x < 0`` and ``1`` elsewhere: a zero model's residual is ``-g``,
    ten times larger on the left half of the domain."""

    coords = ("x", "y")

    def __init__(self, geometry=None) -> None:
        super().__init__(geometry or Box([-1.0, -1.0], [1.0, 1.0], self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x: Tensor, u: Field) -> Tensor:
        return u.value - torch.where(x[:, 0] < 0, 10.0, 1.0).to(x)


class Zero(nn.Module):
    """``u = w`` (``w = 0``): a model whose residuals on :class:`Step` are known."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1, dtype=F64))

    def forward(self, x: Tensor) -> Tensor:
        return self.w + 0 * x[:, :1]


def test_density_is_the_normalised_residual_power_plus_c() -> None:
    r = torch.tensor([0.0, 1.0, 3.0], dtype=F64)
    expected = np.array([0.0, 0.75, 2.25]) + 2.0  # |r|^1 / mean |r| (= 4/3) + c, c = 2
    np.testing.assert_allclose(density(r, 1.0, 2.0).numpy(), expected / expected.sum(), rtol=1e-15)
    np.testing.assert_allclose(density(r, 0.0, 0.0).numpy(), np.full(3, 1 / 3), rtol=1e-15)  # k = 0: uniform
    np.testing.assert_allclose(density(torch.zeros(4, dtype=F64), 2.0, 0.0).numpy(), np.full(4, 0.25))


def test_rad_draws_more_points_where_the_residual_is_large() -> None:
    """Seed 0. Uniformly half of the points lie left of x = 0; with k = 1, c = 1 the density there is
    (10 / 5.5 + 1) against (1 / 5.5 + 1) on the right, so about 70 % of draws (with replacement; a little
    less without): we require more than 62 % (binomial sd 2.2 % at 500 points). k = 0 stays uniform."""
    problem, sampler = Step(), Sampler("uniform", seed=0)
    interior = torch.zeros(500, 2, dtype=F64)
    options = Adaptive.parse({"method": "rad", "every": 1, "candidates": 5000})
    new, residual = resample(Zero(), problem, interior, sampler, options, np.random.default_rng(0))
    assert new.shape == (500, 2)
    assert len(set(map(tuple, new.tolist()))) == 500  # distinct candidates
    np.testing.assert_allclose(residual.mean().item(), 5.5, atol=0.3)  # half 10, half 1
    left = (new[:, 0] < 0).double().mean().item()
    assert left > 0.62, left
    uniform = Adaptive.parse({"method": "rad", "every": 1, "candidates": 5000, "k": 0})
    new0, _ = resample(Zero(), problem, interior, sampler, uniform, np.random.default_rng(0))
    assert abs((new0[:, 0] < 0).double().mean().item() - 0.5) < 0.07


def test_rar_d_adds_count_points_at_high_residuals() -> None:
    """RAR-D with k = 2, c = 0 (Wu et al.'s choice): exactly ``count`` new points, the old ones kept,
    and the new ones almost all where |r| = 10 (density 100 : 1 per point)."""
    problem, sampler = Step(), Sampler("sobol", seed=1)
    interior = torch.rand(100, 2, dtype=F64) * 2 - 1
    options = Adaptive.parse({"method": "rar-d", "every": 5, "candidates": 1000, "count": 50, "k": 2, "c": 0})
    new, _ = resample(Zero(), problem, interior, sampler, options, np.random.default_rng(3))
    assert new.shape == (150, 2)
    torch.testing.assert_close(new[:100], interior, rtol=0, atol=0)
    assert (new[100:, 0] < 0).double().mean().item() > 0.9


def test_choose_falls_back_when_too_few_residuals_are_nonzero() -> None:
    idx = choose(torch.tensor([0.0, 0.0, 5.0, 0.0]), 3, 1.0, 0.0, np.random.default_rng(0))
    assert len(set(idx.tolist())) == 3 and 2 in idx


def test_pde_residual_norms_chunked_equal_whole() -> None:
    torch.manual_seed(0)
    model, problem = KAN([2, 3, 1], grid_size=3, dtype=F64), Step()
    x = torch.rand(37, 2, dtype=F64) * 2 - 1
    whole = pde_residual_norms(model, problem, x)
    torch.testing.assert_close(pde_residual_norms(model, problem, x, chunk_size=8), whole)
    with torch.no_grad():
        expected = (model(x)[:, 0] - torch.where(x[:, 0] < 0, 10.0, 1.0).to(x)).abs()
    torch.testing.assert_close(whole, expected)


@pytest.mark.parametrize("bad, message", [
    ({"method": "rae", "every": 1, "candidates": 10}, "method"),
    ({"method": "rad", "candidates": 10}, "every is required"),
    ({"method": "rad", "every": 0, "candidates": 10}, "every must be"),
    ({"method": "rad", "every": 1, "candidates": 10, "count": 3}, "rar-d only"),
    ({"method": "rar-d", "every": 1, "candidates": 10}, "count"),
    ({"method": "rar-d", "every": 1, "candidates": 10, "count": 11}, "exceeds"),
    ({"method": "rad", "every": 1, "candidates": 10, "k": -1}, "adaptive.k"),
    ({"method": "rad", "every": 1, "candidates": 10, "size": 1}, "unknown key"),
    ("rad", "must be"),
])
def test_bad_options_are_one_line_errors(bad, message) -> None:
    with pytest.raises(ValueError, match=message) as info:
        Stage(torch.optim.Adam, 1, adaptive=bad)
    assert "\n" not in str(info.value)


def test_fit_refuses_too_few_rad_candidates() -> None:
    stage = Stage(torch.optim.Adam, 2, adaptive={"method": "rad", "every": 1, "candidates": 10})
    with pytest.raises(ValueError, match="candidates=10 is fewer"):
        fit(Zero(), Step(), [stage], n_interior=20, n_boundary=8)


def test_fit_resamples_and_trains_on_the_new_points() -> None:
    """A zero model trained with lr = 0: the recorded pde term (mean |r|^2 on the interior points) is
    about 50.5 on uniform points and rises after RAD moves points to the left half (|r|^2 = 100)."""
    sgd = functools.partial(torch.optim.SGD, lr=0.0)
    stage = Stage(sgd, 4, adaptive={"method": "rad", "every": 2, "candidates": 2000})
    result = fit(Zero(), Step(), [stage], sampler=Sampler("sobol", seed=0), n_interior=400, n_boundary=8)
    steps, summary = result.history.steps, result.history.stages[0]
    assert [r["step"] for r in summary["adaptive"]] == [2]
    assert summary["adaptive"][0]["points"] == 400 and summary["n_interior"] == 400
    assert abs(summary["adaptive"][0]["mean_residual"] - 5.5) < 0.3
    assert abs(steps[0]["pde"] - 50.5) < 4 and steps[1]["pde"] == steps[0]["pde"]
    assert steps[2]["pde"] > steps[0]["pde"] + 10 and steps[3]["pde"] == steps[2]["pde"]


def test_lm_after_rar_d_uses_the_new_points_on_a_disk() -> None:
    """An LM stage with RAR-D on a Disk: the points grow by ``count`` at each resampling, the LM
    least-squares system is rebuilt on them, and its step after the last resampling lowers the loss on
    the new points (the last step starts from the loss on them; the stage's final loss is below it)."""
    made = []

    def lm(params):
        made.append(LevenbergMarquardt(params))
        return made[-1]

    torch.manual_seed(0)
    problem = Step(Disk((0.0, 0.0), 1.0))
    stage = Stage(lm, 5, adaptive={"method": "rar-d", "every": 2, "candidates": 300, "count": 20, "k": 2, "c": 0})
    result = fit(KAN([2, 3, 1], grid_size=3, dtype=F64), problem, [stage], n_interior=60, n_boundary=16)
    summary = result.history.stages[0]
    assert [r["points"] for r in summary["adaptive"]] == [80, 100]
    assert summary["n_interior"] == 100
    assert made[0].system.batch.interior.shape[0] == 100
    assert made[0].system.batch.interior.pow(2).sum(1).max() <= 1 + 1e-12
    steps = result.history.steps
    assert steps[4]["loss"] > steps[3]["loss"]  # the added points lie where the residual is large
    assert summary["loss"] < steps[4]["loss"]


# -- residual-based attention (RBA) ------------------------------------------------------------------------


def test_rba_update_is_the_papers_rule() -> None:
    rba = RBA.parse({"gamma": 0.9, "eta": 0.5})
    w = torch.tensor([1.0, 2.0, 0.5], dtype=F64)
    r = torch.tensor([-4.0, 1.0, 0.0], dtype=F64)
    torch.testing.assert_close(rba.update(w, r), torch.tensor([0.9 + 0.5, 1.8 + 0.125, 0.45], dtype=F64))
    torch.testing.assert_close(rba.update(w, torch.zeros(3, dtype=F64)), 0.9 * w)
    assert RBA.parse(True) == RBA(0.999, 0.01)
    for bad, message in [({"gamma": 1.0}, "gamma"), ({"eta": 0}, "eta"), ({"rho": 1}, "must be true"), ("x", "must be true")]:
        with pytest.raises(ValueError, match=message):
            Stage(torch.optim.Adam, 1, rba=bad)


def test_weighted_batch_multiplies_the_pde_residual_in_every_loss_path() -> None:
    """loss_terms, the chunked loss and the LM least-squares system all see r_i * w_i."""
    from kanpde.pde import Batch
    from kanpde.training.loss import PinnLeastSquares, accumulate_loss, loss_terms, weighted_loss

    torch.manual_seed(0)
    model, problem = KAN([2, 3, 1], grid_size=3, dtype=F64), Step()
    batch = problem.sample(Sampler("sobol", seed=0), 40, 16).to(F64, "cpu")
    w = torch.rand(40, dtype=F64) * 3
    weighted = Batch(batch.interior, batch.boundary, w)
    with torch.no_grad():
        r = model(batch.interior)[:, 0] - torch.where(batch.interior[:, 0] < 0, 10.0, 1.0).to(F64)
    terms = loss_terms(model, problem, weighted)
    torch.testing.assert_close(terms["pde"], (w * r).pow(2).mean().detach())
    chunked, total = accumulate_loss(model, problem, weighted, 0.1, chunk_size=7)
    torch.testing.assert_close(chunked["pde"], terms["pde"].detach())
    system = PinnLeastSquares(model, problem, weighted, 0.1)
    assert system.value() == pytest.approx(float(weighted_loss(terms, problem, 0.1).detach()), rel=1e-12)
    assert float(total) == pytest.approx(system.value(), rel=1e-12)


def test_fit_with_rba_follows_the_update_and_records_it() -> None:
    """A zero model on Step with lr = 0: |r| / max |r| is 1 on the left half and 0.1 on the right, so
    after n updates the weights there are gamma^n + eta (1 - gamma^n) / (1 - gamma) times 1 and 0.1."""
    gamma, eta, n = 0.9, 0.5, 4
    sgd = functools.partial(torch.optim.SGD, lr=0.0)
    stage = Stage(sgd, n, rba={"gamma": gamma, "eta": eta})
    result = fit(Zero(), Step(), [stage], n_interior=64, n_boundary=8)
    for j, rec in enumerate(result.history.steps, start=1):
        assert rec["rba_max"] == pytest.approx(gamma**j + eta * (1 - gamma**j) / (1 - gamma), rel=1e-12)
    summary = result.history.stages[0]
    assert summary["rba"]["max"] == pytest.approx(result.history.steps[-1]["rba_max"])
    assert summary["rba"]["gamma"] == gamma and summary["rba"]["eta"] == eta
    # the recorded pde term is the weighted one: mean (w r)^2, with w r = 10 lam_left or 1 * lam_right
    lam = gamma**1 + eta * (1 - gamma**1) / (1 - gamma)
    lam_r = gamma**1 + 0.1 * eta * (1 - gamma**1) / (1 - gamma)
    first = result.history.steps[0]
    left = (first["pde"] - lam_r**2) / (100 * lam**2 - lam_r**2)  # the left fraction of the points
    assert 0.3 < left < 0.7


def test_lm_stage_with_rba_and_rad_runs() -> None:
    torch.manual_seed(0)
    stage = Stage(LevenbergMarquardt, 4, rba=True, adaptive={"method": "rad", "every": 2, "candidates": 200})
    result = fit(KAN([2, 3, 1], grid_size=3, dtype=F64), Step(Disk()), [stage], n_interior=50, n_boundary=16)
    assert len(result.history.stages[0]["adaptive"]) == 1
    assert all(np.isfinite(r["loss"]) and r["rba_max"] >= 1 for r in result.history.steps)


# -- causal weights along time -----------------------------------------------------------------------------


class Level(Problem):
    """``u = c`` on ``[-1, 1] x [0, 2]`` (coords x, t) with ``u(x, 0) = 0``: a zero model's PDE residual is
    ``-c`` everywhere, so every time slab's mean squared residual is ``c^2``."""

    coords = ("x", "t")

    def __init__(self, c: float = 1.0) -> None:
        self.c = c
        super().__init__(Box([-1.0, 0.0], [1.0, 2.0], self.coords), [Initial(0.0)])

    def pde(self, x: Tensor, u: Field) -> Tensor:
        return u.value - self.c


def test_causal_weights_are_the_papers_formula() -> None:
    losses = torch.tensor([0.5, 2.0, 0.0, 1.0], dtype=F64)
    w = causal_weights(losses, 0.3)
    torch.testing.assert_close(w, torch.exp(-0.3 * torch.tensor([0.0, 0.5, 2.5, 2.5], dtype=F64)))
    assert w[0] == 1 and bool((w[1:] <= w[:-1]).all())
    torch.testing.assert_close(causal_weights(torch.zeros(5, dtype=F64), 10.0), torch.ones(5, dtype=F64))


def test_slabs_and_slab_losses() -> None:
    t = torch.tensor([0.0, 0.49, 0.5, 1.7, 2.0, 1.99], dtype=F64)
    slabs = causal_slabs(t, 0.0, 2.0, 4)
    assert slabs.tolist() == [0, 0, 1, 3, 3, 3]
    square = torch.tensor([1.0, 3.0, 5.0, 2.0, 4.0, 6.0], dtype=F64)
    torch.testing.assert_close(slab_losses(square, slabs, 4), torch.tensor([2.0, 5.0, 0.0, 4.0], dtype=F64))


def test_causal_schedule_moves_on_when_the_smallest_weight_exceeds_delta() -> None:
    causal = Causal.parse({"epsilon": [1e-4, 1e-3, 1.0, 2.0], "bins": 4, "delta": 0.99})
    losses = torch.ones(4, dtype=F64)  # min w = exp(-3 eps): 0.9997, 0.997, then 0.0498 < delta
    w, level = causal.weights(losses, 0)
    assert level == 2
    torch.testing.assert_close(w, torch.exp(-torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=F64)))
    assert causal.weights(losses, 3)[1] == 3  # the last epsilon stays
    assert Causal.parse(True) == Causal((1.0,), 32, 1, 0.99)
    assert Causal.parse({"epsilon": 5}).epsilon == (5.0,)


@pytest.mark.parametrize("bad, message", [
    ({"epsilon": 0}, "causal.epsilon"),
    ({"epsilon": []}, "non-empty"),
    ({"epsilon": [1.0, -1.0]}, "causal.epsilon"),
    ({"bins": 0}, "causal.bins"),
    ({"every": 1.5}, "causal.every"),
    ({"delta": 0}, "causal.delta"),
    ({"eps": 1}, "must be true"),
    ("yes", "must be true"),
])
def test_bad_causal_options_are_one_line_errors(bad, message) -> None:
    with pytest.raises(ValueError, match=message) as info:
        Stage(torch.optim.Adam, 1, causal=bad)
    assert "\n" not in str(info.value)


def test_fit_refuses_causal_weights_without_time() -> None:
    with pytest.raises(ValueError, match="causal weights need a time coordinate") as info:
        fit(Zero(), Step(), [Stage(torch.optim.Adam, 1, causal=True)], n_interior=20, n_boundary=8)
    assert "\n" not in str(info.value)


def test_fit_with_causal_weights_follows_the_formula_and_records_it() -> None:
    """A zero model on Level (|r| = c = 2 everywhere) with lr = 0: every slab's L_k is 4, so slab i's
    weight is exp(-eps 4 i); the recorded pde term is the weighted mean of w r^2 over the points."""
    sgd = functools.partial(torch.optim.SGD, lr=0.0)
    eps, bins = 0.1, 4
    stage = Stage(sgd, 3, causal={"epsilon": eps, "bins": bins})
    result = fit(Zero(), Level(2.0), [stage], sampler=Sampler("sobol", seed=0), n_interior=256, n_boundary=8)
    summary, steps = result.history.stages[0], result.history.steps
    expected = np.exp(-eps * 4.0 * np.arange(bins))
    np.testing.assert_allclose(summary["causal"]["weights"], expected, rtol=1e-12)
    assert summary["causal"]["min"] == pytest.approx(expected[-1]) and summary["causal"]["epsilon"] == eps
    assert all(r["causal_min"] == pytest.approx(expected[-1]) and r["causal_epsilon"] == eps for r in steps)
    # sobol points: 64 per slab, so the pde term is 4 * mean(w)
    assert steps[0]["pde"] == pytest.approx(4.0 * expected.mean(), rel=1e-12)


def test_causal_weights_are_monotone_in_t_and_reach_one() -> None:
    """On heat1d with a random KAN: the weights at the interior points (what multiplies r^2) never
    increase with t and are 1 in the first slab; with a zero residual (Level, c = 0) all are 1."""
    made = []

    def lm(params):
        made.append(LevenbergMarquardt(params))
        return made[-1]

    torch.manual_seed(0)
    stage = Stage(lm, 2, causal={"epsilon": 5.0, "bins": 8})
    fit(KAN([2, 4, 1], grid_size=3, dtype=F64), Heat1D(), [stage], n_interior=200, n_boundary=32)
    batch = made[0].system.batch
    t, w = batch.interior[:, 1], batch.weights.pow(2)  # the residual carries sqrt(w)
    order = torch.argsort(t)
    assert bool((w[order][1:] <= w[order][:-1] + 1e-15).all())
    assert bool((w[t < 1 / 8] == 1).all()) and float(w.min()) < 0.99
    flat = fit(Zero(), Level(0.0), [Stage(torch.optim.Adam, 2, causal={"epsilon": 100.0})], n_interior=64, n_boundary=8)
    assert flat.history.stages[0]["causal"]["weights"] == [1.0] * 32


# -- global balancing by gradient norms --------------------------------------------------------------------


def test_balance_update_is_the_moving_average_of_the_norm_ratio() -> None:
    bal = Balance.parse({"alpha": 0.5, "every": 10})
    out = bal.update({"pde": 1.0, "b": 2.0, "c": 3.0}, {"pde": 1.0, "b": 3.0, "c": 0.0})
    assert out == pytest.approx({"pde": 0.5 + 0.5 * 4.0, "b": 1.0 + 0.5 * 4.0 / 3.0, "c": 3.0})  # c: no gradient
    assert Balance.parse(True) == Balance("grad_norm", 100, 0.9)
    assert bal.due(0) and bal.due(20) and not bal.due(5)
    for bad, message in [({"method": "ntk"}, "balance.method"), ({"alpha": 1.0}, "balance.alpha"),
                         ({"every": 0}, "balance.every"), ({"beta": 1}, "must be true")]:
        with pytest.raises(ValueError, match=message):
            Stage(torch.optim.Adam, 1, balance=bad)


class Offset(nn.Module):
    """``u = w`` with ``w = 1``: gradients of the loss terms in closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1, dtype=F64))

    def forward(self, x: Tensor) -> Tensor:
        return self.w + 0 * x[:, :1]


def test_term_gradient_norms_in_closed_form_and_chunked() -> None:
    """u = w = 1 on Step (r = w - g, g = 10 or 1) with a Dirichlet 0 condition weighted 1: dT_pde/dw =
    pde_weight * 2 mean(1 - g), dT_bc/dw = 2 * 1."""
    from kanpde.training.loss import term_gradient_norms

    problem = Step()
    batch = problem.sample(Sampler("sobol", seed=0), 64, 16).to(F64, "cpu")
    g = torch.where(batch.interior[:, 0] < 0, 10.0, 1.0).to(F64)
    norms = term_gradient_norms(Offset(), problem, batch, 0.01)
    label = problem.conditions[0].label
    assert norms["pde"] == pytest.approx(abs(0.01 * 2 * float((1 - g).mean())), rel=1e-12)
    assert norms[label] == pytest.approx(2.0, rel=1e-12)
    assert term_gradient_norms(Offset(), problem, batch, 0.01, chunk_size=5) == pytest.approx(norms, rel=1e-12)


def test_grad_norm_balance_equalises_the_gradient_norms() -> None:
    """alpha = 0, one update on a KAN on heat1d (three terms whose gradient norms differ by orders of
    magnitude with pde_weight 0.01): every balanced term lambda_j T_j then has the same gradient norm,
    measured independently by autograd of loss_terms."""
    from kanpde.training.loss import loss_terms

    torch.manual_seed(1)
    problem, model = Heat1D(), KAN([2, 4, 1], grid_size=3, dtype=F64)
    sgd = functools.partial(torch.optim.SGD, lr=0.0)
    stage = Stage(sgd, 1, balance={"alpha": 0.0, "every": 1})
    result = fit(model, problem, [stage], sampler=Sampler("sobol", seed=0), n_interior=128, n_boundary=48)
    lam = {k.split(":", 1)[1]: v for k, v in result.history.steps[0].items() if k.startswith("balance:")}
    assert set(lam) == {"pde", *(c.label for c in problem.conditions)}
    batch = problem.sample(Sampler("sobol", seed=0), 128, 48).to(F64, "cpu")
    terms = loss_terms(model, problem, batch)
    weights = {"pde": 0.01, **{c.label: c.weight for c in problem.conditions}}
    norms = {}
    for label, term in terms.items():
        grads = torch.autograd.grad(weights[label] * term, list(model.parameters()), retain_graph=True)
        norms[label] = float(torch.cat([gr.reshape(-1) for gr in grads]).norm())
    assert max(norms.values()) / min(norms.values()) > 10  # unbalanced before
    balanced = [lam[k] * norms[k] for k in norms]
    np.testing.assert_allclose(balanced, sum(norms.values()), rtol=1e-10)
    assert result.history.stages[0]["balance"]["pde"] == lam["pde"]


# -- every weight in every optimizer ------------------------------------------------------------------------


def test_lm_system_loss_equals_the_weighted_loss() -> None:
    """With causal point weights, RBA and global term weights, the LM least-squares system (its value,
    its ||r||^2 and its J^T r) is the trainer's loss: ||r||^2 = loss and 2 J^T r = its gradient."""
    from kanpde.training.loss import PinnLeastSquares, accumulate_loss, loss_terms, weighted_loss

    made = []

    def lm(params):
        made.append(LevenbergMarquardt(params))
        return made[-1]

    torch.manual_seed(2)
    problem = Heat1D()
    stage = Stage(lm, 2, causal={"epsilon": 2.0, "bins": 5}, rba={"gamma": 0.5, "eta": 1.0},
                  balance={"alpha": 0.5, "every": 1})
    result = fit(KAN([2, 3, 1], grid_size=3, dtype=F64), problem, [stage], n_interior=80, n_boundary=40)
    system, model = made[0].system, result.model
    lam = system.balance
    assert lam is not None and len(set(lam.values())) > 1
    assert system.value() == pytest.approx(result.history.stages[0]["loss"], rel=1e-12)
    terms = loss_terms(model, problem, system.batch)
    loss = weighted_loss(terms, problem, 0.01, lam)
    assert float(loss.detach()) == pytest.approx(system.value(), rel=1e-12)
    _, chunked = accumulate_loss(model, problem, system.batch, 0.01, chunk_size=7, balance=lam)
    assert float(chunked) == pytest.approx(float(loss.detach()), rel=1e-12)
    J, r = system.jacobian()
    assert float(r @ r) == pytest.approx(float(loss.detach()), rel=1e-12)
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])
    torch.testing.assert_close(2 * J.T @ r, grad, rtol=1e-10, atol=1e-12)
    # the loss is weighted: unweighted, it differs
    plain = weighted_loss(loss_terms(model, problem, Batch(system.batch.interior, system.batch.boundary)), problem, 0.01)
    assert float(plain.detach()) != pytest.approx(float(loss.detach()), rel=1e-3)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs", "ssbroyden", "lm"])
def test_causal_and_balance_train_with_every_optimizer(optimizer) -> None:
    """Causal weights and gradient-norm balancing with each optimizer family on heat1d: every step
    records the weights, and the plain (unweighted) loss on the stage's points goes down (the weighted
    one may rise as the weights move)."""
    import copy

    from kanpde.training.loss import loss_terms, weighted_loss

    factories = {"adam": functools.partial(torch.optim.Adam, lr=0.02),
                 "lbfgs": functools.partial(torch.optim.LBFGS, max_iter=5, line_search_fn="strong_wolfe"),
                 "ssbroyden": functools.partial(SSBroyden, max_iter=5), "lm": LevenbergMarquardt}
    torch.manual_seed(0)
    steps = 20 if optimizer == "adam" else 4
    stage = Stage(factories[optimizer], steps, causal={"epsilon": 1.0, "bins": 8, "every": 2},
                  balance={"every": 2, "alpha": 0.5})
    problem, model = Heat1D(), KAN([2, 3, 1], grid_size=3, dtype=F64)
    start = copy.deepcopy(model)
    result = fit(model, problem, [stage], sampler=Sampler("sobol", seed=0), n_interior=64, n_boundary=32)
    rows = result.history.steps
    assert all(np.isfinite(r["loss"]) and 0 < r["causal_min"] <= 1 and r["balance:pde"] > 0 for r in rows)
    batch = problem.sample(Sampler("sobol", seed=0), 64, 32).to(F64, "cpu")

    def plain(m):
        return float(weighted_loss(loss_terms(m, problem, batch), problem, 0.01).detach())

    assert plain(result.model) < plain(start)
