"""The derivative accessor handed to problems: a model's output at points, with derivatives on demand.

Problems write residuals against :class:`Field` only (``u.d("xx") + u.d("yy") - f``) and never call
autograd, so the engine behind it can change without touching any problem. Two engines:

* :class:`AutogradField` (``engine="autograd"``) works for any ``nn.Module``: derivatives come lazily
  from nested ``torch.autograd.grad(create_graph=True)`` and are cached for the lifetime of the field
  (one evaluation of the loss). It is the fallback and the test oracle.
* :class:`ForwardField` (``engine="forward"``) works for models with a ``forward_jet(x, plan)`` method
  (:class:`kanpde.KAN`, :class:`kanpde.MLP`): one forward pass carries the value and exactly the first
  and second derivatives a :class:`kanpde.derivatives.jet.DerivativePlan` lists through every layer by the chain
  rule; no autograd graph is built over the inputs.

``engine="auto"`` picks ``forward`` when the model supports it and ``autograd`` otherwise
(:func:`resolve_engine`). :func:`probe_plan` finds which derivatives a residual asks for.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kanpde.derivatives.jet import DerivativePlan, Jet

__all__ = [
    "Field",
    "AutogradField",
    "ForwardField",
    "make_field",
    "resolve_engine",
    "supports_forward",
    "probe_plan",
    "probing",
    "ENGINES",
    "ENGINE_CHOICES",
]

Spec = str | Sequence[str]
Index = tuple[int, ...]


class Field:
    """Value and partial derivatives of a model output at collocation points ``x`` ``(n, dim)``.

    ``coords`` names the input columns (e.g. ``("x", "y")`` or ``("x", "t")``) and ``outputs`` the
    output columns (``("u",)`` for a scalar problem). Derivatives are addressed by coordinate names:
    ``u.d("x")``, ``u.d("xy")``, ``u.d(("x1", "x1"))``; mixed partials are symmetric, so ``"xy"`` and
    ``"yx"`` are one cached value. For several outputs pick one with ``u["v"]`` first.
    Every accessor returns tensors of shape ``(n,)`` (``grad``: ``(n, dim)``) in the dtype/device of ``x``.
    """

    def __init__(
        self,
        x: Tensor,
        coords: Sequence[str],
        outputs: Sequence[str] = ("u",),
        time_coord: str | None = "t",
        component: int | None = None,
    ) -> None:
        self.x = x
        self.coords = tuple(coords)
        self.outputs = tuple(outputs)
        self.time_coord = time_coord if time_coord in self.coords else None
        if component is None and len(self.outputs) == 1:
            component = 0
        self.component = component

    # -- the engine's part ---------------------------------------------------------------------------
    def _derivative(self, component: int, index: tuple[int, ...]) -> Tensor:
        """``d^|index| u_component / dx_index``, ``(n,)``; ``index`` is a sorted tuple of coordinate columns."""
        raise NotImplementedError

    def _view(self, component: int) -> Field:
        raise NotImplementedError

    # -- the problems' part --------------------------------------------------------------------------
    @property
    def value(self) -> Tensor:
        """The output: ``(n,)`` for one component, ``(n, n_out)`` for a field with several outputs."""
        if self.component is None:
            return torch.stack([self._derivative(c, ()) for c in range(len(self.outputs))], dim=1)
        return self._derivative(self.component, ())

    def __getitem__(self, name: str) -> Field:
        """The scalar field of one output component, by name."""
        if name not in self.outputs:
            raise KeyError(f"unknown output {name!r}; this field has outputs {self.outputs}")
        return self._view(self.outputs.index(name))

    def d(self, spec: Spec) -> Tensor:
        """A partial derivative by coordinate names, e.g. ``"x"``, ``"xx"``, ``"xy"``, ``("x1", "x2")``."""
        return self._derivative(self._require_component(), self.parse(spec))

    def grad(self) -> Tensor:
        """All first derivatives, ``(n, dim)`` in the order of ``coords``."""
        c = self._require_component()
        return torch.stack([self._derivative(c, (i,)) for i in range(len(self.coords))], dim=1)

    def laplacian(self, coords: Sequence[str] | None = None) -> Tensor:
        """Sum of the pure second derivatives over ``coords`` (default: every coordinate but time).

        The forward engine carries it through the network as one row (a trace), cheaper than the
        separate ``u.d("xx")``, ``u.d("yy")``, ...: write ``u.laplacian()`` where only the sum is needed."""
        c = self._require_component()
        names = [n for n in self.coords if n != self.time_coord] if coords is None else list(coords)
        if not names:
            raise ValueError("a Laplacian needs at least one coordinate")
        return self._laplacian(c, [self._column(n) for n in names])

    def _laplacian(self, component: int, columns: list[int]) -> Tensor:
        """``sum_i d2u/dx_i^2`` over ``columns``: the engines' part, by default from the pure pairs."""
        return sum(self._derivative(component, (i, i)) for i in columns)

    # -- helpers -------------------------------------------------------------------------------------
    def _require_component(self) -> int:
        if self.component is None:
            raise ValueError(f"this field has outputs {self.outputs}: select one with u['name'] first")
        return self.component

    def _column(self, name: str) -> int:
        try:
            return self.coords.index(name)
        except ValueError:
            raise KeyError(f"unknown coordinate {name!r}; coordinates are {self.coords}") from None

    def parse(self, spec: Spec) -> tuple[int, ...]:
        """Coordinate columns of a derivative spec, sorted (``"yx"`` -> ``(0, 1)`` for coords x, y)."""
        if isinstance(spec, str):
            names, rest = [], spec
            ordered = sorted(self.coords, key=len, reverse=True)  # longest names first: "x1" before "x"
            while rest:
                match = next((n for n in ordered if rest.startswith(n)), None)
                if match is None:
                    raise KeyError(f"cannot read derivative {spec!r} with coordinates {self.coords}")
                names.append(match)
                rest = rest[len(match) :]
        else:
            names = list(spec)
        if not names:
            raise KeyError("empty derivative spec; use u.value for the field itself")
        return tuple(sorted(self._column(n) for n in names))


class AutogradField(Field):
    """:class:`Field` by reverse-mode autograd through ``model`` (any ``nn.Module`` ``(n, dim) -> (n, n_out)``).

    ``x`` is detached and marked ``requires_grad`` internally; derivatives are built with
    ``create_graph=True`` so a loss made of them can be back-propagated to the model's parameters, and
    under ``torch.no_grad()`` too (where they would otherwise be silently zero).
    Each requested derivative costs one ``autograd.grad`` call per distinct parent derivative (the
    gradient of ``u_x`` gives ``u_xx`` and ``u_xy`` together) and is cached. ``outputs=None`` takes
    as many outputs as the model returns, named ``u0, u1, ...`` (``u`` for one).
    """

    def __init__(
        self,
        model: nn.Module | Callable[[Tensor], Tensor],
        x: Tensor,
        coords: Sequence[str],
        outputs: Sequence[str] | None = ("u",),
        time_coord: str | None = "t",
        plan: Iterable[Index] | None = None,
    ) -> None:
        # ``plan`` is accepted for a common engine signature and ignored: autograd is lazy anyway.
        leaf = x.detach().requires_grad_(True)
        if leaf.ndim != 2 or leaf.shape[1] != len(tuple(coords)):
            raise ValueError(f"points must have shape (n, {len(tuple(coords))}) for coords {tuple(coords)}")
        with torch.enable_grad():  # derivatives need the graph even where the caller turned it off
            out = model(leaf)
            if out.ndim == 1:
                out = out.unsqueeze(1)
            if outputs is None:
                n_out = out.shape[1] if out.ndim == 2 else 0  # another shape is refused just below
                outputs = ("u",) if n_out == 1 else tuple(f"u{c}" for c in range(n_out))
            super().__init__(leaf, coords, outputs, time_coord)
            if out.shape != (leaf.shape[0], len(self.outputs)):
                raise ValueError(
                    f"model output has shape {tuple(out.shape)}, expected ({leaf.shape[0]}, {len(self.outputs)}) "
                    f"for outputs {self.outputs}"
                )
            self._values: dict[tuple[int, tuple[int, ...]], Tensor] = {(c, ()): out[:, c] for c in range(out.shape[1])}
        self._grads: dict[tuple[int, tuple[int, ...]], Tensor] = {}

    def _view(self, component: int) -> Field:
        view = Field.__new__(AutogradField)
        view.__dict__.update(self.__dict__)  # shares the caches
        view.component = component
        return view

    def _gradient(self, component: int, index: tuple[int, ...]) -> Tensor:
        key = (component, index)
        if key not in self._grads:
            f = self._derivative(component, index)
            g = None
            if f.requires_grad:
                with torch.enable_grad():
                    (g,) = torch.autograd.grad(f.sum(), self.x, create_graph=True, allow_unused=True)
            self._grads[key] = torch.zeros_like(self.x) if g is None else g  # (n, dim)
        return self._grads[key]

    def _derivative(self, component: int, index: tuple[int, ...]) -> Tensor:
        key = (component, index)
        if key not in self._values:
            with torch.enable_grad():  # the slice stays in the graph: higher derivatives differentiate it
                self._values[key] = self._gradient(component, index[:-1])[:, index[-1]]
        return self._values[key]


def supports_forward(model: nn.Module) -> bool:
    """Whether ``model`` can run under :class:`ForwardField`: it has ``forward_jet(x, plan)`` and, if it
    says so through a ``supports_jet`` attribute, all its parts have closed-form derivatives."""
    return callable(getattr(model, "forward_jet", None)) and bool(getattr(model, "supports_jet", True))


@dataclass
class _JetState:
    """What a :class:`ForwardField` and its component views share: the current plan and jet."""

    plan: DerivativePlan
    jet: Jet
    fallback: AutogradField | None = None


class ForwardField(Field):
    """:class:`Field` by forward propagation of derivatives through a model's layers.

    ``model`` must have ``forward_jet(x, plan) -> Jet`` (:func:`supports_forward`). ``plan`` lists the
    derivative indices (sorted column tuples, e.g. ``{(0, 0), (1, 1)}`` for a 2-D Laplacian) to carry;
    the jet of value, first and second derivatives is computed once, at construction, in a single
    forward pass. Asking for an order-1 or order-2 derivative outside the plan recomputes the jet with
    the enlarged plan (correct, one more pass); orders above 2 come from autograd applied to the model
    (correct, slower). :attr:`requested` records every index asked for and :attr:`requested_traces`
    the columns of every :meth:`laplacian`, which is how :func:`probe_plan` learns a residual's plan.

    Values are differentiable with respect to the model's parameters; ``x`` is used as given (no
    ``requires_grad`` is set on it), so a field built under ``torch.no_grad()`` builds no graph at all.
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        coords: Sequence[str],
        outputs: Sequence[str] = ("u",),
        time_coord: str | None = "t",
        plan: Iterable[Index] | DerivativePlan | None = None,
    ) -> None:
        super().__init__(x, coords, outputs, time_coord)
        if not supports_forward(model):
            raise ValueError(
                f"{type(model).__name__} does not support the forward derivative engine (no forward_jet); "
                "use engine='autograd' or 'auto'"
            )
        if x.ndim != 2 or x.shape[1] != len(self.coords):
            raise ValueError(f"points must have shape (n, {len(self.coords)}) for coords {self.coords}")
        self.model = model
        plan = plan if isinstance(plan, DerivativePlan) else DerivativePlan.of(plan or ())
        self._state = _JetState(plan, self._run(plan))
        self.requested: set[Index] = set()
        self.requested_traces: set[Index] = set()

    def _run(self, plan: DerivativePlan) -> Jet:
        jet = self.model.forward_jet(self.x, plan)  # points last: value (n_out, n)
        if jet.value.shape != (len(self.outputs), self.x.shape[0]):
            raise ValueError(
                f"model output has shape {tuple(jet.value.T.shape)}, expected ({self.x.shape[0]}, "
                f"{len(self.outputs)}) for outputs {self.outputs}"
            )
        return jet

    @property
    def plan(self) -> DerivativePlan:
        """The derivatives carried by the current jet."""
        return self._state.plan

    def _view(self, component: int) -> Field:
        view = Field.__new__(ForwardField)
        view.__dict__.update(self.__dict__)  # shares _state and the requests
        view.component = component
        return view

    def _derivative(self, component: int, index: tuple[int, ...]) -> Tensor:
        self.requested.add(index)
        state = self._state
        if len(index) > 2:
            if state.fallback is None:
                state.fallback = AutogradField(self.model, self.x, self.coords, self.outputs, self.time_coord)
            return state.fallback._derivative(component, index)
        if not state.plan.covers(index):
            state.plan = state.plan.union([index])
            state.jet = self._run(state.plan)
        jet = state.jet
        if index == ():
            return jet.value[component]
        rows = jet.first if len(index) == 1 else jet.second  # (n_out, m or p, n)
        return rows[component, state.plan.position(index)]

    def _laplacian(self, component: int, columns: list[int]) -> Tensor:
        key = tuple(sorted(set(columns)))
        if len(key) < 2 or len(key) != len(columns):  # one column, or a column named twice: the plain sum
            return super()._laplacian(component, columns)
        self.requested_traces.add(key)
        state = self._state
        row = state.plan.trace_position(key)
        if row is None:
            if all(state.plan.covers((i, i)) for i in key):  # the pure pairs are carried anyway: add them up
                second = state.jet.second[component]
                return sum(second[state.plan.position((i, i))] for i in columns)
            state.plan = state.plan.union([], [key])
            state.jet = self._run(state.plan)
            row = state.plan.trace_position(key)
        return state.jet.second[component, row]


ENGINES: dict[str, type[Field]] = {"autograd": AutogradField, "forward": ForwardField}
ENGINE_CHOICES: tuple[str, ...] = ("auto", *ENGINES)


def resolve_engine(engine: str, model: nn.Module) -> str:
    """The concrete engine for ``model``: ``"auto"`` becomes ``"forward"`` when :func:`supports_forward`
    holds and ``"autograd"`` otherwise; other names are checked and returned."""
    if engine == "auto":
        return "forward" if supports_forward(model) else "autograd"
    if engine not in ENGINES:
        raise ValueError(f"unknown derivative engine {engine!r}; valid: {list(ENGINE_CHOICES)}")
    return engine


def make_field(
    model: nn.Module,
    x: Tensor,
    coords: Sequence[str],
    outputs: Sequence[str] = ("u",),
    engine: str = "autograd",
    time_coord: str | None = "t",
    plan: Iterable[Index] | DerivativePlan | None = None,
) -> Field:
    """The :class:`Field` of ``model`` at ``x`` computed by the named derivative ``engine``
    (``"autograd"``, ``"forward"`` or ``"auto"``). ``plan``: derivative indices the forward engine
    should carry from the start (see :class:`ForwardField`; ignored by autograd)."""
    return ENGINES[resolve_engine(engine, model)](model, x, coords, outputs, time_coord, plan=plan)


_PROBE = threading.local()


def probing() -> bool:
    """Whether a :func:`probe_plan` is running in this thread: its passes only record which derivatives
    a residual asks for, and their plans are never used again."""
    return getattr(_PROBE, "depth", 0) > 0


@contextlib.contextmanager
def _probing() -> Iterator[None]:
    _PROBE.depth = getattr(_PROBE, "depth", 0) + 1
    try:
        yield
    finally:
        _PROBE.depth -= 1


def probe_plan(
    residual: Callable[[Field], object],
    model: nn.Module,
    x: Tensor,
    coords: Sequence[str],
    outputs: Sequence[str] = ("u",),
    time_coord: str | None = "t",
) -> DerivativePlan:
    """The derivatives ``residual(field)`` asks for, found by running it once on a :class:`ForwardField`
    over the points ``x`` (a few suffice) and recording the requests. Gradients are off during the probe,
    and :func:`probing` is true, so models skip work worth doing only for plans used again (compiled
    kernels)."""
    with torch.no_grad(), _probing():
        field = ForwardField(model, x, coords, outputs, time_coord)
        residual(field)
    return DerivativePlan.of(field.requested, field.requested_traces)
