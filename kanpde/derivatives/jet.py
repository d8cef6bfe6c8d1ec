"""Truncated derivative jets, propagated forward through a network's layers.

The forward derivative engine (:class:`kanpde.derivatives.field.ForwardField`) never differentiates the network
by autograd. Each layer instead maps a :class:`Jet` of its inputs -- value, the first derivatives and
the second derivatives a problem needs, all with respect to the network inputs ``x`` -- to the jet of
its outputs by the chain rule. For the ``w`` activations ``a`` of one layer at ``n`` points:

    value   (w, n)      a
    first   (w, m, n)   da / dx_s            for the m propagated directions  s = plan.dirs[0 .. m-1]
    second  (w, p, n)   d^2 a / dx_s dx_r    for the p propagated pairs  (s, r) = plan.pairs

Points come *last*: every elementwise operation then runs over long contiguous rows of points, and
broadcasting over features or directions never leaves a short inner loop (on CPU this layout is
several times faster than ``(n, ...)`` for the small feature counts of KANs). Features come first, so
a linear layer maps value and all derivatives with plain matrix products ``W @ (in, m * n)``.

Only what the :class:`DerivativePlan` lists is propagated: a Laplacian in d dimensions needs d
directions and the d diagonal pairs, not the full Hessian -- and when a problem asks for the Laplacian
itself (``u.laplacian()``), a single *trace* row carries the sum of those pairs through every layer
(the "forward Laplacian"): ``lap y = f''(z) |grad z|^2 + f'(z) lap z`` needs no individual
``d2z_ss``. The network input itself is the jet ``Jet(x.T, None, None)``: ``first = None`` stands for
``dx_i / dx_s = delta_is`` and ``second = None`` for a zero second derivative, so the first layer never
multiplies by identity matrices.

Chain rules used by the layers (``y = f(z)`` elementwise, ``y = W z + b`` linear):

    elementwise:  dy_s = f'(z) dz_s,    d2y_sr = f''(z) dz_s dz_r + f'(z) d2z_sr
    linear:       dy_s = W dz_s,        d2y_sr = W d2z_sr

and for a second-derivative row that sums several pairs (a trace) the same with the sums of the
products ``dz_s dz_r`` over its pairs (:func:`pair_products`): every rule is linear in ``d2z``.

Everything is pure tensor code (no in-place updates, no data-dependent Python control flow), so
autograd reaches the parameters and ``torch.func`` transforms apply. dtype/device follow the inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "DerivativePlan",
    "Jet",
    "linear_jet",
    "elementwise_jet",
    "input_second",
    "pair_products",
    "rows_of_entries",
    "contract_inputs",
]

Index = tuple[int, ...]


@dataclass(frozen=True)
class DerivativePlan:
    """Which derivatives a forward pass propagates.

    ``dirs``: sorted input columns whose first derivatives are carried; ``pairs``: ``(a, b)`` with
    ``a <= b`` *positions into* ``dirs`` of the carried second derivatives; ``traces``: sorted tuples
    of positions into ``dirs`` (two or more) whose pure second derivatives are carried as one summed row
    (a Laplacian). Rows of :attr:`Jet.second`: the pairs, then the traces. Build it from the derivative
    indices a problem asks for with :meth:`of` (e.g. ``{(0, 0), (1, 1)}`` gives ``dirs = (0, 1)``,
    ``pairs = ((0, 0), (1, 1))``; the 2-D Laplacian as a trace, ``of([], [(0, 1)])``, gives
    ``dirs = (0, 1)``, ``traces = ((0, 1),)``). Indices of order > 2 are not carried (the field computes
    them another way).
    """

    dirs: tuple[int, ...] = ()
    pairs: tuple[tuple[int, int], ...] = ()
    traces: tuple[tuple[int, ...], ...] = ()
    _first_pos: dict[int, int] = field(init=False, repr=False, compare=False)
    _second_pos: dict[Index, int] = field(init=False, repr=False, compare=False)
    _trace_pos: dict[Index, int] = field(init=False, repr=False, compare=False)
    _entries: tuple[tuple[int, int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if list(self.dirs) != sorted(set(self.dirs)):
            raise ValueError(f"plan directions must be sorted and distinct, got {self.dirs}")
        m = len(self.dirs)
        if any(not 0 <= a <= b < m for a, b in self.pairs) or len(set(self.pairs)) != len(self.pairs):
            raise ValueError(f"plan pairs must be distinct (a <= b) positions into {self.dirs}, got {self.pairs}")
        if len(set(self.traces)) != len(self.traces) or any(
            len(t) < 2 or list(t) != sorted(set(t)) or not 0 <= t[0] <= t[-1] < m for t in self.traces
        ):
            raise ValueError(
                f"plan traces must be distinct sorted tuples of two or more positions into {self.dirs}, got {self.traces}"
            )
        object.__setattr__(self, "_first_pos", {c: a for a, c in enumerate(self.dirs)})
        object.__setattr__(
            self, "_second_pos", {(self.dirs[a], self.dirs[b]): q for q, (a, b) in enumerate(self.pairs)}
        )
        object.__setattr__(
            self,
            "_trace_pos",
            {tuple(self.dirs[a] for a in t): len(self.pairs) + r for r, t in enumerate(self.traces)},
        )
        entries = [(q, a, b) for q, (a, b) in enumerate(self.pairs)]
        for r, t in enumerate(self.traces):
            entries += [(len(self.pairs) + r, a, a) for a in t]
        object.__setattr__(self, "_entries", tuple(entries))

    @classmethod
    def of(cls, indices: Iterable[Index], traces: Iterable[Index] = ()) -> DerivativePlan:
        """The smallest plan carrying every order-1 and order-2 index in ``indices`` (sorted column tuples)
        and every Laplacian over the columns of a tuple in ``traces`` (one column: its pure pair)."""
        traces = {tuple(sorted(set(t))) for t in traces}
        indices = [tuple(sorted(i)) for i in indices if 1 <= len(i) <= 2] + [t * 2 for t in traces if len(t) == 1]
        traces = sorted(t for t in traces if len(t) > 1)
        dirs = tuple(sorted({c for i in indices for c in i} | {c for t in traces for c in t}))
        pos = {c: a for a, c in enumerate(dirs)}
        pairs = tuple(sorted({(pos[i[0]], pos[i[1]]) for i in indices if len(i) == 2}))
        return cls(dirs, pairs, tuple(tuple(pos[c] for c in t) for t in traces))

    @property
    def m(self) -> int:
        """Number of first-derivative directions."""
        return len(self.dirs)

    @property
    def p(self) -> int:
        """Number of second-derivative rows: pairs and traces."""
        return len(self.pairs) + len(self.traces)

    @property
    def order(self) -> int:
        """Highest derivative order carried: 0, 1 or 2."""
        return 2 if self.p else (1 if self.dirs else 0)

    @property
    def indices(self) -> frozenset[Index]:
        """Every derivative index (sorted column tuple) this plan carries, traces not included."""
        return frozenset([(c,) for c in self.dirs] + list(self._second_pos))

    @property
    def trace_columns(self) -> frozenset[Index]:
        """The column tuples of the carried traces."""
        return frozenset(self._trace_pos)

    def covers(self, index: Index) -> bool:
        """Whether the derivative ``index`` (sorted column tuple) is carried; ``()`` (the value) always is."""
        return index == () or (len(index) == 1 and index[0] in self._first_pos) or index in self._second_pos

    def position(self, index: Index) -> int:
        """Row of ``index`` in :attr:`Jet.first` (order 1) or :attr:`Jet.second` (order 2)."""
        return self._first_pos[index[0]] if len(index) == 1 else self._second_pos[index]

    def trace_position(self, columns: Index) -> int | None:
        """Row of the Laplacian over ``columns`` (sorted) in :attr:`Jet.second`; ``None`` if not carried."""
        return self._trace_pos.get(tuple(columns))

    def union(self, indices: Iterable[Index], traces: Iterable[Index] = ()) -> DerivativePlan:
        """This plan enlarged by more indices and traces."""
        return DerivativePlan.of(
            set(self.indices) | {tuple(sorted(i)) for i in indices}, set(self.trace_columns) | set(traces)
        )

    @property
    def entries(self) -> tuple[tuple[int, int, int], ...]:
        """``(row, a, b)`` for every pair product summed into a second-derivative row: one per pair,
        then ``(row, a, a)`` for each position ``a`` of each trace; sorted by row."""
        return self._entries

    @property
    def pair_dirs(self) -> tuple[list[int], list[int]]:
        """Positions into ``dirs`` of the two factors of every entry (:attr:`entries`): ``([a_e], [b_e])``."""
        return [a for _, a, _ in self.entries], [b for _, _, b in self.entries]


@dataclass
class Jet:
    """Value ``(w, n)``, first ``(w, m, n)`` and second ``(w, p, n)`` derivatives of ``w`` activations
    at ``n`` points (features first, points last).

    ``first is None``: the network input (identity Jacobian on the plan's directions);
    ``second is None``: zero second derivatives. Orders the plan does not carry are ``None`` too.
    """

    value: Tensor
    first: Tensor | None = None
    second: Tensor | None = None


def rows_of_entries(per_entry: Tensor, plan: DerivativePlan) -> Tensor:
    """Sum per-entry terms ``(..., E, n)`` (one per :attr:`DerivativePlan.entries`) into the plan's
    second-derivative rows ``(..., p, n)``; the identity when every row is a single pair."""
    if not plan.traces:
        return per_entry
    rows = [q for q, _, _ in plan.entries]
    shape = (*per_entry.shape[:-2], plan.p, per_entry.shape[-1])
    index = torch.tensor(rows, device=per_entry.device)
    return per_entry.new_zeros(shape).index_add(per_entry.ndim - 2, index, per_entry)


def input_second(plan: DerivativePlan, per_input: Tensor) -> Tensor:
    """Second derivatives of a function of the inputs taken one column at a time.

    ``y_o = sum_i g_oi(x_i)`` has ``d2y_o / dx_s dx_r = delta_sr g''_os(x_s)``: from ``per_input``
    ``(out, in, n)`` holding ``g''`` this returns ``(out, p, n)`` (zero for mixed pairs; the sum over its
    columns for a trace).
    """
    cols = [plan.dirs[a] for _, a, _ in plan.entries]  # (E,)
    if all(a == b for _, a, b in plan.entries):  # only pure second derivatives (a Laplacian): pick columns
        picked = per_input if cols == list(range(per_input.shape[1])) else per_input[:, cols]
        return rows_of_entries(picked, plan)
    diag = torch.tensor([float(a == b) for _, a, b in plan.entries], dtype=per_input.dtype, device=per_input.device)
    return rows_of_entries(per_input[:, cols] * diag[:, None], plan)  # (out, p, n)


def pair_products(first: Tensor, plan: DerivativePlan) -> Tensor:
    """``dz_s * dz_r`` for every planned pair, summed per row for traces: ``(w, m, n) -> (w, p, n)``."""
    a, b = plan.pair_dirs
    if a == b:  # pure second derivatives only
        sq = first if a == list(range(first.shape[1])) else first[:, a]
        return rows_of_entries(sq * sq, plan)
    return rows_of_entries(first[:, a] * first[:, b], plan)


def contract_inputs(*terms: tuple[Tensor, Tensor]) -> Tensor:
    """``out[o, r, n] = sum_terms sum_i e[o, i, n] * w[i, r, n]`` for ``(e, w)`` pairs
    ``(out, in, n), (in, r, n)``: returns ``(out, r, n)``.

    The chain rule through a layer whose edges have per-point derivatives (a KAN layer):
    ``dy_o/ds = sum_i phi'_oi dx_i/ds`` is one term, a second derivative two. Small layers use broadcast
    products (an ``(out, in, r, n)`` intermediate, at most ``r`` copies of the per-edge tensor) summed
    once; wide ones a batched matrix product over points.
    """
    (e, w), rest = terms[0], terms[1:]
    n_out, n_in = e.shape[:2]
    if n_in * n_out > 256:
        out = torch.bmm(e.permute(2, 0, 1), w.permute(2, 0, 1))  # (n, out, r)
        for e2, w2 in rest:
            out = torch.baddbmm(out, e2.permute(2, 0, 1), w2.permute(2, 0, 1))
        return out.permute(1, 2, 0)
    if n_out == 1:  # (in, r, n) products: no broadcast over a size-1 axis
        prod = e[0].unsqueeze(1) * w
        for e2, w2 in rest:
            prod = torch.addcmul(prod, e2[0].unsqueeze(1), w2)
        return prod.sum(0).unsqueeze(0)
    prod = e.unsqueeze(2) * w
    for e2, w2 in rest:
        prod = torch.addcmul(prod, e2.unsqueeze(2), w2)
    return prod.sum(1)


def linear_jet(jet: Jet, plan: DerivativePlan, weight: Tensor, bias: Tensor | None = None) -> Jet:
    """``y = W z + b`` (``weight`` ``(out, in)``): the derivatives go through ``W`` alone, one matrix
    product each for all directions at once."""
    value = weight @ jet.value if bias is None else torch.addmm(bias.unsqueeze(1), weight, jet.value)  # (out, n)
    n_out, n = value.shape
    first = second = None
    if plan.m:
        if jet.first is None:  # dz/dx_s = e_s: the columns of W, shared by all points
            first = weight[:, list(plan.dirs)].unsqueeze(-1).expand(n_out, plan.m, n)
        else:
            first = (weight @ jet.first.reshape(jet.first.shape[0], -1)).view(n_out, plan.m, n)  # (out, m, n)
    if plan.p and jet.second is not None:
        second = (weight @ jet.second.reshape(jet.second.shape[0], -1)).view(n_out, plan.p, n)  # (out, p, n)
    return Jet(value, first, second)


def elementwise_jet(jet: Jet, plan: DerivativePlan, f0: Tensor, f1: Tensor | None, f2: Tensor | None) -> Jet:
    """``y = f(z)`` elementwise, given ``f(z)``, ``f'(z)``, ``f''(z)`` ``(w, n)`` (derivatives may be ``None``
    when the plan does not need them). ``jet.first`` must be explicit (not the network input)."""
    first = second = None
    if plan.m:
        if jet.first is None:
            raise ValueError("elementwise_jet needs an explicit first derivative; apply a linear layer first")
        first = f1.unsqueeze(1) * jet.first  # (w, m, n)
    if plan.p:
        second = f2.unsqueeze(1) * pair_products(jet.first, plan)  # (w, p, n)
        if jet.second is not None:
            second = torch.addcmul(second, f1.unsqueeze(1), jet.second)
    return Jet(f0, first, second)
