"""The model classes a run file may name: an allow-list that a class joins by one declaration.

``solution.h5`` and ``checkpoint.pt`` store a model as a class path (``"module:QualName"``) and its
constructor arguments. Rebuilding it (:func:`kanpde.load_run`, ``resume=true``) makes an instance of
that class, so the class path is compared against this registry *before* anything is imported or
called: a file can only ever name a class that trusted code declared here.

A model class joins by decorating it::

    from kanpde.models.registry import register_model

    @register_model
    class MyMLP(nn.Module):
        ...                      # its constructor arguments are plain data, kept in ``self.config``

Every model class of :mod:`kanpde.models` is declared this way (:class:`~kanpde.models.KAN`,
:class:`~kanpde.models.MLP`, :class:`~kanpde.models.ModifiedMLP`, :class:`~kanpde.models.symbolic.SymbolicKAN`,
:class:`~kanpde.models.HardDirichlet`, :class:`~kanpde.models.PeriodicEmbedding`). A class of a module of :mod:`kanpde.models` that is not imported yet
(the symbolic models, imported on use) is found by importing that module of kanpde's own, never a module a
file names; a class outside :mod:`kanpde.models` must be imported, and so declared, before the file is read.
Problems are not models: the run-file reader allows kanpde's shipped problems, and the problem (or
model) classes a caller passes, e.g. ``load_run(path, allow=[MyProblem])`` (:func:`kanpde.io.files.resolve_class`).
"""

from __future__ import annotations

from typing import TypeVar

from torch import nn

__all__ = ["register_model", "registered_model", "class_path"]

T = TypeVar("T", bound=type)

_MODELS: dict[str, type] = {}


def class_path(cls: type) -> str:
    """The path a run file stores for ``cls``: ``"module:QualName"``."""
    return f"{cls.__module__}:{cls.__qualname__}"


def register_model(cls: T) -> T:
    """Allow run files to name the model class ``cls`` (a class decorator; returns ``cls`` unchanged).

    ``cls`` must be a ``torch.nn.Module`` subclass whose constructor takes the plain data it keeps in
    ``config`` (or that rebuilds itself with a ``from_config(config, resolve)`` class method)."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_model: {cls!r} is not a torch.nn.Module class")
    _MODELS[class_path(cls)] = cls
    return cls


def registered_model(path: str) -> type | None:
    """The registered model class whose :func:`class_path` is ``path``, or None (nothing is imported)."""
    return _MODELS.get(path)
