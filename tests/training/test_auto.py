"""``optimizer: auto`` (kanpde/training/auto.py): the rule's tiers and bounds on small and large models (the
choice only, no training), its log line and records in a fit; ``causal: auto`` on with a time coordinate
(burgers1d) and off without (poisson2d)."""

from __future__ import annotations

import functools
import logging

import pytest
import torch

from kanpde import KAN, MLP, AutoOptimizer, LevenbergMarquardt, SSBroyden, Stage, fit
from kanpde.problems.burgers1d import Burgers1D
from kanpde.problems.poisson2d import Poisson2D
from kanpde.training.adaptive import Causal

F64 = torch.float64
LBFGS = functools.partial(torch.optim.LBFGS, max_iter=2)


def auto(**bounds) -> AutoOptimizer:
    return AutoOptimizer(LevenbergMarquardt, SSBroyden, LBFGS, **bounds)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_rule_at_its_bounds() -> None:
    rule = auto()  # lm: P <= 5,000 and N P 8 bytes <= 512 MB; quasi-Newton: 8 P^2 bytes <= 800 MB
    assert rule.quasi_newton_max_params == 10_000
    assert rule.choose(5_000, 12_800).tier == "lm"  # Jacobian exactly 512 MB
    assert rule.choose(5_000, 12_801).tier == "quasi_newton"  # one point more
    assert rule.choose(5_001, 100).tier == "quasi_newton"  # one parameter over lm_max_params
    assert rule.choose(10_000, 10**6).tier == "quasi_newton"  # inverse Hessian exactly 800 MB
    assert rule.choose(10_001, 100).tier == "fallback"
    assert auto(hessian_max_mb=8e-6 * 99.5**2).quasi_newton_max_params == 99  # 8 P^2 bytes <= bound, P integer
    assert auto(lm_max_params=0).choose(1, 1).tier == "quasi_newton"


def test_small_and_large_models_resolve_to_lm_ssbroyden_and_lbfgs() -> None:
    """Real models through the factory call (no points: the parameter bounds alone), then with the points of
    the accurate recipe (4,000 interior + 800 boundary)."""
    rule = auto()
    kan = KAN([2, 10, 1], grid_size=20, dtype=F64)  # 750 parameters
    mid = MLP([2, 60, 60, 60, 1], dtype=F64)  # 7,561
    big = MLP([2, 120, 120, 120, 1], dtype=F64)  # 29,521
    assert [count(m) for m in (kan, mid, big)] == [750, 7_561, 29_521]
    assert isinstance(rule(kan.parameters()), LevenbergMarquardt)
    assert isinstance(rule(big.parameters()), torch.optim.LBFGS)
    assert isinstance(rule(kan.parameters(), n_points=4_800), LevenbergMarquardt)
    # (an SSBroyden of 7,561 parameters would allocate its 457 MB inverse Hessian: the factory is checked)
    assert rule.choose(count(mid), 0).factory is SSBroyden
    assert rule.choose(count(kan), 200_000).factory is SSBroyden  # Jacobian 1.2 GB
    choice = rule.choose(count(kan), 4_800)
    assert choice.describe() == "lm (750 parameters, 4,800 points: Jacobian 29 MB)"
    assert choice.record()["jacobian_mb"] == pytest.approx(4_800 * 750 * 8 / 1e6)
    assert rule.choose(count(mid), 4_800).describe() == ("ssbroyden (7,561 parameters, 4,800 points: 7,561 > "
                                                          "lm_max_params 5,000; inverse Hessian 457 MB)")
    assert rule.choose(count(big), 4_800).name == "lbfgs"


@pytest.mark.parametrize("bad,message", [
    ({"lm_max_params": -1}, "lm_max_params must be an integer >= 0"),
    ({"lm_max_params": 1.5}, "lm_max_params must be an integer >= 0"),
    ({"jacobian_max_mb": float("inf")}, "jacobian_max_mb must be a finite number"),
    ({"hessian_max_mb": -1.0}, "hessian_max_mb must be a finite number"),
    ({"names": ("lm", "ssbroyden")}, "names must be three names"),
])
def test_bad_bounds_are_one_line_errors(bad, message) -> None:
    with pytest.raises(ValueError, match=message):
        auto(**bad)


def test_fit_resolves_auto_per_stage_logs_it_once_and_records_it(caplog) -> None:
    """The grid extension between the stages takes the KAN over lm_max_params: LM at grid 3, SSBroyden at grid 10."""
    torch.manual_seed(0)
    model = KAN([2, 3, 1], grid_size=3, dtype=F64)  # 72 parameters at grid 3, 135 at grid 10
    rule = auto(lm_max_params=100)
    stages = [Stage(rule, 1), Stage(rule, 1, grid_size=10)]
    with caplog.at_level(logging.INFO, logger="kanpde.training.fit"):
        result = fit(model, Poisson2D(), stages, n_interior=64, n_boundary=16)
    lines = [r.getMessage() for r in caplog.records if "optimizer auto" in r.getMessage()]
    assert lines == ["stage 1 (KAN): optimizer auto -> lm (72 parameters, 80 points: Jacobian 0.046 MB)",
                     "stage 2 (KAN): optimizer auto -> ssbroyden (135 parameters, 80 points: 135 > lm_max_params 100; "
                     "inverse Hessian 0.15 MB)"]
    first, second = result.history.stages
    assert first["optimizer"] == "LevenbergMarquardt" and first["auto"]["optimizer"] == "lm"
    assert second["optimizer"] == "SSBroyden" and second["auto"]["tier"] == "quasi_newton"
    assert (second["auto"]["n_params"], second["auto"]["n_points"]) == (135, 80) == (second["n_params"], 80)


# -- causal: auto -----------------------------------------------------------------------------------------


def test_causal_auto_parses() -> None:
    assert Causal.parse("auto") == Causal(auto=True)
    assert Causal.parse({"auto": True, "epsilon": 2.0}) == Causal(epsilon=(2.0,), auto=True)
    assert Stage(torch.optim.Adam, 1, causal="auto").causal.auto
    with pytest.raises(ValueError, match="causal.auto must be true or false"):
        Causal.parse({"auto": "yes"})
    with pytest.raises(ValueError, match="stage causal must be true, auto or"):
        Causal.parse("on")


@pytest.mark.parametrize("problem,on", [(Burgers1D, True), (Poisson2D, False)], ids=["burgers1d", "poisson2d"])
def test_causal_auto_is_on_with_time_and_off_without(problem, on: bool, caplog) -> None:
    torch.manual_seed(0)
    stage = Stage(functools.partial(torch.optim.Adam, lr=1e-3), 2, causal={"auto": True, "bins": 4})
    with caplog.at_level(logging.INFO, logger="kanpde.training.fit"):
        result = fit(KAN([2, 3, 1], grid_size=3, dtype=F64), problem(), [stage], n_interior=64, n_boundary=16)
    summary, steps = result.history.stages[0], result.history.steps
    assert summary["causal_auto"] == ("on" if on else "off")
    assert ("causal" in summary) is on and all(("causal_min" in s) is on for s in steps)
    if on:
        assert summary["causal"]["bins"] == 4 and summary["causal"]["min"] < 1.0  # weights at work
    line = next(r.getMessage() for r in caplog.records if "causal auto" in r.getMessage())
    assert line == ("stage 1: causal auto -> on (time coordinate 't')" if on
                    else "stage 1: causal auto -> off (coords ['x', 'y']: no time coordinate 't')")


def test_plain_causal_is_still_refused_without_time() -> None:
    with pytest.raises(ValueError, match="causal weights need a time coordinate"):
        fit(KAN([2, 3, 1], dtype=F64), Poisson2D(), [Stage(torch.optim.Adam, 1, causal=True)], n_interior=16,
            n_boundary=8)
