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

from kanpde.derivatives.field import Field, make_field
from kanpde.pde.data import read_points
from kanpde.pde.geometry import Box, Geometry
from kanpde.pde.sampling import Sampler
from kanpde.pde.unknowns import Unknowns

__all__ = [
    "Condition", "Dirichlet", "Neumann", "Robin", "ConormalFlux", "Periodic", "Initial", "PointValue", "Observation",
    "observation_from_file", "Problem",
    "Batch", "BoundaryPoints",
]

Target = float | Callable[[Tensor], Tensor]
Coefficient = float | Callable[[Tensor], Tensor]
CONDITION_KINDS = ("dirichlet", "neumann", "robin", "flux", "periodic", "initial", "point", "observation")
FIXED_POINT_KINDS = ("point", "observation")  # conditions with their own points: no share of n_boundary


@dataclass(frozen=True)
class Condition:
    """A boundary condition declared as data.

    ``kind``:

    - ``"dirichlet"``: ``u = g``;
    - ``"neumann"``: ``du/dn = g`` with the outward unit normal;
    - ``"robin"``: ``a u + b du/dn = g``, ``a`` and ``b`` constants or functions ``x (n, d) -> (n,)``;
    - ``"flux"``: the conormal flux ``(A ∇u)·n = g`` of a variable-coefficient diffusion ``∇·(A ∇u)``,
      with ``A`` (``coefficient``) a constant, a function ``x -> (n,)`` (isotropic) or ``x -> (n, d, d)``;
    - ``"point"``: ``u = g`` (or ``d u = g`` for ``derivatives[0]``) at the fixed points ``at`` — the
      level of a pressure, a value pinned inside the domain; these points take no share of
      ``n_boundary`` and stay the same when points are resampled;
    - ``"observation"``: data ``u(x_k) = v_k`` (or ``d u(x_k) = v_k``) at the points ``at`` with the
      observed values ``observed``: measurements, or samples of a solution, often the data term of an
      inverse problem (fixed points, like ``"point"``);
    - ``"periodic"``: ``on`` is a pair of opposite faces ``(A, B)``; points come as matched pairs
      ``x_a``, ``x_b`` and the residuals are ``u(x_a) - u(x_b)`` and, for every spec in
      ``derivatives`` (e.g. ``("x",)``), ``d u(x_a) - d u(x_b)`` (``value`` is ignored);
    - ``"initial"``: on the initial face (``"t-"``), ``u = g``, or ``d u = g`` for the derivative
      spec ``derivatives[0]`` (e.g. ``"t"`` for ``u_t(x, t0) = g``).

    ``on``: boundary pieces (names or ``"all"``); ``value``: ``g`` as a constant or a function
    ``x (n, d) -> (n,)``; ``component``: output name for multi-output problems; ``weight``: the factor
    of its mean squared residual in the loss; ``name``: label in the loss history (default from kind
    and pieces); ``a``, ``b``: Robin coefficients; ``coefficient``: the flux's ``A``; ``at``: the
    points of a point condition, ``((x0, y0), ...)``.
    """

    kind: str
    on: str | tuple[str, ...] = "all"
    value: Target = 0.0
    component: str | None = None
    weight: float = 1.0
    name: str | None = None
    a: Coefficient = 1.0
    b: Coefficient = 1.0
    derivatives: tuple[str, ...] = ()
    coefficient: object = 1.0
    at: tuple[tuple[float, ...], ...] = ()
    observed: tuple[float, ...] = ()

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
        if self.kind in ("initial", "point") and len(self.derivatives) > 1:
            raise ValueError(f"an {self.kind} condition fixes one derivative at a time, got {self.derivatives}")
        if self.kind in FIXED_POINT_KINDS:
            at = np.asarray(self.at, dtype=np.float64)
            if at.ndim == 1:
                at = at[None]
            if at.ndim != 2 or 0 in at.shape or not np.isfinite(at).all():
                raise ValueError(f"a point condition needs finite points ((x0, y0, ...), ...), got at={self.at!r}")
            object.__setattr__(self, "at", tuple(tuple(float(v) for v in row) for row in at))
            object.__setattr__(self, "on", self.kind)
        if self.kind == "observation":
            obs = np.asarray(self.observed, dtype=np.float64).reshape(-1)
            if obs.shape[0] != len(self.at):
                raise ValueError(f"an observation needs one value per point: {len(self.at)} points, {obs.shape[0]} values")
            if not np.isfinite(obs).all():
                raise ValueError(f"observed values must be finite; {int((~np.isfinite(obs)).sum())} are not")
            object.__setattr__(self, "observed", tuple(float(v) for v in obs))

    @property
    def label(self) -> str:
        on = self.on if isinstance(self.on, str) else "+".join(self.on)
        extra = "" if not self.derivatives or self.kind == "periodic" else "_" + self.derivatives[0]
        comp = f"{self.component}:" if self.component else ""
        if self.kind == "point":
            on = ";".join(",".join(f"{v:g}" for v in row) for row in self.at)
        if self.kind == "observation":
            on = f"{len(self.at)} points"
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
        if self.kind == "observation":
            lhs = u.d(self.derivatives[0]) if self.derivatives else u.value
            return lhs - points.values
        if self.kind in ("dirichlet", "initial", "point"):
            lhs = u.d(self.derivatives[0]) if self.derivatives else u.value
        elif self.kind == "neumann":
            lhs = (u.grad() * points.normals).sum(dim=1)
        elif self.kind == "flux":
            lhs = (_apply_coefficient(self.coefficient, points.x, u.grad()) * points.normals).sum(dim=1)
        else:
            du_dn = (u.grad() * points.normals).sum(dim=1)
            lhs = _coefficient(self.a, points.x) * u.value + _coefficient(self.b, points.x) * du_dn
        return lhs - self.target(points.x)


def _coefficient(c: Coefficient, x: Tensor) -> Tensor | float:
    """A scalar coefficient at ``x``: ``c(x)`` ``(n,)`` for a function, else the constant."""
    return c(x).reshape(-1) if callable(c) else float(c)


def _apply_coefficient(A: object, x: Tensor, grad: Tensor) -> Tensor:
    """``A(x) ∇u`` ``(n, d)`` for a constant, a function giving ``(n,)`` (isotropic) or ``(n, d, d)``, or a
    constant ``(d, d)`` matrix."""
    value = A(x) if callable(A) else torch.as_tensor(A, dtype=grad.dtype, device=grad.device)
    n, d = grad.shape
    if value.ndim == 0 or value.shape == (n,) or value.shape == (n, 1):
        return value.reshape(-1, 1) * grad if value.ndim else value * grad
    if value.shape in ((d, d), (n, d, d)):
        return torch.einsum("...ij,...j->...i", value, grad)
    raise ValueError(f"a flux coefficient A(x) must be a scalar, (n,), (d, d) or (n, d, d) with n={n}, d={d}; got {tuple(value.shape)}")


def Dirichlet(on: str | Sequence[str] = "all", value: Target = 0.0, **kwargs) -> Condition:
    """``u = value`` on the boundary pieces ``on``."""
    return Condition("dirichlet", on if isinstance(on, str) else tuple(on), value, **kwargs)


def Neumann(on: str | Sequence[str] = "all", value: Target = 0.0, **kwargs) -> Condition:
    """``du/dn = value`` (outward normal) on the boundary pieces ``on``."""
    return Condition("neumann", on if isinstance(on, str) else tuple(on), value, **kwargs)


def Robin(on: str | Sequence[str] = "all", a: Coefficient = 1.0, b: Coefficient = 1.0, value: Target = 0.0,
          **kwargs) -> Condition:
    """``a u + b du/dn = value`` (outward normal) on the boundary pieces ``on``; ``a``, ``b`` and ``value``
    are constants or functions ``x (n, d) -> (n,)``."""
    a, b = (c if callable(c) else float(c) for c in (a, b))
    return Condition("robin", on if isinstance(on, str) else tuple(on), value, a=a, b=b, **kwargs)


def ConormalFlux(on: str | Sequence[str] = "all", A: object = 1.0, value: Target = 0.0, **kwargs) -> Condition:
    """``(A(x) ∇u)·n = value`` (outward normal) on the boundary pieces ``on``: the natural condition of
    ``∇·(A ∇u) = f``. ``A``: a constant, a ``(d, d)`` matrix, or a function ``x -> (n,)`` or ``(n, d, d)``."""
    return Condition("flux", on if isinstance(on, str) else tuple(on), value, coefficient=A, **kwargs)


def Observation(points: np.ndarray | Sequence[Sequence[float]], values: np.ndarray | Sequence[float],
                component: str | None = None, weight: float = 1.0, name: str | None = "data",
                derivative: str | None = None) -> Condition:
    """Observed values ``u(x_k) = v_k`` at ``points`` ``(n, d)``: a data term (mean squared misfit times
    ``weight``) for measurements or samples of a solution; with unknowns declared
    (:meth:`Problem.unknown`), the data an inverse problem learns from. ``component``: the output
    observed (multi-output problems); ``derivative``: observe a derivative instead (e.g. ``"x"``).
    :meth:`Observation.from_file`-style loading: :func:`observation_from_file`."""
    pts = np.asarray(points, dtype=np.float64)
    pts = pts.reshape(-1, 1) if pts.ndim == 1 else pts
    return Condition("observation", "observation", 0.0, component=component, weight=weight, name=name,
                     at=tuple(map(tuple, pts)), observed=tuple(np.asarray(values, dtype=np.float64).reshape(-1)),
                     derivatives=(derivative,) if derivative else ())


def observation_from_file(path: str, coords: Sequence[str], column: str = "u", **kwargs) -> Condition:
    """An :func:`Observation` of the column ``column`` at the coordinate columns ``coords`` of a data file
    (``.npz``, ``.csv``, COMSOL/FEniCS plain text: :func:`kanpde.pde.data.read_points`)."""
    points, values = read_points(path, coords, [column])
    return Observation(points, values[:, 0], **kwargs)


def PointValue(at: Sequence[float] | Sequence[Sequence[float]], value: Target = 0.0,
               derivative: str | None = None, **kwargs) -> Condition:
    """``u(x_k) = value`` at the fixed point(s) ``at`` (``(x0, y0)`` or ``[(x0, y0), ...]``), or the
    derivative ``derivative`` (e.g. ``"x"``) there: pins the level of a solution known up to a constant
    (the pressure in a cavity), anywhere in the closed domain."""
    return Condition("point", "point", value, at=tuple(map(tuple, np.atleast_2d(np.asarray(at, dtype=np.float64)))),
                     derivatives=(derivative,) if derivative else (), **kwargs)


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
    """Points on a condition's boundary pieces, ``x`` ``(n, d)``, with outward unit ``normals`` ``(n, d)``
    (zeros where a condition has fixed points) and, for an observation, the observed ``values`` ``(n,)``."""

    x: Tensor
    normals: Tensor
    values: Tensor | None = None

    def aux(self) -> Tensor:
        """The per-point data that travels with ``x`` (sliced with it): normals, then the values if any."""
        return self.normals if self.values is None else torch.cat([self.normals, self.values[:, None]], dim=1)

    @classmethod
    def from_aux(cls, x: Tensor, aux: Tensor) -> BoundaryPoints:
        """The inverse of :meth:`aux` for points ``x``."""
        d = x.shape[-1]
        return cls(x, aux[..., :d], aux[..., d] if aux.shape[-1] > d else None)


@dataclass
class Batch:
    """One set of collocation points: ``interior`` ``(n, d)`` and boundary points per condition label;
    ``weights`` ``(n,)``: optional per-point weights multiplying the PDE residual (residual-based attention)."""

    interior: Tensor
    boundary: dict[str, BoundaryPoints] = field(default_factory=dict)
    weights: Tensor | None = None

    def all_points(self) -> Tensor:
        """Interior and boundary points together, ``(n_total, d)``."""
        return torch.cat([self.interior, *(b.x for b in self.boundary.values())])

    def to(self, dtype: torch.dtype, device: torch.device | str) -> Batch:
        return Batch(
            self.interior.to(dtype=dtype, device=device),
            {
                k: BoundaryPoints(v.x.to(dtype=dtype, device=device), v.normals.to(dtype=dtype, device=device),
                                  None if v.values is None else v.values.to(dtype=dtype, device=device))
                for k, v in self.boundary.items()
            },
            None if self.weights is None else self.weights.to(dtype=dtype, device=device),
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
    ``reference``: solution data to compute errors at (a file path, or a method returning
    ``(points, values[, gradients])``; :mod:`kanpde.pde.reference`), None when there is none.
    :attr:`spec` records the constructor arguments, so a run file can make the problem again.
    """

    coords: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("u",)
    time_coord: str | None = "t"  # excluded from Field.laplacian() when it is one of coords
    reference: object = None  # reference solution data (kanpde.pde.reference): a file path or a method

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
            if cond.kind in FIXED_POINT_KINDS:
                at = np.asarray(cond.at)
                if at.shape[1] != geo.dim:
                    raise ValueError(f"{cls}: condition {cond.label}: points need {geo.dim} coordinates {self.coords}")
                outside = ~geo.contains(at, tol=1e-9)
                if outside.any():
                    raise ValueError(f"{cls}: condition {cond.label}: point {at[outside][0].tolist()} lies outside the domain")
                continue
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

    # -- unknowns of an inverse problem (kanpde.pde.unknowns) ----------------------------------------
    @property
    def unknowns(self) -> Unknowns | None:
        """The module of this problem's unknowns, or None when it declares none."""
        return self.__dict__.get("_unknowns")

    def _unknowns_module(self) -> Unknowns:
        if "_unknowns" not in self.__dict__:
            self._unknowns = Unknowns()
        return self._unknowns

    def unknown(self, name: str, initial: float, *, positive: bool = False, true: float | None = None) -> None:
        """Declare an unknown scalar (e.g. a viscosity) trained jointly with the network, starting at
        ``initial``; ``positive=True`` keeps it > 0 (stored as its log). ``true``: the value for reporting
        its error, never used in training. Read it in :meth:`pde` with :meth:`param`."""
        self._unknowns_module().add_scalar(name, initial, positive, true)

    def unknown_field(self, name: str, net: torch.nn.Module | None = None, *, widths: Sequence[int] | None = None,
                      grid_size: int = 5, true: Callable[[Tensor], Tensor] | None = None) -> None:
        """Declare an unknown coefficient field represented by its own network ``(n, d) -> (n, 1)``: ``net``,
        or a KAN of ``widths`` (e.g. ``[1, 5, 1]``) and ``grid_size`` that the trainer makes in the model's
        dtype and device (a KAN can be snapped to a formula). Read it with :meth:`field_of`.
        ``true``: a function ``x -> (n,)`` for reporting its error only."""
        self._unknowns_module().add_field(name, net, true, None if widths is None else list(widths), grid_size)

    def param(self, name: str) -> Tensor:
        """The current value of the unknown scalar ``name`` (0-d, differentiable)."""
        if self.unknowns is None:
            raise KeyError(f"{type(self).__name__} declares no unknowns; declare one with self.unknown({name!r}, initial)")
        return self.unknowns.value(name)

    def field_of(self, name: str, x: Tensor) -> Field:
        """The unknown coefficient field ``name`` at ``x`` as a :class:`~kanpde.derivatives.Field`: its
        ``.value`` and derivatives (``.d("x")``, ``.grad()``) by the same engines as the solution's."""
        if self.unknowns is not None and name in self.unknowns.pending:
            raise KeyError(f"unknown field {name!r} has no network yet: kanpde.fit makes it (a KAN of {self.unknowns.pending[name]})")
        if self.unknowns is None or name not in self.unknowns.fields:
            declared = [] if self.unknowns is None else list(self.unknowns.fields)
            raise KeyError(f"no unknown field {name!r}; declared: {declared}")
        return make_field(self.unknowns.fields[name], x, self.coords, (name,), "auto", self.time_coord)

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
        sampled = [c for c in self.conditions if c.kind not in FIXED_POINT_KINDS]
        if n_interior < 1 or (sampled and n_boundary < len(sampled)):
            raise ValueError(f"need n_interior >= 1 and n_boundary >= {len(sampled)}, got {n_interior}, {n_boundary}")
        geo = self.geometry
        interior = torch.from_numpy(geo.sample_interior(sampler, n_interior))
        boundary = {}
        for cond in self.conditions:
            if cond.kind in FIXED_POINT_KINDS:
                at = torch.tensor(cond.at, dtype=torch.float64)
                values = torch.tensor(cond.observed, dtype=torch.float64) if cond.kind == "observation" else None
                boundary[cond.label] = BoundaryPoints(at, torch.zeros_like(at), values)
        per_cond = _split(n_boundary, [1.0] * len(sampled))
        for cond, n_cond in zip(sampled, per_cond):
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
