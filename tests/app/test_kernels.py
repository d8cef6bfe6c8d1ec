"""Honest timings (kanpde.app.kernels and the trainer's clock): kernel compilation happens before the timed
training, is recorded as ``compile_seconds`` and never counted in ``train_seconds``; a clean run warns of
nothing.

Compilation is simulated: the kernels' dispatchers are wrapped so that their first call advances a fake
``time.perf_counter`` by ``SLOW`` seconds and reports a cache miss, as a real first compilation would. No
test here reads the real clock."""

from __future__ import annotations

import itertools
import time
import warnings
from pathlib import Path

import pytest
import torch

import kanpde.models._kernels as kernels
from kanpde import Stage, fit
from kanpde.app.kernels import compile_ahead
from kanpde.app.run import run
from kanpde.models import KAN, MLP, compile_seconds, fused_available
from kanpde.problems.poisson2d import Poisson2D
from tests.helpers import F64, fast_cfg

SLOW = 100.0  # fake seconds one compilation takes

pytestmark = pytest.mark.skipif(not fused_available(torch.empty(0)), reason="the CPU kernels are not available here")


class _Stats:
    def __init__(self) -> None:
        self.cache_misses: dict[tuple, int] = {}


class _SlowFirstCall:
    """A kernel dispatcher whose first call 'compiles': the fake clock jumps by SLOW, a new overload and a
    cache miss appear, then the real kernel runs."""

    def __init__(self, kernel, clock: _FakeClock) -> None:
        self.kernel, self.clock = kernel, clock
        self.overloads: dict[int, object] = {}
        self.stats = _Stats()

    def __call__(self, *args):
        if not self.overloads:
            self.clock.now += SLOW
            self.overloads[0] = object()
            self.stats.cache_misses[()] = 1
        return self.kernel(*args)


class _FakeClock:
    """``time.perf_counter`` that ticks a microsecond per call (so durations are positive and tiny)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.ticks = itertools.count()

    def __call__(self) -> float:
        return self.now + 1e-6 * next(self.ticks)


@pytest.fixture
def slow_compiles(monkeypatch) -> _FakeClock:
    """Every kernel built from now on compiles 'slowly' (fresh registry: the configurations are built again)."""
    clock = _FakeClock()
    monkeypatch.setattr(time, "perf_counter", clock)
    monkeypatch.setattr(kernels, "_KERNELS", {})
    built = kernels._built

    def slow_built(what, make, config):
        def slow_make(*cfg):
            forward, backward = make(*cfg)
            return _SlowFirstCall(forward, clock), _SlowFirstCall(backward, clock)

        return built(what, slow_make, config)

    monkeypatch.setattr(kernels, "_built", slow_built)
    import kanpde.models._kernels.elementwise as elementwise
    import kanpde.models._kernels.spline as spline

    monkeypatch.setattr(spline, "_built", slow_built)
    monkeypatch.setattr(elementwise, "_built", slow_built)
    return clock


def _problem_and_model(kind: str):
    torch.manual_seed(0)
    model = KAN([2, 3, 1], grid_size=4, dtype=F64) if kind == "kan" else MLP([2, 6, 1]).to(F64)
    return Poisson2D(), model


@pytest.mark.slow  # seconds of numba cache loads for freshly built kernels
@pytest.mark.parametrize("kind", ["kan", "mlp"])
def test_compilation_inside_fit_is_not_training_time(slow_compiles, kind: str) -> None:
    """A compilation that happens inside fit (nothing compiled ahead) stays out of its seconds and the
    history's stage seconds and step times; it is in compile_seconds."""
    problem, model = _problem_and_model(kind)
    before = compile_seconds()
    result = fit(model, problem, [Stage(torch.optim.Adam, steps=2)], n_interior=16, n_boundary=8)
    compiled = compile_seconds() - before
    assert compiled >= 2 * SLOW  # forward and backward of (at least) one configuration
    assert 0 < result.seconds < 1.0
    assert 0 < result.history.stages[0]["seconds"] < 1.0
    assert all(row["time"] < 1.0 for row in result.history.steps)


@pytest.mark.slow  # seconds of numba cache loads for freshly built kernels
def test_compile_ahead_compiles_what_fit_then_uses(slow_compiles) -> None:
    """compile_ahead reaches every kernel of the training and of the evaluation: fit afterwards compiles nothing."""
    problem, model = _problem_and_model("kan")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    compiled = compile_ahead(model, problem)
    assert compiled >= 2 * SLOW  # the KAN layer's forward and backward kernels (one pair for every plan)
    assert torch.equal(torch.get_rng_state(), rng)  # no draw from torch's generator
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    before = compile_seconds()
    fit(model, problem, [Stage(torch.optim.Adam, steps=2)], n_interior=16, n_boundary=8)
    from kanpde.evaluate import evaluate

    evaluate(model, problem, 5)
    assert compile_seconds() == before


@pytest.mark.slow  # seconds of numba cache loads for freshly built kernels
def test_evaluation_runs_the_kernels_training_built(slow_compiles) -> None:
    """Values and gradients on the evaluation grid go through the PDE's plan (it carries every first
    derivative of poisson2d), so evaluating builds no kernel configuration of its own: the first run
    after installing compiles one KAN layer pair, not a pair plus an evaluation forward."""
    problem, model = _problem_and_model("kan")
    fit(model, problem, [Stage(torch.optim.Adam, steps=2)], n_interior=16, n_boundary=8)
    built = set(kernels._KERNELS)
    from kanpde.evaluate import evaluate

    evaluate(model, problem, 5)
    assert set(kernels._KERNELS) == built


def test_compile_ahead_is_a_no_op_on_the_autograd_engine(slow_compiles) -> None:
    problem, model = _problem_and_model("kan")
    assert compile_ahead(model, problem, engine="autograd") == 0.0


@pytest.mark.slow  # seconds of numba cache loads for freshly built kernels
def test_run_records_compile_seconds_apart_from_train_seconds(slow_compiles, tmp_path: Path) -> None:
    """Through run(cfg): each model's compile time is in metrics.json's compile_seconds, its train_seconds
    holds none of it."""
    metrics = run(fast_cfg("output.checkpoint=false"), output_dir=tmp_path)
    for entry in (metrics, metrics["baseline"]):
        assert entry["compile_seconds"] >= 2 * SLOW
        assert 0 < entry["train_seconds"] < 1.0


@pytest.mark.slow
def test_a_clean_run_warns_of_nothing(tmp_path: Path) -> None:
    """debug=fast with Adam, L-BFGS and Levenberg-Marquardt stages, figures included: no warning at all
    (torch's warn-once messages made to warn every time, so an earlier test cannot hide one)."""
    cfg = fast_cfg("output.figures=true",
                   "trainer.stages=[{optimizer: adam, steps: 2}, {optimizer: lbfgs, steps: 1, grid_size: 6}, "
                   "{optimizer: lm, steps: 1}]")
    warn_always = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            metrics = run(cfg, output_dir=tmp_path)
    finally:
        torch.set_warn_always(warn_always)
    assert metrics["status"] == "ok"
