"""Rewrite the generated part of a docs page: the one helper of the table scripts.

``scripts/problem_table.py``, ``scripts/precision_table.py`` and ``scripts/symbolic_table.py`` each own a
table in a page under ``docs/``, between two marker comments (``<!-- problem-table:start -->`` ...
``<!-- problem-table:end -->``); everything between the markers is replaced, the rest of the page is kept.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from pathlib import Path


def replace_marked_section(path: str | os.PathLike, start: str, end: str, text: str) -> None:
    """Replace everything between the marker lines ``start`` and ``end`` of a text file by ``text``,
    atomically (a reader sees the old page or the new one, never half of it). Raises ``ValueError``
    when a marker is missing."""
    path = Path(path)
    src = path.read_text(encoding="utf-8")
    if start not in src or end not in src:
        raise ValueError(f"{path} has no {start} ... {end} markers")
    new = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{text}{end}", src, flags=re.S)
    _write_atomic(path, new)


def write_section(path: str | os.PathLike, start: str, end: str, text: str) -> None:
    """:func:`replace_marked_section` for a command line: a missing page or marker ends the script with
    a one-line message instead of a traceback."""
    try:
        replace_marked_section(path, start, end, text)
    except (OSError, ValueError) as exc:
        raise SystemExit(str(exc)) from None


def docs_arguments(parser, page: Path) -> None:
    """The table scripts' ``--docs PATH`` (default ``page``) and ``--no-docs`` options."""
    parser.add_argument("--docs", type=Path, default=page, metavar="PATH",
                        help=f"rewrite the table between the markers of this page (default: {page.parent.name}/{page.name})")
    parser.add_argument("--no-docs", action="store_true", help="leave the docs page alone (table.md and stdout only)")


def publish(out: Path, text: str, args, start: str, end: str) -> None:
    """Write a table script's ``text`` to ``out/table.md`` (atomically) and, unless ``args.no_docs``, between the
    markers of ``args.docs``."""
    _write_atomic_new(out / "table.md", text)
    if not args.no_docs:
        write_section(args.docs, start, end, text)


def _write_atomic_new(path: Path, text: str) -> None:
    if not path.exists():
        path.write_text("", encoding="utf-8")
    _write_atomic(path, text)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))  # mkstemp makes 0600 files; keep the page's mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
