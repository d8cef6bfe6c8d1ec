"""Reference solution data: a solution known at the nodes of a file (a FEM solver's export, a finer
run, measurements), against which a trained model's errors are computed at those nodes.

A problem declares it as a class attribute or method named ``reference``:

    class MyPDE(Problem):
        reference = "my_pde_fem.txt"            # a data file, relative to the module that defines MyPDE

        def reference(self):                    # or: (points (n, d), values (n, m)[, gradients (n, m, d)])
            return points, values

and the command line gives one with ``problem.reference=PATH`` (a path relative to where the command
starts). Files are read by :func:`kanpde.pde.data.read_columns`: ``.npz``, ``.csv``, COMSOL's plain-text
export (``% x y u``), NumPy/FEniCS text (``# x y u``), ParaView's CSV (``"u","Points:0","Points:1"``). The
columns are the problem's coordinates and outputs by name; the gradient of the solution, when the
file has it, in the columns ``<output>_<coord>`` (``u_x``, ``u_y``; an ``.npz`` of ``points`` and
``values`` arrays: a ``gradients`` array ``(n, m, d)``). Every point must lie in the closed domain
(within 1e-6 of its bounding box's size: exported coordinates are rounded), every entry be finite.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kanpde.pde.data import read_columns

if TYPE_CHECKING:
    from kanpde.pde.problem import Problem

__all__ = ["ReferenceData", "read_reference", "reference_data", "declared_reference", "gradient_columns"]

DOMAIN_TOL = 1e-6  # points this far outside the domain (relative to its bounding box) still count as inside


@dataclass(frozen=True)
class ReferenceData:
    """A solution at ``points`` ``(n, d)``: ``values`` ``(n, m)`` and, where known, ``gradients``
    ``(n, m, d)``, float64 NumPy; ``source``: the file's name (or ``Class.reference()``)."""

    points: np.ndarray
    values: np.ndarray
    gradients: np.ndarray | None
    source: str

    @property
    def n_points(self) -> int:
        return int(self.points.shape[0])

    def describe(self) -> str:
        """``"reference data <source>, <n> points"``: how outputs name this error source."""
        return f"reference data {self.source}, {self.n_points} points"


def gradient_columns(coords: tuple[str, ...], outputs: tuple[str, ...]) -> list[str]:
    """The names of the gradient columns of a reference file: ``<output>_<coord>``, outputs outer."""
    return [f"{o}_{c}" for o in outputs for c in coords]


def read_reference(path: str | os.PathLike, problem: Problem) -> ReferenceData:
    """The reference data of ``problem`` in the file ``path`` (module docstring); one ``ValueError`` line
    naming the file for a file that cannot be used."""
    coords, outputs = tuple(problem.coords), tuple(problem.outputs)
    points, values, extra = read_columns(path, coords, outputs, gradient_columns(coords, outputs), npz_extra="gradients")
    grads = None if extra is None else extra.reshape(-1, len(outputs), len(coords))
    return reference_data(problem, points, values, grads, Path(path).name)


def reference_data(problem: Problem, points, values, gradients=None, source: str = "data") -> ReferenceData:
    """:class:`ReferenceData` from arrays, checked against ``problem``: ``points`` ``(n, d)``, ``values``
    ``(n,)`` or ``(n, m)``, ``gradients`` ``(n, m, d)`` (or ``(n, d)`` for one output), finite, every point in
    the closed domain. Raises ``ValueError`` (one line naming ``source``) otherwise."""
    d, m = problem.dim, problem.n_outputs
    pts = np.asarray(points, dtype=np.float64)
    pts = pts.reshape(-1, 1) if pts.ndim == 1 and d == 1 else pts
    if pts.ndim != 2 or pts.shape[1] != d:
        raise ValueError(f"reference data {source}: points have shape {pts.shape}, expected (n, {d}) for coords {problem.coords}")
    n = pts.shape[0]
    if n == 0:
        raise ValueError(f"reference data {source} has no points")
    vals = np.asarray(values, dtype=np.float64)
    if vals.size != n * m or vals.shape[0] != n:
        raise ValueError(f"reference data {source}: values have shape {vals.shape}, expected ({n}, {m}): one per output "
                         f"{problem.outputs} at each of the {n} points")
    vals = vals.reshape(n, m)
    grads = None
    if gradients is not None:
        grads = np.asarray(gradients, dtype=np.float64)
        if grads.size != n * m * d or grads.shape[0] != n:
            raise ValueError(f"reference data {source}: gradients have shape {grads.shape}, expected ({n}, {m}, {d})")
        grads = grads.reshape(n, m, d)
    for name, arr in (("points", pts), ("values", vals), ("gradients", grads)):
        if arr is not None and not np.isfinite(arr).all():
            raise ValueError(f"reference data {source}: {int((~np.isfinite(arr)).sum())} non-finite {name}")
    lo, hi = (np.asarray(b, dtype=np.float64) for b in problem.geometry.bounding_box)
    outside = ~np.asarray(problem.geometry.contains(pts, tol=DOMAIN_TOL * float(np.max(hi - lo))))
    if outside.any():
        where = ", ".join(f"{c}={v:.6g}" for c, v in zip(problem.coords, pts[np.argmax(outside)]))
        raise ValueError(f"reference data {source}: {int(outside.sum())} of {n} points lie outside the domain of "
                         f"{type(problem).__name__} (first at {where})")
    return ReferenceData(pts, vals, grads, source)


def declared_reference(problem: Problem) -> ReferenceData | None:
    """The reference data ``problem`` declares (module docstring), read and checked; None when it
    declares none. ``reference`` may be a file path (a relative one is taken from the folder of the module
    that defines the class), ``(points, values[, gradients])``, or a method returning either."""
    value = getattr(problem, "reference", None)
    name = f"{type(problem).__name__}.reference"
    if callable(value):
        value, name = value(), f"{name}()"
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return read_reference(_relative_to_class(value, type(problem)), problem)
    if isinstance(value, (tuple, list)) and len(value) in (2, 3):
        return reference_data(problem, *value, source=name)
    raise ValueError(f"{name} must be a file path or (points, values[, gradients]), not {type(value).__name__}")


def _relative_to_class(path: str | os.PathLike, cls: type) -> Path:
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    source = _class_file(cls)
    return path if source is None else source.resolve().parent / path


def _class_file(cls: type) -> Path | None:
    """The file that defines ``cls``: its module's, else that of a function defined in its body (a module
    loaded from a file without registering it); None for a class defined interactively."""
    try:
        return Path(inspect.getfile(cls))
    except (TypeError, OSError):
        pass
    for value in vars(cls).values():
        code = getattr(inspect.unwrap(value) if callable(value) else None, "__code__", None)
        if code is not None and Path(code.co_filename).is_file():
            return Path(code.co_filename)
    return None
