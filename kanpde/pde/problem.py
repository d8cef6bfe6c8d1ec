"""The :class:`Problem` base class and declared boundary conditions.

A problem is a small class: its coordinates, a domain, a list of conditions (data, not loss code), the
PDE residual written against a :class:`kanpde.derivatives.field.Field`, and, where known, the exact solution.

    class Poisson2D(Problem):
        coords = ("x", "y")
        def __init__(self):
            super().__init__(Box([-1, -1], [1, 1], self.coords), [Dirichlet("all", 0.0)])
        def pde(self, x, u):
            return u.laplacian() - self.f(x)   # or u.d("xx") + u.d("yy") - self.f(x)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from kanpde.derivatives.field import Field
from kanpde.pde.geometry import Box, Geometry
from kanpde.pde.sampling import Sampler

__all__ = [
    "Condition", "Dirichlet", "Neumann", "Robin", "Periodic", "Initial", "Problem", "Batch", "BoundaryPoints",
]

Target = float | Callable[[Tensor], Tensor]
CONDITION_KINDS = ("dirichlet", "neumann", "robin", "periodic", "initial")


@dataclass(frozen=True)
class Condition:
    """A boundary condition declared as data.

    ``kind``:

    - ``"dirichlet"``: ``u = g``;
    - ``"neumann"``: ``du/dn = g`` with the outward unit normal;
    - ``"robin"``: ``a u + b du/dn = g``;
    - ``"periodic"``: ``on`` is a pair of opposite faces ``(A, B)``; points come as matched pairs
      ``x_a``, ``x_b`` and the residuals are ``u(x_a) - u(x_b)`` and, for every spec in
      ``derivatives`` (e.g. ``("x",)``), ``d u(x_a) - d u(x_b)`` (``value`` is ignored);
    - ``"initial"``: on the initial face (``"t-"``), ``u = g``, or ``d u = g`` for the derivative
      spec ``derivatives[0]`` (e.g. ``"t"`` for ``u_t(x, t0) = g``).

    ``on``: boundary pieces (names or ``"all"``); ``value``: ``g`` as a constant or a function
    ``x (n, d) -> (n,)``; ``component``: output name for multi-output problems; ``weight``: the factor
    of its mean squared residual in the loss; ``name``: label in the loss history (default from kind
    and pieces); ``a``, ``b``: Robin coefficients.
    """

    kind: str
    on: str | tuple[str, ...] = "all"
    value: Target = 0.0
    component: str | None = None
    weight: float = 1.0
    name: str | None = None
    a: float = 1.0
    b: float = 1.0
    derivatives: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in CONDITION_KINDS:
            raise ValueError(f"unknown condition kind {self.kind!r}; valid: {list(CONDITION_KINDS)}")
        if not isinstance(self.on, str):
            object.__setattr__(self, "on", tuple(self.on))
        object.__setattr__(self, "derivatives", (self.derivatives,) if isinstance(self.derivatives, str) else tuple(self.derivatives))
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not 0 <= self.weight < math.inf:
            raise ValueError(f"condition weight must be a finite number >= 0, got {self.weight!r}")
        if self.kind == "periodic" and (isinstance(self.on, str) or len(self.on) != 2):
            raise ValueError(f"a periodic condition needs a pair of boundary pieces, got on={self.on!r}")
        if self.kind == "initial" and len(self.derivatives) > 1:
            raise ValueError(f"an initial condition fixes one derivative at a time, got {self.derivatives}")

    @property
    def label(self) -> str:
        on = self.on if isinstance(self.on, str) else "+".join(self.on)
        extra = "" if not self.derivatives or self.kind == "periodic" else "_" + self.derivatives[0]
        comp = f"{self.component}:" if self.component else ""
        return self.name or f"{comp}{self.kind}{extra}[{on}]"

    def target(self, x: Tensor) -> Tensor:
        """``g(x)``: ``(n,)`` in the dtype/device of ``x``."""
        if callable(self.value):
            return self.value(x).reshape(-1)
        return torch.full((x.shape[0],), float(self.value), dtype=x.dtype, device=x.device)

    def residual(self, points: BoundaryPoints, u: Field) -> Tensor:
        """The condition's residual at its boundary points, ``(n,)``."""
        if self.component is not None:
            u = u[self.component]
        if self.kind == "periodic":
            n = points.x.shape[0] // 2  # first half on piece A, second half the matching points on B
            values = [u.value] + [u.d(spec) for spec in self.derivatives]
            return torch.cat([v[:n] - v[n:] for v in values])
        if self.kind in ("dirichlet", "initial"):
            lhs = u.d(self.derivatives[0]) if self.derivatives else u.value
        elif self.kind == "neumann":
            lhs = (u.grad() * points.normals).sum(dim=1)
        else:
            lhs = self.a * u.value + self.b * (u.grad() * points.normals).sum(dim=1)
        return lhs - self.target(points.x)


def Dirichlet(on: str | Sequence[str] = "all", value: Target = 0.0, **kwargs) -> Condition:
    """``u = value`` on the boundary pieces ``on``."""
    return Condition("dirichlet", on if isinstance(on, str) else tuple(on), value, **kwargs)


def Neumann(on: str | Sequence[str] = "all", value: Target = 0.0, **kwargs) -> Condition:
    """``du/dn = value`` (outward normal) on the boundary pieces ``on``."""
    return Condition("neumann", on if isinstance(on, str) else tuple(on), value, **kwargs)


def Robin(on: str | Sequence[str] = "all", a: float = 1.0, b: float = 1.0, value: Target = 0.0, **kwargs) -> Condition:
    """``a u + b du/dn = value`` (outward normal) on the boundary pieces ``on``."""
    return Condition("robin", on if isinstance(on, str) else tuple(on), value, a=float(a), b=float(b), **kwargs)


def Periodic(pair: Sequence[str] = ("x-", "x+"), derivatives: str | Sequence[str] = (), **kwargs) -> Condition:
    """``u(x_a) = u(x_b)`` (and each derivative in ``derivatives``) for matched points of two opposite faces."""
    return Condition("periodic", tuple(pair), 0.0, derivatives=derivatives, **kwargs)


def Initial(value: Target = 0.0, derivative: bool | str = False, on: str = "t-", **kwargs) -> Condition:
    """``u(x, t0) = value`` on the initial face ``on``; ``derivative=True`` (or a spec like ``"t"``) fixes
    ``u_t(x, t0) = value`` instead."""
    spec = ("t",) if derivative is True else (derivative,) if derivative else ()
    return Condition("initial", on, value, derivatives=spec, **kwargs)


@dataclass
class BoundaryPoints:
    """Points on a condition's boundary pieces, ``x`` ``(n, d)``, with outward unit ``normals`` ``(n, d)``."""

    x: Tensor
    normals: Tensor


@dataclass
class Batch:
    """One set of collocation points: ``interior`` ``(n, d)`` and boundary points per condition label."""

    interior: Tensor
    boundary: dict[str, BoundaryPoints] = field(default_factory=dict)

    def all_points(self) -> Tensor:
        """Interior and boundary points together, ``(n_total, d)``."""
        return torch.cat([self.interior, *(b.x for b in self.boundary.values())])

    def to(self, dtype: torch.dtype, device: torch.device | str) -> Batch:
        return Batch(
            self.interior.to(dtype=dtype, device=device),
            {
                k: BoundaryPoints(v.x.to(dtype=dtype, device=device), v.normals.to(dtype=dtype, device=device))
                for k, v in self.boundary.items()
            },
        )


class Problem:
    """Base class of a PDE problem on a :class:`Box` or other :class:`kanpde.pde.geometry.Geometry` domain.

    Subclasses set ``coords`` (coordinate names, also the derivative names of the :class:`Field`),
    optionally ``outputs`` (default ``("u",)``), call ``super().__init__(geometry, conditions)`` and
    implement :meth:`pde`; they may implement :meth:`exact` and :meth:`exact_grad`.
    The stem of the defining module is the problem's ``name`` (``problems/poisson2d.py`` -> ``poisson2d``).

    A coordinate named ``time_coord`` (default ``"t"``) makes the problem time-dependent: its domain's
    ``t-`` face is the initial face and :meth:`validate` requires an :func:`Initial` condition there.
    Optional class attribute the test suite reads: ``reference_solution = True`` for a numerically computed
    solution (checked by finite differences instead of autograd).
    :attr:`spec` records the constructor arguments, so a run file can make the problem again.
    """

    coords: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("u",)
    time_coord: str | None = "t"  # excluded from Field.laplacian() when it is one of coords

    def __new__(cls, *args: object, **kwargs: object) -> Problem:
        problem = super().__new__(cls)
        problem._made_with = (args, kwargs)  # the constructor's arguments, for spec
        return problem

    def __init__(self, geometry: Box | Geometry, conditions: Sequence[Condition]) -> None:
        self.geometry = geometry
        self.conditions = tuple(conditions)
        self.validate()

    @property
    def spec(self) -> dict[str, object]:
        """How to make this problem again, as plain data: ``{"class": "module:QualName", "kwargs": {...}}``
        with the constructor arguments it was made with (mappings and sequences turned into dicts and
        lists). Run files store it beside models that carry a problem (hard constraints)."""
        cls = type(self)
        args, kwargs = getattr(self, "_made_with", ((), {}))
        signature = inspect.signature(cls.__init__)
        try:
            bound = dict(signature.bind(self, *args, **kwargs).arguments)
            bound.pop(next(iter(signature.parameters)))  # self
        except TypeError:
            bound = dict(kwargs)
        flat: dict[str, object] = {}
        for name, value in bound.items():
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                flat.update(value)
            else:
                flat[name] = value
        return {"class": f"{cls.__module__}:{cls.__qualname__}", "kwargs": {k: _plain(v) for k, v in flat.items()}}

    @property
    def name(self) -> str:
        return type(self).__module__.rsplit(".", 1)[-1]

    @property
    def dim(self) -> int:
        return len(self.coords)

    @property
    def n_outputs(self) -> int:
        return len(self.outputs)

    def validate(self) -> None:
        """Check coordinates, domain and conditions agree; raise ``ValueError`` saying what does not."""
        cls = type(self).__name__
        if not self.coords:
            raise ValueError(f"{cls} must name its coordinates in `coords`")
        if tuple(self.geometry.names) != tuple(self.coords):
            raise ValueError(f"{cls}: domain coordinates {self.geometry.names} differ from coords {self.coords}")
        labels = [c.label for c in self.conditions]
        if len(set(labels)) != len(labels):
            raise ValueError(f"{cls}: two conditions share a label in {labels}; give them distinct `name`s")
        geo = self.geometry
        for cond in self.conditions:
            try:
                geo.resolve_faces(cond.on)
            except ValueError as exc:
                raise ValueError(f"{cls}: condition {cond.label}: {exc}") from None
            if cond.component is not None and cond.component not in self.outputs:
                raise ValueError(f"{cls}: condition {cond.label} names unknown output {cond.component!r}")
            if cond.component is None and self.n_outputs > 1:
                raise ValueError(f"{cls}: condition {cond.label} must name a component of {self.outputs}")
            for spec in cond.derivatives:
                if any(c not in self.coords for c in ([spec] if spec in self.coords else list(spec))):
                    raise ValueError(f"{cls}: condition {cond.label} differentiates by {spec!r}, not in coords {self.coords}")
            if cond.kind == "periodic":
                if not hasattr(geo, "periodic_points"):
                    raise ValueError(f"{cls}: condition {cond.label}: periodic pairs need a Box domain")
                geo.periodic_points(cond.on, np.zeros((0, geo.dim - 1)))  # raises for a mismatched pair
        if self.is_time_dependent:
            t = self.time_coord
            initial = [c for c in self.conditions if c.kind == "initial"]
            if not initial:
                raise ValueError(
                    f"{cls} is time-dependent (coordinate {t!r}) but has no initial condition; add Initial(value) on '{t}-'"
                )
            for cond in initial:
                if cond.on != f"{t}-" and tuple(cond.on) != (f"{t}-",):
                    raise ValueError(f"{cls}: initial condition {cond.label} must be on the initial face '{t}-', not {cond.on!r}")
        elif any(c.kind == "initial" for c in self.conditions):
            raise ValueError(f"{cls}: initial conditions need a time coordinate {self.time_coord!r} in coords {self.coords}")

    @property
    def is_time_dependent(self) -> bool:
        """Whether the time coordinate (``time_coord``, default ``"t"``) is one of ``coords``."""
        return self.time_coord is not None and self.time_coord in self.coords

    # -- what subclasses write -----------------------------------------------------------------------
    def pde(self, x: Tensor, u: Field) -> Tensor | Sequence[Tensor]:
        """PDE residual(s) at interior points ``x`` ``(n, d)``: one ``(n,)`` tensor or a sequence of them."""
        raise NotImplementedError

    def exact(self, x: Tensor) -> Tensor:
        """Exact solution ``(n,)`` (one output) or ``(n, n_out)``; raise NotImplementedError if unknown."""
        raise NotImplementedError

    def exact_grad(self, x: Tensor) -> Tensor:
        """Gradient of the exact solution, ``(n, d)`` (or ``(n, n_out, d)``); default: autograd of :meth:`exact`."""
        leaf = x.detach().requires_grad_(True)
        with torch.enable_grad():
            u = self.exact(leaf).reshape(x.shape[0], -1)
            grads = [torch.autograd.grad(u[:, c].sum(), leaf, retain_graph=True)[0] for c in range(u.shape[1])]
        g = torch.stack(grads, dim=1).detach()  # (n, n_out, d)
        return g[:, 0] if self.n_outputs == 1 else g

    @property
    def has_exact(self) -> bool:
        return type(self).exact is not Problem.exact

    # -- what the library uses -----------------------------------------------------------------------
    def sample(self, sampler: Sampler, n_interior: int, n_boundary: int) -> Batch:
        """Interior points and boundary points per condition (split by face measure), float64 on CPU."""
        if n_interior < 1 or (self.conditions and n_boundary < len(self.conditions)):
            raise ValueError(f"need n_interior >= 1 and n_boundary >= {len(self.conditions)}, got {n_interior}, {n_boundary}")
        geo = self.geometry
        interior = torch.from_numpy(geo.sample_interior(sampler, n_interior))
        boundary = {}
        per_cond = _split(n_boundary, [1.0] * len(self.conditions))
        for cond, n_cond in zip(self.conditions, per_cond):
            if cond.kind == "periodic":
                xa, xb = geo.periodic_points(cond.on, sampler.unit(max(n_cond // 2, 1), geo.dim - 1))
                na, nb = geo.normal(cond.on[0]), geo.normal(cond.on[1])
                x = np.concatenate([xa, xb])
                normals = np.concatenate([np.broadcast_to(na, xa.shape), np.broadcast_to(nb, xb.shape)])
                boundary[cond.label] = BoundaryPoints(torch.from_numpy(x), torch.from_numpy(normals.copy()))
                continue
            faces = geo.resolve_faces(cond.on)
            counts = _split(n_cond, [geo.measure(f) for f in faces])
            xs, ns = [], []
            for face, n_face in zip(faces, counts):
                if n_face == 0:
                    continue
                x, normals = geo.sample_boundary(face, sampler, n_face)
                xs.append(x)
                ns.append(normals)
            boundary[cond.label] = BoundaryPoints(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ns)))
        return Batch(interior, boundary)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(coords={self.coords}, geometry={self.geometry!r})"


def _plain(value: object) -> object:
    """``value`` with mappings and sequences (e.g. a configuration's containers) as dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value


def _split(n: int, weights: Sequence[float]) -> list[int]:
    """Split ``n`` into integer parts proportional to ``weights`` (largest remainders)."""
    if not weights:
        return []
    w = np.asarray(weights, dtype=np.float64)
    raw = n * w / w.sum()
    parts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - parts))[: n - parts.sum()]:
        parts[i] += 1
    return parts.tolist()
