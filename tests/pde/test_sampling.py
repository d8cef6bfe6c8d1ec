"""Collocation samplers (kanpde.pde.sampling): shapes, ranges, reproducibility, stratification, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kanpde import Sampler
from kanpde.pde.sampling import METHODS


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("d", [1, 2, 3])
def test_sampler_shapes_range_and_reproducibility(method: str, d: int) -> None:
    a, b = Sampler(method, seed=5), Sampler(method, seed=5)
    first, second = a.unit(37, d), a.unit(37, d)
    assert first.shape == (37, d) and first.dtype == np.float64
    assert np.all((first >= 0) & (first <= 1))
    assert np.array_equal(first, b.unit(37, d))  # same seed, same k-th draw
    assert np.array_equal(second, b.unit(37, d))
    a.reseed(0)
    assert np.array_equal(a.unit(37, d), first)  # reseed(0) restarts the stream
    if method != "grid":
        assert not np.array_equal(first, second)
        assert not np.array_equal(first, Sampler(method, seed=6).unit(37, d))
        assert len(np.unique(first[:, 0])) == 37


def test_grid_sampler_gives_cell_centres() -> None:
    pts = Sampler("grid").unit(16, 2)
    centres = [0.125, 0.375, 0.625, 0.875]
    assert sorted(set(pts[:, 0].tolist())) == centres and sorted(set(pts[:, 1].tolist())) == centres
    assert len({tuple(p) for p in pts}) == 16
    thinned = Sampler("grid").unit(10, 2)  # 4 x 4 centres thinned evenly to 10
    assert thinned.shape == (10, 2) and len({tuple(p) for p in thinned}) == 10


@pytest.mark.parametrize("method", ["sobol", "lhs"])
def test_stratified_samplers_fill_every_bin(method: str) -> None:
    """Scrambled Sobol with n = 2^m and Latin hypercubes put one point in each of n bins per axis."""
    n = 64
    pts = Sampler(method, seed=11).unit(n, 3)
    for axis in range(3):
        assert np.array_equal(np.sort(np.floor(pts[:, axis] * n)), np.arange(n))


@pytest.mark.slow
@pytest.mark.subprocess
def test_quasi_random_backend_is_imported_when_the_sampler_is_made() -> None:
    """``import kanpde`` leaves scipy.stats (~0.5 s) alone; a Sobol/LHS/Halton sampler imports it when it is
    made, so a run pays it while building, not inside the first model's timed training."""
    code = (
        "import sys, kanpde, kanpde.app.run\n"
        "from kanpde import Sampler\n"
        "assert 'scipy.stats' not in sys.modules\n"
        "Sampler('grid'); Sampler('uniform')\n"
        "assert 'scipy.stats' not in sys.modules\n"
        "Sampler('sobol')\n"
        "assert 'scipy.stats.qmc' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_sampler_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown sampling method"):
        Sampler("random")
    with pytest.raises(ValueError):
        Sampler().unit(0, 2)
