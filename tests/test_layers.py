"""The layering of the package (LAYOUT.md, DESIGN.md): import-linter's ``lint-imports`` keeps every contract of
``[tool.importlinter]`` in pyproject.toml (layers, derivatives standing alone, Hydra only in the app, the kernels
private to the models, no import cycles)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.subprocess


def _config() -> Path | None:
    """The repository's pyproject.toml with the contracts, or None outside a checkout (e.g. tests run against a
    wheel, where the sources and pyproject.toml are not beside the tests)."""
    pyproject = REPO_ROOT / "pyproject.toml"
    if not pyproject.is_file() or not (REPO_ROOT / "kanpde" / "__init__.py").is_file():
        return None
    return pyproject if "[tool.importlinter]" in pyproject.read_text() else None


def _lint_imports() -> str | None:
    beside = Path(sys.executable).parent / "lint-imports"  # the one installed with this interpreter first
    return str(beside) if beside.is_file() else shutil.which("lint-imports")


def test_lint_imports_keeps_every_contract() -> None:
    config = _config()
    if config is None:
        pytest.skip("no repository checkout with the import-linter contracts in pyproject.toml")
    lint_imports = _lint_imports()
    if lint_imports is None:
        pytest.skip("lint-imports is not installed (pip install -e '.[test]')")
    # The config file as the positional argument (import-linter >= 2 deprecates --config); no cache written.
    result = subprocess.run([lint_imports, str(config), "--no-cache", "--no-logo"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout, result.stdout[-6000:]
