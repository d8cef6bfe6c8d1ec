"""Curved and polygonal domains: :class:`Disk`, :class:`Annulus`, :class:`Polygon` and :class:`LShape`.

They follow the :class:`kanpde.pde.geometry.Geometry` interface, sample their interior by rejection from
the bounding box and their boundary uniformly in arc length.
"""

from __future__ import annotations

from collections.abc import Sequence

import math

import numpy as np
import torch
from torch import Tensor

from kanpde.pde.geometry import Geometry

__all__ = ["Disk", "Annulus", "Ball", "Polygon", "LShape"]


def _arc_unit(sampler, n: int) -> np.ndarray:
    return sampler.unit(n, 1)[:, 0]


class Disk(Geometry):
    """The disk ``|x - center| <= radius`` in 2-D; one boundary piece, ``"circle"``."""

    def __init__(self, center: Sequence[float] = (0.0, 0.0), radius: float = 1.0, names: Sequence[str] = ("x", "y")) -> None:
        self.center = np.asarray(center, dtype=np.float64).reshape(2)
        self.radius = float(radius)
        if self.radius <= 0:
            raise ValueError(f"Disk radius must be > 0, got {radius}")
        self.names = tuple(names)

    pieces = ("circle",)

    @property
    def volume(self) -> float:
        return float(np.pi * self.radius**2)

    @property
    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.center - self.radius, self.center + self.radius

    def measure(self, piece: str) -> float:
        self.resolve_faces(piece)
        return 2 * np.pi * self.radius

    def sample_boundary(self, piece: str, sampler, n: int) -> tuple[np.ndarray, np.ndarray]:
        self.resolve_faces(piece)
        theta = 2 * np.pi * _arc_unit(sampler, n)
        normals = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        return self.center + self.radius * normals, normals

    def sdf(self, x: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.asarray(x, dtype=np.float64) - self.center, axis=1) - self.radius

    def dirichlet_factor(self, piece: str, x: Tensor) -> Tensor:
        """``(r^2 - |x - c|^2) / r^2``."""
        return (self.radius**2 - _rho2(x, self.center)) / self.radius**2

    def __repr__(self) -> str:
        return f"Disk(center={self.center.tolist()}, radius={self.radius}, names={self.names})"


class Annulus(Geometry):
    """``r_inner <= |x - center| <= r_outer`` in 2-D; pieces ``"outer"`` and ``"inner"`` (normals point out of the domain)."""

    def __init__(self, center: Sequence[float] = (0.0, 0.0), r_inner: float = 0.5, r_outer: float = 1.0,
                 names: Sequence[str] = ("x", "y")) -> None:
        self.center = np.asarray(center, dtype=np.float64).reshape(2)
        self.r_inner, self.r_outer = float(r_inner), float(r_outer)
        if not 0 < self.r_inner < self.r_outer:
            raise ValueError(f"Annulus needs 0 < r_inner < r_outer, got {r_inner}, {r_outer}")
        self.names = tuple(names)

    pieces = ("outer", "inner")

    @property
    def volume(self) -> float:
        return float(np.pi * (self.r_outer**2 - self.r_inner**2))

    @property
    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.center - self.r_outer, self.center + self.r_outer

    def measure(self, piece: str) -> float:
        self.resolve_faces(piece)
        return 2 * np.pi * (self.r_outer if piece == "outer" else self.r_inner)

    def sample_boundary(self, piece: str, sampler, n: int) -> tuple[np.ndarray, np.ndarray]:
        self.resolve_faces(piece)
        theta = 2 * np.pi * _arc_unit(sampler, n)
        radial = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        r, sign = (self.r_outer, 1.0) if piece == "outer" else (self.r_inner, -1.0)
        return self.center + r * radial, sign * radial

    def sdf(self, x: np.ndarray) -> np.ndarray:
        r = np.linalg.norm(np.asarray(x, dtype=np.float64) - self.center, axis=1)
        return np.maximum(r - self.r_outer, self.r_inner - r)

    def dirichlet_factor(self, piece: str, x: Tensor) -> Tensor:
        """``"outer"``: ``(r_o^2 - |x - c|^2) / r_o^2``; ``"inner"``: ``(|x - c|^2 - r_i^2) / r_i^2``."""
        rho2 = _rho2(x, self.center)
        if piece == "outer":
            return (self.r_outer**2 - rho2) / self.r_outer**2
        return (rho2 - self.r_inner**2) / self.r_inner**2

    def __repr__(self) -> str:
        return f"Annulus(center={self.center.tolist()}, r_inner={self.r_inner}, r_outer={self.r_outer})"


class Ball(Geometry):
    """The ball ``|x - center| <= radius`` in ``d = len(center)`` dimensions (3-D by default); one boundary
    piece, ``"sphere"``. Boundary points are uniform on the sphere (normalised Gaussian directions from the
    sampler's points by the inverse normal CDF)."""

    def __init__(self, center: Sequence[float] = (0.0, 0.0, 0.0), radius: float = 1.0,
                 names: Sequence[str] | None = None) -> None:
        self.center = np.asarray(center, dtype=np.float64).reshape(-1)
        self.radius = float(radius)
        if self.center.size < 2:
            raise ValueError(f"Ball needs a centre with >= 2 coordinates, got {list(center)}")
        if not self.radius > 0:
            raise ValueError(f"Ball radius must be > 0, got {radius}")
        d = self.center.size
        self.names = tuple(names) if names is not None else (("x", "y", "z") if d == 3 else tuple(f"x{i}" for i in range(d)))
        if len(self.names) != d or len(set(self.names)) != d:
            raise ValueError(f"Ball needs {d} distinct coordinate names, got {self.names}")

    pieces = ("sphere",)

    @property
    def volume(self) -> float:
        d = self.dim
        return float(np.pi ** (d / 2) * self.radius**d / math.gamma(d / 2 + 1))

    @property
    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.center - self.radius, self.center + self.radius

    def measure(self, piece: str) -> float:
        self.resolve_faces(piece)
        d = self.dim
        return float(2 * np.pi ** (d / 2) * self.radius ** (d - 1) / math.gamma(d / 2))

    def sample_boundary(self, piece: str, sampler, n: int) -> tuple[np.ndarray, np.ndarray]:
        self.resolve_faces(piece)
        from scipy.special import ndtri  # lazy: `import kanpde` stays light

        u = np.clip(sampler.unit(n, self.dim), 1e-12, 1 - 1e-12)
        g = ndtri(u)
        norm = np.linalg.norm(g, axis=1, keepdims=True)
        normals = g / np.where(norm > 0, norm, 1.0)
        normals[norm[:, 0] == 0] = np.eye(self.dim)[0]
        return self.center + self.radius * normals, normals

    def sdf(self, x: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.asarray(x, dtype=np.float64) - self.center, axis=1) - self.radius

    def dirichlet_factor(self, piece: str, x: Tensor) -> Tensor:
        """``(r^2 - |x - c|^2) / r^2``, like :class:`Disk`'s."""
        return (self.radius**2 - _rho2(x, self.center)) / self.radius**2

    def __repr__(self) -> str:
        return f"Ball(center={self.center.tolist()}, radius={self.radius}, names={self.names})"


def _rho2(x: Tensor, center: np.ndarray) -> Tensor:
    """``|x - center|^2`` ``(n,)`` in the dtype and device of ``x``."""
    return ((x - torch.as_tensor(center, dtype=x.dtype, device=x.device)) ** 2).sum(dim=1)


class Polygon(Geometry):
    """A simple polygon in 2-D from its vertices (either orientation); edge ``i`` runs from vertex ``i`` to ``i + 1``.

    Pieces are named ``edge_names`` (default ``"e0"``, ``"e1"``, ...); normals point outward.
    """

    def __init__(self, vertices: Sequence[Sequence[float]], names: Sequence[str] = ("x", "y"),
                 edge_names: Sequence[str] | None = None) -> None:
        v = np.asarray(vertices, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != 2 or v.shape[0] < 3:
            raise ValueError(f"Polygon needs at least 3 vertices (x, y), got shape {v.shape}")
        area2 = float(np.sum(v[:, 0] * np.roll(v[:, 1], -1) - np.roll(v[:, 0], -1) * v[:, 1]))
        if area2 == 0:
            raise ValueError("Polygon has zero area")
        self.vertices = v if area2 > 0 else v[::-1].copy()  # counter-clockwise
        self.names = tuple(names)
        n = self.vertices.shape[0]
        self._pieces = tuple(edge_names) if edge_names is not None else tuple(f"e{i}" for i in range(n))
        if len(self._pieces) != n or len(set(self._pieces)) != n:
            raise ValueError(f"Polygon needs {n} distinct edge names, got {self._pieces}")
        self._area = abs(area2) / 2

    @property
    def pieces(self) -> tuple[str, ...]:
        return self._pieces

    @property
    def volume(self) -> float:
        return self._area

    @property
    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(axis=0), self.vertices.max(axis=0)

    def _edge(self, piece: str) -> tuple[np.ndarray, np.ndarray]:
        i = self.resolve_faces(piece) and self._pieces.index(piece)
        return self.vertices[i], self.vertices[(i + 1) % len(self._pieces)]

    def measure(self, piece: str) -> float:
        a, b = self._edge(piece)
        return float(np.linalg.norm(b - a))

    def normal(self, piece: str) -> np.ndarray:
        a, b = self._edge(piece)
        d = (b - a) / np.linalg.norm(b - a)
        return np.array([d[1], -d[0]])  # right of the direction of travel: outward for counter-clockwise

    def sample_boundary(self, piece: str, sampler, n: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self._edge(piece)
        s = _arc_unit(sampler, n)[:, None]
        return a + s * (b - a), np.broadcast_to(self.normal(piece), (n, 2)).copy()

    def sdf(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        a, b = self.vertices, np.roll(self.vertices, -1, axis=0)  # (m, 2) edge ends
        ab = b - a
        ap = x[:, None, :] - a[None]  # (n, m, 2)
        s = np.clip((ap * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
        dist = np.linalg.norm(ap - s[..., None] * ab, axis=-1).min(axis=1)
        # even-odd rule: count edges crossed by the ray from x towards +x
        ya, yb = a[None, :, 1], b[None, :, 1]
        py, px = x[:, 1:2], x[:, 0:1]
        crosses = (ya > py) != (yb > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = a[None, :, 0] + (py - ya) * ab[None, :, 0] / (yb - ya)
        inside = (crosses & (px < xint)).sum(axis=1) % 2 == 1
        return np.where(inside, -dist, dist)

    def __repr__(self) -> str:
        return f"Polygon(vertices={self.vertices.tolist()}, pieces={self._pieces})"


class LShape(Polygon):
    """The L-shaped domain ``[-1, 1]^2`` minus ``(0, 1] x [-1, 0)``: the re-entrant corner is the origin.

    Edges (counter-clockwise): ``"bottom"`` (y = -1), ``"notch_x"`` (x = 0, y < 0), ``"notch_y"``
    (y = 0, x > 0), ``"right"`` (x = 1), ``"top"`` (y = 1), ``"left"`` (x = -1).
    """

    def __init__(self, names: Sequence[str] = ("x", "y")) -> None:
        super().__init__(
            [(-1, -1), (0, -1), (0, 0), (1, 0), (1, 1), (-1, 1)],
            names,
            ("bottom", "notch_x", "notch_y", "right", "top", "left"),
        )
