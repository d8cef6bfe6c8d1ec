"""The docs site and the README: the site builds with --strict, the README stays a front door whose links
resolve, the API page covers exactly the public names, snippets use only public names, the README's code
runs, and the table scripts' shared writer keeps the rest of a page intact."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import kanpde
from tests.helpers import DOCS_DIR, SCRIPTS_DIR, code_block, code_blocks, load_script
from tests.helpers import REPO_ROOT as REPO_DIR

README = REPO_DIR / "README.md"
PUBLIC = set(kanpde.__all__) - {"__version__"}
# Names a snippet may use besides kanpde.__all__: the shipped problem package (kanpde.problems, a config
# contract).
ALSO_ALLOWED = {"problems"}
TEST_COMMAND = ('python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e ".[test]" '
                '&& python -m pytest -q -m "slow or not slow"')
MAIN_COMMAND = ('python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e ".[test]" '
                "&& python -m kanpde problem=poisson2d")


def test_mkdocs_build_is_strict_clean(tmp_path: Path) -> None:
    """`mkdocs build --strict`: no broken link, missing page, unresolved API name or include."""
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=REPO_DIR, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert "kanpde.KAN" in api and "kanpde.load_run" in api


def test_readme_is_a_short_front_door_whose_links_resolve() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert local, "the README links to its docs pages"
    missing = [t for t in local if not (README.parent / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_readme_keeps_the_set_up_commands_and_ci_runs_the_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    assert MAIN_COMMAND in text and TEST_COMMAND in text
    ci = (REPO_DIR / ".ci" / "run").read_text()
    assert TEST_COMMAND in ci and "mkdocs build --strict" in ci


def test_api_page_documents_exactly_the_public_names() -> None:
    targets = re.findall(r"^::: (\S+)\s*$", (DOCS_DIR / "api.md").read_text(encoding="utf-8"), flags=re.M)
    assert all(t.startswith("kanpde.") and t.count(".") == 1 for t in targets), targets
    names = [t.split(".", 1)[1] for t in targets]
    assert len(names) == len(set(names)) and set(names) == PUBLIC


@pytest.mark.parametrize("page", [README, *sorted(DOCS_DIR.glob("*.md"))], ids=lambda p: p.name)
def test_snippets_use_only_public_names(page: Path) -> None:
    """Internal modules are being reorganised: code in the docs reaches kanpde only through its public names."""
    for block in code_blocks(page):
        used = set(re.findall(r"\bkanpde\.([A-Za-z_]\w*)", block))
        used |= {m for imports in re.findall(r"^from kanpde import (.+)$", block, flags=re.M)
                 for m in re.findall(r"\w+", imports)}
        assert used <= PUBLIC | ALSO_ALLOWED, f"{page.name}: {sorted(used - PUBLIC - ALSO_ALLOWED)}"


def test_readme_problem_is_the_docs_worked_example() -> None:
    marker = "# reaction_diffusion.py"
    assert code_block(README, marker) == code_block(DOCS_DIR / "problems.md", marker)


@pytest.mark.slow
def test_readme_python_api_runs() -> None:
    """The README's problem and its Python API snippet, verbatim, in one namespace."""
    ns: dict = {}
    exec(code_block(README, "# reaction_diffusion.py"), ns)
    exec(code_block(README, "kanpde.fit("), ns)
    assert kanpde.evaluate(ns["result"].model, ns["problem"]).metrics["l2_rel"] < 0.05


# -- scripts/_docs.py: the one writer of the generated tables ------------------------------------------------

@pytest.fixture(scope="module")
def docs_writer():
    return load_script(SCRIPTS_DIR / "_docs.py", "kanpde_script__docs")


def test_write_section_replaces_only_between_the_markers(docs_writer, tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n<!-- t:start -->\nold\nlines\n<!-- t:end -->\nafter — ünïcode\n", encoding="utf-8")
    page.chmod(0o640)
    docs_writer.write_section(page, "<!-- t:start -->", "<!-- t:end -->", "| new |\n")
    assert page.read_text(encoding="utf-8") == "# Title\n<!-- t:start -->\n| new |\n<!-- t:end -->\nafter — ünïcode\n"
    assert page.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["page.md"]  # no temporary file left behind


def test_write_section_refuses_a_page_without_markers_in_one_line(docs_writer, tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("no markers\n")
    with pytest.raises(SystemExit, match="has no <!-- t:start --> ... <!-- t:end --> markers"):
        docs_writer.write_section(page, "<!-- t:start -->", "<!-- t:end -->", "x\n")
    assert page.read_text() == "no markers\n"
    with pytest.raises(SystemExit):
        docs_writer.write_section(tmp_path / "missing.md", "<!-- t:start -->", "<!-- t:end -->", "x\n")
    with pytest.raises(ValueError):
        docs_writer.replace_marked_section(page, "<!-- t:start -->", "<!-- t:end -->", "x\n")


@pytest.mark.parametrize("name, page", [("problem_table", "problems.md"), ("precision_table", "accuracy.md"),
                                        ("symbolic_table", "interpretability.md")])
def test_table_scripts_write_into_the_docs_page_holding_their_markers(name: str, page: str) -> None:
    script = load_script(SCRIPTS_DIR / f"{name}.py", f"kanpde_script_{name}")
    assert script.DOCS == DOCS_DIR / page
    text = script.DOCS.read_text(encoding="utf-8")
    assert text.count(script.START) == 1 and text.count(script.END) == 1
    assert text.index(script.START) < text.index(script.END)
    assert script.publish.__module__ == "_docs"  # the shared helper, not a copy
