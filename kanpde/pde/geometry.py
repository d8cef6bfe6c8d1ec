"""Domains with named boundary pieces.

A domain maps points of the unit cube (from a :class:`kanpde.pde.sampling.Sampler`) to interior and boundary
points, gives outward normals and measures, and builds uniform evaluation grids.

**The interface** (:class:`Geometry`). A domain of your own subclasses it and sets or implements:

* ``names`` — the coordinate names, a tuple (``dim`` follows); they must equal the problem's ``coords``;
* ``pieces`` — the boundary piece names, a tuple; conditions name them in ``on`` (``"all"``: every piece);
* ``bounding_box`` — ``(lo, hi)``; ``volume`` — the domain's measure; ``measure(piece)`` — a piece's;
* ``sample_boundary(piece, sampler, n) -> (x, normals)`` — ``n`` points uniform in the piece's measure
  and their outward unit normals, both ``(n, d)``, from ``sampler.unit(n, k)`` unit-cube points;
* ``sdf(x)`` — signed distance ``(n,)``: negative inside, zero on the boundary, positive outside.

Then ``contains(x)``, ``sample_interior`` (rejection from the bounding box), ``grid(n)`` (the bounding
box's grid, masked by ``contains`` when evaluating), ``resolve_faces(on)``, the CSG operators ``a | b``,
``a & b``, ``a - b`` and ``renamed(old="new")`` (:mod:`kanpde.pde.csg`) come with the base class. For
hard Dirichlet constraints also implement ``dirichlet_factor(piece, x)`` (torch); periodic pairs need
``periodic_points`` (a :class:`Box`'s).
:class:`Box` (here) is exact on its grid; the shapes of :mod:`kanpde.pde.shapes` (:class:`Disk`,
:class:`Annulus`, :class:`Ball`, :class:`Polygon`, :class:`LShape`) sample their interior by rejection
from the bounding box and their boundary uniformly in arc length (area for a ball's sphere).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["Geometry", "Box"]

#: The CSG classes behind ``a | b``, ``a & b``, ``a - b`` and ``renamed``: :mod:`kanpde.pde.csg` fills it
#: when it is imported (with :mod:`kanpde.pde`), so this module does not import it back.
_CSG: dict[str, type] = {}


class Geometry:
    """Interface and shared code of a domain: see the module docstring. Points are NumPy ``float64`` ``(n, d)``."""

    names: tuple[str, ...]
    is_box = False

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def pieces(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)``, each ``(d,)``: a box holding the domain (interior sampling rejects from it)."""
        raise NotImplementedError

    @property
    def volume(self) -> float:
        """The domain's d-dimensional measure (area in 2-D): used by interior sampling (the acceptance
        rate of rejection from the bounding box) and reported with the norms."""
        raise NotImplementedError

    def measure(self, piece: str) -> float:
        """The (d-1)-dimensional measure of a boundary piece (its length in 2-D): boundary points are
        split between the pieces of a condition in proportion to it."""
        raise NotImplementedError

    def sample_boundary(self, piece: str, sampler, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points on a boundary piece, uniform in arc length, and their outward unit normals."""
        raise NotImplementedError

    def sdf(self, x: np.ndarray) -> np.ndarray:
        """Signed distance to the boundary, ``(n,)``: negative inside, zero on the boundary."""
        raise NotImplementedError

    def contains(self, x: np.ndarray, tol: float = 1e-12) -> np.ndarray:
        """Boolean ``(n,)``: inside or on the boundary (within ``tol``)."""
        return self.sdf(np.asarray(x, dtype=np.float64)) <= tol

    def dirichlet_factor(self, piece: str, x: Tensor) -> Tensor:
        """The approximate distance function (ADF) ``phi_p`` of boundary ``piece``: ``(n, d) -> (n,)``.

        Hard Dirichlet constraints (:class:`kanpde.models.hard.HardDirichlet`, :class:`kanpde.pde.hard.Lifting`)
        build their distance factor ``D`` and the blending weights of the boundary data from it. A domain
        that implements it (with :meth:`extension`) gets hard constraints; it must be

        - **zero on the piece** (to rounding) and **positive** in the open domain, and on the other pieces
          away from ``piece`` (it may be positive or negative outside the domain);
        - **normalised to first order**: its derivative along the inward unit normal is 1 at the piece's
          regular points (``|grad phi_p| = 1`` there), like the distance itself;
        - **smooth** (at least C^2, ideally C^inf) in the open domain; it may have kinks on the piece itself
          and outside the domain (the trimmed-segment ADF of a polygon edge is ``|f|``-like across the edge);
        - **finite everywhere** (points outside the domain are evaluated too, then masked), with finite
          derivatives wherever it is smooth (guard square roots and divisions: ``torch.where`` with a safe
          argument in both branches);
        - written in **torch operations** on ``x`` (dtype/device of ``x``, no in-place change of ``x``, no
          Python branching on values), so its derivatives come by autograd and :mod:`torch.func`
          (``vmap``/``jacfwd``).

        Domains without one raise ``NotImplementedError`` (hard constraints refuse them with one line)."""
        raise NotImplementedError(f"{type(self).__name__} has no Dirichlet distance factor")

    def extension(self, piece: str, x: Tensor) -> tuple[Tensor, Tensor]:
        """A linear extension of data given on boundary ``piece`` into the domain, as a stencil of points
        on the piece: ``(points (n, k, d), weights (n, k))`` with

            (E_p g)(x) = sum_j weights[:, j] * g(points[:, j]).

        Hard Dirichlet constraints evaluate a condition's target only at these points, so they must lie
        **on the piece** (to rounding) for every ``x``, inside the domain or not. On the piece itself
        ``E_p g = g`` for every ``g`` (e.g. one point equal to ``x`` with weight 1, the others weight 0),
        and ``E_p g`` is C^2 in ``x`` in the open domain for smooth ``g``. The closest point on the piece
        does this where it is smooth; where it is not (a circle's centre, the lines through a segment's
        end points) the stencil blends in other points of the piece with a smooth cut-off. ``k`` is fixed
        per domain and piece. Torch operations only, like :meth:`dirichlet_factor`. Domains without one
        raise ``NotImplementedError``."""
        raise NotImplementedError(f"{type(self).__name__} has no boundary extension (Geometry.extension)")

    @property
    def has_dirichlet_factor(self) -> bool:
        """Whether :meth:`dirichlet_factor` and :meth:`extension` are implemented (hard Dirichlet constraints
        can be built)."""
        return (type(self).dirichlet_factor is not Geometry.dirichlet_factor
                and type(self).extension is not Geometry.extension)

    # -- constructive solid geometry (kanpde.pde.csg, which registers its classes in _CSG) ---------------
    def __or__(self, other: Geometry) -> Geometry:
        return _CSG["union"](self, other)

    def __and__(self, other: Geometry) -> Geometry:
        return _CSG["intersection"](self, other)

    def __sub__(self, other: Geometry) -> Geometry:
        return _CSG["difference"](self, other)

    def renamed(self, mapping: dict[str, str] | None = None, **pieces: str) -> Geometry:
        """This domain with boundary pieces renamed: ``Disk(c, r).renamed(circle="hole")``."""
        return _CSG["renamed"](self, {**(mapping or {}), **pieces})

    def resolve_faces(self, on: str | Sequence[str]) -> tuple[str, ...]:
        """Piece names of ``on`` (``"all"``, one name, or a list), checked against this domain."""
        pieces = self.pieces if on == "all" else (on,) if isinstance(on, str) else tuple(on)
        unknown = [p for p in pieces if p not in self.pieces]
        if unknown or not pieces:
            raise ValueError(
                f"unknown boundary piece(s) {unknown or on!r}; {type(self).__name__} has pieces {self.pieces} or 'all'"
            )
        return pieces

    def sample_interior(self, sampler, n: int) -> np.ndarray:
        """``n`` interior points: sampler points of the bounding box that lie inside (rejection)."""
        lo, hi = self.bounding_box
        kept, total = [], 0
        frac = max(self.volume / float(np.prod(hi - lo)), 1e-3)
        while total < n:
            m = int(np.ceil((n - total) / frac * 1.2)) + 8
            pts = lo + sampler.unit(m, self.dim) * (hi - lo)
            pts = pts[self.sdf(pts) < 0]
            kept.append(pts)
            total += pts.shape[0]
        return np.concatenate(kept)[:n]

    def grid(self, n_per_axis: int | Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
        """The bounding box's uniform grid (see :meth:`Box.grid`); mask it with :meth:`contains`."""
        lo, hi = self.bounding_box
        return Box(lo, hi, self.names).grid(n_per_axis)


class Box(Geometry):
    """The axis-aligned box ``[lo_0, hi_0] x ... x [lo_{d-1}, hi_{d-1}]`` in any dimension ``d``.

    ``names`` are the coordinate names (default ``x0, x1, ...``); the boundary faces are named
    ``"<name>-"`` (where coordinate ``name`` is at its lower bound) and ``"<name>+"``: ``x-``, ``x+``,
    ``y-``, ``y+`` for the 2-D box ``[-1, 1]^2`` with coordinates ``(x, y)``. ``"all"`` means every face.
    Points are NumPy ``float64`` arrays ``(n, d)``; the caller converts them to tensors.
    """

    def __init__(self, lo: Sequence[float], hi: Sequence[float], names: Sequence[str] | None = None) -> None:
        self.lo = np.asarray(lo, dtype=np.float64).reshape(-1)
        self.hi = np.asarray(hi, dtype=np.float64).reshape(-1)
        if self.lo.shape != self.hi.shape or self.lo.size == 0:
            raise ValueError(f"Box bounds must be two sequences of the same non-zero length, got {lo}, {hi}")
        if not np.all(self.lo < self.hi):
            raise ValueError(f"Box needs lo < hi in every dimension, got lo={list(lo)}, hi={list(hi)}")
        self.names = tuple(names) if names is not None else tuple(f"x{i}" for i in range(self.lo.size))
        if len(self.names) != self.dim or len(set(self.names)) != self.dim:
            raise ValueError(f"Box needs {self.dim} distinct coordinate names, got {self.names}")

    is_box = True

    @property
    def dim(self) -> int:
        return int(self.lo.size)

    @property
    def pieces(self) -> tuple[str, ...]:
        return self.faces

    @property
    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lo.copy(), self.hi.copy()

    def measure(self, piece: str) -> float:
        return self.face_measure(piece)

    def sample_interior(self, sampler, n: int) -> np.ndarray:
        return self.interior(sampler.unit(n, self.dim))

    def sample_boundary(self, piece: str, sampler, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = self.face_points(piece, sampler.unit(n, self.dim - 1))
        return x, np.broadcast_to(self.normal(piece), (n, self.dim)).copy()

    def sdf(self, x: np.ndarray) -> np.ndarray:
        """Signed distance to the box's boundary (exact), ``(n,)``."""
        c, h = (self.lo + self.hi) / 2, (self.hi - self.lo) / 2
        q = np.abs(np.asarray(x, dtype=np.float64) - c) - h
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        return outside + np.minimum(q.max(axis=1), 0.0)

    def periodic_points(self, pair: Sequence[str], unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Matched points of two opposite faces ``(A, B)``: the same point set on both, ``(n, d)`` each.

        Raises ``ValueError`` unless ``A`` and ``B`` are the lower and upper faces of one coordinate.
        """
        a, b = self.resolve_faces(tuple(pair))
        (axis_a, upper_a), (axis_b, upper_b) = self._face_axis(a), self._face_axis(b)
        if axis_a != axis_b or upper_a == upper_b:
            raise ValueError(
                f"periodic pair ({a!r}, {b!r}) does not match: it needs the two opposite faces of one coordinate, "
                f"e.g. ('{self.names[axis_a]}-', '{self.names[axis_a]}+')"
            )
        xa = self.face_points(a, unit)
        xb = xa.copy()
        xb[:, axis_b] = self.hi[axis_b] if upper_b else self.lo[axis_b]
        return xa, xb

    @property
    def faces(self) -> tuple[str, ...]:
        return tuple(f"{n}{side}" for n in self.names for side in "-+")

    @property
    def volume(self) -> float:
        return float(np.prod(self.hi - self.lo))

    def resolve_faces(self, on: str | Sequence[str]) -> tuple[str, ...]:
        """Face names of ``on`` (``"all"``, one face name, or a list), checked against this box."""
        faces = self.faces if on == "all" else (on,) if isinstance(on, str) else tuple(on)
        unknown = [f for f in faces if f not in self.faces]
        if unknown or not faces:
            raise ValueError(f"unknown boundary piece(s) {unknown or on!r}; this box has faces {self.faces} or 'all'")
        return faces

    def _face_axis(self, face: str) -> tuple[int, bool]:
        return self.names.index(face[:-1]), face.endswith("+")

    def dirichlet_factor(self, piece: str, x: Tensor) -> Tensor:
        """Face ``x_i = a_i`` (``"<name>-"``): ``x_i - a_i``; face ``x_i = b_i`` (``"<name>+"``): ``b_i - x_i``
        (the exact distance to the face's plane)."""
        axis, upper = self._face_axis(piece)
        lo, hi = float(self.lo[axis]), float(self.hi[axis])
        return (hi - x[:, axis]) if upper else (x[:, axis] - lo)

    def extension(self, piece: str, x: Tensor) -> tuple[Tensor, Tensor]:
        """The orthogonal projection onto the face's plane (one point, weight 1): ``x`` with coordinate ``i``
        set to the face's bound. Points outside the box project outside the face; hard constraints on a
        box use the transfinite (Coons) interpolation of :class:`kanpde.pde.hard.Lifting` instead, whose
        points all lie on the faces."""
        axis, upper = self._face_axis(piece)
        bound = float(self.hi[axis] if upper else self.lo[axis])
        mask = torch.zeros(self.dim, dtype=torch.bool, device=x.device)
        mask[axis] = True
        return torch.where(mask, torch.full_like(x, bound), x)[:, None], x.new_ones(x.shape[0], 1)

    def face_measure(self, face: str) -> float:
        """(d-1)-dimensional measure of a face (1 for the end points of an interval)."""
        axis, _ = self._face_axis(face)
        return float(np.prod(np.delete(self.hi - self.lo, axis)))

    def normal(self, face: str) -> np.ndarray:
        """Unit outward normal of a face, ``(d,)``."""
        axis, upper = self._face_axis(face)
        n = np.zeros(self.dim)
        n[axis] = 1.0 if upper else -1.0
        return n

    def interior(self, unit: np.ndarray) -> np.ndarray:
        """Map unit-cube samples ``(n, d)`` into the box."""
        return self.lo + unit * (self.hi - self.lo)

    def face_points(self, face: str, unit: np.ndarray) -> np.ndarray:
        """Map unit-cube samples ``(n, d - 1)`` onto a face: ``(n, d)``."""
        axis, upper = self._face_axis(face)
        free = np.delete(np.arange(self.dim), axis)
        pts = np.empty((unit.shape[0], self.dim))
        pts[:, free] = self.lo[free] + unit * (self.hi - self.lo)[free]
        pts[:, axis] = self.hi[axis] if upper else self.lo[axis]
        return pts

    def grid(self, n_per_axis: int | Sequence[int]) -> tuple[list[np.ndarray], np.ndarray]:
        """A uniform tensor grid including the boundary: ``(axes, points)``.

        ``axes[i]`` holds ``n_i`` coordinates along axis ``i``; ``points`` is ``(prod n_i, d)`` in
        ``"ij"`` (C) order, so a field on the grid reshapes to ``(n_0, ..., n_{d-1})``.
        """
        counts = [int(n_per_axis)] * self.dim if np.isscalar(n_per_axis) else [int(n) for n in n_per_axis]
        if len(counts) != self.dim or min(counts) < 2:
            raise ValueError(f"an evaluation grid needs >= 2 points on each of {self.dim} axes, got {n_per_axis}")
        axes = [np.linspace(a, b, n) for a, b, n in zip(self.lo, self.hi, counts)]
        mesh = np.meshgrid(*axes, indexing="ij")
        return axes, np.stack([m.reshape(-1) for m in mesh], axis=1)

    def __repr__(self) -> str:
        return f"Box(lo={self.lo.tolist()}, hi={self.hi.tolist()}, names={self.names})"
