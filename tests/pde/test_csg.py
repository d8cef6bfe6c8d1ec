"""Constructive solid geometry (kanpde.pde.csg) and the 3-D ball: measures against closed forms, normals by the
divergence theorem, uniform sampling, distance factors, and a Poisson problem solved on a plate with holes."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import Tensor

import kanpde
from kanpde import Ball, Box, Difference, Dirichlet, Disk, Intersection, Problem, Sampler, Union

F64 = torch.float64


def plate_with_holes() -> kanpde.Geometry:
    """The docs' example: a square plate with two circular holes."""
    plate = Box([-1, -1], [1, 1], names=("x", "y"))
    holes = Disk((-0.4, 0.0), 0.2).renamed(circle="hole") | Disk((0.4, 0.0), 0.2).renamed(circle="hole")
    return plate - holes


def lens_area(d: float, r: float) -> float:
    """Area of the intersection of two disks of radius ``r`` whose centres are ``d`` apart."""
    return 2 * r**2 * math.acos(d / (2 * r)) - d / 2 * math.sqrt(4 * r**2 - d**2)


DOMAINS = {
    "plate_with_holes": plate_with_holes,
    "box_minus_corner_disk": lambda: Box([-1, -1], [1, 1], names=("x", "y")) - Disk((1.0, 1.0), 0.5),
    "union_of_disks": lambda: Disk((0, 0), 1.0) | Disk((1, 0), 1.0),
    "lens": lambda: Disk((0, 0), 1.0) & Disk((1, 0), 1.0),
    "ball_minus_ball": lambda: Ball((0, 0, 0), 1.0) - Ball((0.2, 0, 0), 0.3).renamed(sphere="cavity"),
    "lshape_minus_disk": lambda: kanpde.LShape() - Disk((-0.5, 0.5), 0.25),
}

AREAS = {
    "plate_with_holes": 4 - 2 * math.pi * 0.04,
    "box_minus_corner_disk": 4 - math.pi * 0.25 / 4,
    "union_of_disks": 2 * math.pi - lens_area(1.0, 1.0),
    "lens": lens_area(1.0, 1.0),
    "ball_minus_ball": 4 / 3 * math.pi * (1 - 0.3**3),
    "lshape_minus_disk": 3 - math.pi * 0.25**2,
}


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_volume_matches_the_closed_form(name: str) -> None:
    geo = DOMAINS[name]()
    assert geo.volume == pytest.approx(AREAS[name], rel=2e-3)


def test_holes_inside_the_plate_give_exact_area_and_arc_lengths() -> None:
    geo = plate_with_holes()
    assert geo.pieces == ("x-", "x+", "y-", "y+", "hole1", "hole2")
    assert geo.resolve_faces("hole") == ("hole1", "hole2")
    assert geo.volume == pytest.approx(4 - 2 * math.pi * 0.04, rel=1e-14)
    assert [geo.measure(p) for p in geo.pieces] == pytest.approx([2, 2, 2, 2, 0.4 * math.pi, 0.4 * math.pi], rel=1e-14)


def test_partly_removed_pieces_have_their_remaining_measure() -> None:
    geo = DOMAINS["box_minus_corner_disk"]()
    measures = {p: geo.measure(p) for p in geo.pieces}
    assert measures == pytest.approx({"x-": 2, "x+": 1.5, "y-": 2, "y+": 1.5, "circle": math.pi * 0.5 / 2}, rel=1e-3)
    union = DOMAINS["union_of_disks"]()
    assert [union.measure(p) for p in union.pieces] == pytest.approx([4 / 3 * math.pi] * 2, rel=1e-3)  # 240° arcs
    lens = DOMAINS["lens"]()
    assert [lens.measure(p) for p in lens.pieces] == pytest.approx([2 / 3 * math.pi] * 2, rel=1e-3)  # 120° arcs


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_boundary_points_lie_on_the_boundary_and_normals_satisfy_the_divergence_theorem(name: str) -> None:
    """∮ x·n dS = d |Ω|: measures, normals (their direction and sign) and uniform sampling together."""
    geo = DOMAINS[name]()
    sampler = Sampler("sobol", seed=3)
    flux = 0.0
    for piece in geo.pieces:
        x, n = geo.sample_boundary(piece, sampler, 4096)
        assert x.shape == n.shape == (4096, geo.dim)
        assert np.abs(geo.sdf(x)).max() < 1e-9
        assert np.allclose(np.linalg.norm(n, axis=1), 1.0)
        # the outward normal leaves the domain: a small step along it is outside, against it inside
        assert (geo.sdf(x + 1e-6 * n) > 0).mean() > 0.99 and (geo.sdf(x - 1e-6 * n) < 0).mean() > 0.99
        flux += geo.measure(piece) * float(np.mean(np.sum(x * n, axis=1)))
    assert flux == pytest.approx(geo.dim * AREAS[name], rel=3e-3)


def test_boundary_sampling_is_uniform_on_a_partly_removed_face() -> None:
    geo = DOMAINS["box_minus_corner_disk"]()
    x, _ = geo.sample_boundary("x+", Sampler("uniform", seed=1), 2000)
    assert np.allclose(x[:, 0], 1.0) and x[:, 1].max() <= 0.5 + 1e-12
    assert stats.kstest(x[:, 1], stats.uniform(loc=-1, scale=1.5).cdf).pvalue > 0.01


def test_interior_points_are_inside_and_uniform() -> None:
    geo = plate_with_holes()
    x = geo.sample_interior(Sampler("uniform", seed=2), 20000)
    assert geo.contains(x).all() and (geo.sdf(x) < 0).all()
    quadrant = (x[:, 0] > 0) & (x[:, 1] > 0)  # holds a quarter of the plate and half a hole
    expected = (1 - math.pi * 0.04 / 2) / geo.volume
    assert quadrant.mean() == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / 20000))


def test_ball_measures_and_uniform_sphere() -> None:
    ball = Ball((1.0, 0.0, -1.0), 2.0)
    assert ball.names == ("x", "y", "z") and ball.pieces == ("sphere",)
    assert ball.volume == pytest.approx(4 / 3 * math.pi * 8) and ball.measure("sphere") == pytest.approx(16 * math.pi)
    x, n = ball.sample_boundary("sphere", Sampler("sobol", seed=0), 8192)
    assert np.allclose(x, ball.center + 2.0 * n)
    assert np.abs(n.mean(axis=0)).max() < 0.02  # uniform on the sphere: moments of the uniform distribution
    assert np.allclose(n.T @ n / len(n), np.eye(3) / 3, atol=0.02)
    assert Ball((0.0, 0.0), 1.0).volume == pytest.approx(math.pi)  # any dimension
    assert Ball((0.0,) * 5, 1.0).measure("sphere") == pytest.approx(8 * math.pi**2 / 3)


def test_distance_factors_vanish_on_their_pieces_and_are_positive_inside() -> None:
    geo = plate_with_holes()
    inside = torch.from_numpy(geo.sample_interior(Sampler("sobol", seed=0), 512))
    for piece in geo.pieces:
        x, _ = geo.sample_boundary(piece, Sampler("sobol", seed=1), 64)
        assert geo.dirichlet_factor(piece, torch.from_numpy(x)).abs().max() < 1e-12
        assert (geo.dirichlet_factor(piece, inside) > 0).all()
    assert geo.has_dirichlet_factor


def test_hard_constraints_on_partly_removed_pieces_are_refused() -> None:
    corner = DOMAINS["box_minus_corner_disk"]()
    with pytest.raises(ValueError, match="'x\\+' is partly removed"):
        corner.extension("x+", torch.zeros(1, 2, dtype=F64))


def test_hard_constraints_on_a_union_whose_parts_overlap_are_refused() -> None:
    union = DOMAINS["union_of_disks"]()
    with pytest.raises(ValueError, match="keeps whole.*hard_bc=false"):
        union.dirichlet_factor("circle1", torch.zeros(1, 2, dtype=F64))
    apart = Disk((0, 0), 1.0) | Disk((3, 0), 1.0)
    assert apart.volume == pytest.approx(2 * math.pi, rel=1e-14)
    assert apart.dirichlet_factor("circle1", torch.zeros(1, 2, dtype=F64)).item() == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Box([0, 0], [1, 1], names=("x", "y")) | Box([0, 0], [1, 1], names=("s", "t")), "coordinate names differ"),
        (lambda: Disk((0, 0), 1.0) & Disk((5, 0), 1.0), "do not overlap"),
        (lambda: Disk((0, 0), 1.0).renamed(disk="hole"), "unknown piece"),
        (lambda: Box([0], [1], names=("x",)).renamed({"x-": "end", "x+": "end"}), "duplicate piece names"),
        (lambda: Difference(Disk((0, 0), 1.0)), "at least two domains"),
        (lambda: Union(Disk((0, 0), 1.0), np.zeros(2)), "Geometry"),
        (lambda: Disk((0, 0), 1.0) - Disk((0, 0), 2.0), "no boundary left"),
    ],
)
def test_bad_combinations_are_refused_with_one_line(make, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_unknown_piece_names_list_the_pieces_and_groups() -> None:
    with pytest.raises(ValueError, match=r"hole1.*\['hole'\]"):
        plate_with_holes().resolve_faces("holes")
    with pytest.raises(ValueError, match="several pieces"):
        plate_with_holes().measure("hole")


class PlatePoisson(Problem):
    """-Δu = f on the plate with holes, u = x² y + sin(x) on the whole boundary."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(plate_with_holes(), [Dirichlet("all", self.boundary_value)])

    @staticmethod
    def boundary_value(x: Tensor) -> Tensor:
        return x[:, 0] ** 2 * x[:, 1] + torch.sin(x[:, 0])

    def pde(self, x: Tensor, u) -> Tensor:
        return u.laplacian() - (2 * x[:, 1] - torch.sin(x[:, 0]))

    def exact(self, x: Tensor) -> Tensor:
        return self.boundary_value(x)


@pytest.mark.slow
def test_poisson_on_a_plate_with_holes_trains_and_evaluates() -> None:
    torch.manual_seed(0)
    problem = PlatePoisson()
    stages = [kanpde.Stage(kanpde.LevenbergMarquardt, steps=40, update_grid=False)]
    result = kanpde.fit(kanpde.KAN([2, 4, 1], grid_size=4, dtype=F64), problem, stages, n_interior=400, n_boundary=200)
    ev = kanpde.evaluate(result.model, problem, 41)
    assert ev.mask is not None and not ev.mask.all()
    assert ev.metrics["l2_rel"] < 2e-3


def test_hard_constraints_hold_on_a_plate_with_holes() -> None:
    problem = PlatePoisson()
    model = kanpde.HardDirichlet(kanpde.KAN([2, 3, 1], grid_size=3, dtype=F64), problem)
    for piece in problem.geometry.pieces:
        x, _ = problem.geometry.sample_boundary(piece, Sampler("sobol", seed=0), 32)
        xt = torch.from_numpy(x)
        assert torch.allclose(model(xt)[:, 0], problem.boundary_value(xt), atol=1e-12, rtol=0)


def test_hard_constraints_on_a_plate_with_holes_evaluate_the_target_only_on_the_boundary() -> None:
    problem = PlatePoisson()
    seen: list[Tensor] = []

    def spy(x: Tensor) -> Tensor:
        seen.append(x.detach().clone())
        return PlatePoisson.boundary_value(x)

    problem.conditions = (Dirichlet("all", spy),)
    model = kanpde.HardDirichlet(kanpde.KAN([2, 3, 1], grid_size=3, dtype=F64), problem)
    inside = torch.from_numpy(problem.geometry.sample_interior(Sampler("sobol", seed=0), 64))
    model(inside)
    points = torch.cat(seen).numpy()
    assert points.shape[0] > 0 and np.abs(problem.geometry.sdf(points)).max() < 1e-12
