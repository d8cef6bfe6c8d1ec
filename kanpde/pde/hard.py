"""Hard Dirichlet constraints, the PDE half: which conditions become hard, the lifting built from their
boundary values alone, and the problem left to train on.

For every output component ``c`` with Dirichlet data ``u_c = g_p`` on boundary pieces ``p`` in ``Gamma_c``
(``Dirichlet`` conditions, and ``Initial`` conditions on the value ``u(x, t0) = g``; each piece may have
its own target), a hard-constraint model (:class:`kanpde.models.hard.HardDirichlet`) writes

    u_c(x) = G_c(x) + D_c(x) N_c(x),

with ``D_c`` a distance factor that vanishes on ``Gamma_c`` and ``G_c`` a lifting of the data. The lifting
is built from the targets' values **on the boundary only**: every target is called at points of its own
pieces, never inside the domain (where a problem's target is its exact solution, evaluating it inside
would put the answer into the ansatz). :class:`Lifting` computes ``[D, G]``:

- **Boxes** (:class:`kanpde.pde.Box`): ``D_c = prod_p (2 / L_p) phi_p`` over the Dirichlet faces (1 at the
  centre when both faces of an axis are Dirichlet) and ``G_c`` the transfinite (Coons, Gordon's Boolean
  sum) interpolation of the face data: with ``P_i`` the blend along axis ``i`` of the data on its Dirichlet
  faces (``(1 - s_i) g(x|x_i=a_i) + s_i g(x|x_i=b_i)``, ``s_i = (x_i - a_i) / L_i``, or the one face's
  ``g(x|x_i=a_i)`` when only one is Dirichlet), ``G = (I - prod_i (I - P_i)) g``: ``3^d - 1`` evaluations at
  the projections of ``x`` onto the Dirichlet faces, their edges and corners (``2^d - 1``-ish when fewer
  faces are Dirichlet). Polynomial weights: C^inf wherever the data are. Exact on every Dirichlet face
  when the data of two faces agree where they meet (checked at construction on a few points of each
  shared edge: data that disagree there are refused); at a point of several faces the face of the
  condition declared first is evaluated.
- **Other domains** (:class:`~kanpde.pde.Disk`, :class:`~kanpde.pde.Annulus`, :class:`~kanpde.pde.Polygon`
  and any :class:`~kanpde.pde.Geometry` with :meth:`~kanpde.pde.Geometry.dirichlet_factor` and
  :meth:`~kanpde.pde.Geometry.extension`): approximate distance functions with R-function blending and
  transfinite interpolation (Sukumar & Srivastava 2022, CMAME 389:114333). With ``phi_i`` the pieces'
  ADFs, ``D = (sum_i phi_i^-1)^-1 = prod_i phi_i / sum_k prod_{j != k} phi_j`` (the R-equivalence,
  ``m = 1``: zero on every piece, normalised to first order) and

      G = sum_i w_i (E_i g_i)(x),    w_i = prod_{j != i} phi_j^mu / sum_k prod_{j != k} phi_j^mu,  mu = 2,

  where ``E_i`` is the piece's extension (:meth:`~kanpde.pde.Geometry.extension`: the closest point on the
  piece, with a smooth cut-off where that is not smooth). ``w_i = 1`` on piece ``i`` (``1 - O(phi_i^2)``
  near it), so ``G = g_i`` there; C^2 in the open domain. At a point where two pieces meet (a polygon's
  vertex) ``w`` is ``0/0`` and is taken as the mean over the pieces through the point. Near such corners
  the second derivatives of ``D`` and ``G`` grow like ``1/r`` (the known limitation of ADF liftings).

:func:`hard_conditions` finds the conditions (and refuses what cannot be built, one line);
:func:`soft_problem` gives the problem without them, so their loss terms disappear from training.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.func import jvp

from kanpde.pde.csg import Renamed
from kanpde.pde.geometry import Box, Geometry
from kanpde.pde.problem import Condition, Problem
from kanpde.pde.shapes import Annulus, Ball, Disk

__all__ = ["hard_conditions", "soft_problem", "Lifting", "corner_note"]

#: The exponent of the transfinite blending weights on non-box domains (mu in the module docstring).
BLEND_POWER = 2
#: Relative tolerance of the check that two box faces' data agree where the faces meet.
EDGE_TOL = 1e-8


def _is_hard(cond: Condition) -> bool:
    return cond.kind in ("dirichlet", "initial") and not cond.derivatives


def _same_target(a: Condition, b: Condition) -> bool:
    return a.value is b.value or (not callable(a.value) and not callable(b.value) and float(a.value) == float(b.value))


def hard_conditions(problem: Problem) -> dict[int, dict[str, Condition]]:
    """``{component: {piece: condition}}`` of the Dirichlet data hard constraints enforce, pieces in the
    order the conditions were declared.

    Raises ``ValueError`` (one line) when the problem has no such condition, its domain has no distance
    function or boundary extension, one piece of a component gets two different targets, or (boxes) the
    data of two faces of a component disagree where the faces meet."""
    geo = problem.geometry
    if not geo.has_dirichlet_factor:
        raise ValueError(
            f"hard Dirichlet constraints need a domain with Geometry.dirichlet_factor and Geometry.extension; "
            f"{type(geo).__name__} has {'no extension' if type(geo).dirichlet_factor is not Geometry.dirichlet_factor else 'neither'} "
            f"(a domain with one boundary piece gets both from an sdf written in operations NumPy and torch share)"
        )
    out: dict[int, dict[str, Condition]] = {}
    for cond in problem.conditions:
        if not _is_hard(cond):
            continue
        comp = problem.outputs.index(cond.component) if cond.component is not None else 0
        pieces = out.setdefault(comp, {})
        for piece in geo.resolve_faces(cond.on):
            if piece in pieces and not _same_target(pieces[piece], cond):
                raise ValueError(
                    f"hard Dirichlet constraints: {pieces[piece].label} and {cond.label} give {problem.outputs[comp]!r} "
                    f"two different values on {piece!r}; use soft conditions (hard_bc=false)"
                )
            pieces.setdefault(piece, cond)
    if not out:
        raise ValueError(f"{type(problem).__name__} has no Dirichlet condition to enforce as a hard constraint")
    if isinstance(geo, Box):
        for comp, pieces in out.items():
            _check_edges(geo, problem.outputs[comp], pieces)
    return out


def _check_edges(box: Box, output: str, pieces: dict[str, Condition]) -> None:
    """Refuse face data that disagree where two faces meet (the Coons lifting would then miss one face)."""
    unit = np.linspace(0.05, 0.95, 7)
    for (p, cp), (q, cq) in itertools.combinations(pieces.items(), 2):
        (i, upper_i), (j, upper_j) = box._face_axis(p), box._face_axis(q)
        if i == j or _same_target(cp, cq):
            continue
        pts = box.lo + np.outer(unit, box.hi - box.lo)  # points of the shared edge (codimension 2)
        pts[:, i] = box.hi[i] if upper_i else box.lo[i]
        pts[:, j] = box.hi[j] if upper_j else box.lo[j]
        x = torch.from_numpy(pts)
        with torch.no_grad():
            gp, gq = cp.target(x), cq.target(x)
        scale = 1.0 + float(torch.maximum(gp.abs(), gq.abs()).max())
        gap = (gp - gq).abs()
        if float(gap.max()) > EDGE_TOL * scale:
            k = int(gap.argmax())
            raise ValueError(
                f"hard Dirichlet constraints need data that agree where faces meet: {output!r} is "
                f"{float(gp[k]):.6g} by {cp.label} and {float(gq[k]):.6g} by {cq.label} at {pts[k].tolist()}; "
                f"use soft conditions (hard_bc=false)"
            )


def soft_problem(problem: Problem) -> Problem:
    """A shallow copy of ``problem`` without the conditions hard constraints enforce (the rest stay soft)."""
    hard_conditions(problem)  # raises for an unsupported problem
    soft = copy.copy(problem)
    soft.conditions = tuple(c for c in problem.conditions if not _is_hard(c))
    return soft


@dataclass(frozen=True)
class _CoonsTerms:
    """The Boolean-sum terms of one target on a box: term ``k`` evaluates the target at ``x`` with the
    coordinates where ``pinned[k]`` is true set to ``values[k]``, weighted by
    ``sign[k] * prod_i (a[k, i] + b[k, i] s_i)``."""

    target: Callable[[Tensor], Tensor]
    pinned: np.ndarray  # (k, d) bool
    values: np.ndarray  # (k, d)
    sign: np.ndarray  # (k,)
    a: np.ndarray  # (k, d)
    b: np.ndarray  # (k, d)


class Lifting:
    """``[D_c(x), G_c(x)]`` of a problem's hard Dirichlet data (module docstring): ``(n, d) -> (n, 2, n_out)``,
    ``D = 1, G = 0`` for outputs without hard conditions. Torch operations on ``x`` (dtype/device of ``x``),
    so autograd and :mod:`torch.func` differentiate it. Every target is called only at points of its own
    boundary pieces."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.geometry = problem.geometry
        self.hard = hard_conditions(problem)
        self.n_outputs = problem.n_outputs
        self._box_terms = (
            {comp: self._coons_terms(pieces) for comp, pieces in self.hard.items()} if isinstance(self.geometry, Box) else None
        )

    @property
    def box_terms(self) -> int | None:
        """The most Coons terms of one output (target evaluations per point) on a box; ``None`` elsewhere."""
        if self._box_terms is None:
            return None
        return max((sum(len(t.sign) for t in groups) for groups in self._box_terms.values()), default=0)

    # -- boxes -------------------------------------------------------------------------------------------
    def _coons_terms(self, pieces: dict[str, Condition]) -> list[_CoonsTerms]:
        box: Box = self.geometry  # type: ignore[assignment]
        d = box.dim
        order = list(pieces)  # priority: the order the conditions were declared
        sides: dict[int, list[bool]] = {}
        for p in order:
            axis, upper = box._face_axis(p)
            sides.setdefault(axis, []).append(upper)
        groups: dict[int, tuple[Condition, list]] = {}
        for size in range(1, len(sides) + 1):
            for axes in itertools.combinations(sorted(sides), size):
                for choice in itertools.product(*(sides[i] for i in axes)):
                    faces = [f"{box.names[i]}{'+' if up else '-'}" for i, up in zip(axes, choice)]
                    cond = pieces[min(faces, key=order.index)]
                    pinned, values = np.zeros(d, bool), np.zeros(d)
                    a, b = np.ones(d), np.zeros(d)
                    for i, up in zip(axes, choice):
                        pinned[i], values[i] = True, box.hi[i] if up else box.lo[i]
                        if len(sides[i]) == 2:  # blend of the two faces: 1 - s_i (lower), s_i (upper)
                            a[i], b[i] = (0.0, 1.0) if up else (1.0, -1.0)
                    groups.setdefault(id(cond), (cond, []))[1].append((pinned, values, (-1.0) ** (size + 1), a, b))
        out = []
        for cond, rows in groups.values():
            pinned, values, sign, a, b = (np.array(v) for v in zip(*rows))
            out.append(_CoonsTerms(cond.target, pinned, values, sign, a, b))
        return out

    def _box_component(self, comp: int, x: Tensor) -> tuple[Tensor, Tensor]:
        box: Box = self.geometry  # type: ignore[assignment]
        dist = x.new_ones(x.shape[0])
        for piece in self.hard[comp]:
            axis, _ = box._face_axis(piece)
            dist = dist * (box.dirichlet_factor(piece, x) * (2.0 / float(box.hi[axis] - box.lo[axis])))
        lo, hi = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in (box.lo, box.hi))
        s = (x - lo) / (hi - lo)  # (n, d)
        g = x.new_zeros(x.shape[0])
        for terms in self._box_terms[comp]:
            t = {k: torch.as_tensor(getattr(terms, k), device=x.device) for k in ("pinned", "values", "sign", "a", "b")}
            points = torch.where(t["pinned"], t["values"].to(x.dtype), x[:, None, :])  # (n, k, d)
            weight = t["sign"].to(x.dtype) * _product(t["a"].to(x.dtype) + t["b"].to(x.dtype) * s[:, None, :], dim=2)
            values = terms.target(points.reshape(-1, x.shape[1])).reshape(points.shape[:2])
            g = g + (weight * values).sum(dim=1)
        return dist, g

    def derivatives(self, x: Tensor, dirs: list[int], pairs: list[tuple[int, int]]
                    ) -> tuple[Tensor, Tensor, Tensor] | None:
        """``[D, G]`` at ``x`` ``(n, 2, n_out)`` with the first derivatives along the coordinates ``dirs``
        ``(n, 2, n_out, len(dirs))`` and the second derivatives ``d2/dx_i dx_j`` for the ``(i, j)`` of
        ``pairs`` ``(n, 2, n_out, len(pairs))``, on a box; ``None`` on other domains (take them by ``jvp``).

        The product rule on the Coons terms, with forward-mode derivatives of the targets only where they
        are not zero: a term's weight ``w_k = prod_i (a_ki + b_ki s_i)`` is affine in each coordinate and does
        not depend on the coordinates the term leaves free (``a = 1, b = 0`` there), while its target value
        ``g(P_k x)`` does not depend on the coordinates it pins. So

            d_i (w g) = (d_i w) g + w (d_i g),            d_ii (w g) = w (d_ii g),
            d_ij (w g) = (d_ij w) g + (d_i w)(d_j g) + (d_j w)(d_i g) + w (d_ij g)   (i != j),

        with ``d_i g`` taken (by ``jvp``) at the terms that leave ``i`` free only: in 5-D a third of them.
        The distance factor is a product over the axes of polynomials of degree <= 2: by hand."""
        if self._box_terms is None:
            return None
        n, nd = x.shape
        m, npairs = len(dirs), len(pairs)
        zeros = x.new_zeros(n)
        value = [[x.new_ones(n), zeros] for _ in range(self.n_outputs)]
        first = [[[zeros] * m, [zeros] * m] for _ in range(self.n_outputs)]
        second = [[[zeros] * npairs, [zeros] * npairs] for _ in range(self.n_outputs)]
        for comp in self.hard:
            jets = (self._box_distance_jet(comp, x, dirs, pairs), self._coons_jet(comp, x, dirs, pairs))
            for role, (v, f, s2) in enumerate(jets):
                value[comp][role], first[comp][role], second[comp][role] = v, f, s2

        def stack(rows: list, k: int) -> Tensor:  # [comp][role][k] -> (n, 2, n_out, k)
            if k == 0:
                return x.new_zeros(n, 2, self.n_outputs, 0)
            return torch.stack([torch.stack([torch.stack(r, dim=1) for r in comp], dim=1) for comp in rows], dim=2)

        value_t = torch.stack([torch.stack(comp, dim=1) for comp in value], dim=2)
        return value_t, stack(first, m), stack(second, npairs)

    def _box_distance_jet(self, comp: int, x: Tensor, dirs: list[int], pairs: list[tuple[int, int]]
                          ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """``D = prod_axes h_a(x_a)`` (``h_a``: the product of the axis's Dirichlet faces' scaled factors,
        degree 0, 1 or 2), its first derivatives along ``dirs`` and second along ``pairs``."""
        box: Box = self.geometry  # type: ignore[assignment]
        n = x.shape[0]
        h, h1, h2 = [x.new_ones(n)] * box.dim, [x.new_zeros(n)] * box.dim, [x.new_zeros(n)] * box.dim
        for piece in self.hard[comp]:
            axis, upper = box._face_axis(piece)
            lo, hi = float(box.lo[axis]), float(box.hi[axis])
            c = 2.0 / (hi - lo)
            f = c * ((hi - x[:, axis]) if upper else (x[:, axis] - lo))
            df = -c if upper else c  # the factor is affine: (h f)' = h' f + h f', (h f)'' = h'' f + 2 h' f'
            h[axis], h1[axis], h2[axis] = h[axis] * f, h1[axis] * f + h[axis] * df, h2[axis] * f + 2.0 * h1[axis] * df

        def prod_except(skip: set[int]) -> Tensor:
            out = x.new_ones(n)
            for a in range(box.dim):
                if a not in skip:
                    out = out * h[a]
            return out

        first = [h1[c] * prod_except({c}) for c in dirs]
        second = [h2[i] * prod_except({i}) if i == j else h1[i] * h1[j] * prod_except({i, j}) for i, j in pairs]
        return prod_except(set()), first, second

    def _coons_jet(self, comp: int, x: Tensor, dirs: list[int], pairs: list[tuple[int, int]]
                   ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """``G`` (the Coons terms of :meth:`_box_component`), its first derivatives along ``dirs`` and
        second along ``pairs``, by the product rule of :meth:`derivatives`."""
        box: Box = self.geometry  # type: ignore[assignment]
        n, nd = x.shape
        lo, hi = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in (box.lo, box.hi))
        s = (x - lo) / (hi - lo)
        eye = torch.eye(nd, dtype=x.dtype, device=x.device)
        g_val = x.new_zeros(n)
        g_first = [x.new_zeros(n) for _ in dirs]
        g_second = [x.new_zeros(n) for _ in pairs]
        for terms in self._box_terms[comp]:
            pinned = torch.as_tensor(terms.pinned, device=x.device)
            sign = torch.as_tensor(terms.sign, dtype=x.dtype, device=x.device)
            a, b = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in (terms.a, terms.b))
            factor = a + b * s[:, None, :]  # (n, k, d): the weight's factor along each axis
            slope = b / (hi - lo)  # (k, d): its derivative
            points = torch.where(pinned, torch.as_tensor(terms.values, dtype=x.dtype, device=x.device), x[:, None, :])

            def weight(skip: tuple[int, ...]) -> Tensor:  # sign_k prod_{i not in skip} factor_ki: (n, k)
                out = sign.expand(n, -1)
                for i in range(nd):
                    if i not in skip:
                        out = out * factor[:, :, i]
                return out

            def target(p: Tensor) -> Tensor:  # (n, k', d) -> (n, k')
                return terms.target(p.reshape(-1, nd)).reshape(p.shape[:2])

            free = {c: torch.as_tensor(np.flatnonzero(~terms.pinned[:, c]), device=x.device)
                    for c in {*dirs, *(i for pair in pairs for i in pair)}}
            g = target(points)
            w = weight(())
            g_val = g_val + (w * g).sum(dim=1)
            dg: dict[int, Tensor] = {}  # d_c g at the terms free in c
            d2g: dict[tuple[int, int], Tensor] = {}  # d_ij g at the terms free in i and j
            for c in sorted(free):
                pts = points[:, free[c]]
                tangent = eye[c].expand_as(pts)
                if not len(free[c]):  # every term pins c (a 1-D box): no target call on no points
                    dg[c] = d2g[(c, c)] = x.new_zeros(n, 0)
                elif (c, c) in pairs:  # d_c g along with d_cc g: one nested jvp
                    dg[c], d2g[(c, c)] = jvp(lambda y, t=tangent: jvp(target, (y,), (t,))[1], (pts,), (tangent,))
                else:
                    dg[c] = jvp(target, (pts,), (tangent,))[1]
            for e, c in enumerate(dirs):
                dw = slope[:, c] * weight((c,))  # (n, k); zero at the terms free in c
                g_first[e] = g_first[e] + (dw * g).sum(dim=1) + (w[:, free[c]] * dg[c]).sum(dim=1)
            for e, (i, j) in enumerate(pairs):
                if i == j:
                    g_second[e] = g_second[e] + (w[:, free[i]] * d2g[(i, i)]).sum(dim=1)
                    continue
                both = torch.as_tensor(np.flatnonzero(~terms.pinned[:, i] & ~terms.pinned[:, j]), device=x.device)
                if not len(both):
                    d2g[(i, j)] = x.new_zeros(n, 0)
                elif (i, j) not in d2g:
                    pts = points[:, both]
                    ti, tj = eye[i].expand_as(pts), eye[j].expand_as(pts)
                    d2g[(i, j)] = jvp(lambda y: jvp(target, (y,), (tj,))[1], (pts,), (ti,))[1]
                dwi, dwj = slope[:, i] * weight((i,)), slope[:, j] * weight((j,))
                dwij = slope[:, i] * slope[:, j] * weight((i, j))
                g_second[e] = (g_second[e] + (dwij * g).sum(dim=1) + (dwi[:, free[j]] * dg[j]).sum(dim=1)
                               + (dwj[:, free[i]] * dg[i]).sum(dim=1) + (w[:, both] * d2g[(i, j)]).sum(dim=1))
        return g_val, g_first, g_second

    # -- other domains ---------------------------------------------------------------------------------
    def _adf_component(self, comp: int, x: Tensor) -> tuple[Tensor, Tensor]:
        geo = self.geometry
        pieces = self.hard[comp]
        phi = torch.stack([geo.dirichlet_factor(p, x) for p in pieces], dim=1)  # (n, m)
        dist = _r_equivalence(phi)
        weights = _blend_weights(phi, BLEND_POWER)  # (n, m)
        g = x.new_zeros(x.shape[0])
        for i, (piece, cond) in enumerate(pieces.items()):
            points, coef = geo.extension(piece, x)  # (n, k, d), (n, k)
            values = cond.target(points.reshape(-1, x.shape[1])).reshape(points.shape[:2])
            g = g + weights[:, i] * (coef * values).sum(dim=1)
        return dist, g

    def __call__(self, x: Tensor) -> Tensor:
        ones, zeros = x.new_ones(x.shape[0]), x.new_zeros(x.shape[0])
        d, g = [ones] * self.n_outputs, [zeros] * self.n_outputs
        component = self._box_component if self._box_terms is not None else self._adf_component
        for comp in self.hard:
            d[comp], g[comp] = component(comp, x)
        return torch.stack([torch.stack(d, dim=1), torch.stack(g, dim=1)], dim=1)


def corner_note(problem: Problem) -> str | None:
    """A one-line warning when the lifting of ``problem``'s Dirichlet data has unbounded second derivatives,
    else ``None``. Off boxes the lifting is built from approximate distance functions, whose second
    derivatives grow like ``1/r`` towards a corner of the boundary (measured on the L-shape: the Laplacian
    of ``D`` is about ``0.25 / r`` to ``0.35 / r`` at its corners, that of ``G`` up to ``0.47 / r``). The strong residual of a
    second-order PDE is then singular at the corners and its loss is dominated by them; bounded
    Laplacians need other lifts (Wachspress-based transfinite interpolation on convex polygons,
    Sukumar et al. 2026, arXiv 2601.01756). Smooth boundaries (disks, balls, annuli) have no corners."""
    geometry = problem.geometry
    if isinstance(geometry, Box) or not hard_conditions(problem) or _smooth_boundary(geometry):
        return None
    return (f"the lifting on {type(geometry).__name__} has second derivatives growing like 1/r at the corners of "
            "the boundary, so a second-order PDE's residual is singular there; soft Dirichlet conditions "
            "(hard_bc=false) may train better")


def _smooth_boundary(geometry: Geometry) -> bool:
    if isinstance(geometry, Renamed):
        return _smooth_boundary(geometry.base)
    return isinstance(geometry, (Disk, Ball, Annulus))


def _product(t: Tensor, dim: int) -> Tensor:
    """``t.prod(dim)`` as a chain of multiplications: the forward-mode derivative of ``torch.prod`` goes
    through cumulative products (it allows zeros); in a profile of the 5-D Coons lift's second derivatives
    (taken by ``jvp``) ``prod`` took two thirds of the time, the problem's own target included."""
    factors = t.unbind(dim)
    out = factors[0]
    for f in factors[1:]:
        out = out * f
    return out


def _others_product(phi: Tensor) -> Tensor:
    """``prod_{j != k} phi_j`` for every ``k``: ``(n, m) -> (n, m)``, without dividing (zeros allowed)."""
    m = phi.shape[1]
    cols = [torch.ones_like(phi[:, 0]) if m == 1 else
            _product(torch.stack([phi[:, j] for j in range(m) if j != k], dim=1), dim=1) for k in range(m)]
    return torch.stack(cols, dim=1)


def _r_equivalence(phi: Tensor) -> Tensor:
    """``prod_i phi_i / sum_k prod_{j != k} phi_j`` (``= (sum_i 1/phi_i)^-1``), ``(n, m) -> (n,)``; 0 where the
    denominator vanishes (two pieces meet)."""
    if phi.shape[1] == 1:
        return phi[:, 0]
    den = _others_product(phi).sum(dim=1)
    ok = den != 0
    return torch.where(ok, _product(phi, dim=1) / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den))


def _blend_weights(phi: Tensor, mu: int) -> Tensor:
    """``w_i = prod_{j != i} phi_j^mu / sum_k prod_{j != k} phi_j^mu``, ``(n, m) -> (n, m)``; where the sum
    vanishes (a point on two pieces) the mean over the pieces through the point."""
    num = _others_product(phi**mu)
    den = num.sum(dim=1, keepdim=True)
    ok = den != 0
    on = (phi == 0).to(phi.dtype)
    fallback = on / on.sum(dim=1, keepdim=True).clamp(min=1.0)
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), fallback)
