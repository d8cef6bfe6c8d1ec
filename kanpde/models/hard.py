"""Hard Dirichlet constraints: a network wrapped so that it satisfies its Dirichlet data exactly.

For every output component ``c`` with Dirichlet data on boundary pieces ``Gamma_c`` (``Dirichlet``
conditions, and ``Initial`` conditions on the value ``u(x, t0) = g``; each piece may have its own target),

    u_c(x) = G_c(x) + D_c(x) N_c(x),

where ``N`` is the wrapped network, ``D_c`` a distance factor that vanishes on ``Gamma_c`` and ``G_c`` a
lifting of the data built from the targets' values **on the boundary only**
(:class:`kanpde.pde.hard.Lifting`: transfinite Coons interpolation on boxes, approximate distance
functions with R-function blending and transfinite interpolation on the other domains). No target is
called inside the domain, so a problem whose target is its exact solution does not hand the answer to
the ansatz. Components without hard conditions are left as ``u_c = N_c``.

:class:`HardDirichlet` is an ``nn.Module`` with the network's call shape, a ``forward_jet`` (the product
rule on the network's jet and the jets of ``D`` and ``G``: on boxes the product rule on the Coons terms,
elsewhere :mod:`torch.func` on their closed forms), and a ``config`` of plain data (the network's class and constructor arguments, the
problem's :attr:`~kanpde.pde.Problem.spec`), from which :meth:`HardDirichlet.from_config` rebuilds it
(checkpoints and :func:`kanpde.load_run`). KAN grid operations are passed to the network; it is a
:class:`~kanpde.models.protocol.Wrapper`, so pruning and snapping reach the network inside.
:func:`kanpde.pde.hard.soft_problem` gives the problem without the conditions the wrapper enforces, so
their loss terms disappear from training.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.func import jvp, vmap

from kanpde.derivatives.jet import DerivativePlan, Jet, rows_of_entries
from kanpde.models._kernels import under_transform
from kanpde.pde import Problem
from kanpde.models.protocol import WrapsNet
from kanpde.models.registry import register_model
from kanpde.pde.hard import Lifting

__all__ = ["HardDirichlet"]

LIFT_CHUNK = 256
"""Points per block when the lift's derivatives are taken (:meth:`HardDirichlet._compute_lift_derivatives`)."""
LIFT_TERMS_PER_BLOCK = 2**17
"""On boxes (the derivatives by hand, :meth:`kanpde.pde.hard.Lifting.derivatives`) a block holds this many
(point, Coons term) pairs, at least :data:`LIFT_CHUNK` points: the forward-mode products cost about the same
per call up to some 10^4 elements, so small blocks are slow (2-D: 16,384 points a block; 5-D: 541)."""
LIFT_CACHE = 4
"""The lift's derivatives kept for this many recent point sets (:meth:`HardDirichlet._lift_derivatives`)."""
LIFT_SHARED_MIB = 256
"""The lift's derivatives kept per problem, looked up by the points' values, up to this many MiB (0: none):
every wrapper of one problem shares them (a run's model and its baseline, the wrappers made again at each
grid extension, the evaluation of both models on one grid)."""

# {problem: OrderedDict{key: (points, (value, first, second), bytes)}}, the least recently used first.
_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# Lift derivatives given from outside a torch.func transform: {id(wrapper): (plan, (value, first, second))},
# set by HardDirichlet.given_jet_constants for the per-unit Jacobians of Levenberg-Marquardt (kanpde.training.loss).
_GIVEN: contextvars.ContextVar[dict | None] = contextvars.ContextVar("kanpde_hard_given", default=None)


@register_model
class HardDirichlet(WrapsNet, nn.Module):
    """``u = g(x) + D(x) N(x)`` (module docstring): a network ``N`` that satisfies the Dirichlet data of ``problem``.

    ``net``: the network (its parameters are kept, not copied); ``problem``: the :class:`~kanpde.pde.Problem`
    whose Dirichlet data is enforced. ``(n, dim) -> (n, n_out)`` like the network; dtype/device follow the
    network and the inputs. ``config`` holds the network's class and constructor arguments and the
    problem's :attr:`~kanpde.pde.Problem.spec`: :meth:`from_config` makes the wrapper again from it.
    """

    def __init__(self, net: nn.Module, problem: Problem) -> None:
        super().__init__()
        if not isinstance(problem, Problem):
            raise TypeError(f"HardDirichlet needs a kanpde Problem, got {type(problem).__name__}")
        self.net = net
        self.problem = problem
        self.lifting = Lifting(problem)
        self.hard = self.lifting.hard
        self.config = self.wrapper_config(net, problem)

    def with_net(self, net: nn.Module) -> HardDirichlet:
        """The same constraints around another network (after pruning, snapping or grid extension)."""
        return HardDirichlet(net, self.problem)

    # -- the lift: D and g ---------------------------------------------------------------------------
    def _lift(self, x: Tensor) -> Tensor:
        """``[D_c(x), G_c(x)]`` for every output: ``(n, d) -> (n, 2, n_out)`` (``D = 1, G = 0`` where free)."""
        return self.lifting(x)

    def forward(self, x: Tensor) -> Tensor:
        lift = self._lift(x)  # (n, 2, n_out)
        return lift[:, 1] + lift[:, 0] * self.net(x)

    # -- the forward derivative engine -----------------------------------------------------------------
    def _lift_derivatives(self, x: Tensor, plan: DerivativePlan) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``[D, G]`` at ``x`` with the derivatives ``plan`` asks for (:meth:`_compute_lift_derivatives`). The
        lifting does not depend on the parameters, so for the same points (the same tensor, unchanged,
        outside any transform and without a graph to ``x``) and plan a recent result is reused (the last
        :data:`LIFT_CACHE`): collocation points stay fixed between resamplings. Behind that, the problem's
        shared cache (:data:`LIFT_SHARED_MIB`) finds equal points given as another tensor, or by another
        wrapper of the problem. Within :meth:`given_jet_constants` the given constants are used."""
        given = (_GIVEN.get() or {}).get(id(self))
        if given is not None and given[0] == plan:
            return given[1]

        cacheable = not x.requires_grad and not under_transform()
        cache = self.__dict__.setdefault("_lift_cache", [])
        if cacheable:
            for ref, version, cached_plan, out in cache:
                if ref() is x and version == x._version and cached_plan == plan:
                    return out
        out = self._shared_lift_derivatives(x, plan) if cacheable else self._compute_lift_derivatives(x, plan)
        if cacheable:  # a few entries: a derivative probe on a handful of points does not evict a chunk's
            cache[:] = [(weakref.ref(x), x._version, plan, out), *cache[: LIFT_CACHE - 1]]
        return out

    def _shared_lift_derivatives(self, x: Tensor, plan: DerivativePlan) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """:meth:`_compute_lift_derivatives` through the problem's shared cache (:data:`LIFT_SHARED_MIB`):
        looked up by a digest of the points' bytes, then compared value by value with the kept points."""
        limit = LIFT_SHARED_MIB * 2**20
        try:
            store = _SHARED.setdefault(self.problem, OrderedDict()) if limit > 0 else None
        except TypeError:  # a problem class that is not hashable: no sharing
            store = None
        if store is None:
            return self._compute_lift_derivatives(x, plan)
        points = x.detach()
        raw = points.contiguous().view(torch.uint8).cpu().numpy()
        key = (plan, points.dtype, points.device, tuple(points.shape), hashlib.blake2b(raw, digest_size=16).digest())
        hit = store.get(key)
        if hit is not None and torch.equal(hit[0], points):
            store.move_to_end(key)
            return hit[1]
        out = self._compute_lift_derivatives(x, plan)
        size = points.nbytes + sum(t.nbytes for t in out if t is not None)
        if size <= limit:
            store[key] = (points.clone(), out, size)
            total = sum(entry[2] for entry in store.values())
            while total > limit:
                total -= store.popitem(last=False)[1][2]
        return out

    def _compute_lift_derivatives(self, x: Tensor, plan: DerivativePlan) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``[D, G]`` at ``x``, points first: value ``(n, 2, n_out)``, the first derivatives along
        ``plan.dirs`` ``(n, 2, n_out, m)`` and the second derivatives of ``plan.entries`` ``(n, 2, n_out, E)``
        (``None`` where the plan has none), in blocks of :data:`LIFT_CHUNK` points (on boxes
        :data:`LIFT_TERMS_PER_BLOCK` pairs of a point and a Coons term).

        The lifting is pointwise (row ``i`` of its output depends on row ``i`` of ``x`` only), so one
        forward-mode product (``jvp``) with the tangent ``e_c`` at every point gives ``d/dx_c`` at all points
        at once, and a ``jvp`` of that one along ``e_c'`` the entry ``d2/dx_c dx_c'``: only the derivatives
        the plan asks for are taken (a Laplacian in 5-D: 5 second derivatives, not the 25 of the Hessian).
        On boxes the product rule on the Coons terms gives them (:meth:`kanpde.pde.hard.Lifting.derivatives`)."""
        n = x.shape[0]
        terms = self.lifting.box_terms
        block = LIFT_CHUNK if terms is None else max(LIFT_CHUNK, LIFT_TERMS_PER_BLOCK // max(terms, 1))
        if n <= block:
            return self._lift_derivatives_block(x, plan)
        parts = [self._lift_derivatives_block(x[i : i + block], plan) for i in range(0, n, block)]
        value, first, second = (None if part[0] is None else torch.cat(part) for part in zip(*parts))
        return value, first, second

    def _lift_derivatives_block(self, x: Tensor, plan: DerivativePlan) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if not plan.m:
            return self._lift(x), None, None
        a, b = ([plan.dirs[i] for i in pos] for pos in plan.pair_dirs)
        by_hand = self.lifting.derivatives(x, list(plan.dirs), list(zip(a, b)))  # boxes: the product rule
        if by_hand is not None:
            value, first, second = by_hand
            return value, first, (second if plan.p else None)
        value = self._lift(x)
        eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)

        def along(y: Tensor, c: Tensor) -> Tensor:  # d lift / d x_c at every point; c: a row of eye
            return jvp(self._lift, (y,), (c.expand_as(y),))[1]

        first = vmap(along, in_dims=(None, 0))(x, eye[list(plan.dirs)])  # (m, n, 2, n_out)
        second = None
        if plan.p:
            second = vmap(lambda c, c2: jvp(lambda y: along(y, c2), (x,), (c.expand_as(x),))[1])(eye[a], eye[b])
            second = second.movedim(0, -1)  # (n, 2, n_out, E)
        return value, first.movedim(0, -1), second

    def jet_constants(self, x: Tensor, plan: DerivativePlan) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """What :meth:`forward_jet` needs at ``x`` that does not depend on the parameters: ``[D, G]`` with
        the derivatives ``plan`` asks for, points first (:meth:`_compute_lift_derivatives`), computed afresh
        (caching is left to the loss). Slices of it along the points, given back with the same
        plan through :meth:`given_jet_constants`, replace the lift's computation for those points: a
        Jacobian taken point by point under ``vmap`` then does not recompute the lift for every point."""
        return self._compute_lift_derivatives(x, plan)

    @contextlib.contextmanager
    def given_jet_constants(self, constants: tuple[Tensor, Tensor | None, Tensor | None], plan: DerivativePlan
                            ) -> Iterator[None]:
        """Within the block, :meth:`forward_jet` with ``plan`` uses ``constants`` (from :meth:`jet_constants`
        with ``plan`` at the same points, or their per-point slices under ``vmap``) instead of computing the lift."""
        given = dict(_GIVEN.get() or {})
        given[id(self)] = (plan, constants)
        token = _GIVEN.set(given)
        try:
            yield
        finally:
            _GIVEN.reset(token)

    def _lift_jet(self, x: Tensor, plan: DerivativePlan) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Value ``(2, n_out, n)``, first ``(2, n_out, m, n)``, second ``(2, n_out, p, n)`` of ``[D, G]``."""
        value, first, second = self._lift_derivatives(x, plan)
        if first is not None:
            first = first.permute(1, 2, 3, 0)  # (2, n_out, m, n)
        if second is not None:
            second = rows_of_entries(second.permute(1, 2, 3, 0), plan)  # (2, n_out, p, n)
        return value.permute(1, 2, 0), first, second

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
