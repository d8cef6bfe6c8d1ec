"""Hard Dirichlet constraints: a network wrapped so that it satisfies its Dirichlet data exactly.

For every output component ``c`` with Dirichlet data ``u_c = g_c`` on boundary pieces ``Gamma_c``
(``Dirichlet`` conditions, and ``Initial`` conditions on the value ``u(x, t0) = g``),

    u_c(x) = g_c(x) + D_c(x) N_c(x),        D_c(x) = prod_{pieces p in Gamma_c} phi_p(x),

where ``N`` is the wrapped network and ``phi_p`` is a smooth distance-like function that vanishes on
piece ``p`` and is positive inside the domain:

* :class:`~kanpde.pde.geometry.Box` face ``x_i = a_i`` (``"<name>-"``): ``phi = 2 (x_i - a_i) / L_i``, face
  ``x_i = b_i`` (``"<name>+"``): ``phi = 2 (b_i - x_i) / L_i`` (``L_i = b_i - a_i``; both faces give
  ``4 (x_i - a_i)(b_i - x_i) / L_i^2``, 1 at the centre);
* :class:`~kanpde.pde.geometry.Disk` ``"circle"``: ``phi = (r^2 - |x - c|^2) / r^2``;
* :class:`~kanpde.pde.geometry.Annulus` ``"outer"``: ``(r_o^2 - |x - c|^2) / r_o^2``, ``"inner"``:
  ``(|x - c|^2 - r_i^2) / r_i^2``.

The extension ``g_c`` of the boundary data is the condition's target function itself, evaluated
inside the domain (a constant, or the callable ``g(x)``), so all hard conditions of one component must
share one target. Polygons (the L-shape) are not supported: a product of edge-line distances vanishes
inside non-convex domains, and smooth approximate distances to segments are singular at the boundary.
Components without hard conditions are left as ``u_c = N_c``.

:class:`HardDirichlet` is an ``nn.Module`` with the network's call shape, a ``forward_jet`` (the product
rule on the network's jet and the jets of ``D`` and ``g``, which come from :mod:`torch.func` on their
closed forms), and a ``config`` of plain data (the network's class and constructor arguments, the
problem's target and arguments), so checkpoints and :func:`kanpde.load_run` rebuild it. KAN grid
operations are passed to the network. :func:`soft_problem` gives the problem without the conditions
the wrapper enforces, so their loss terms disappear from training.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import jacfwd, vmap

from kanpde.pde.geometry import Annulus, Disk
from kanpde.outputs.run_file import import_object
from kanpde.derivatives.jet import DerivativePlan, Jet, rows_of_entries
from kanpde.pde.problem import Condition, Problem

__all__ = ["HardDirichlet", "hard_conditions", "soft_problem"]


def _is_hard(cond: Condition) -> bool:
    return cond.kind in ("dirichlet", "initial") and not cond.derivatives


def hard_conditions(problem: Problem) -> dict[int, tuple[list[str], Condition]]:
    """``{component: (pieces, condition)}`` of the Dirichlet data a :class:`HardDirichlet` enforces.

    Raises ``ValueError`` when the problem has no such condition, its domain has no distance function
    here, or one component has Dirichlet pieces with different targets."""
    geo = problem.geometry
    if not (getattr(geo, "is_box", False) or isinstance(geo, (Disk, Annulus))):
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
    """A shallow copy of ``problem`` without the conditions :class:`HardDirichlet` enforces (the rest stay soft)."""
    hard_conditions(problem)  # raises for an unsupported problem
    soft = copy.copy(problem)
    soft.conditions = tuple(c for c in problem.conditions if not _is_hard(c))
    return soft


def _build_problem(spec: Mapping[str, Any]) -> Problem:
    spec = dict(spec)
    return import_object(spec.pop("_target_"))(**spec)


def _build_net(spec: Mapping[str, Any], dtype: torch.dtype | None, device: torch.device | str | None) -> nn.Module:
    cls = import_object(spec["class"])
    kwargs = dict(spec.get("config", {}))
    if {"dtype", "device"} <= set(inspect.signature(cls).parameters):
        kwargs.update(dtype=dtype, device=device)
    return cls(**kwargs)


class HardDirichlet(nn.Module):
    """``u = g(x) + D(x) N(x)`` (module docstring): a network ``N`` that satisfies the Dirichlet data of a problem.

    ``net``: ``{"class": "module.Class", "config": {constructor arguments}}`` of the network;
    ``problem``: ``{"_target_": "module.Class", **constructor arguments}`` of the problem whose Dirichlet
    data is enforced. ``(n, dim) -> (n, n_out)`` like the network; dtype/device follow the module and
    the inputs. Build one around an existing network with :meth:`around`.
    """

    def __init__(
        self,
        net: Mapping[str, Any],
        problem: Mapping[str, Any],
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        spec = {"class": str(net["class"]), "config": dict(net.get("config", {}))}
        self._setup(_build_net(spec, dtype, device), spec, problem)

    @classmethod
    def around(cls, net: nn.Module, problem: Mapping[str, Any]) -> HardDirichlet:
        """Wrap an existing network (its parameters are kept, not copied)."""
        spec = {"class": f"{type(net).__module__}.{type(net).__qualname__}", "config": dict(getattr(net, "config", {}))}
        wrapper = cls.__new__(cls)
        wrapper._setup(net, spec, problem)
        return wrapper

    def _setup(self, net: nn.Module, spec: dict[str, Any], problem: Mapping[str, Any]) -> None:
        nn.Module.__init__(self)
        self.config = {"net": spec, "problem": dict(problem)}
        self.net = net
        self.problem = _build_problem(self.config["problem"])
        self.hard = hard_conditions(self.problem)

    # -- the lift: D and g ---------------------------------------------------------------------------
    def _factor(self, piece: str, x: Tensor) -> Tensor:
        geo = self.problem.geometry
        if getattr(geo, "is_box", False):
            axis, upper = geo._face_axis(piece)
            lo, hi = float(geo.lo[axis]), float(geo.hi[axis])
            return 2 * ((hi - x[:, axis]) if upper else (x[:, axis] - lo)) / (hi - lo)
        rho2 = ((x - torch.as_tensor(geo.center, dtype=x.dtype, device=x.device)) ** 2).sum(dim=1)
        if isinstance(geo, Disk):
            return (geo.radius**2 - rho2) / geo.radius**2
        if piece == "outer":
            return (geo.r_outer**2 - rho2) / geo.r_outer**2
        return (rho2 - geo.r_inner**2) / geo.r_inner**2

    def _lift(self, x: Tensor) -> Tensor:
        """``[D_c(x), g_c(x)]`` for every output: ``(n, d) -> (n, 2, n_out)`` (``D = 1, g = 0`` where free)."""
        n_out = self.problem.n_outputs
        ones, zeros = x.new_ones(x.shape[0]), x.new_zeros(x.shape[0])
        d, g = [ones] * n_out, [zeros] * n_out
        for comp, (pieces, cond) in self.hard.items():
            dist = ones
            for piece in pieces:
                dist = dist * self._factor(piece, x)
            d[comp], g[comp] = dist, cond.target(x)
        return torch.stack([torch.stack(d, dim=1), torch.stack(g, dim=1)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        lift = self._lift(x)  # (n, 2, n_out)
        return lift[:, 1] + lift[:, 0] * self.net(x)

    # -- the forward derivative engine -----------------------------------------------------------------
    @property
    def supports_jet(self) -> bool:
        return callable(getattr(self.net, "forward_jet", None)) and bool(getattr(self.net, "supports_jet", True))

    def _lift_jet(self, x: Tensor, plan: DerivativePlan) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Value ``(2, n_out, n)``, first ``(2, n_out, m, n)``, second ``(2, n_out, p, n)`` of ``[D, g]``."""

        def one(xi: Tensor) -> Tensor:  # (d,) -> (2, n_out)
            return self._lift(xi[None])[0]

        value = self._lift(x).permute(1, 2, 0)
        first = second = None
        dirs = list(plan.dirs)
        if plan.m:
            jac = vmap(jacfwd(one))(x)  # (n, 2, n_out, d)
            first = jac[..., dirs].permute(1, 2, 3, 0)
        if plan.p:
            hess = vmap(jacfwd(jacfwd(one)))(x)  # (n, 2, n_out, d, d)
            a, b = ([dirs[i] for i in pos] for pos in plan.pair_dirs)
            second = rows_of_entries(hess[..., a, b].permute(1, 2, 3, 0), plan)  # (2, n_out, p, n)
        return value, first, second

    def forward_jet(self, x: Tensor, plan: DerivativePlan) -> Jet:
        """The product rule on jets (points last, as in :mod:`kanpde.derivatives.jet`):

            u      = g + D N
            du_s   = g_s + D_s N + D N_s
            d2u_sr = g_sr + D_sr N + D_s N_r + D_r N_s + D N_sr

        (a trace row: the same summed over its pairs ``s = r``).
        """
        net = self.net.forward_jet(x, plan)
        N = net.value  # (n_out, n)
        value, first, second = self._lift_jet(x, plan)
        D, g = value[0], value[1]
        u_first = u_second = None
        if plan.m:
            n_first = net.first if net.first is not None else N.new_zeros(N.shape[0], plan.m, N.shape[1])
            u_first = first[1] + first[0] * N[:, None] + D[:, None] * n_first  # (n_out, m, n)
        if plan.p:
            a, b = plan.pair_dirs
            n_second = net.second if net.second is not None else N.new_zeros(N.shape[0], plan.p, N.shape[1])
            d1 = first[0]
            cross = rows_of_entries(d1[:, a] * n_first[:, b] + d1[:, b] * n_first[:, a], plan)
            u_second = second[1] + second[0] * N[:, None] + cross + D[:, None] * n_second  # (n_out, p, n)
        return Jet(g + D * N, u_first, u_second)

    # -- what the trainer and the outputs ask of a model ---------------------------------------------------
    @property
    def widths(self) -> list[int]:
        return list(getattr(self.net, "widths", self.config["net"]["config"].get("widths", [])))

    @property
    def grid_size(self) -> int | None:
        return getattr(self.net, "grid_size", None)

    def update_grid(self, x: Tensor, **kwargs: Any) -> None:
        """The network's grid update (a KAN's), or nothing."""
        if hasattr(self.net, "update_grid"):
            self.net.update_grid(x, **kwargs)

    def refine(self, grid_size: int, x: Tensor | None = None) -> HardDirichlet:
        """Grid extension of the network (a KAN's ``refine``), wrapped the same way; ``self`` without a grid."""
        if not hasattr(self.net, "refine"):
            return self
        return HardDirichlet.around(self.net.refine(grid_size, x), self.config["problem"])
