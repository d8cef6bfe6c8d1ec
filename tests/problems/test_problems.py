"""The shipped problem library (problems/, installed as kanpde.problems): one module, class and config per
problem; exact solutions that satisfy their PDE and conditions; every problem composing with both models and
running the fast preset end to end."""

from __future__ import annotations

import importlib
import inspect
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from torch import Tensor

from kanpde import Problem, Sampler, loss_terms, make_field
from kanpde.app.config import build_spec
from kanpde.app.run import FINAL_TIME_KEYS, run
from tests.helpers import CONF_DIR, F64, PROBLEMS_DIR, SMALL_PROBLEM_KWARGS, SMALL_PROBLEM_OVERRIDES, FunctionModule, make_cfg

# -- discovery: one module, one class, one yaml per stem ---------------------------------------------------

STEMS = sorted(p.stem for p in PROBLEMS_DIR.glob("*.py") if not p.stem.startswith("_"))
YAML_STEMS = sorted(p.stem for p in (CONF_DIR / "problem").glob("*.yaml") if p.stem != "custom")


def problem_class(stem: str) -> type[Problem]:
    module = importlib.import_module(f"kanpde.problems.{stem}")
    classes = [
        c for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, Problem) and c is not Problem and c.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"problems/{stem}.py must define exactly one Problem, found {classes}"
    return classes[0]


def test_problems_are_shipped() -> None:
    assert "poisson2d" in STEMS
    assert (CONF_DIR / "problem" / "custom.yaml").is_file()


def test_every_problem_module_has_its_yaml_and_vice_versa() -> None:
    assert STEMS == YAML_STEMS
    for stem in STEMS:
        cls = problem_class(stem)
        assert cls.__name__.lower() == stem.replace("_", ""), "class name follows the stem (poisson2d_robin -> Poisson2DRobin)"
        node = yaml.safe_load((CONF_DIR / "problem" / f"{stem}.yaml").read_text())
        assert node["_target_"] == f"kanpde.problems.{stem}.{cls.__name__}"
    assert yaml.safe_load((CONF_DIR / "problem" / "custom.yaml").read_text())["_target_"] == "???"


@pytest.fixture(params=STEMS)
def problem(request: pytest.FixtureRequest) -> Problem:
    return problem_class(request.param)(**SMALL_PROBLEM_KWARGS.get(request.param, {}))


def is_reference(problem: Problem) -> bool:
    """Problems whose solution is a numerically computed reference (checked by finite differences instead)."""
    return getattr(problem, "reference_solution", False)


# Max |residual| of each exact solution, for the PDE and for the conditions; problems not listed: (1e-8, 1e-12).
TOLERANCES = {
    "laplace_lshape": (1e-6, 1e-12),  # the exact solution's derivatives grow like r^(-4/3) near the corner
}


def residual_tol(problem: Problem) -> float:
    return TOLERANCES.get(problem.name, (1e-8, 1e-12))[0]


def condition_tol(problem: Problem) -> float:
    return TOLERANCES.get(problem.name, (1e-8, 1e-12))[1]


def test_tolerances_name_shipped_problems() -> None:
    assert set(TOLERANCES) <= set(STEMS)


def test_problem_basics(problem: Problem) -> None:
    assert problem.has_exact
    assert problem.name in STEMS
    assert problem.dim == problem.geometry.dim == len(problem.coords)
    assert tuple(problem.geometry.names) == tuple(problem.coords)


def test_exact_solution_has_zero_pde_residual(problem: Problem) -> None:
    if is_reference(problem):
        pytest.skip("a reference solution: its residual is checked by finite differences in tests/problems/test_reference.py")
    batch = problem.sample(Sampler("sobol", seed=3), 512, 64)
    x = batch.interior
    assert x.dtype == F64
    u = make_field(FunctionModule(problem.exact), x, problem.coords, problem.outputs, time_coord=problem.time_coord)
    residual = problem.pde(x, u)
    residuals = [residual] if isinstance(residual, Tensor) else list(residual)
    for r in residuals:
        assert r.shape == (512,)
        assert r.abs().max().item() <= residual_tol(problem)  # poisson2d: measured 7e-15 against |f| up to 34


def test_exact_solution_satisfies_the_boundary_conditions(problem: Problem) -> None:
    batch = problem.sample(Sampler("sobol", seed=4), 64, 256)
    model = FunctionModule(problem.exact)
    bc_tol = condition_tol(problem)
    for cond in problem.conditions:
        pts = batch.boundary[cond.label]
        if is_reference(problem) and cond.derivatives:
            continue  # derivatives of a reference solution: checked in tests/problems/test_reference.py
        u = make_field(model, pts.x, problem.coords, problem.outputs, time_coord=problem.time_coord)
        assert cond.residual(pts, u).abs().max().item() <= bc_tol
    if is_reference(problem):
        return
    terms = loss_terms(model, problem, batch)
    assert terms["pde"].item() <= residual_tol(problem) ** 2
    assert all(terms[c.label].item() <= 1e-24 for c in problem.conditions)


def test_exact_grad_matches_autograd_of_exact(problem: Problem) -> None:
    if is_reference(problem):
        pytest.skip("a reference solution (not differentiable by autograd): tested in tests/problems/test_reference.py")
    x = torch.from_numpy(problem.geometry.sample_interior(Sampler("uniform", seed=0), 200))
    by_autograd = Problem.exact_grad(problem, x)
    torch.testing.assert_close(problem.exact_grad(x), by_autograd, rtol=0, atol=1e-12)


def test_poisson2d_known_values() -> None:
    p = problem_class("poisson2d")()
    x = torch.tensor([[0.5, 0.5], [-0.5, 1.0], [0.25, -0.75]], dtype=F64)
    expected = [math.sin(math.pi / 2) * math.sin(math.pi / 4), 0.0, math.sin(math.pi / 4) * math.sin(math.pi * 0.5625)]
    torch.testing.assert_close(p.exact(x), torch.tensor(expected, dtype=F64), rtol=0, atol=1e-15)
    assert p.geometry.lo.tolist() == [-1, -1] and p.geometry.hi.tolist() == [1, 1]
    assert [c.kind for c in p.conditions] == ["dirichlet"] and p.conditions[0].label == "dirichlet[all]"


# -- every shipped problem composes with both models and runs the fast preset ------------------------------


def test_library_is_shipped() -> None:
    expected = {"poisson2d", "poisson2d_robin", "poisson3d", "poisson5d", "laplace_lshape", "helmholtz2d",
                "nonlinear_poisson2d", "heat1d", "advection1d", "wave1d", "burgers1d", "allencahn1d", "kovasznay"}
    assert expected <= set(STEMS)


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("model", ["kan", "mlp"])
def test_every_problem_composes_with_both_models(stem: str, model: str, tmp_path: Path) -> None:
    built = build_spec(make_cfg(f"problem={stem}", f"model={model}", *SMALL_PROBLEM_OVERRIDES.get(stem, [])), tmp_path, "test")
    assert built.problem.name == stem
    assert list(built.models[0].node.widths)[0] == built.problem.dim
    assert list(built.models[0].node.widths)[-1] == built.problem.n_outputs


@pytest.mark.slow
@pytest.mark.parametrize("stem", STEMS)
def test_every_problem_runs_the_fast_preset(stem: str, tmp_path: Path) -> None:
    """One in-process run trains the KAN and its MLP baseline; figures for the 2-D kinds of domain only."""
    figures = stem in ("laplace_lshape", "burgers1d", "kovasznay")
    cfg = make_cfg(f"problem={stem}", "debug=fast", f"output.figures={str(figures).lower()}",
                   "output.checkpoint=false", *SMALL_PROBLEM_OVERRIDES.get(stem, []))
    metrics = run(cfg, output_dir=tmp_path)
    for m in (metrics, metrics["baseline"]):
        assert m["problem"] == stem and m["status"] == "ok"
        assert math.isfinite(m["l2_rel"]) and math.isfinite(m["h1_rel"])
        time_keys = set(FINAL_TIME_KEYS) & set(m)
        assert time_keys == (set(FINAL_TIME_KEYS) if "t" in problem_class(stem).coords else set())
    assert {metrics["model"], metrics["baseline"]["model"]} == {"kan", "mlp"}
    assert (tmp_path / "solution.h5").is_file() and (tmp_path / "metrics.json").is_file()
    if figures:
        assert (tmp_path / "solution.png").is_file()
        assert (tmp_path / "final_time.png").is_file() == (stem == "burgers1d")
    if stem == "laplace_lshape":
        with h5py.File(tmp_path / "solution.h5") as f:
            mask = f["main/mask"][()]
            u = f["main/fields/u/predicted"][()]
        assert mask.shape == u.shape == (21, 21) and np.isnan(u[~mask]).all() and np.isfinite(u[mask]).all()

