"""Exact periodicity by embedding (Dong & Ni 2021): a network fed ``(cos, sin)`` of its periodic coordinates.

For every coordinate ``x_i`` that a problem declares periodic on a box (:func:`kanpde.pde.periodic.periodic_axes`:
a ``Periodic`` condition on its two faces, period ``P_i = hi_i - lo_i``), :class:`PeriodicEmbedding` replaces
``x_i`` in the network's input by ``(cos theta_i, sin theta_i)``, ``theta_i = 2 pi (x_i - lo_i) / P_i``, and
leaves the other coordinates as they are:

    u(x) = N(e(x)),   e(x) = (..., cos theta_i, sin theta_i, ..., x_j, ...)   (n, d + k) for k periodic axes.

``u`` is then ``P_i``-periodic in ``x_i``: ``u`` and all its derivatives agree at ``x_i = lo_i`` and
``x_i = hi_i`` to rounding, whatever the weights, so the ``Periodic`` conditions' loss terms go
(:func:`kanpde.pde.periodic.unperiodic_problem`). The wrapped network takes ``d + k`` inputs. Any network
(KAN, MLP, ...) can be wrapped. With a network that has a ``forward_jet``, so has the wrapper (the chain rule
through ``e``, below); otherwise derivatives come from the autograd engine.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kanpde.derivatives.jet import DerivativePlan, Jet, rows_of_entries
from kanpde.models.protocol import WrapsNet
from kanpde.models.registry import register_model
from kanpde.pde import Problem
from kanpde.pde.periodic import periodic_axes

__all__ = ["PeriodicEmbedding"]


@register_model
class PeriodicEmbedding(WrapsNet, nn.Module):
    """``u(x) = N(e(x))`` (module docstring): ``net`` sees ``(cos, sin)`` of the periodic coordinates of ``problem``.

    ``net``: a network ``(n, d + k) -> (n, n_out)`` (its parameters are kept, not copied); ``problem``: a
    :class:`~kanpde.pde.Problem` with ``k >= 1`` periodic box coordinates (else ``ValueError``, one line).
    ``(n, d) -> (n, n_out)``; dtype/device follow the network and the inputs. ``config`` holds the network's
    class and constructor arguments and the problem's :attr:`~kanpde.pde.Problem.spec`; :meth:`from_config`
    rebuilds the wrapper from it (checkpoints, :func:`kanpde.load_run`). Grid operations go to the network
    on embedded points; it is a :class:`~kanpde.models.protocol.Wrapper`. ``forward_jet`` when the network has one.
    """

    def __init__(self, net: nn.Module, problem: Problem) -> None:
        super().__init__()
        if not isinstance(problem, Problem):
            raise TypeError(f"PeriodicEmbedding needs a kanpde Problem, got {type(problem).__name__}")
        self.axes = periodic_axes(problem)
        self.net = net
        self.problem = problem
        self.dim = problem.dim
        widths = getattr(net, "widths", None)
        if widths and widths[0] != self.in_features:
            raise ValueError(f"PeriodicEmbedding: the network takes {widths[0]} inputs, but {problem.name} embeds "
                             f"{self.dim} coordinates into {self.in_features} (widths[0] must be {self.in_features})")
        self.config = self.wrapper_config(net, problem)

    @property
    def in_features(self) -> int:
        """The network's input count: ``d`` plus one per periodic coordinate."""
        return self.dim + len(self.axes)

    def with_net(self, net: nn.Module) -> PeriodicEmbedding:
        """The same embedding around another network (after pruning or grid extension)."""
        return PeriodicEmbedding(net, self.problem)

    def embed(self, x: Tensor) -> Tensor:
        """``e(x)``: ``(n, d) -> (n, d + k)``, each periodic coordinate replaced by its ``(cos, sin)`` pair."""
        cols = []
        for i in range(self.dim):
            if i in self.axes:
                lo, period = self.axes[i]
                theta = (2 * math.pi / period) * (x[:, i] - lo)
                cols += [torch.cos(theta), torch.sin(theta)]
            else:
                cols.append(x[:, i])
        return torch.stack(cols, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.embed(x))

    # -- the forward derivative engine -----------------------------------------------------------------
    def _columns(self) -> list[list[int]]:
        """The embedded columns of every coordinate: ``[c, c + 1]`` for a periodic one, ``[c]`` otherwise."""
        cols, c = [], 0
        for i in range(self.dim):
            width = 2 if i in self.axes else 1
            cols.append(list(range(c, c + width)))
            c += width
        return cols

    def forward_jet(self, x: Tensor, plan: DerivativePlan) -> Jet:
        """The chain rule through ``e`` (points last). The network's jet is taken in the embedded columns of
        the planned directions, every pair among them; then for directions ``s``, ``r``

            u_s  = sum_j N_j e_j,s
            u_sr = sum_jk N_jk e_j,s e_k,r + [s = r] sum_j N_j e_j,ss

        with ``e_cos,s = -w sin theta``, ``e_sin,s = w cos theta``, ``e_cos,ss = -w^2 cos theta``,
        ``e_sin,ss = -w^2 sin theta`` (``w = 2 pi / P``) for a periodic ``s``, and ``e_s,s = 1`` otherwise."""
        e = self.embed(x)
        if not plan.m:
            return self.net.forward_jet(e, plan)
        columns = self._columns()
        dirs_e = sorted({j for s in plan.dirs for j in columns[s]})
        pos = {j: a for a, j in enumerate(dirs_e)}
        inner = DerivativePlan(tuple(dirs_e), tuple((a, b) for a in range(len(dirs_e)) for b in range(a, len(dirs_e))) if plan.p else ())
        net = self.net.forward_jet(e, inner)
        N = net.value  # (n_out, n)
        # d e_j / d x_s and d2 e_j / d x_s^2 at the points, per direction s: lists over its columns of (n,) tensors
        d1, d2 = {}, {}
        for s in plan.dirs:
            if s in self.axes:
                lo, period = self.axes[s]
                w = 2 * math.pi / period
                theta = w * (x[:, s] - lo)
                c, sn = torch.cos(theta), torch.sin(theta)
                d1[s], d2[s] = [-w * sn, w * c], [-w * w * c, -w * w * sn]
            else:
                d1[s], d2[s] = [None], [None]  # 1 and 0
        n_first = net.first  # (n_out, m_inner, n)
        first = []
        for s in plan.dirs:
            terms = [n_first[:, pos[j]] if f is None else f * n_first[:, pos[j]] for j, f in zip(columns[s], d1[s])]
            first.append(sum(terms[1:], terms[0]))
        u_first = torch.stack(first, 1)  # (n_out, m, n)
        u_second = None
        if plan.p:
            inner_row = {(dirs_e[a], dirs_e[b]): q for q, (a, b) in enumerate(inner.pairs)}
            entries = []
            for _, a, b in plan.entries:
                s, r = plan.dirs[a], plan.dirs[b]
                total = None
                for j, fj in zip(columns[s], d1[s]):
                    for k, fk in zip(columns[r], d1[r]):
                        term = net.second[:, inner_row[(min(j, k), max(j, k))]]
                        term = term if fj is None else fj * term
                        term = term if fk is None else fk * term
                        total = term if total is None else total + term
                if s == r:
                    for j, gj in zip(columns[s], d2[s]):
                        if gj is not None:
                            total = total + gj * n_first[:, pos[j]]
                entries.append(total)
            u_second = rows_of_entries(torch.stack(entries, 1), plan)  # (n_out, p, n)
        return Jet(N, u_first, u_second)

    def net_input(self, x: Tensor) -> Tensor:
        """The network sees the embedded points (grid update and extension included)."""
        return self.embed(x)
