"""A user's problem class from a Python file named on the command line.

``problem._target_=path/to/my_pde.py:MyProblem`` loads ``MyProblem`` from that file, from any working
directory (a relative path is taken from the directory the command was started in) and without
``PYTHONPATH``: the file is executed once as the module ``kanpde_user.<stem>`` (:data:`USER_PACKAGE`), so
the problem's ``name`` is the file's stem, as for a shipped problem.

What a run records of such a problem is its class path, ``kanpde_user.my_pde:MyProblem``
(:func:`class_path`): the run's stored configuration carries it in place of the file path, and a
hard-constraint model stores it in its problem spec. ``kanpde_user`` is a package with an empty search
path, registered in :data:`sys.modules` by the first load: importing a name under it never reads a file,
it only finds a module that the user's own configuration loaded in this process
(:func:`loaded_class`). So a run file can name the user's class, to be matched against the class that
the current configuration names, but can never make anything import a file.

Errors are ``ValueError`` s of one line (missing file, no such class, not a :class:`~kanpde.pde.Problem`
subclass, a syntax error or an exception while executing the file); :mod:`kanpde.app.config` turns them
into configuration errors.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import traceback
import types
from pathlib import Path

from kanpde.pde import Problem

__all__ = ["USER_PACKAGE", "is_file_target", "class_path", "load_class", "loaded_class"]

USER_PACKAGE = "kanpde_user"


def is_file_target(target: object) -> bool:
    """Whether a ``_target_`` names a class in a Python file (``path/to/file.py:Class`` or ``path/to/file.py``)."""
    return isinstance(target, str) and (target.endswith(".py") or target.rpartition(":")[0].endswith(".py"))


def _split(target: str) -> tuple[str, str]:
    path, sep, name = target.rpartition(":")
    if not sep or not path.endswith(".py"):
        raise ValueError(f"{target!r} names a file but no class: write {target.rstrip(':')}:ClassName")
    if not name.isidentifier():
        raise ValueError(f"{name!r} after the ':' is not a class name")
    return path, name


def _module_name(path: str) -> str:
    return f"{USER_PACKAGE}.{re.sub(r'[^0-9A-Za-z_]', '_', Path(path).stem)}"


def class_path(target: str) -> str:
    """``"kanpde_user.<stem>:<Class>"``: how a run records the class a file target names (no file is read)."""
    path, name = _split(target)
    return f"{_module_name(path)}:{name}"


def loaded_class(path: str) -> type | None:
    """The user class recorded as ``path`` (``"kanpde_user.<stem>:<Class>"``) if this process has loaded it
    from a file its configuration named; ``None`` otherwise. Never imports anything."""
    module_name, _, name = path.partition(":")
    if not module_name.startswith(USER_PACKAGE + "."):
        return None
    module = sys.modules.get(module_name)
    obj = getattr(module, name, None) if module is not None else None
    return obj if isinstance(obj, type) else None


def _package() -> types.ModuleType:
    """The ``kanpde_user`` package: registered once, with an empty search path (no file is ever found in it)."""
    package = sys.modules.get(USER_PACKAGE)
    if package is None:
        package = types.ModuleType(USER_PACKAGE, "Problems loaded from files named on kanpde's command line.")
        package.__path__ = []
        sys.modules[USER_PACKAGE] = package
    return package


def _where(exc: BaseException, path: Path) -> str:
    """``", line N"`` of the innermost frame of ``exc`` in the user's file, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f", line {frames[-1].lineno}" if frames else ""


def load_class(target: str, base: str | Path | None = None) -> type[Problem]:
    """The :class:`~kanpde.pde.Problem` subclass that ``target`` (``path/to/file.py:Class``) names; a relative
    path is taken from ``base`` (default: the working directory). The file is executed afresh on every
    call, as the module ``kanpde_user.<stem>``. Raises ``ValueError`` with one line saying what is wrong."""
    file, name = _split(target)
    path = Path(file).expanduser()
    path = (Path(base) / path if base is not None and not path.is_absolute() else path).absolute()
    if not path.exists():
        raise ValueError(f"no such file: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    module_name = _module_name(file)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    package = _package()
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module  # before executing it: dataclasses and pickling look it up there
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        _restore(module_name, previous)
        raise ValueError(f"syntax error in {path}, line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:
        _restore(module_name, previous)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"executing {path}{_where(exc, path)} raised {type(exc).__name__}"
                         f"{': ' + message if message else ''}") from None
    setattr(package, module_name.rpartition(".")[2], module)
    cls = getattr(module, name, None)
    if cls is None:
        found = sorted(k for k, v in vars(module).items()
                       if isinstance(v, type) and issubclass(v, Problem) and v is not Problem)
        raise ValueError(f"{path} defines no {name}; its Problem subclasses: {', '.join(found) or 'none'}")
    if not (isinstance(cls, type) and issubclass(cls, Problem)):
        raise ValueError(f"{name} in {path} is not a kanpde.Problem subclass")
    return cls


def _restore(module_name: str, previous: types.ModuleType | None) -> None:
    if previous is None:
        sys.modules.pop(module_name, None)
    else:
        sys.modules[module_name] = previous
