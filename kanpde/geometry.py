"""Domains with named boundary pieces.

A domain maps points of the unit cube (from a :class:`kanpde.sampling.Sampler`) to interior and boundary
points, gives outward normals and measures, and builds uniform evaluation grids.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Box"]


class Box:
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

    @property
    def dim(self) -> int:
        return int(self.lo.size)

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
