"""Process-level settings of a run (kanpde.app.runtime)."""

from __future__ import annotations

import torch

from kanpde.app.runtime import tune_malloc

D = torch.float64


def test_tune_malloc_is_harmless() -> None:
    applied = tune_malloc()
    assert isinstance(applied, bool)
    torch.ones(2**22, dtype=D).sum()  # large allocations still work afterwards
