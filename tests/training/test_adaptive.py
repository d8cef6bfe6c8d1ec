"""Adaptive collocation (kanpde.training.adaptive): RAD and RAR-D densities, draws and their place in fit."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from kanpde import KAN, Box, Dirichlet, Problem, Sampler, Stage, fit
from kanpde.derivatives.field import Field
from kanpde.pde.shapes import Disk
from kanpde.training.adaptive import RBA, Adaptive, choose, density, resample
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
