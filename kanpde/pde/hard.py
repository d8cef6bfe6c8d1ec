"""Which conditions of a problem hard Dirichlet constraints enforce, and the problem left to train on.

For every output component ``c`` with Dirichlet data ``u_c = g_c`` on boundary pieces ``Gamma_c``
(``Dirichlet`` conditions, and ``Initial`` conditions on the value ``u(x, t0) = g``), a hard-constraint
model (:class:`kanpde.models.hard.HardDirichlet`) writes ``u_c = g_c + D_c N_c`` with
``D_c = prod_p phi_p`` over the pieces' distance factors (:meth:`kanpde.pde.Geometry.dirichlet_factor`).
All hard conditions of one component must share one target. :func:`hard_conditions` finds them;
:func:`soft_problem` gives the problem without them, so their loss terms disappear from training.
"""

from __future__ import annotations

import copy

from kanpde.pde.problem import Condition, Problem

__all__ = ["hard_conditions", "soft_problem"]


def _is_hard(cond: Condition) -> bool:
    return cond.kind in ("dirichlet", "initial") and not cond.derivatives


def hard_conditions(problem: Problem) -> dict[int, tuple[list[str], Condition]]:
    """``{component: (pieces, condition)}`` of the Dirichlet data hard constraints enforce.

    Raises ``ValueError`` when the problem has no such condition, its domain has no distance function
    here, or one component has Dirichlet pieces with different targets."""
    geo = problem.geometry
    if not geo.has_dirichlet_factor:
        raise ValueError(f"hard Dirichlet constraints support Box, Disk and Annulus domains, not {type(geo).__name__}")
    out: dict[int, tuple[list[str], Condition]] = {}
    for cond in problem.conditions:
        if not _is_hard(cond):
            continue
        comp = problem.outputs.index(cond.component) if cond.component is not None else 0
        pieces = list(geo.resolve_faces(cond.on))
        if comp in out:
            first = out[comp][1]
            if first.value is not cond.value and first.value != cond.value:
                raise ValueError(
                    f"hard Dirichlet constraints need one target per output: {first.label} and {cond.label} "
                    f"of {problem.outputs[comp]!r} differ; use soft conditions (hard_bc=false)"
                )
            pieces += [p for p in out[comp][0] if p not in pieces]
        out[comp] = (pieces, out[comp][1] if comp in out else cond)
    if not out:
        raise ValueError(f"{type(problem).__name__} has no Dirichlet condition to enforce as a hard constraint")
    return out


def soft_problem(problem: Problem) -> Problem:
    """A shallow copy of ``problem`` without the conditions hard constraints enforce (the rest stay soft)."""
    hard_conditions(problem)  # raises for an unsupported problem
    soft = copy.copy(problem)
    soft.conditions = tuple(c for c in problem.conditions if not _is_hard(c))
    return soft
