"""The examples of docs/own-pde.md run and reach their stated results; scripts/examples_docs.py writes their
code and output into the page's marked sections."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.helpers import DOCS_DIR, REPO_ROOT, load_script


@pytest.fixture(scope="module")
def examples_docs():
    return load_script(REPO_ROOT / "scripts" / "examples_docs.py", "kanpde_examples_docs")


def test_every_example_has_a_section_in_the_page(examples_docs) -> None:
    page = (DOCS_DIR / "own-pde.md").read_text()
    for name in examples_docs.EXAMPLES:
        assert (REPO_ROOT / "examples" / f"{name}.py").is_file()
        assert f"<!-- example:{name}:start -->" in page and f"<!-- example:{name}:end -->" in page


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_examples_run_and_the_page_gets_their_output(examples_docs, tmp_path: Path) -> None:
    page = tmp_path / "own-pde.md"
    shutil.copy(DOCS_DIR / "own-pde.md", page)
    examples_docs.main(["--docs", str(page)])
    text = page.read_text()
    l2 = float(re.search(r"KAN \[2, 4, 1\]: l2_rel ([0-9.e+-]+)", text).group(1))
    assert l2 < 2e-3
    k = float(re.search(r"k = ([0-9.]+)", text).group(1))
    assert abs(k - 2) < 0.02
    assert "snapped edge: x^2" in text  # the coefficient field a(x) = 1 + x^2 as a formula
    a_error = float(re.search(r"max \|a - \(1 \+ x\^2\)\| on \[0, 1\]: ([0-9.e+-]+)", text).group(1))
    assert a_error < 1e-4
    assert "class Plate(Problem)" in text and "load average" in text
    ref = re.search(r"KAN \[2, 4, 1\] vs reference data square_fd.txt, 16641 points: l2_rel ([0-9.e+-]+)", text)
    assert float(ref.group(1)) < 5e-2


def test_an_unknown_example_is_refused(examples_docs) -> None:
    with pytest.raises(SystemExit, match="unknown example"):
        examples_docs.main(["nope", "--no-docs"])
