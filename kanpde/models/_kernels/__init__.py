"""Fused CPU kernels for the forward derivative engine (numba): dispatch and shared machinery.

The forward engine's plain-torch path evaluates every layer quantity as full tensors, each a sweep
over memory forward and another in autograd's backward. The kernels do the same arithmetic point by
point in compiled loops, with hand-written backward passes, so the intermediates stay in registers:

* :mod:`.spline` -- a KAN layer on a jet (:func:`~.spline.kan_layer_jet`, :func:`~.spline.spline_jet`);
* :mod:`.elementwise` -- an MLP's activation on a jet (:func:`~.elementwise.elementwise_jet_fused`) and
  the base activations' derivatives up to the third (:func:`~.elementwise.activation_jet`).

This module decides where they apply (:func:`fused_available`): CPU tensors of float32/float64, numba
importable, no ``torch.func`` transform active (:func:`under_transform`; per-point Jacobians,
:mod:`kanpde.training.lm`, go through the pure-tensor path), not inside a :func:`tensor_path` block nor a derivative probe
(:func:`kanpde.derivatives.field.probing`),
and not switched off with ``KANPDE_KERNEL=torch``. It also holds what both kernel modules share: the
registry of compiled kernels (:func:`_built`, which logs a first compilation), the thread count
(:func:`_blocks`), numpy views (:func:`_np`) and the plan's pair table (:func:`_entry_arrays`).

The backward passes are first-order only (``once_differentiable``): the forward engine never
differentiates its own outputs twice -- derivatives of order > 2 go through the autograd engine, which
does not use these kernels. Loops are specialised per configuration, compiled on first use and cached
on disk; they run on ``torch.get_num_threads()`` threads.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from kanpde.derivatives.field import probing
from kanpde.derivatives.transforms import under_transform

try:  # numba is a dependency, but the torch path must keep working without it
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

__all__ = ["fused_available", "tensor_path", "under_transform", "warm_up", "compile_seconds", "compiled_kernels",
           "kernels_cached"]

_log = logging.getLogger(__name__)


_DISABLED = threading.local()


@contextlib.contextmanager
def tensor_path() -> Iterator[None]:
    """Within this block (in this thread) the forward engine takes the tensor path: for one-off
    evaluations, such as probing which derivatives a residual asks for, where compiling a kernel for
    a configuration never used again would cost more than it saves."""
    depth = getattr(_DISABLED, "depth", 0)
    _DISABLED.depth = depth + 1
    try:
        yield
    finally:
        _DISABLED.depth = depth


def fused_available(*tensors: Tensor | None) -> bool:
    """Whether the fused kernels can run on these tensors (see the module docstring)."""
    if numba is None or os.environ.get("KANPDE_KERNEL", "auto") == "torch" or getattr(_DISABLED, "depth", 0):
        return False
    if probing():  # a probe's plans are never used again: no kernel compiled for them
        return False
    if under_transform():  # inside vmap / grad / jacrev
        return False
    for t in tensors:
        if t is not None and (t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64)):
            return False
    return True


def warm_up() -> bool:
    """Start numba in this process: its first kernel (compiled or loaded from the cache) sets up numba's
    compiler context, about 0.15 s once per process. A run calls this while it is built, so the first
    model's timed training does not pay for it. Returns whether the CPU kernels are in use."""
    if not fused_available():
        return False
    kernels_cached()  # the cache's state before this process adds to it
    from kanpde.models._kernels.spline import knot_tables  # the kernel modules import this one

    knot_tables(torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    return True


# -- the registry of compiled kernels --------------------------------------------------------------------

_KERNELS: dict[tuple, tuple] = {}


_COMPILE = threading.local()  # per thread: seconds in kernels' first calls, and how many of them compiled


def compile_seconds() -> float:
    """Seconds this thread has spent so far in the kernels' first calls: compiling them, or loading them
    from numba's disk cache (tens of seconds on the first run after installing, a fraction of a second
    later). Training clocks subtract it (:mod:`kanpde.training.fit`), so compilation is never counted as
    training time."""
    return getattr(_COMPILE, "seconds", 0.0)


def compiled_kernels() -> int:
    """How many kernels this thread has compiled (not found in numba's cache) so far."""
    return getattr(_COMPILE, "misses", 0)


def kernels_cached() -> bool | None:
    """Whether numba's disk cache held any of these kernels when this process first used them (``False``
    on the first run after installing: the run is about to compile them); ``None`` where that cannot be
    told."""
    if "cached" not in _CACHE_STATE:
        _CACHE_STATE["cached"] = _cache_has_kernels()
    return _CACHE_STATE["cached"]


_CACHE_STATE: dict[str, bool | None] = {}


def _cache_has_kernels() -> bool | None:
    if numba is None:
        return None
    try:
        from kanpde.models._kernels.spline import _search_tables

        return any(Path(_search_tables._cache._cache_path).glob("*.nbi"))
    except Exception:  # numba's cache layout is its own business: no answer rather than a wrong one
        return None


def _logged(kernel, what: str):
    """``kernel`` whose calls that compile a new specialisation (or load it from numba's cache) are timed
    into :func:`compile_seconds`, and logged when numba had to compile it: the first run after installing
    spends tens of seconds there."""

    def call(*args):
        known = len(kernel.overloads)
        start = time.perf_counter()
        try:
            return kernel(*args)
        finally:
            if len(kernel.overloads) != known:
                elapsed = time.perf_counter() - start
                _COMPILE.seconds = compile_seconds() + elapsed
                if sum(kernel.stats.cache_misses.values()) > getattr(call, "misses", 0):
                    call.misses = sum(kernel.stats.cache_misses.values())
                    _COMPILE.misses = compiled_kernels() + 1
                    _log.debug("compiled the %s kernel in %.1f s (kept in numba's cache for later runs)", what, elapsed)

    call.dispatcher = kernel
    return call


def _built(what: str, make, config: tuple) -> tuple:
    """The (forward, backward) pair ``make(*config)`` for ``config``, built once (and logged as ``what``)."""
    key = (what, *config)
    if key not in _KERNELS:
        forward, backward = make(*config)
        _KERNELS[key] = (_logged(forward, f"{what} forward {config}"), _logged(backward, f"{what} backward {config}"))
    return _KERNELS[key]


# -- helpers shared by the kernel modules ----------------------------------------------------------------

_THREADS = threading.local()


def _blocks(n: int) -> int:
    """Chunks for ``n`` points: torch's thread count (numba's set to match; its setting is per thread)."""
    threads = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    if getattr(_THREADS, "count", None) != threads:
        numba.set_num_threads(threads)
        _THREADS.count = threads
    return max(1, min(threads, n))


def _np(t: Tensor | None, ndim: int, dtype: torch.dtype) -> np.ndarray:
    """A C-contiguous numpy view of ``t`` (an empty array of ``ndim`` dimensions for ``None``)."""
    if t is None:
        return _EMPTY[(ndim, dtype)]
    t = t.detach()
    return (t if t.is_contiguous() else t.contiguous()).numpy()


_EMPTY = {(d, dt): np.empty((0,) * d, dtype=npt) for d in (2, 3) for dt, npt in ((torch.float64, np.float64), (torch.float32, np.float32))}


@functools.lru_cache(maxsize=256)
def _entry_arrays(entries: tuple[tuple[int, int, int], ...], p: int) -> tuple[np.ndarray, ...]:
    """The plan's :attr:`~kanpde.derivatives.jet.DerivativePlan.entries` ``(row, a, b)`` as arrays: per row the first
    entry (``start``, ``p + 1``), per entry its row and factors (the kernels' runtime arguments; kept per plan,
    never written to)."""
    start = np.searchsorted(np.array([q for q, _, _ in entries], dtype=np.int64), np.arange(p + 1)).astype(np.int64)
    eq, ea, eb = (np.array([e[r] for e in entries] or [0], dtype=np.int64) for r in range(3))
    return start, eq, ea, eb
