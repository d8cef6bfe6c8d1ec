"""Domains (kanpde.pde.geometry): boxes (faces, normals, measures, grids), disks, annuli, polygons and the
L-shape (boundary sampling by arc length, outward normals, interior sampling, signed distances)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kanpde import Annulus, Box, Disk, LShape, Polygon, Sampler
from tests.helpers import LinearLShape

# -- non-box domains ------------------------------------------------------------------------------------------

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
    problem = LinearLShape()
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


# -- boxes ----------------------------------------------------------------------------------------------------


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


# -- the hard-constraint members: distance factors and boundary extensions ----------------------------------

HARD_GEOMETRIES = {**GEOMETRIES, "box": lambda: Box([-1.0, 0.0], [2.0, 0.5])}


@pytest.mark.parametrize("name", sorted(HARD_GEOMETRIES))
def test_dirichlet_factor_is_a_normalised_distance_of_its_piece(name: str) -> None:
    """phi_p = 0 on piece p, > 0 inside, |grad phi_p| = 1 on the piece (normalised to first order)."""
    import torch

    geo = HARD_GEOMETRIES[name]()
    inside = torch.from_numpy(geo.sample_interior(Sampler("sobol", seed=3), 500))
    for piece in geo.pieces:
        on, normal = geo.sample_boundary(piece, Sampler("sobol", seed=4), 50)
        assert float(geo.dirichlet_factor(piece, torch.from_numpy(on)).abs().max()) <= 1e-12, piece
        x = torch.from_numpy(on - 1e-7 * normal).requires_grad_(True)  # just inside: phi may kink on the piece
        (grad,) = torch.autograd.grad(geo.dirichlet_factor(piece, x).sum(), x)
        keep = ~_near_a_corner(geo, on)
        np.testing.assert_allclose(grad.norm(dim=1).numpy()[keep], 1.0, atol=1e-5)
        assert bool((geo.dirichlet_factor(piece, inside) > 0).all()), piece


def _near_a_corner(geo, x: np.ndarray) -> np.ndarray:
    corners = getattr(geo, "vertices", None)
    if corners is None:
        return np.zeros(len(x), bool)
    return np.min(np.linalg.norm(x[:, None] - corners[None], axis=2), axis=1) < 1e-3


@pytest.mark.parametrize("name", sorted(HARD_GEOMETRIES))
def test_extension_points_lie_on_the_piece_and_reproduce_data_there(name: str) -> None:
    import torch

    geo = HARD_GEOMETRIES[name]()
    lo, hi = geo.bounding_box
    everywhere = torch.from_numpy(lo - 0.5 + Sampler("sobol", seed=5).unit(400, 2) * (hi - lo + 1.0))  # outside too
    for piece in geo.pieces:
        on, _ = geo.sample_boundary(piece, Sampler("sobol", seed=6), 50)
        on = torch.from_numpy(on)
        pts, w = geo.extension(piece, on)
        data = lambda p: torch.exp(p[..., 0]) * torch.sin(3 * p[..., 1])  # noqa: E731
        np.testing.assert_allclose((w * data(pts)).sum(dim=1).numpy(), data(on).numpy(), atol=1e-12)
        if name == "box":
            continue  # a box's projection leaves the face outside the box (its lifting uses Coons instead)
        pts, w = geo.extension(piece, everywhere)
        assert np.abs(geo.sdf(pts.reshape(-1, 2).numpy())).max() <= 1e-12
        assert _distance_to_piece(geo, piece, pts.reshape(-1, 2).numpy()).max() <= 1e-12, piece  # this piece
        np.testing.assert_allclose(w.sum(dim=1).numpy(), 1.0, atol=1e-12)  # constants are kept


def _distance_to_piece(geo, piece: str, p: np.ndarray) -> np.ndarray:
    if isinstance(geo, Polygon):
        a, b = geo._edge(piece)
        s = np.clip((p - a) @ (b - a) / ((b - a) @ (b - a)), 0.0, 1.0)
        return np.linalg.norm(p - (a + s[:, None] * (b - a)), axis=1)
    radius = {"circle": getattr(geo, "radius", 0.0), "outer": getattr(geo, "r_outer", 0.0), "inner": getattr(geo, "r_inner", 0.0)}
    return np.abs(np.linalg.norm(p - geo.center, axis=1) - radius[piece])
