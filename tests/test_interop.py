"""docs/interop.md ("A KAN in your own PINN code"): its examples, run verbatim, train a KAN on the page's
Poisson problem to the relative L2 errors the page states -- a plain PyTorch loop with autograd and with
kanpde.laplacian, DeepXDE through kanpde.deepxde_net (where DeepXDE is installed), and the functional API
against autograd."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers import DOCS_DIR, code_block

PAGE = DOCS_DIR / "interop.md"


def page_bounds(section: str) -> list[float]:
    """The error bounds the page states in ``section`` ("... **below 2e-2** ..."), in order: tests hold the
    examples to the text, not to numbers of their own."""
    text = PAGE.read_text(encoding="utf-8").split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [float(b) for b in re.findall(r"\*\*below ([0-9.e-]+)\*\*", text)]


@pytest.mark.slow
def test_plain_pytorch_loop_trains_a_kan_with_autograd_and_with_kanpde_laplacian() -> None:
    ns: dict = {}
    exec(code_block(PAGE, "# poisson_pinn.py"), ns)
    exec(code_block(PAGE, "train(kanpde.KAN([2, 5, 1], grid_size=5, dtype=f64), kanpde.laplacian)"), ns)
    bound_autograd, bound_functional = page_bounds("A plain PyTorch loop")
    assert ns["err_autograd"] < bound_autograd and ns["err_functional"] < bound_functional


@pytest.mark.slow  # the first run compiles the forward engine's CPU kernels for this network
def test_functional_api_example_matches_autograd_and_backpropagates() -> None:
    ns: dict = {}
    exec(code_block(PAGE, "def heat_residual(engine)"), ns)
    assert float((ns["forward"] - ns["autograd"]).detach().abs().max()) < 1e-12
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ns["net"].parameters())


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(importlib.util.find_spec("deepxde") is None,
                    reason='DeepXDE is not installed (pip install "kanpde[deepxde]"): its example is not run')
def test_deepxde_example_trains_a_kan(tmp_path: Path) -> None:
    """In its own interpreter: DeepXDE picks its backend from the environment at import and sets torch's
    default device (CUDA where there is one), state that must not leak into the other tests."""
    script = tmp_path / "poisson_deepxde.py"
    script.write_text(code_block(PAGE, "# poisson_deepxde.py") + '\nprint(f"ERR={err_deepxde!r}")\n')
    env = {**os.environ, "DDE_BACKEND": "pytorch", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = float(re.search(r"^ERR=(\S+)$", proc.stdout, flags=re.M).group(1))
    (bound,) = page_bounds("DeepXDE")
    assert err < bound, proc.stdout[-2000:]
