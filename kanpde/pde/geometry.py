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
hard Dirichlet constraints implement ``dirichlet_factor(piece, x)`` and ``extension(piece, x)`` (torch), or, for
a domain with one boundary piece, write ``sdf`` with operations NumPy arrays and torch tensors share
(``x[:, 0]``, arithmetic, ``**``, ``.sum(1)``, ``abs``; no ``np.`` functions): the base class then derives
both from it (:meth:`Geometry.dirichlet_factor`); periodic pairs need ``periodic_points`` (a :class:`Box`'s).
:class:`Box` (here) is exact on its grid; the shapes of :mod:`kanpde.pde.shapes` (:class:`Disk`,
:class:`Annulus`, :class:`Ball`, :class:`Polygon`, :class:`LShape`) sample their interior by rejection
from the bounding box and their boundary uniformly in arc length (area for a ball's sphere).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from kanpde.derivatives.transforms import under_transform

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

    # pieces, bounding_box and volume: a subclass defines them as properties or class attributes, or assigns
    # them in its __init__ (``self.volume = ...``), which these setters allow.
    @property
    def pieces(self) -> tuple[str, ...]:
        """The boundary pieces' names."""
        return self._assigned("pieces")

    @pieces.setter
    def pieces(self, value: Sequence[str]) -> None:
        self.__dict__["_pieces"] = tuple(str(v) for v in value)

    @property
    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)``, each ``(d,)``: a box holding the domain (interior sampling rejects from it)."""
        return self._assigned("bounding_box")

    @bounding_box.setter
    def bounding_box(self, value: tuple[Sequence[float], Sequence[float]]) -> None:
        lo, hi = value
        self.__dict__["_bounding_box"] = (np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))

    @property
    def volume(self) -> float:
        """The domain's d-dimensional measure (area in 2-D): used by interior sampling (the acceptance
        rate of rejection from the bounding box) and reported with the norms."""
        return self._assigned("volume")

    @volume.setter
    def volume(self, value: float) -> None:
        self.__dict__["_volume"] = float(value)

    def _assigned(self, name: str):
        try:
            return self.__dict__[f"_{name}"]
        except KeyError:
            raise NotImplementedError(f"{type(self).__name__} defines no {name} (a property, a class attribute, "
                                      f"or self.{name} = ... in __init__)") from None

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

        **The default**, for a domain with one boundary piece whose :meth:`sdf` also takes torch tensors
        (operations NumPy and torch share; differentiable by :mod:`torch.func`, square roots guarded): the
        depth ``-sdf(x)`` near the boundary, levelled off smoothly deeper inside, where the distance has kinks
        (on the domain's medial axis, which the factor must not see):

            phi = t - (b - a) J((t - a) / (b - a)),   t = -sdf(x),  J(z) = int_0^z smoothstep,

        with ``a, b = SDF_CUT h`` (``h`` the largest depth, see :meth:`extension`): ``phi = t`` for ``t <= a``,
        ``(a + b) / 2`` for ``t >= b``, ``phi' = 1 - smoothstep`` between (C^3). Smooth where the boundary's reach
        exceeds ``b``. Other domains without one raise ``NotImplementedError`` (hard constraints refuse them with
        one line)."""
        self._require_sdf_route(piece, "Dirichlet distance factor")
        depth, _ = self._sdf_blend_data(piece)
        a, b = (c * depth for c in self.SDF_CUT)
        t = -self.sdf(x)
        z = (t - a) / (b - a)
        zc = z.clamp(0.0, 1.0)
        level = zc**5 * (7 + zc * (-14 + zc * (10 - 2.5 * zc))) + (z - 1.0).clamp(min=0.0)  # J(z)
        return t - (b - a) * level

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
        per domain and piece. Torch operations only, like :meth:`dirichlet_factor`.

        **The default** (one boundary piece, a torch-capable :meth:`sdf`, as for :meth:`dirichlet_factor`), like
        :class:`~kanpde.pde.Disk`'s: near the boundary the point ``P x`` reached from ``x`` by
        ``PROJECTION_STEPS`` Newton steps onto the zero level set, ``p <- p - sdf(p) grad sdf(p) /
        |grad sdf(p)|^2`` (the closest point where ``sdf`` is the exact distance; along the first axis where
        its gradient vanishes), blended deeper inside into the mean of the data over ``MEAN_POINTS`` fixed
        boundary points (from :meth:`sample_boundary`) with a C^3 cut-off of the depth ``-sdf(x)``:

            E g = chi g(P x) + (1 - chi) mean(g),  chi = 1 for depth <= SDF_CUT[0] h, 0 for depth >= SDF_CUT[1] h,

        ``h`` the domain's largest depth (estimated once from points of the bounding box). ``P x`` is smooth
        within the boundary's reach, so the lifting is C^2 when the boundary is smooth and its reach exceeds
        ``SDF_CUT[1] h`` (a disk, a stadium, a smooth blob); a boundary with corners or thin necks needs its own
        ``extension``. The projection must land on the boundary (``|sdf| <= PROJECTION_TOL`` times the
        bounding box's size, checked on plain tensors), else ``ValueError``: nothing evaluates the data off it."""
        self._require_sdf_route(piece, "boundary extension (Geometry.extension)")
        from torch.func import grad, vmap

        def one(p: Tensor) -> Tensor:
            return self.sdf(p[None])[0]

        gradient = vmap(grad(one))
        axis = torch.zeros_like(x)
        axis[:, 0] = 1.0
        p = x
        for _ in range(self.PROJECTION_STEPS):
            g = gradient(p)
            gg = (g * g).sum(dim=1)
            ok = torch.isfinite(gg) & (gg > 1e-24)
            g = torch.where(ok[:, None], g, axis)
            p = p - (self.sdf(p) / torch.where(ok, gg, torch.ones_like(gg)))[:, None] * g
        lo, hi = (np.asarray(v, dtype=np.float64) for v in self.bounding_box)
        if not under_transform():  # checked on plain tensors (values, and the first pass of every batch)
            off = self.sdf(p).detach().abs()
            bad = ~(off <= self.PROJECTION_TOL * float(np.max(hi - lo)))
            if bool(bad.any()):
                raise ValueError(f"{type(self).__name__}.extension: {int(bad.sum())} point(s) did not project onto "
                                 f"the boundary (|sdf| up to {float(off.max()):.2e}); give the domain its own extension()")
        depth, ring = self._sdf_blend_data(piece)
        inner, outer = self.SDF_CUT
        chi = 1.0 - smoothstep((-self.sdf(x) - inner * depth) / ((outer - inner) * depth))
        ring_t = torch.as_tensor(ring, dtype=x.dtype, device=x.device)
        points = torch.cat([p[:, None], ring_t.expand(x.shape[0], -1, -1)], dim=1)
        weights = torch.cat([chi[:, None], ((1 - chi) / ring.shape[0])[:, None].expand(-1, ring.shape[0])], dim=1)
        return points, weights

    #: The default extension: Newton steps onto ``sdf = 0`` and the tolerance they must reach; the cut-off's
    #: depths as fractions of the domain's largest depth; how many boundary points the deep mean takes.
    PROJECTION_STEPS, PROJECTION_TOL = 6, 1e-10
    SDF_CUT, MEAN_POINTS = (0.0, 0.75), 16

    def _sdf_blend_data(self, piece: str) -> tuple[float, np.ndarray]:
        """The largest depth ``h`` (from 4096 random points of the bounding box) and ``MEAN_POINTS`` boundary points
        of the default extension, computed once."""
        cached = self.__dict__.get("_sdf_blend")
        if cached is None:
            lo, hi = (np.asarray(v, dtype=np.float64) for v in self.bounding_box)
            rng = np.random.default_rng(0)
            depth = float(np.max(-np.asarray(self.sdf(lo + (hi - lo) * rng.random((4096, self.dim))))))
            ring, _ = self.sample_boundary(piece, _FixedUnit(rng), self.MEAN_POINTS)
            ring = np.asarray(ring, dtype=np.float64)
            if not depth > 0 or np.abs(np.asarray(self.sdf(ring))).max() > self.PROJECTION_TOL * float(np.max(hi - lo)):
                raise ValueError(f"{type(self).__name__}: no interior found in the bounding box, or sample_boundary "
                                 f"gives points where sdf is not 0; cannot extend boundary data")
            cached = self.__dict__["_sdf_blend"] = (depth, ring)
        return cached

    def _require_sdf_route(self, piece: str, what: str) -> None:
        """Raise ``NotImplementedError`` unless the defaults from a torch-capable ``sdf`` apply."""
        self.resolve_faces(piece)
        if not self._sdf_route():
            raise NotImplementedError(
                f"{type(self).__name__} has no {what}: implement dirichlet_factor() and extension(), or, with one "
                f"boundary piece, write sdf() in operations NumPy arrays and torch tensors share")

    def _sdf_route(self) -> bool:
        """Whether this domain has one boundary piece and an ``sdf`` that takes torch tensors and is
        differentiable by :mod:`torch.func` (probed once on a few points of the bounding box)."""
        cached = self.__dict__.get("_sdf_route_ok")
        if cached is not None:
            return cached
        ok = False
        if len(self.pieces) == 1:
            from torch.func import grad

            try:
                lo, hi = (np.asarray(v, dtype=np.float64) for v in self.bounding_box)
                x = torch.as_tensor(lo + (hi - lo) * np.array([[0.31], [0.58], [0.77]]), dtype=torch.float64)
                d = self.sdf(x)
                g = grad(lambda p: self.sdf(p[None])[0])(x[0])
                ok = (isinstance(d, Tensor) and tuple(d.shape) == (3,) and isinstance(g, Tensor)
                      and bool(torch.isfinite(d).all()))
            except Exception:  # an sdf in NumPy functions: no default
                ok = False
        self.__dict__["_sdf_route_ok"] = ok
        return ok

    @property
    def has_dirichlet_factor(self) -> bool:
        """Whether :meth:`dirichlet_factor` and :meth:`extension` are implemented, or derived from a
        torch-capable ``sdf`` of a one-piece domain (hard Dirichlet constraints can be built)."""
        own = (type(self).dirichlet_factor is not Geometry.dirichlet_factor
               and type(self).extension is not Geometry.extension)
        return own or (type(self).dirichlet_factor is Geometry.dirichlet_factor
                       and type(self).extension is Geometry.extension and self._sdf_route())

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


class _FixedUnit:
    """A stand-in for :class:`kanpde.pde.sampling.Sampler` (``unit(n, k)``) from a NumPy generator."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def unit(self, n: int, k: int) -> np.ndarray:
        return self.rng.random((n, k))


def smoothstep(z: Tensor) -> Tensor:
    """``0`` for ``z <= 0``, ``1`` for ``z >= 1``, ``35 z^4 - 84 z^5 + 70 z^6 - 20 z^7`` between: C^3."""
    z = z.clamp(0.0, 1.0)
    return z**4 * (35 + z * (-84 + z * (70 - 20 * z)))
