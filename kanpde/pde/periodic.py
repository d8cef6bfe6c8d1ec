"""Exact periodicity by embedding (Dong & Ni 2021, J. Comput. Phys. 435:110242), the PDE half: which box
coordinates a problem declares periodic, and the problem left to train on.

A coordinate ``x_i`` of a :class:`~kanpde.pde.Box` with a ``Periodic`` condition on its faces
``("x_i-", "x_i+")`` has period ``P = hi_i - lo_i``. A network fed ``(cos(2 pi (x_i - lo_i) / P),
sin(2 pi (x_i - lo_i) / P))`` instead of ``x_i`` (:class:`kanpde.models.periodic.PeriodicEmbedding`) takes the
same value, and has the same derivatives of every order, at ``x_i = lo_i`` and ``x_i = hi_i``: the
condition holds exactly and :func:`unperiodic_problem` drops its loss term.
"""

from __future__ import annotations

import copy

from kanpde.pde.geometry import Box
from kanpde.pde.problem import Condition, Problem

__all__ = ["periodic_axes", "unperiodic_problem"]


def _axis(problem: Problem, cond: Condition) -> int | None:
    """The box axis whose two faces ``cond`` pairs, or None (not a periodic condition of a box)."""
    geo = problem.geometry
    if cond.kind != "periodic" or not isinstance(geo, Box):
        return None
    a, b = geo.resolve_faces(cond.on)
    if a[:-1] != b[:-1] or a[-1] == b[-1]:
        return None
    return geo.names.index(a[:-1])


def periodic_axes(problem: Problem) -> dict[int, tuple[float, float]]:
    """``{axis: (lo, period)}`` of the box coordinates with a ``Periodic`` condition, in axis order.

    Raises ``ValueError`` (one line) when there is none: the domain is not a :class:`~kanpde.pde.Box` or
    no condition is ``Periodic`` on the two faces of one coordinate."""
    geo = problem.geometry
    axes = sorted({ax for c in problem.conditions if (ax := _axis(problem, c)) is not None})
    if not axes:
        where = "its domain is not a Box" if not isinstance(geo, Box) else "it has no Periodic condition on a coordinate's two faces"
        raise ValueError(f"periodic embedding needs a problem with a periodic coordinate; {type(problem).__name__}: {where}")
    return {ax: (float(geo.lo[ax]), float(geo.hi[ax] - geo.lo[ax])) for ax in axes}


def unperiodic_problem(problem: Problem) -> Problem:
    """A shallow copy of ``problem`` without the ``Periodic`` conditions the embedding enforces (raises like
    :func:`periodic_axes`)."""
    periodic_axes(problem)
    out = copy.copy(problem)
    out.conditions = tuple(c for c in problem.conditions if _axis(problem, c) is None)
    return out
