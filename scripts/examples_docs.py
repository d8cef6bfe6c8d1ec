"""Run the examples of ``examples/`` and write their code and printed output into ``docs/own-pde.md``.

    python scripts/examples_docs.py                      # every example
    python scripts/examples_docs.py plate_with_holes     # one

Each example owns a section of the page between ``<!-- example:NAME:start -->`` and
``<!-- example:NAME:end -->``: the script's source and what it printed, with the machine's load average,
so the page shows output that was produced, not typed. ``--no-docs`` only runs and prints.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _docs import write_section

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("no_exact", "reference_data", "plate_with_holes", "inverse_source", "inverse_coefficient")


def run(name: str) -> tuple[str, str]:
    path = ROOT / "examples" / f"{name}.py"
    start = time.perf_counter()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"examples/{name}.py failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    seconds = time.perf_counter() - start
    load = os.getloadavg()[0]
    return path.read_text(), f"{proc.stdout.rstrip()}\n# {seconds:.0f} s wall, load average {load:.1f} on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(EXAMPLES), help=f"examples to run (default: {', '.join(EXAMPLES)})")
    parser.add_argument("--docs", default=str(ROOT / "docs" / "own-pde.md"), help="page to write")
    parser.add_argument("--no-docs", action="store_true", help="only run and print")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in EXAMPLES]
    if unknown:
        raise SystemExit(f"unknown example(s) {unknown}; valid: {list(EXAMPLES)}")
    for name in args.names:
        code, output = run(name)
        print(f"== {name}\n{output}")
        if not args.no_docs:
            text = f"```python\n{code.rstrip()}\n```\n\nOutput (`python examples/{name}.py`):\n\n```text\n{output}\n```\n"
            write_section(args.docs, f"<!-- example:{name}:start -->", f"<!-- example:{name}:end -->", text)


if __name__ == "__main__":
    main()
