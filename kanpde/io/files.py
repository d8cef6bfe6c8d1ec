"""Files written atomically, JSON, and the class paths that run files store.

:func:`atomic_path` gives a temporary path that replaces the target in one rename on success, so a
crash never leaves a half-written file. :func:`resolve_class` turns a class path stored in a run file
(``"module:QualName"``, or the dotted form) into the class, through an allow-list (a run file is data:
nothing it names is imported or called unless allowed), following :data:`MOVED` for classes that
lived elsewhere when the file was written (run-file format 1). :func:`plain_data` checks that the
constructor arguments read from a file are plain data.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import pkgutil
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from kanpde.models.registry import class_path, registered_model

__all__ = [
    "atomic_path", "write_json", "json_default", "resolve_class", "plain_data", "RunFileRefused", "import_object", "MOVED",
]

# Class paths of format-1 run files (before the layers were folders) -> where the classes live now.
MOVED = {
    "kanpde.symbolic:SymbolicKAN": "kanpde.models.symbolic:SymbolicKAN",
    "kanpde.hard:HardDirichlet": "kanpde.models.hard:HardDirichlet",
}


@functools.cache
def _umask() -> int:
    """The process umask, read once at the first write (``os.umask`` only sets and returns, so reading it
    sets it for a moment: once, not at import and not at every write)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    A crash or exception leaves any previous ``path`` untouched and removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, data: object) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=json_default) + "\n")


def json_default(obj: object) -> object:
    """NumPy scalars and arrays as JSON values (``json.dumps(..., default=json_default)``)."""
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def import_object(path: str) -> object:
    """The object named by ``path``: ``"module:Qual.Name"`` or a dotted ``"module.Name"``.

    For trusted names only (configurations, tests): it imports and returns whatever ``path`` names. A
    name read from a run file goes through :func:`resolve_class` instead."""
    module_name, _, qualname = path.partition(":") if ":" in path else path.rpartition(".")
    obj: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class RunFileRefused(ValueError):
    """A run file names a class that is not allowed, or holds constructor arguments that are not plain data."""


_MODELS_PACKAGE = "kanpde.models"
_PROBLEMS_PACKAGE = "kanpde.problems"
_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _colon_form(path: str) -> str:
    """``"module:QualName"`` for a stored path in either form (format 1 stored nested classes dotted)."""
    return path if ":" in path else ":".join(path.rsplit(".", 1))


@functools.cache
def _package_modules(package: str) -> frozenset[str]:
    """The public modules of one of kanpde's own packages (``kanpde.models``, ``kanpde.problems``), listed from
    the installed files, never from anything a run file says."""
    pkg = importlib.import_module(package)
    return frozenset(f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def _allowed_model(path: str) -> type | None:
    cls = registered_model(path)
    module = path.partition(":")[0]
    if cls is None and module.startswith(f"{_MODELS_PACKAGE}.") and module in _package_modules(_MODELS_PACKAGE):
        importlib.import_module(module)  # a module of kanpde.models not imported yet (the symbolic models)
        cls = registered_model(path)
    return cls


def _shipped_problem(path: str) -> type | None:
    module, _, qualname = path.partition(":")
    if module not in _package_modules(_PROBLEMS_PACKAGE) or "." in qualname:
        return None
    from kanpde.pde import Problem

    cls = getattr(importlib.import_module(module), qualname, None)
    # the class defined there, not a name it imported (``Problem`` itself, ``torch``, ...)
    if isinstance(cls, type) and issubclass(cls, Problem) and cls.__module__ == module and cls.__qualname__ == qualname:
        return cls
    return None


def resolve_class(path: str, allow: Iterable[type] = ()) -> type:
    """The class a run file names by ``path`` (``"module:QualName"`` or dotted), if it is allowed.

    Allowed are the model classes of :mod:`kanpde.models.registry` (:func:`~kanpde.models.registry.register_model`),
    the problem classes of kanpde's shipped problems (:mod:`kanpde.problems`) and the classes in
    ``allow`` (the caller's own problem or model classes, e.g. the classes a run's configuration names).
    ``path`` is compared against these before anything is imported; classes that moved since format 1
    are followed (:data:`MOVED`), to allowed classes only. Raises :class:`RunFileRefused`, one line
    naming the class, for anything else."""
    if not isinstance(path, str):
        raise RunFileRefused(f"saved class {path!r} is not a class path")
    colon = MOVED.get(_colon_form(path), _colon_form(path))
    if _PATH.fullmatch(colon):
        for cls in allow:
            if colon == class_path(cls):
                return cls
        cls = _allowed_model(colon)
        if cls is None and colon.startswith(f"{_PROBLEMS_PACKAGE}."):
            cls = _shipped_problem(colon)
        if cls is not None:
            return cls
    raise RunFileRefused(
        f"saved class {path!r} is not allowed: run files may name only kanpde's registered model classes, its "
        "shipped problems and the classes the reader is given (load_run(..., allow=[MyProblem]))"
    )


def plain_data(value: object, where: str) -> object:
    """``value`` if it is plain data (None, bools, numbers, strings, and lists/tuples/dicts with string
    keys of these, nested), as read from a run file for constructor arguments; raises
    :class:`RunFileRefused` naming ``where`` otherwise."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            plain_data(item, f"{where}[{i}]")
        return value
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise RunFileRefused(f"{where} has a key {key!r} that is not a string: run files hold plain data only")
            plain_data(item, f"{where}.{key}")
        return value
    raise RunFileRefused(f"{where} is a {type(value).__name__}, not plain data: run files hold plain data only")
