"""Constructive solid geometry: union, intersection and difference of domains, and renamed pieces.

``plate - (hole_a | hole_b)``, ``a & b`` and ``a | b`` build a :class:`Difference`, an
:class:`Intersection` or a :class:`Union` of any domains with the same coordinate names (boxes, disks,
balls, polygons, other CSG domains, or your own :class:`~kanpde.pde.Geometry`). A plate with two holes::

    plate = Box([-1, -1], [1, 1], names=("x", "y"))
    holes = Disk((-0.4, 0.0), 0.2).renamed(circle="hole") | Disk((0.4, 0.0), 0.2).renamed(circle="hole")
    domain = plate - holes          # pieces: x-, x+, y-, y+, hole1, hole2 ("hole" names both)

What each member gives:

* ``sdf`` — ``min`` of the parts' for a union, ``max`` for an intersection, ``max(sdf_A, -sdf_B)`` for
  ``A - B``: negative inside, zero on the boundary, positive outside (the exact distance wherever one
  part's boundary is the nearest; a bound near the sharp edges CSG creates).
* boundary pieces — every piece of every part, kept where it lies on the result's boundary: a union keeps
  a part's boundary outside the other parts, an intersection inside all of them; ``A - B`` keeps ``A``'s
  boundary outside ``B`` and ``B``'s boundary inside ``A``, with its normal reversed (outward of the
  result). Sampling draws the part's own uniform boundary points and rejects the others, so it stays
  uniform in measure. A piece name that occurs in more than one part is numbered (``circle1``,
  ``circle2``); the bare name then means all of them in a condition's ``on``. Pieces that lie wholly
  inside (or outside) the result are dropped.
* ``measure(piece)`` — the part's measure times the kept fraction of a fixed quasi-random sample of
  :data:`MEASURE_SAMPLES` points (exact when a piece is kept whole); ``volume`` — exact for disjoint
  unions and for holes that lie inside the base without touching each other (sums of the parts'
  volumes), else a quasi-random estimate over the bounding box with :data:`VOLUME_SAMPLES` points.
* ``dirichlet_factor(piece, x)`` and ``extension(piece, x)`` — the part's (the factor negated for a
  subtracted part), so hard Dirichlet constraints work on pieces the result keeps whole (holes inside a
  plate, disjoint parts); a partly removed piece is refused for them (a part's factor could vanish inside
  the result, its extension reach the removed part).
* ``contains``, ``grid`` (the bounding box's, masked when evaluating) and interior sampling by rejection
  come from :class:`~kanpde.pde.Geometry`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from torch import Tensor

from kanpde.pde import geometry
from kanpde.pde.geometry import Geometry
from kanpde.pde.sampling import Sampler

__all__ = ["Union", "Intersection", "Difference", "Renamed", "MEASURE_SAMPLES", "VOLUME_SAMPLES"]

MEASURE_SAMPLES = 1 << 14
VOLUME_SAMPLES = 1 << 18
_TOL = 1e-12


class Renamed(Geometry):
    """``geometry`` with some boundary pieces renamed (``{old: new}``); :meth:`Geometry.renamed` makes one."""

    def __init__(self, geometry: Geometry, mapping: dict[str, str]) -> None:
        unknown = [k for k in mapping if k not in geometry.pieces]
        if unknown:
            raise ValueError(f"cannot rename unknown piece(s) {unknown}; {type(geometry).__name__} has {geometry.pieces}")
        new = tuple(mapping.get(p, p) for p in geometry.pieces)
        if len(set(new)) != len(new):
            raise ValueError(f"renaming {mapping} gives duplicate piece names {new}")
        self.base, self.mapping = geometry, dict(mapping)
        self._back = {mapping.get(p, p): p for p in geometry.pieces}
        self.names = tuple(geometry.names)
        self._pieces = new

    @property
    def pieces(self) -> tuple[str, ...]:
        return self._pieces

    def _old(self, piece: str) -> str:
        self.resolve_faces(piece)
        return self._back[piece]

    @property
    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.base.bounding_box

    @property
    def volume(self) -> float:
        return self.base.volume

    def measure(self, piece: str) -> float:
        return self.base.measure(self._old(piece))

    def sample_boundary(self, piece: str, sampler, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.base.sample_boundary(self._old(piece), sampler, n)

    def sample_interior(self, sampler, n: int) -> np.ndarray:
        return self.base.sample_interior(sampler, n)

    def sdf(self, x: np.ndarray) -> np.ndarray:
        return self.base.sdf(x)

    def dirichlet_factor(self, piece: str, x: Tensor) -> Tensor:
        return self.base.dirichlet_factor(self._old(piece), x)

    def extension(self, piece: str, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.base.extension(self._old(piece), x)

    @property
    def has_dirichlet_factor(self) -> bool:
        return self.base.has_dirichlet_factor

    def __repr__(self) -> str:
        return f"{self.base!r}.renamed({self.mapping})"


class _Combined(Geometry):
    """Shared code of :class:`Union`, :class:`Intersection` and :class:`Difference`: ``parts`` with a sign
    each (``+1`` kept, ``-1`` subtracted); pieces are ``(part index, the part's piece)`` under a name."""

    _signs: tuple[int, ...]

    def __init__(self, parts: Sequence[Geometry]) -> None:
        if len(parts) < 2:
            raise ValueError(f"{type(self).__name__} needs at least two domains, got {len(parts)}")
        for p in parts:
            if not isinstance(p, Geometry):
                raise TypeError(f"{type(self).__name__} combines kanpde Geometry domains, got {type(p).__name__}")
        names = tuple(parts[0].names)
        for p in parts[1:]:
            if tuple(p.names) != names:
                raise ValueError(f"{type(self).__name__}: coordinate names differ: {names} and {tuple(p.names)}")
        self.parts = tuple(parts)
        self.names = names
        raw = [(i, piece) for i, part in enumerate(self.parts) for piece in part.pieces]
        counts: dict[str, int] = {}
        for _, piece in raw:
            counts[piece] = counts.get(piece, 0) + 1
        seen: dict[str, int] = {}
        table: dict[str, tuple[int, str]] = {}
        for i, piece in raw:
            if counts[piece] > 1:
                seen[piece] = seen.get(piece, 0) + 1
                name = f"{piece}{seen[piece]}"
            else:
                name = piece
            if name in table or (name != piece and name in counts):
                raise ValueError(
                    f"{type(self).__name__}: piece name {name!r} occurs twice; rename pieces with "
                    "geometry.renamed(old='new') before combining"
                )
            table[name] = (i, piece)
        self._table = table
        self._groups = {base: tuple(n for n, (_, p) in table.items() if p == base) for base, c in counts.items() if c > 1}
        # pieces wholly outside the result are dropped
        self._pieces = tuple(n for n in table if self._fraction(n) > 0)
        if not self._pieces:
            raise ValueError(f"{type(self).__name__} of {[type(p).__name__ for p in self.parts]} has no boundary left")

    # -- pieces ----------------------------------------------------------------------------------
    @property
    def pieces(self) -> tuple[str, ...]:
        return self._pieces

    def resolve_faces(self, on: str | Sequence[str]) -> tuple[str, ...]:
        """Piece names of ``on``: ``"all"``, piece names, or a name shared by numbered pieces (all of them)."""
        items = ["all"] if on == "all" else [on] if isinstance(on, str) else list(on)
        out: list[str] = []
        for item in items:
            if item == "all":
                names = self._pieces
            elif item in self._groups:
                names = tuple(n for n in self._groups[item] if n in self._pieces)
            else:
                names = (item,)
            out += [n for n in names if n not in out]
        unknown = [p for p in out if p not in self._pieces]
        if unknown or not out:
            groups = f" (or {sorted(self._groups)} for all numbered pieces of one name)" if self._groups else ""
            raise ValueError(
                f"unknown boundary piece(s) {unknown or on!r}; {type(self).__name__} has pieces {self._pieces}{groups} or 'all'"
            )
        return tuple(out)

    def _keep(self, i: int, x: np.ndarray) -> np.ndarray:
        """Which points ``x`` of part ``i``'s boundary lie on the result's boundary."""
        raise NotImplementedError

    def _sign(self, i: int) -> int:
        return self._signs[i]

    @functools.lru_cache(maxsize=None)  # noqa: B019 - a few pieces per domain, domains live as long as runs
    def _fraction(self, piece: str) -> float:
        i, sub = self._table[piece]
        x, _ = self.parts[i].sample_boundary(sub, Sampler("sobol", seed=12345), MEASURE_SAMPLES)
        return float(self._keep(i, x).mean())

    def _one(self, piece: str) -> str:
        """``piece`` checked to name one piece (not a group)."""
        names = self.resolve_faces(piece)
        if names != (piece,):
            raise ValueError(f"{piece!r} names several pieces {names}; give one")
        return piece

    def measure(self, piece: str) -> float:
        i, sub = self._table[self._one(piece)]
        return self.parts[i].measure(sub) * self._fraction(piece)

    def sample_boundary(self, piece: str, sampler, n: int) -> tuple[np.ndarray, np.ndarray]:
        i, sub = self._table[self._one(piece)]
        frac = self._fraction(piece)
        xs, ns, total = [], [], 0
        while total < n:
            m = int(np.ceil((n - total) / frac * 1.2)) + 8
            x, normals = self.parts[i].sample_boundary(sub, sampler, m)
            keep = self._keep(i, x)
            xs.append(x[keep])
            ns.append(normals[keep] * self._sign(i))
            total += int(keep.sum())
        return np.concatenate(xs)[:n], np.concatenate(ns)[:n]

    # -- hard constraints ---------------------------------------------------------------------------
    @property
    def has_dirichlet_factor(self) -> bool:
        return all(p.has_dirichlet_factor for p in self.parts)

    def dirichlet_factor(self, piece: str, x: Tensor) -> Tensor:
        i, sub = self._table[self._one(piece)]
        self._check_factor(piece)
        return self._sign(i) * self.parts[i].dirichlet_factor(sub, x)

    def extension(self, piece: str, x: Tensor) -> tuple[Tensor, Tensor]:
        """The part's extension of its piece (its points lie on the piece, which is kept whole)."""
        i, sub = self._table[self._one(piece)]
        self._check_factor(piece)
        return self.parts[i].extension(sub, x)

    def _check_factor(self, piece: str) -> None:
        """Hard constraints need the part's piece whole: a part's factor would vanish inside a union where its
        boundary enters another part, and a part's extension may reach the removed part of a piece."""
        if self._fraction(piece) < 1.0:
            raise ValueError(
                f"hard Dirichlet constraints need boundary pieces that {type(self).__name__} keeps whole; piece "
                f"{piece!r} is partly removed: use soft conditions (hard_bc=false)"
            )

    # -- volume --------------------------------------------------------------------------------------
    @functools.cached_property
    def volume(self) -> float:
        exact = self._exact_volume()
        if exact is not None:
            return exact
        lo, hi = self.bounding_box
        pts = lo + Sampler("sobol", seed=54321).unit(VOLUME_SAMPLES, self.dim) * (hi - lo)
        return float(np.prod(hi - lo) * np.mean(self.sdf(pts) < 0))

    def _exact_volume(self) -> float | None:
        return None

    def _whole(self, i: int) -> bool:
        """Every piece of part ``i`` is kept whole (on the quasi-random sample)."""
        return all(self._fraction(n) == 1.0 for n, (j, _) in self._table.items() if j == i)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(repr(p) for p in self.parts)})"


class Union(_Combined):
    """The union of domains (``a | b``). Hard Dirichlet constraints need parts whose boundaries do not
    enter each other (a part's distance factor would vanish inside the union)."""

    def __init__(self, *parts: Geometry) -> None:
        flat: list[Geometry] = []
        for p in parts:
            flat += list(p.parts) if type(p) is Union else [p]
        self._signs = (1,) * len(flat)
        super().__init__(flat)

    @property
    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        boxes = [p.bounding_box for p in self.parts]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def sdf(self, x: np.ndarray) -> np.ndarray:
        return np.min([p.sdf(x) for p in self.parts], axis=0)

    def _keep(self, i: int, x: np.ndarray) -> np.ndarray:
        others = [p.sdf(x) for j, p in enumerate(self.parts) if j != i]
        return np.min(others, axis=0) > -_TOL

    def _exact_volume(self) -> float | None:
        if all(self._whole(i) for i in range(len(self.parts))):  # disjoint parts
            return float(sum(p.volume for p in self.parts))
        return None


class Intersection(_Combined):
    """The intersection of domains (``a & b``)."""

    def __init__(self, *parts: Geometry) -> None:
        flat: list[Geometry] = []
        for p in parts:
            flat += list(p.parts) if type(p) is Intersection else [p]
        self._signs = (1,) * len(flat)
        lo = np.max([p.bounding_box[0] for p in flat], axis=0) if flat else None
        hi = np.min([p.bounding_box[1] for p in flat], axis=0) if flat else None
        if flat and not np.all(lo < hi):
            raise ValueError("Intersection of domains whose bounding boxes do not overlap is empty")
        super().__init__(flat)

    @property
    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        boxes = [p.bounding_box for p in self.parts]
        return np.max([b[0] for b in boxes], axis=0), np.min([b[1] for b in boxes], axis=0)

    def sdf(self, x: np.ndarray) -> np.ndarray:
        return np.max([p.sdf(x) for p in self.parts], axis=0)

    def _keep(self, i: int, x: np.ndarray) -> np.ndarray:
        others = [p.sdf(x) for j, p in enumerate(self.parts) if j != i]
        return np.max(others, axis=0) < _TOL


class Difference(_Combined):
    """``base`` minus the other domains (``base - a - b``): holes, notches, cut-outs. Pieces of the
    subtracted domains get reversed normals (outward of the result)."""

    def __init__(self, base: Geometry, *subtracted: Geometry) -> None:
        flat_sub: list[Geometry] = []
        if type(base) is Difference:
            base, flat_sub = base.parts[0], list(base.parts[1:])
        for p in subtracted:
            flat_sub += list(p.parts) if type(p) is Union else [p]
        self._signs = (1,) + (-1,) * len(flat_sub)
        super().__init__([base, *flat_sub])

    @property
    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.parts[0].bounding_box

    def sdf(self, x: np.ndarray) -> np.ndarray:
        return np.max([self.parts[0].sdf(x)] + [-p.sdf(x) for p in self.parts[1:]], axis=0)

    def _keep(self, i: int, x: np.ndarray) -> np.ndarray:
        keep = np.ones(x.shape[0], dtype=bool) if i == 0 else self.parts[0].sdf(x) < _TOL
        for j, p in enumerate(self.parts[1:], start=1):
            if j != i:
                keep &= p.sdf(x) > -_TOL
        return keep

    def _exact_volume(self) -> float | None:
        if all(self._whole(i) for i in range(len(self.parts))):  # holes inside the base, apart
            return float(self.parts[0].volume - sum(p.volume for p in self.parts[1:]))
        return None


geometry._CSG.update(union=Union, intersection=Intersection, difference=Difference, renamed=Renamed)
