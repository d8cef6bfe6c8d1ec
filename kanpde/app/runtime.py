"""Process-wide settings that the command line and the benchmark apply; the library never changes them.

:func:`tune_malloc`: PINN training allocates and frees the same few megabyte-sized tensors thousands of
times. glibc serves blocks above its mmap threshold (128 KiB at start) with fresh ``mmap`` pages and
returns them on ``free``, so every such tensor pays a page fault per 4 KiB on first touch -- on the
default Poisson step that is about a third of the time of the forward engine. Raising the mmap and
trim thresholds keeps freed blocks in the heap for reuse (the behaviour of the caching allocators
``jemalloc``/``tcmalloc`` that PyTorch recommends preloading for CPU work), at the cost of holding on to
memory already used once.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["tune_malloc"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling on 64-bit systems


def tune_malloc(mmap_threshold: int = _MMAP_THRESHOLD_MAX, trim_threshold: int = 1024 * 2**20) -> bool:
    """Serve blocks below ``mmap_threshold`` bytes from the heap and keep up to ``trim_threshold`` bytes
    of freed heap memory for reuse (glibc ``mallopt``). Returns whether both settings were applied:
    ``False`` (and nothing changed) off Linux, or with a C library without ``mallopt`` (e.g. musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1 and mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1
