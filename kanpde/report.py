"""``python -m kanpde.report DIR [--out OUT] [--no-figures]``: a sweep's tables, scaling exponents and
figures (:func:`kanpde.io.sweep.report`). Exit 0, or 2 with one line on stderr."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from kanpde.io import sweep

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, write the report and print its markdown summary."""
    parser = argparse.ArgumentParser(prog="python -m kanpde.report", description=sweep.__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="a sweep's directory (e.g. multirun/<study>) or any folder of runs")
    parser.add_argument("--out", help="where to write the report (default: DIRECTORY/report)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        paths = sweep.report(args.directory, args.out, figures=not args.no_figures)
    except sweep.ReportError as exc:
        print(f"kanpde.report: error: {exc}", file=sys.stderr)
        return 2
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
