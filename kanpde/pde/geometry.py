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
from torch import Tensor

__all__ = ["Geometry", "Box"]


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
        """A smooth function ``(n, d) -> (n,)`` that vanishes on boundary ``piece`` and is positive inside
        the domain: a factor of the distance function ``D`` of hard Dirichlet constraints
        (:class:`kanpde.models.hard.HardDirichlet`). Written in torch operations, so its derivatives come
        by :mod:`torch.func`. Domains without one raise ``NotImplementedError`` (hard constraints refuse them)."""
        raise NotImplementedError(f"{type(self).__name__} has no Dirichlet distance factor")

    @property
    def has_dirichlet_factor(self) -> bool:
        """Whether :meth:`dirichlet_factor` is implemented (hard Dirichlet constraints can be built)."""
        return type(self).dirichlet_factor is not Geometry.dirichlet_factor

    # -- constructive solid geometry (kanpde.pde.csg) -------------------------------------------------
    def __or__(self, other: Geometry) -> Geometry:
        from kanpde.pde.csg import Union

        return Union(self, other)

    def __and__(self, other: Geometry) -> Geometry:
        from kanpde.pde.csg import Intersection

        return Intersection(self, other)

    def __sub__(self, other: Geometry) -> Geometry:
        from kanpde.pde.csg import Difference

        return Difference(self, other)

    def renamed(self, mapping: dict[str, str] | None = None, **pieces: str) -> Geometry:
        """This domain with boundary pieces renamed: ``Disk(c, r).renamed(circle="hole")``."""
        from kanpde.pde.csg import Renamed

        return Renamed(self, {**(mapping or {}), **pieces})

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
        """Face ``x_i = a_i`` (``"<name>-"``): ``2 (x_i - a_i) / L_i``; face ``x_i = b_i`` (``"<name>+"``):
        ``2 (b_i - x_i) / L_i`` (``L_i = b_i - a_i``; both faces give ``4 (x_i - a_i)(b_i - x_i) / L_i^2``,
        1 at the centre)."""
        axis, upper = self._face_axis(piece)
        lo, hi = float(self.lo[axis]), float(self.hi[axis])
        return 2 * ((hi - x[:, axis]) if upper else (x[:, axis] - lo)) / (hi - lo)

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
