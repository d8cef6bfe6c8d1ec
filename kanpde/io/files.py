"""Files written atomically, JSON, and the class paths that run files store.

:func:`atomic_path` gives a temporary path that replaces the target in one rename on success, so a
crash never leaves a half-written file. :func:`resolve_class` turns a class path stored in a run file
(``"module:QualName"``, or the dotted form) into the class, following :data:`MOVED` for classes that
lived elsewhere when the file was written (run-file format 1).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["atomic_path", "write_json", "json_default", "resolve_class", "import_object", "MOVED"]

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
    """The object named by ``path``: ``"module:Qual.Name"`` or a dotted ``"module.Name"``."""
    module_name, _, qualname = path.partition(":") if ":" in path else path.rpartition(".")
    obj: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def resolve_class(path: str) -> type:
    """The class a run file names by ``path`` (``"module:QualName"`` or dotted), moved classes followed
    (:data:`MOVED`). Raises ``ValueError`` when ``path`` names no class."""
    colon = path if ":" in path else ":".join(path.rsplit(".", 1))
    try:
        obj = import_object(MOVED.get(colon, colon))
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"saved class {path!r} cannot be found: {exc}") from None
    if not isinstance(obj, type):
        raise ValueError(f"saved class {path!r} is not a class")
    return obj
