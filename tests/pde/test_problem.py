"""Problems and their declared conditions (kanpde.pde.problem): Dirichlet, Neumann, Robin, periodic and initial
residuals, Problem.sample splitting the boundary by condition and face measure, validation, time coordinates."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from kanpde import Box, Condition, Dirichlet, Initial, Neumann, Periodic, Problem, Robin, Sampler, loss_terms, make_field
from kanpde.pde.problem import _split
from tests.helpers import F64, FunctionModule

# -- conditions -----------------------------------------------------------------------------------------------


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


# -- Problem.sample, validation, time coordinates ---------------------------------------------------------


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
    for bad in (float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
            Dirichlet("all", weight=bad)
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
