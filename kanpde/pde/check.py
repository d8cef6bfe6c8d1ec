"""A problem probed before any training: :func:`check_problem`.

A residual of the wrong shape is silently broadcast or flattened by the loss, and an exact solution of
the wrong shape or with NaNs spoils every metric after a full training; both are cheap to see on a
handful of points. :func:`check_problem` evaluates ``pde()``, every condition's target and residual,
``exact()`` and a user's ``exact_grad()`` on a few points of the domain and of each condition's pieces,
with a smooth stand-in for the network (never the exact solution), and raises ``ValueError`` with one
line naming the problem class, the method and the expected against the actual shape, dtype or values.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from kanpde.derivatives.field import AutogradField
from kanpde.pde.problem import BoundaryPoints, Condition, Problem
from kanpde.pde.sampling import Sampler

__all__ = ["check_problem"]

log = logging.getLogger(__name__)


def _stand_in(n_outputs: int):
    """A smooth function ``(n, d) -> (n, n_outputs)`` with non-zero derivatives of every order (a
    network's stand-in: its values say nothing about the solution)."""

    def u(x: Tensor) -> Tensor:
        w = 0.5 + 0.25 * torch.arange(x.shape[1], dtype=x.dtype, device=x.device)
        phase = 0.3 + 0.7 * torch.arange(n_outputs, dtype=x.dtype, device=x.device)
        return torch.sin((x @ w)[:, None] + phase)

    return u


class _Probe:
    def __init__(self, problem: Problem, dtype: torch.dtype, device: torch.device) -> None:
        self.problem, self.dtype, self.device = problem, dtype, torch.device(device)
        self.cls = type(problem).__name__

    def fail(self, what: str, message: str) -> None:
        raise ValueError(f"{self.cls}.{what} {message}")

    def call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # a user's method: its own error, on one line, with where it came from
            first = (str(exc).strip().splitlines() or [""])[0]
            self.fail(what, f"raised {type(exc).__name__} on {args[0].shape[0]} probe points: {first}")

    def tensor(self, what: str, value: object, shapes: Sequence[tuple[int, ...]], where: str) -> Tensor:
        """``value`` checked: a tensor of one of ``shapes``, the probe's dtype and device, all finite."""
        expected = " or ".join(str(s) for s in shapes)
        if not isinstance(value, Tensor):
            self.fail(what, f"returned {type(value).__name__}, expected a tensor of shape {expected} at {where}")
        if tuple(value.shape) not in [tuple(s) for s in shapes]:
            self.fail(what, f"returned shape {tuple(value.shape)} at {where}, expected {expected}")
        if value.dtype != self.dtype:
            self.fail(what, f"returned dtype {str(value.dtype).removeprefix('torch.')} for "
                            f"{str(self.dtype).removeprefix('torch.')} points at {where} (build constants with the points' dtype)")
        if value.device.type != self.device.type:
            self.fail(what, f"returned a tensor on {value.device} for points on {self.device}")
        bad = ~torch.isfinite(value.detach())
        if bool(bad.any()):
            self.fail(what, f"returned {int(bad.sum())} non-finite value(s) of {value.numel()} at {where}")
        return value

    def field(self, x: Tensor) -> AutogradField:
        p = self.problem
        return AutogradField(_stand_in(p.n_outputs), x, p.coords, p.outputs, p.time_coord)

    def pde(self, x: Tensor) -> None:
        n, m = x.shape[0], self.problem.n_outputs
        res = self.call("pde", self.problem.pde, x, self.field(x))
        parts = [res] if isinstance(res, Tensor) or not isinstance(res, (list, tuple)) else list(res)
        if not parts:
            self.fail("pde", "returned no residual")
        shapes = [(n,)] + ([(n, m)] if m > 1 else [])
        for r in parts:
            self.tensor("pde", r, shapes, f"{n} interior points")

    def condition(self, cond: Condition, pts: BoundaryPoints) -> None:
        n = pts.x.shape[0]
        what = f"conditions[{cond.label!r}]"
        if callable(cond.value):
            self.tensor(f"{what} value", self.call(f"{what} value", cond.value, pts.x), [(n,), (n, 1)],
                        f"{n} points of {cond.on}")
        res = self.call(what, cond.residual, pts, self.field(pts.x))
        entries = n // 2 * (1 + len(cond.derivatives)) if cond.kind == "periodic" else n
        self.tensor(f"{what} residual", res, [(entries,)], f"{n} points of {cond.on}")

    def exact(self, x: Tensor) -> None:
        p = self.problem
        n, m, d = x.shape[0], p.n_outputs, p.dim
        shapes = [(n,), (n, 1)] if m == 1 else [(n, m)]
        self.tensor("exact", self.call("exact", p.exact, x), shapes, f"{n} points")
        if type(p).exact_grad is not Problem.exact_grad:  # the problem's own gradient
            grad_shapes = [(n, d), (n, 1, d)] if m == 1 else [(n, m, d)]
            self.tensor("exact_grad", self.call("exact_grad", p.exact_grad, x), grad_shapes, f"{n} points")
            return
        try:  # the default: autograd of exact, which needs exact to have a graph
            p.exact_grad(x)
        except RuntimeError as exc:
            log.warning("%s.exact has no autograd graph and there is no exact_grad (%s): the H1 metrics will be "
                        "skipped; give exact_grad(x) to have them", self.cls, str(exc).splitlines()[0])


def check_problem(problem: Problem, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
                  n: int = 8) -> None:
    """Probe ``problem`` on ``n`` points of its domain and ``n`` of each condition's pieces, in ``dtype``
    on ``device``; raise ``ValueError`` (one line: class, method, expected vs actual) at the first fault.

    Checked: :meth:`~Problem.pde` returns one tensor or a sequence of tensors, each ``(n,)`` (or
    ``(n, n_outputs)``) for a smooth stand-in field; every condition's callable target gives ``(n,)``
    (or ``(n, 1)``) and its residual the expected length; :meth:`~Problem.exact` (when the problem has
    one) gives ``(n,)`` (or ``(n, 1)``) for one output and ``(n, n_outputs)`` for several, and a
    problem's own :meth:`~Problem.exact_grad` ``(n, d)`` (or ``(n, n_outputs, d)``); all on ``device``,
    finite, in ``dtype`` (``exact`` and ``exact_grad`` in float64, as the evaluators call them). A problem without ``exact`` passes on its residuals alone; an ``exact`` whose
    default gradient cannot be taken by autograd is logged as a warning (the H1 metrics are skipped).
    """
    if n < 2:
        raise ValueError(f"check_problem needs n >= 2 probe points, got {n}")
    probe = _Probe(problem, dtype, device)
    batch = problem.sample(Sampler("uniform", seed=0), n, 2 * n * len(problem.conditions)).to(dtype, device)
    probe.pde(batch.interior)
    for cond in problem.conditions:
        probe.condition(cond, batch.boundary[cond.label])
    if problem.has_exact:  # the evaluators call it in float64, whatever the training dtype
        _Probe(problem, torch.float64, device).exact(batch.all_points().double())
