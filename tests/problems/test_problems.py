"""Shipped problems, geometry, samplers and declared boundary conditions."""

from __future__ import annotations

import importlib
import inspect
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from torch import Tensor

from tests.helpers import CONF_DIR, F64, PROBLEMS_DIR, SMALL_PROBLEM_KWARGS, FunctionModule
from kanpde import Box, Condition, Dirichlet, Initial, Neumann, Problem, Sampler, loss_terms, make_field
from kanpde.pde.problem import _split
from kanpde.pde.sampling import METHODS

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


def residual_tol(problem: Problem) -> float:
    """Max |PDE residual| allowed for the exact solution: 1e-8 unless the problem states its own."""
    return getattr(problem, "residual_tol", 1e-8)


def test_problem_basics(problem: Problem) -> None:
    assert problem.has_exact
    assert problem.name in STEMS
    assert problem.dim == problem.geometry.dim == len(problem.coords)
    assert tuple(problem.geometry.names) == tuple(problem.coords)


def test_exact_solution_has_zero_pde_residual(problem: Problem) -> None:
    if is_reference(problem):
        pytest.skip("a reference solution: its residual is checked by finite differences in test_references.py")
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
    bc_tol = getattr(problem, "condition_tol", 1e-12)
    for cond in problem.conditions:
        pts = batch.boundary[cond.label]
        if is_reference(problem) and cond.derivatives:
            continue  # derivatives of a reference solution: checked in test_references.py
        u = make_field(model, pts.x, problem.coords, problem.outputs, time_coord=problem.time_coord)
        assert cond.residual(pts, u).abs().max().item() <= bc_tol
    if is_reference(problem):
        return
    terms = loss_terms(model, problem, batch)
    assert terms["pde"].item() <= residual_tol(problem) ** 2
    assert all(terms[c.label].item() <= 1e-24 for c in problem.conditions)


def test_exact_grad_matches_autograd_of_exact(problem: Problem) -> None:
    if is_reference(problem):
        pytest.skip("a reference solution (not differentiable by autograd): tested in test_references.py")
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


# -- geometry -------------------------------------------------------------------------------------------------


def test_box_faces_normals_and_measures() -> None:
    box = Box([0, 0, 0], [1, 2, 3], names=("x", "y", "z"))
    assert box.dim == 3 and box.volume == 6.0
    assert box.faces == ("x-", "x+", "y-", "y+", "z-", "z+")
    measures = {f: box.face_measure(f) for f in box.faces}
    assert measures == {"x-": 6.0, "x+": 6.0, "y-": 3.0, "y+": 3.0, "z-": 2.0, "z+": 2.0}
    assert box.normal("x-").tolist() == [-1, 0, 0] and box.normal("z+").tolist() == [0, 0, 1]
    assert box.resolve_faces("all") == box.faces
    assert box.resolve_faces(["y+", "x-"]) == ("y+", "x-")
    unit = np.random.default_rng(1).random((20, 2))
    on_face = box.face_points("y+", unit)
    assert np.all(on_face[:, 1] == 2.0)
    assert np.allclose(on_face[:, [0, 2]], unit * [1, 3])
    inner = box.interior(np.random.default_rng(2).random((30, 3)))
    assert np.all((inner >= 0) & (inner <= [1, 2, 3]))
    assert Box([0], [2]).face_measure("x0-") == 1.0  # end points of an interval


def test_box_grid_is_ij_ordered() -> None:
    box = Box([-1, 0], [1, 3], names=("x", "y"))
    axes, pts = box.grid((5, 4))
    assert [a.tolist() for a in axes] == [[-1, -0.5, 0, 0.5, 1], [0, 1, 2, 3]]
    assert pts.shape == (20, 2)
    assert pts[:4].tolist() == [[-1, 0], [-1, 1], [-1, 2], [-1, 3]]
    assert np.array_equal(pts[:, 0].reshape(5, 4), np.repeat(axes[0][:, None], 4, axis=1))
    with pytest.raises(ValueError):
        box.grid(1)


def test_box_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="lo < hi"):
        Box([0, 1], [1, 1])
    with pytest.raises(ValueError, match="distinct"):
        Box([0, 0], [1, 1], names=("x", "x"))
    with pytest.raises(ValueError, match="unknown boundary piece"):
        Box([0, 0], [1, 1], names=("x", "y")).resolve_faces("z+")


# -- samplers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("d", [1, 2, 3])
def test_sampler_shapes_range_and_reproducibility(method: str, d: int) -> None:
    a, b = Sampler(method, seed=5), Sampler(method, seed=5)
    first, second = a.unit(37, d), a.unit(37, d)
    assert first.shape == (37, d) and first.dtype == np.float64
    assert np.all((first >= 0) & (first <= 1))
    assert np.array_equal(first, b.unit(37, d))  # same seed, same k-th draw
    assert np.array_equal(second, b.unit(37, d))
    a.reseed(0)
    assert np.array_equal(a.unit(37, d), first)  # reseed(0) restarts the stream
    if method != "grid":
        assert not np.array_equal(first, second)
        assert not np.array_equal(first, Sampler(method, seed=6).unit(37, d))
        assert len(np.unique(first[:, 0])) == 37


def test_grid_sampler_gives_cell_centres() -> None:
    pts = Sampler("grid").unit(16, 2)
    centres = [0.125, 0.375, 0.625, 0.875]
    assert sorted(set(pts[:, 0].tolist())) == centres and sorted(set(pts[:, 1].tolist())) == centres
    assert len({tuple(p) for p in pts}) == 16
    thinned = Sampler("grid").unit(10, 2)  # 4 x 4 centres thinned evenly to 10
    assert thinned.shape == (10, 2) and len({tuple(p) for p in thinned}) == 10


@pytest.mark.parametrize("method", ["sobol", "lhs"])
def test_stratified_samplers_fill_every_bin(method: str) -> None:
    """Scrambled Sobol with n = 2^m and Latin hypercubes put one point in each of n bins per axis."""
    n = 64
    pts = Sampler(method, seed=11).unit(n, 3)
    for axis in range(3):
        assert np.array_equal(np.sort(np.floor(pts[:, axis] * n)), np.arange(n))


def test_quasi_random_backend_is_imported_when_the_sampler_is_made() -> None:
    """``import kanpde`` leaves scipy.stats (~0.5 s) alone; a Sobol/LHS/Halton sampler imports it when it is
    made, so a run pays it while building, not inside the first model's timed training."""
    code = (
        "import sys, kanpde, kanpde.app.run\n"
        "from kanpde import Sampler\n"
        "assert 'scipy.stats' not in sys.modules\n"
        "Sampler('grid'); Sampler('uniform')\n"
        "assert 'scipy.stats' not in sys.modules\n"
        "Sampler('sobol')\n"
        "assert 'scipy.stats.qmc' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_sampler_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown sampling method"):
        Sampler("random")
    with pytest.raises(ValueError):
        Sampler().unit(0, 2)


# -- declared conditions and Problem.sample -----------------------------------------------------------------------


class Slab(Problem):
    """-Δu = -(2 + 6y) on [0, 2] x [0, 1] with u = x^2 + y^3: Dirichlet on x-faces, Neumann on y-faces."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(
            Box([0.0, 0.0], [2.0, 1.0], self.coords),
            [
                Dirichlet(("x-", "x+"), lambda x: x[:, 0] ** 2 + x[:, 1] ** 3),
                Neumann(("y-", "y+"), lambda x: torch.where(x[:, 1] > 0.5, 3.0, 0.0) * x[:, 1] ** 2, weight=2.0),
            ],
        )

    def pde(self, x: Tensor, u) -> Tensor:
        return u.laplacian() - (2 + 6 * x[:, 1])

    def exact(self, x: Tensor) -> Tensor:
        return x[:, 0] ** 2 + x[:, 1] ** 3


def test_sample_splits_boundary_by_condition_and_face_measure() -> None:
    problem = Slab()
    batch = problem.sample(Sampler("sobol", seed=0), 100, 60)
    assert batch.interior.shape == (100, 2) and batch.interior.dtype == F64
    assert set(batch.boundary) == {"dirichlet[x-+x+]", "neumann[y-+y+]"}
    dirichlet, neumann = batch.boundary["dirichlet[x-+x+]"], batch.boundary["neumann[y-+y+]"]
    assert dirichlet.x.shape == (30, 2) and neumann.x.shape == (30, 2)
    # Dirichlet faces x = 0 and x = 2 have equal measure 1; outward normals -e_x and +e_x
    at_left = dirichlet.x[:, 0] == 0.0
    assert int(at_left.sum()) == 15 and int((dirichlet.x[:, 0] == 2.0).sum()) == 15
    assert torch.equal(dirichlet.normals[at_left], torch.tensor([[-1.0, 0.0]], dtype=F64).expand(15, 2))
    assert torch.equal(dirichlet.normals[~at_left], torch.tensor([[1.0, 0.0]], dtype=F64).expand(15, 2))
    at_bottom = neumann.x[:, 1] == 0.0
    assert int(at_bottom.sum()) == 15
    assert bool((neumann.normals[at_bottom, 1] == -1).all()) and bool((neumann.normals[~at_bottom, 1] == 1).all())
    # the whole boundary: faces get points in proportion to their lengths 1, 1, 2, 2
    whole = make_problem(("x", "y"), [Dirichlet("all")], geometry=Box([0.0, 0.0], [2.0, 1.0], ("x", "y")))
    pts = whole.sample(Sampler("uniform", seed=0), 10, 60).boundary["dirichlet[all]"]
    counts = [int((pts.x[:, 0] == 0).sum()), int((pts.x[:, 0] == 2).sum()),
              int((pts.x[:, 1] == 0).sum()), int((pts.x[:, 1] == 1).sum())]
    assert counts == [10, 10, 20, 20]
    # every normal is outward: moving along it leaves the box
    out = pts.x + 1e-3 * pts.normals
    outside = (out[:, 0] < 0) | (out[:, 0] > 2) | (out[:, 1] < 0) | (out[:, 1] > 1)
    assert bool(outside.all())


def test_dirichlet_and_neumann_residuals_of_the_exact_solution() -> None:
    problem = Slab()
    batch = problem.sample(Sampler("halton", seed=1), 128, 80)
    terms = loss_terms(FunctionModule(problem.exact), problem, batch)
    assert set(terms) == {"pde", "dirichlet[x-+x+]", "neumann[y-+y+]"}
    assert max(t.item() for t in terms.values()) <= 1e-24
    # a wrong solution gives the residuals one computes by hand: u + 1 breaks only Dirichlet (by 1)
    shifted = loss_terms(FunctionModule(lambda x: problem.exact(x) + 1), problem, batch)
    assert shifted["dirichlet[x-+x+]"].item() == pytest.approx(1.0, abs=1e-12)
    assert shifted["neumann[y-+y+]"].item() <= 1e-24 and shifted["pde"].item() <= 1e-20
    # u + y breaks Neumann by du/dn = +-1 on both faces
    tilted = loss_terms(FunctionModule(lambda x: problem.exact(x) + x[:, 1]), problem, batch)
    assert tilted["neumann[y-+y+]"].item() == pytest.approx(1.0, abs=1e-12)


def make_problem(coords, conditions, outputs=("u",), geometry=None) -> Problem:
    """An ad-hoc Problem subclass on ``geometry`` (default: the unit square named x, y)."""
    cls = type("P", (Problem,), {"coords": coords, "outputs": outputs})
    return cls(geometry or Box([0.0, 0.0], [1.0, 1.0], ("x", "y")), conditions)


def test_problem_validation() -> None:
    make = make_problem
    with pytest.raises(ValueError, match="differ from coords"):
        make(("x", "t"), [])
    with pytest.raises(ValueError, match="share a label"):
        make(("x", "y"), [Dirichlet("all"), Dirichlet("all", 1.0)])
    with pytest.raises(ValueError, match="unknown boundary piece"):
        make(("x", "y"), [Dirichlet("t-")])
    with pytest.raises(ValueError, match="must name a component"):
        make(("x", "y"), [Dirichlet("all")], outputs=("u", "v"))
    with pytest.raises(ValueError, match="unknown output"):
        make(("x", "y"), [Dirichlet("all", component="w")], outputs=("u", "v"))
    with pytest.raises(ValueError, match="unknown condition kind"):
        Condition("bogus")
    with pytest.raises(ValueError, match="weight"):
        Dirichlet("all", weight=-1.0)
    ok = make(("x", "y"), [Dirichlet("all", 0.0, name="wall")])
    assert ok.conditions[0].label == "wall"
    with pytest.raises(ValueError, match="n_interior"):
        ok.sample(Sampler(), 0, 10)


def test_split_is_proportional_and_exact() -> None:
    assert _split(10, [1, 1, 1]) == [4, 3, 3]
    assert _split(60, [1, 1, 2, 2]) == [10, 10, 20, 20]
    assert sum(_split(101, [0.3, 2.2, 1.7])) == 101
    assert _split(5, []) == []


class Heat(Problem):
    """u_t = u_xx on [0, pi] x [0, 1] with u = exp(-t) sin(x); ``time_coord`` left at the class default."""

    coords = ("x", "t")

    def __init__(self) -> None:
        conditions = [Dirichlet(("x-", "x+"), 0.0), Initial(lambda x: torch.sin(x[:, 0]))]
        super().__init__(Box([0.0, 0.0], [math.pi, 1.0], self.coords), conditions)

    def pde(self, x: Tensor, u) -> Tensor:
        return u.d("t") - u.laplacian()

    def exact(self, x: Tensor) -> Tensor:
        return torch.exp(-x[:, 1]) * torch.sin(x[:, 0])


def test_time_problem_laplacian_excludes_t_by_default() -> None:
    problem = Heat()
    batch = problem.sample(Sampler("sobol", seed=0), 64, 16)
    assert loss_terms(FunctionModule(problem.exact), problem, batch)["pde"].item() <= 1e-20


def test_time_problem_with_explicit_time_coord() -> None:
    """The same heat problem is exact once it declares ``time_coord = "t"`` itself."""
    problem = type("HeatT", (Heat,), {"time_coord": "t"})()
    batch = problem.sample(Sampler("sobol", seed=0), 64, 16)
    terms = loss_terms(FunctionModule(problem.exact), problem, batch)
    assert max(t.item() for t in terms.values()) <= 1e-20
