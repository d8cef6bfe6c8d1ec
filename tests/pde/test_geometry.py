"""The problem library: conditions (Robin, periodic, initial), non-box geometry, masked and final-time
evaluation, bad-input errors, and every shipped problem composing and running the fast preset."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from torch import Tensor

from tests.helpers import CONF_DIR, F64, REPO_ROOT, FunctionModule
from kanpde import (
    Annulus, Box, Dirichlet, Disk, Initial, LShape, Periodic, Polygon, Problem, Robin, Sampler,
    evaluate, loss_terms, make_field,
)
from kanpde.app.run import FINAL_TIME_KEYS, ConfigError, _build, run

STEMS = sorted(p.stem for p in (CONF_DIR / "problem").glob("*.yaml") if p.stem != "custom")
# the Allen–Cahn reference is computed at first use: a coarse, fast solver in tests (its accuracy: test_references)
SMALL = {"allencahn1d": ["problem.n_modes=256", "problem.dt=1e-3", "problem.n_out=101"]}


def make_cfg(*overrides: str) -> DictConfig:
    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


# -- every shipped problem composes and runs -----------------------------------------------------------------


def test_library_is_shipped() -> None:
    expected = {"poisson2d", "poisson2d_robin", "poisson3d", "poisson5d", "laplace_lshape", "helmholtz2d",
                "nonlinear_poisson2d", "heat1d", "advection1d", "wave1d", "burgers1d", "allencahn1d", "kovasznay"}
    assert expected <= set(STEMS)


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("model", ["kan", "mlp"])
def test_every_problem_composes_with_both_models(stem: str, model: str, tmp_path: Path) -> None:
    built = _build(make_cfg(f"problem={stem}", f"model={model}", *SMALL.get(stem, [])), tmp_path)
    assert built.problem.name == stem
    assert list(built.model_cfg.widths)[0] == built.problem.dim
    assert list(built.model_cfg.widths)[-1] == built.problem.n_outputs


@pytest.mark.parametrize("stem", STEMS)
def test_every_problem_runs_the_fast_preset(stem: str, tmp_path: Path) -> None:
    """One in-process run trains the KAN and its MLP baseline; figures for the 2-D kinds of domain only."""
    figures = stem in ("laplace_lshape", "burgers1d", "kovasznay")
    cfg = make_cfg(f"problem={stem}", "debug=fast", f"output.figures={str(figures).lower()}",
                   "output.checkpoint=false", *SMALL.get(stem, []))
    metrics = run(cfg, output_dir=tmp_path)
    for m in (metrics, metrics["baseline"]):
        assert m["problem"] == stem and m["status"] == "ok"
        assert math.isfinite(m["l2_rel"]) and math.isfinite(m["h1_rel"])
        time_keys = set(FINAL_TIME_KEYS) & set(m)
        assert time_keys == (set(FINAL_TIME_KEYS) if "t" in cfg_coords(stem) else set())
    assert {metrics["model"], metrics["baseline"]["model"]} == {"kan", "mlp"}
    assert (tmp_path / "solution.h5").is_file() and (tmp_path / "metrics.json").is_file()
    if figures:
        assert (tmp_path / "solution.png").is_file()
        assert (tmp_path / "final_time.png").is_file() == (stem == "burgers1d")
    if stem == "laplace_lshape":
        import h5py

        with h5py.File(tmp_path / "solution.h5") as f:
            mask = f["main/mask"][()]
            u = f["main/fields/u/predicted"][()]
        assert mask.shape == u.shape == (21, 21) and np.isnan(u[~mask]).all() and np.isfinite(u[mask]).all()


def cfg_coords(stem: str) -> tuple[str, ...]:
    import importlib

    module = importlib.import_module(f"kanpde.problems.{stem}")
    return next(c for c in vars(module).values() if isinstance(c, type) and issubclass(c, Problem) and c.__module__ == module.__name__).coords


# -- conditions ----------------------------------------------------------------------------------------------


class _Square(Problem):
    coords = ("x", "y")

    def __init__(self, conditions) -> None:
        super().__init__(Box([0.0, 0.0], [1.0, 1.0], self.coords), conditions)


def test_robin_residual_is_a_u_plus_b_dudn_minus_g() -> None:
    cond = Robin("x+", a=2.0, b=3.0, value=1.0)
    problem = _Square([cond])
    batch = problem.sample(Sampler("sobol", seed=0), 16, 32)
    model = FunctionModule(lambda x: x[:, 0] ** 2 + x[:, 1])  # on x = 1: u = 1 + y, du/dn = u_x = 2
    pts = batch.boundary[cond.label]
    r = cond.residual(pts, make_field(model, pts.x, problem.coords))
    torch.testing.assert_close(r, 2.0 * (1 + pts.x[:, 1]) + 3.0 * 2.0 - 1.0, rtol=0, atol=1e-13)
    assert cond.label == "robin[x+]"


def test_periodic_points_come_in_matched_pairs_and_compare_values_and_derivatives() -> None:
    cond = Periodic(("x-", "x+"), derivatives=("x",))
    problem = _Square([cond])
    pts = problem.sample(Sampler("sobol", seed=0), 16, 40).boundary[cond.label]
    n = pts.x.shape[0] // 2
    assert torch.all(pts.x[:n, 0] == 0) and torch.all(pts.x[n:, 0] == 1)
    torch.testing.assert_close(pts.x[:n, 1], pts.x[n:, 1], rtol=0, atol=0)
    periodic = FunctionModule(lambda x: torch.sin(2 * math.pi * x[:, 0]) * x[:, 1])
    assert cond.residual(pts, make_field(periodic, pts.x, problem.coords)).abs().max() <= 1e-12
    # u = x: values differ by -1 (0 - 1), derivatives agree
    r = cond.residual(pts, make_field(FunctionModule(lambda x: x[:, 0]), pts.x, problem.coords))
    torch.testing.assert_close(r, torch.cat([-torch.ones(n, dtype=F64), torch.zeros(n, dtype=F64)]))


class _Rod(Problem):
    coords = ("x", "t")

    def __init__(self, conditions) -> None:
        super().__init__(Box([0.0, 0.0], [1.0, 2.0], self.coords), conditions)


def test_initial_conditions_on_value_and_time_derivative() -> None:
    value, rate = Initial(lambda x: torch.sin(x[:, 0])), Initial(3.0, derivative=True)
    problem = _Rod([value, rate])
    batch = problem.sample(Sampler("sobol", seed=0), 16, 32)
    model = FunctionModule(lambda x: torch.sin(x[:, 0]) + 3 * x[:, 1] + x[:, 1] ** 2)
    for cond in (value, rate):
        pts = batch.boundary[cond.label]
        assert torch.all(pts.x[:, 1] == 0)
        assert cond.residual(pts, make_field(model, pts.x, problem.coords)).abs().max() <= 1e-13
    assert {value.label, rate.label} == {"initial[t-]", "initial_t[t-]"}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: _Square([Dirichlet("z+")]), "unknown boundary piece"),
        (lambda: _Square([Periodic(("x-", "y+"))]), "does not match"),
        (lambda: _Square([Periodic(("x-", "x-"))]), "does not match"),
        (lambda: _Rod([Dirichlet(("x-", "x+"))]), "no initial condition"),
        (lambda: _Rod([Initial(0.0, on="t+")]), "initial face"),
        (lambda: _Square([Initial(0.0, on="x-")]), "need a time coordinate"),
        (lambda: Periodic(("x-",)), "pair"),
    ],
)
def test_bad_conditions_are_clear_value_errors(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


class MissingInitial(_Rod):
    """A time-dependent problem with no initial condition: refused before training."""

    def __init__(self) -> None:
        super().__init__([Dirichlet(("x-", "x+"))])

    def exact(self, x: Tensor) -> Tensor:
        return x[:, 0]


def test_bad_problem_is_a_config_error_before_training(tmp_path: Path) -> None:
    cfg = make_cfg("problem=custom", f"problem._target_={__name__}.MissingInitial", "debug=fast")
    with pytest.raises(ConfigError, match="no initial condition"):
        run(cfg, output_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "solution.h5").exists()


# -- geometry ------------------------------------------------------------------------------------------------

GEOMETRIES = {
    "disk": lambda: Disk((0.5, -0.25), 2.0),
    "annulus": lambda: Annulus((0.0, 0.0), 0.4, 1.0),
    "lshape": LShape,
    "triangle": lambda: Polygon([(0, 0), (0, 1), (2, 0)]),  # clockwise on input
}


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_boundary_points_lie_on_the_boundary_with_outward_unit_normals(name: str) -> None:
    geo = GEOMETRIES[name]()
    for piece in geo.pieces:
        x, n = geo.sample_boundary(piece, Sampler("sobol", seed=1), 64)
        assert x.shape == n.shape == (64, 2)
        assert np.abs(geo.sdf(x)).max() <= 1e-12
        np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-14)
        delta = 1e-6
        assert np.all(geo.sdf(x + delta * n) > 0) and np.all(geo.sdf(x - delta * n) < 0)


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_interior_points_are_inside_and_fill_the_area(name: str) -> None:
    geo = GEOMETRIES[name]()
    x = geo.sample_interior(Sampler("sobol", seed=2), 4000)
    assert x.shape == (4000, 2) and np.all(geo.sdf(x) < 0)
    lo, hi = geo.bounding_box
    probe = lo + np.random.default_rng(0).random((200_000, 2)) * (hi - lo)
    assert geo.contains(probe).mean() * np.prod(hi - lo) == pytest.approx(geo.volume, rel=0.01)


def test_disk_boundary_is_uniform_in_arc_length() -> None:
    disk = Disk((0.0, 0.0), 1.5)
    x, _ = disk.sample_boundary("circle", Sampler("uniform", seed=3), 4000)
    theta = np.sort(np.mod(np.arctan2(x[:, 1], x[:, 0]), 2 * np.pi)) / (2 * np.pi)
    ks = np.abs(theta - (np.arange(1, 4001) - 0.5) / 4000).max()
    assert ks < 1.63 / math.sqrt(4000)  # Kolmogorov–Smirnov at the 1% level
    assert disk.measure("circle") == pytest.approx(3 * math.pi)


def test_lshape_pieces_measures_and_sampling_by_arc_length() -> None:
    geo = LShape()
    assert geo.pieces == ("bottom", "notch_x", "notch_y", "right", "top", "left")
    assert [geo.measure(p) for p in geo.pieces] == [1, 1, 1, 1, 2, 2] and geo.volume == 3.0
    assert geo.normal("notch_x").tolist() == [1, 0] and geo.normal("notch_y").tolist() == [0, -1]
    problem = _LProblem()
    pts = problem.sample(Sampler("sobol", seed=0), 32, 800).boundary["dirichlet[all]"].x.numpy()
    # counts per edge follow the edge lengths (1, 1, 1, 1, 2, 2) / 8 of 800
    on_top = np.isclose(pts[:, 1], 1.0).sum()
    on_notch = (np.isclose(pts[:, 0], 0.0) & (pts[:, 1] <= 0)).sum()
    assert on_top == 200 and on_notch == 100
    # uniform along the top edge
    xs = np.sort(pts[np.isclose(pts[:, 1], 1.0), 0])
    assert np.abs((xs + 1) / 2 - (np.arange(1, 201) - 0.5) / 200).max() < 0.02


def test_sdf_signs_and_values() -> None:
    geo = LShape()
    pts = np.array([[0.5, -0.5], [-0.5, 0.5], [0.5, 0.5], [0.0, 0.0], [2.0, 1.0], [-0.9, -0.9]])
    np.testing.assert_allclose(geo.sdf(pts), [0.5, -0.5, -0.5, 0.0, 1.0, -0.1], atol=1e-14)
    disk = Disk((1.0, 0.0), 2.0)
    np.testing.assert_allclose(disk.sdf(np.array([[1.0, 0.0], [3.0, 0.0], [1.0, 5.0]])), [-2.0, 0.0, 3.0])
    box = Box([0, 0], [2, 1], ("x", "y"))
    np.testing.assert_allclose(box.sdf(np.array([[1.0, 0.5], [3.0, 0.5], [1.0, 1.0]])), [-0.5, 1.0, 0.0])
    ann = Annulus((0, 0), 0.5, 1.0)
    np.testing.assert_allclose(ann.sdf(np.array([[0.0, 0.0], [0.75, 0.0], [2.0, 0.0]])), [0.5, -0.25, 1.0])


class _LProblem(Problem):
    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(LShape(self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x: Tensor, u) -> Tensor:
        return u.laplacian()

    def exact(self, x: Tensor) -> Tensor:
        return x[:, 0] + 2 * x[:, 1]


def test_evaluation_masks_points_outside_the_domain() -> None:
    problem = _LProblem()
    exact = evaluate(FunctionModule(problem.exact), problem, 41)
    assert exact.metrics["l2"] == 0.0
    outside = ~exact.mask
    assert np.all(np.isnan(exact.predicted[outside])) and np.all(np.isfinite(exact.predicted[exact.mask]))
    # u + 1 on the L-shape (area 3): l2 = sqrt(3) up to the O(h) of the masked trapezoid rule
    shifted = evaluate(FunctionModule(lambda x: problem.exact(x) + 1), problem, 41)
    assert shifted.metrics["l2"] == pytest.approx(math.sqrt(3.0), rel=0.03)


class _HeatExact(Problem):
    coords = ("x", "t")

    def __init__(self) -> None:
        super().__init__(Box([0.0, 0.0], [2.0, 1.0], self.coords), [Initial(0.0)])

    def pde(self, x: Tensor, u) -> Tensor:
        return u.d("t") - u.d("xx")

    def exact(self, x: Tensor) -> Tensor:
        return 1.0 + 0.0 * x[:, 0]


def test_final_time_norms() -> None:
    problem = _HeatExact()
    ev = evaluate(FunctionModule(lambda x: 1 + 0.5 * x[:, 1] ** 2), problem, 41)
    # at t = 1: e = 0.5 on [0, 2]: l2_final = 0.5 sqrt(2), relative to ||1|| = sqrt(2)
    assert ev.metrics["l2_final"] == pytest.approx(0.5 * math.sqrt(2), rel=1e-12)
    assert ev.metrics["l2_rel_final"] == pytest.approx(0.5, rel=1e-12)
    assert ev.metrics["linf_final"] == pytest.approx(0.5, rel=1e-12)


# -- the worked example of the README, through the real command line ------------------------------------------

EXAMPLES = REPO_ROOT / "examples"


def test_user_problem_in_one_file_runs_through_the_cli(tmp_path: Path) -> None:
    """`python -m kanpde problem=custom problem._target_=...` with the example's own conditions."""
    import json
    import os
    import subprocess
    import sys

    module = "reaction_diffusion"
    ex = importlib_module(EXAMPLES / f"{module}.py", module)
    problem = ex.ReactionDiffusion(k=0.5)
    batch = problem.sample(Sampler("sobol", seed=0), 64, 96)
    terms = loss_terms(FunctionModule(problem.exact), problem, batch)
    assert max(t.item() for t in terms.values()) <= 1e-24  # the example's exact solution is exact
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "kanpde", "problem=custom", f"problem._target_={module}.ReactionDiffusion",
           "+problem.k=0.5", "debug=fast", "output.figures=false", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=EXAMPLES, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["problem"] == module and "l2_rel_final" in metrics and "l2_rel" in metrics["baseline"]
    assert "l2_rel" in proc.stdout


def importlib_module(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_problem_table_script_builds_the_table_from_metrics(tmp_path: Path) -> None:
    """scripts/problem_table.py --collect: one row per shipped problem, numbers from metrics.json, README rewritten."""
    import importlib.util
    import json

    script = REPO_ROOT / "scripts" / "problem_table.py"
    spec = importlib.util.spec_from_file_location("problem_table", script)
    table_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table_mod)
    runs = tmp_path / "runs"
    (runs / "heat1d").mkdir(parents=True)
    kan = {"l2_rel": 1.5e-3, "l2_rel_final": 2.5e-3, "n_params": 450, "train_seconds": 12.3,
           "baseline": {"l2_rel": 4e-3, "l2_rel_final": 5e-3, "n_params": 5301, "train_seconds": 4.0}}
    (runs / "heat1d" / "metrics.json").write_text(json.dumps(kan))
    (runs / "settings.json").write_text(json.dumps({"overrides": [], "machine": "m", "date": "d", "threads": "1"}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{table_mod.START}\nold\n{table_mod.END}\nrest\n")
    import sys

    argv = sys.argv
    sys.argv = ["problem_table.py", "--collect", str(runs), "--readme", str(readme)]
    try:
        table_mod.main()
    finally:
        sys.argv = argv
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    assert "| heat1d | 1.50e-03 | 4.00e-03 | 2.50e-03 | 5.00e-03 | 450 | 5301 | 12 | 4 | KAN |" in text
    assert "| poisson2d | not run |" in text and "default configuration" in text
