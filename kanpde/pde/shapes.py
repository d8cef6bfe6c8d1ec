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

from kanpde.pde.geometry import Geometry, smoothstep

__all__ = ["Disk", "Annulus", "Ball", "Polygon", "LShape"]


def _arc_unit(sampler, n: int) -> np.ndarray:
    return sampler.unit(n, 1)[:, 0]


class _Round(Geometry):
    """What a disk and a ball share: ``center``, ``radius``, the signed distance and the Dirichlet factor."""

    center: np.ndarray
    radius: float

    def sdf(self, x: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.asarray(x, dtype=np.float64) - self.center, axis=1) - self.radius

    def dirichlet_factor(self, piece: str, x: Tensor) -> Tensor:
        """``(r^2 - |x - c|^2) / (2 r)``: zero on the circle (sphere), normalised (``|grad| = 1`` there), C^inf."""
        self.resolve_faces(piece)
        return (self.radius**2 - _rho2(x, self.center)) / (2 * self.radius)


class Disk(_Round):
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

    #: The extension's cut-off: the closest point on the circle alone where ``|x - c| >= CUT_OUTER r``, the
    #: circle's mean value alone where ``|x - c| <= CUT_INNER r``, a C^3 blend between.
    CUT_INNER, CUT_OUTER, MEAN_POINTS = 0.25, 0.5, 16

    def extension(self, piece: str, x: Tensor) -> tuple[Tensor, Tensor]:
        """The closest point ``c + r (x - c) / |x - c|`` on the circle (C^inf except at the centre, where it
        is undefined), blended near the centre into the mean of the data over ``MEAN_POINTS`` equally spaced
        points of the circle (a constant) with the C^3 cut-off ``chi(|x - c|^2)`` (1 outside ``CUT_OUTER r``,
        0 inside ``CUT_INNER r``): ``E g = chi g(P x) + (1 - chi) mean(g)``, C^3 in the whole disk.
        ``k = 1 + MEAN_POINTS`` points, all on the circle."""
        self.resolve_faces(piece)
        r = self.radius
        chi = smoothstep((_rho2(x, self.center) - (self.CUT_INNER * r) ** 2)
                          / ((self.CUT_OUTER * r) ** 2 - (self.CUT_INNER * r) ** 2))
        closest = _circle_point(x, self.center, r)  # (n, d)
        theta = torch.arange(self.MEAN_POINTS, dtype=x.dtype, device=x.device) * (2 * np.pi / self.MEAN_POINTS)
        ring = torch.as_tensor(self.center, dtype=x.dtype, device=x.device) + r * torch.stack(
            [torch.cos(theta), torch.sin(theta)], dim=1)  # (k, 2)
        points = torch.cat([closest[:, None], ring.expand(x.shape[0], -1, -1)], dim=1)
        weights = torch.cat([chi[:, None], ((1 - chi) / self.MEAN_POINTS)[:, None].expand(-1, self.MEAN_POINTS)], dim=1)
        return points, weights

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
        """``"outer"``: ``(r_o^2 - |x - c|^2) / (2 r_o)``; ``"inner"``: ``(|x - c|^2 - r_i^2) / (2 r_i)``
        (zero on the circle, normalised there, C^inf)."""
        self.resolve_faces(piece)
        rho2 = _rho2(x, self.center)
        if piece == "outer":
            return (self.r_outer**2 - rho2) / (2 * self.r_outer)
        return (rho2 - self.r_inner**2) / (2 * self.r_inner)

    def extension(self, piece: str, x: Tensor) -> tuple[Tensor, Tensor]:
        """The closest point ``c + r (x - c) / |x - c|`` on the piece's circle (one point, weight 1): C^inf in
        the annulus, whose points are at least ``r_inner`` from the centre (the centre itself, outside the
        domain, is sent to a fixed point of the circle)."""
        self.resolve_faces(piece)
        r = self.r_outer if piece == "outer" else self.r_inner
        return _circle_point(x, self.center, r)[:, None], x.new_ones(x.shape[0], 1)

    def __repr__(self) -> str:
        return f"Annulus(center={self.center.tolist()}, r_inner={self.r_inner}, r_outer={self.r_outer})"


class Ball(_Round):
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

    def extension(self, piece: str, x: Tensor) -> tuple[Tensor, Tensor]:
        """As :meth:`Disk.extension`: the closest point on the sphere, blended near the centre (between
        ``Disk.CUT_INNER r`` and ``Disk.CUT_OUTER r``, C^3) into the mean of the data over the ``2 d``
        points ``c ± r e_i``; ``k = 1 + 2 d`` points, all on the sphere."""
        self.resolve_faces(piece)
        r, d = self.radius, self.dim
        inner, outer = Disk.CUT_INNER * r, Disk.CUT_OUTER * r
        chi = smoothstep((_rho2(x, self.center) - inner**2) / (outer**2 - inner**2))
        closest = _circle_point(x, self.center, r)
        c = torch.as_tensor(self.center, dtype=x.dtype, device=x.device)
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        ring = torch.cat([c + r * eye, c - r * eye])  # (2d, d)
        points = torch.cat([closest[:, None], ring.expand(x.shape[0], -1, -1)], dim=1)
        weights = torch.cat([chi[:, None], ((1 - chi) / (2 * d))[:, None].expand(-1, 2 * d)], dim=1)
        return points, weights

    def __repr__(self) -> str:
        return f"Ball(center={self.center.tolist()}, radius={self.radius}, names={self.names})"


def _rho2(x: Tensor, center: np.ndarray) -> Tensor:
    """``|x - center|^2`` ``(n,)`` in the dtype and device of ``x``."""
    return ((x - torch.as_tensor(center, dtype=x.dtype, device=x.device)) ** 2).sum(dim=1)


def _safe_sqrt(z: Tensor) -> Tensor:
    """``sqrt(z)`` with derivative 0 (not inf) where ``z <= 0``."""
    positive = z > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, z, torch.ones_like(z))), torch.zeros_like(z))


def _circle_point(x: Tensor, center: np.ndarray, r: float) -> Tensor:
    """The closest point ``c + r (x - c) / |x - c|`` of the circle (or sphere), ``(n, d)``; points within ``1e-3 r`` of
    the centre (where it is undefined) go to ``c + r e_0``, so every point returned is on the circle and
    every derivative is finite."""
    c = torch.as_tensor(center, dtype=x.dtype, device=x.device)
    v = x - c
    rho2 = (v**2).sum(dim=1, keepdim=True)
    far = rho2 > (1e-3 * r) ** 2
    unit = v / torch.sqrt(torch.where(far, rho2, torch.ones_like(rho2)))
    e0 = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
    e0[0] = 1.0
    return c + r * torch.where(far, unit, e0)


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

    def dirichlet_factor(self, piece: str, x: Tensor) -> Tensor:
        """The trimmed-segment ADF of the edge (Sukumar & Srivastava 2022, eq. for a line segment): with
        ``L`` the edge's length, ``f`` the signed distance to its line and ``t = ((L/2)^2 - |x - x_c|^2) / L``
        (positive in the disk the edge is a diameter of),

            phi = sqrt(f^2 + ((sqrt(t^2 + f^4) - t) / 2)^2),

        zero exactly on the edge, ``|f|`` to first order near it (normalised), positive elsewhere and C^inf
        off the edge. ``sqrt(t^2 + f^4) - t`` is computed as ``f^4 / (sqrt(t^2 + f^4) + t)`` where ``t > 0``
        (no cancellation near the edge); the square roots are guarded at the end points (finite derivatives)."""
        a, b = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in self._edge(piece))
        ab = b - a
        length = float(np.linalg.norm(self._edge(piece)[1] - self._edge(piece)[0]))
        ap = x - a
        f = (ap[:, 0] * ab[1] - ap[:, 1] * ab[0]) / length
        t = ((length / 2) ** 2 - ((x - (a + b) / 2) ** 2).sum(dim=1)) / length
        f4 = f**4
        varphi = _safe_sqrt(t**2 + f4)
        positive = t > 0
        gap = torch.where(positive, f4 / torch.where(positive, varphi + t, torch.ones_like(t)), varphi - t)
        return _safe_sqrt(f**2 + (gap / 2) ** 2)

    #: The extension past an edge's end points: reflected points ``1 - lam_j u`` of the edge parameter with
    #: weights ``c_j`` (``sum_j c_j (-lam_j)^k = 1`` for k = 0, 1, 2: a C^2 continuation), ``u`` the distance
    #: past the end mapped smoothly into ``[0, SQUASH)`` so the reflected points stay on the edge.
    REFLECT_LAMBDA, REFLECT_WEIGHTS, SQUASH = (1.0, 2.0, 3.0), (6.0, -8.0, 3.0), 0.25

    def extension(self, piece: str, x: Tensor) -> tuple[Tensor, Tensor]:
        """The closest point of the edge where it is the foot of the perpendicular (edge parameter
        ``s = (x - a).(b - a) / L^2`` in ``[0, 1]``), and a C^2 continuation past the end points that
        uses only points of the edge: for ``s > 1``, ``sum_j c_j g(1 - lam_j u)`` with
        ``u = SQUASH tanh((s - 1) / SQUASH)`` (likewise mirrored for ``s < 0``), the reflection that
        matches value, first and second derivative at the end point (Hestenes). Slots not in use point at
        the edge's midpoint, so an end point is evaluated only where ``s`` is exactly 0 or 1 (a target
        should have finite derivatives there). The closest point itself
        (clamped ``s``) has a kink across the lines through the end points, which cross the domain of a
        non-convex polygon; this continuation does not. ``k = 7`` points, all on the edge."""
        a, b = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in self._edge(piece))
        ab = b - a
        s = ((x - a) * ab).sum(dim=1) / (ab * ab).sum()
        lam = torch.tensor(self.REFLECT_LAMBDA, dtype=x.dtype, device=x.device)
        c = torch.tensor(self.REFLECT_WEIGHTS, dtype=x.dtype, device=x.device)
        m = self.SQUASH
        past_b = m * torch.tanh((s - 1).clamp(min=0.0) / m)  # (n,) distance past b, squashed
        past_a = m * torch.tanh((-s).clamp(min=0.0) / m)
        inside, above, below = ((s >= 0) & (s <= 1))[:, None], (s > 1)[:, None], (s < 0)[:, None]
        mid = torch.full_like(past_b[:, None], 0.5)  # the slots not in use look at the edge's midpoint, not its ends
        params = torch.cat([
            torch.where(inside, s.clamp(0.0, 1.0)[:, None], mid),
            torch.where(above, (1 - lam * past_b[:, None]).clamp(0.0, 1.0), mid),
            torch.where(below, (lam * past_a[:, None]).clamp(0.0, 1.0), mid),
        ], dim=1)  # (n, 7) edge parameters, all in [0, 1]
        weights = torch.cat([inside.to(x.dtype), above.to(x.dtype) * c, below.to(x.dtype) * c], dim=1)
        return a + params[..., None] * ab, weights

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
