"""Shared helpers for the kanpde test suite.

Everything here is test infrastructure: the library itself never sets threads, dtypes or seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import kanpde
import kanpde.conf
import kanpde.problems
from kanpde.models import KAN
from kanpde.models.bspline import fit_coefficients

# On a small shared machine torch's intra-op thread pool thrashes: one loss evaluation of a tiny KAN
# takes ~0.3 s with 2 threads under load and ~0.01 s with one. Tests only, never the library.
torch.set_num_threads(1)

PACKAGE_DIR = Path(kanpde.__file__).resolve().parent
CONF_DIR = Path(kanpde.conf.__file__).resolve().parent
PROBLEMS_DIR = Path(kanpde.problems.__file__).resolve().parent
F64 = torch.float64


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"kanpde: {PACKAGE_DIR}", f"kanpde.conf: {CONF_DIR}", f"kanpde.problems: {PROBLEMS_DIR}"]


@pytest.fixture(autouse=True, scope="session")
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Reference-solution caches (kanpde.problems._reference.cache_dir) go under pytest's temporary directory."""
    import os

    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


# Constructor arguments that keep a shipped problem cheap in tests (the Allen–Cahn reference solver's
# resolution; its accuracy at the shipped resolution is measured in tests/test_references.py).
SMALL_PROBLEM_KWARGS = {"allencahn1d": {"n_modes": 256, "dt": 1e-3, "n_out": 101}}


@pytest.fixture(autouse=True)
def _deterministic() -> Iterator[None]:
    """Every test starts from the same torch seed and must leave the default dtype alone."""
    torch.manual_seed(1234)
    dtype = torch.get_default_dtype()
    yield
    assert torch.get_default_dtype() == dtype, "a test or the library changed torch's default dtype"


class FunctionModule(nn.Module):
    """An ``nn.Module`` wrapping a closed-form ``f(x) -> (n,)`` or ``(n, m)``, returned as ``(n, m)``.

    It holds one unused parameter so that code looking up the model's dtype/device via
    ``next(model.parameters())`` works, and counts its forward calls.
    """

    def __init__(self, f: Callable[[Tensor], Tensor], scale: float = 1.0, dtype: torch.dtype = F64) -> None:
        super().__init__()
        self.f = f
        self.scale = scale
        self.dummy = nn.Parameter(torch.zeros((), dtype=dtype))
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        out = self.scale * self.f(x)
        return (out if out.ndim == 2 else out.unsqueeze(1)) + 0.0 * self.dummy


def layer_ranges(model: KAN) -> list[tuple[Tensor, Tensor]]:
    """``(lo, hi)`` of every layer's grid range ``[t_k, t_{G+k}]``, each ``(in,)``."""
    out = []
    for layer in model.layers:
        k, g = layer.spline_order, layer.grid_size
        out.append((layer.grid[:, k], layer.grid[:, k + g]))
    return out


def inside_grids(model: KAN, x: Tensor) -> Tensor:
    """Mask ``(n,)`` of points whose inputs to every layer lie inside that layer's grid range."""
    mask = torch.ones(x.shape[0], dtype=torch.bool)
    with torch.no_grad():
        for layer, (lo, hi) in zip(model.layers, layer_ranges(model)):
            mask &= ((x >= lo) & (x <= hi)).all(dim=1)
            x = layer(x)
    return mask


@torch.no_grad()
def smooth_layer(layer: nn.Module, freq: float = 1.0, amplitude: float = 0.5) -> None:
    """Replace every edge spline of a KANLinear by the least-squares fit of a smooth function.

    Edge ``(o, i)`` gets ``amplitude * sin(w_oi * x + 0.3)`` with ``w_oi`` spread over ``freq * [0.5, 1]``,
    fitted on 400 points over the layer's current grid range.
    """
    k = layer.spline_order
    lo, hi = layer.grid[:, k], layer.grid[:, k + layer.grid_size]
    frac = torch.linspace(0.0, 1.0, 400, dtype=layer.grid.dtype)
    pts = lo + (hi - lo) * frac[:, None]  # (400, in)
    o, i = layer.out_features, layer.in_features
    w = freq * torch.linspace(0.5, 1.0, o * i, dtype=layer.grid.dtype).reshape(o, i).T  # (in, out)
    y = amplitude * torch.sin(w[None] * pts[:, :, None] + 0.3)  # (400, in, out)
    layer.spline_weight.copy_(fit_coefficients(pts, y, layer.grid, k))


def smooth_kan(widths: Sequence[int], grid_size: int = 5, freq: float = 1.0, **kwargs) -> KAN:
    """A float64 KAN whose every edge spline is smooth (see :func:`smooth_layer`)."""
    model = KAN(widths, grid_size=grid_size, dtype=F64, **kwargs)
    for layer in model.layers:
        smooth_layer(layer, freq)
    return model


def max_rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def observed_orders(errors: Sequence[float], ratio: float = 2.0) -> list[float]:
    """``log(e_i / e_{i+1}) / log(ratio)`` for a sequence of errors on grids refined by ``ratio``."""
    return [math.log(a / b) / math.log(ratio) for a, b in zip(errors[:-1], errors[1:])]



# -- the docs site and the scripts ------------------------------------------------------------------------

REPO_DIR = Path(__file__).resolve().parent.parent
DOCS_DIR = REPO_DIR / "docs"
SCRIPTS_DIR = REPO_DIR / "scripts"


def code_blocks(path: Path, lang: str = "python") -> list[str]:
    """The fenced ``lang`` code blocks of a Markdown file, in order, without their fences."""
    import re

    return re.findall(rf"^```{lang}\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def code_block(path: Path, contains: str, lang: str = "python") -> str:
    """The one fenced ``lang`` block of a Markdown file that contains ``contains``: tests run the docs' own text."""
    found = [b for b in code_blocks(path, lang) if contains in b]
    assert len(found) == 1, f"{path}: {len(found)} {lang} blocks contain {contains!r}"
    return found[0]


def load_script(name: str):
    """``scripts/<name>.py`` as a module; ``scripts/`` is on ``sys.path`` while it loads, as when it runs."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(f"kanpde_script_{name}", SCRIPTS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPTS_DIR))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS_DIR))
    return module
