"""Fixtures and hooks of the kanpde test suite; shared helpers are in tests/helpers.py.

Everything here is test infrastructure: the library itself never sets threads, dtypes or seeds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from tests.helpers import CONF_DIR, PACKAGE_DIR, PROBLEMS_DIR, make_cfg

# On a small shared machine torch's intra-op thread pool thrashes: one loss evaluation of a tiny KAN
# takes ~0.3 s with 2 threads under load and ~0.01 s with one. Tests only, never the library.
torch.set_num_threads(1)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"kanpde: {PACKAGE_DIR}", f"kanpde.conf: {CONF_DIR}", f"kanpde.problems: {PROBLEMS_DIR}"]


@pytest.fixture(autouse=True, scope="session")
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Reference-solution caches (kanpde.problems._reference.cache_dir) go under pytest's temporary directory."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(autouse=True)
def _deterministic() -> Iterator[None]:
    """Every test starts from the same torch seed and must leave the default dtype alone."""
    torch.manual_seed(1234)
    dtype = torch.get_default_dtype()
    yield
    assert torch.get_default_dtype() == dtype, "a test or the library changed torch's default dtype"


@pytest.fixture(scope="session")
def fast_run(tmp_path_factory: pytest.TempPathFactory):
    """One ``run(cfg)`` of the fast preset (KAN and MLP baseline on poisson2d, with figures and checkpoints),
    shared by the tests of the run (tests/app/test_run.py), its run file (tests/io/test_run_file.py) and
    its checkpoints (tests/app/test_checkpoint.py): ``(output_dir, metrics, progress_events)``."""
    from kanpde.app.run import run

    out = tmp_path_factory.mktemp("fast")
    events = []
    metrics = run(make_cfg("debug=fast"), output_dir=out, progress=events.append)
    return out, metrics, events
