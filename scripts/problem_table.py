"""Run every shipped problem (KAN and its MLP baseline) and write the results table of docs/problems.md.

    python scripts/problem_table.py --out problem-table            # default config, every problem, docs page updated
    python scripts/problem_table.py --reduced --no-docs            # the reduced budget, table in problem-table/ only
    python scripts/problem_table.py --collect problem-table        # table from finished runs

Each problem runs through the CLI (``python -m kanpde problem=<stem> ...``) in its own directory
``<out>/<stem>``; the table is rebuilt from the ``metrics.json`` files after every run, so an interrupted
sweep still leaves a table of what finished. Numbers are never typed by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _docs import write_section

ROOT = Path(__file__).resolve().parent.parent
STEMS = sorted(p.stem for p in (ROOT / "conf" / "problem").glob("*.yaml") if p.stem != "custom")
DOCS = ROOT / "docs" / "problems.md"  # the page holding the table between START and END
START, END = "<!-- problem-table:start -->", "<!-- problem-table:end -->"
# A smaller training budget for a loaded 2-core machine: fewer points, shorter stages, no grid-20 stage.
REDUCED = [
    "trainer.n_interior=512",
    "trainer.n_boundary=128",
    "trainer.stages=[{optimizer: adam, steps: 100, grid_size: 5},{optimizer: lbfgs, steps: 5, grid_size: 5},"
    "{optimizer: lbfgs, steps: 5, grid_size: 10}]",
    "eval.n_per_axis=101",
]


def run_problem(stem: str, out: Path, overrides: list[str]) -> None:
    cmd = [sys.executable, "-m", "kanpde", f"problem={stem}", f"hydra.run.dir={out / stem}",
           "output.figures=false", "output.checkpoint=false", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS=_run_threads())
    with open(out / f"{stem}.log", "w") as log:
        subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)


def _cell(value: object, fmt: str = ".2e") -> str:
    return "—" if value is None else format(value, fmt) if isinstance(value, float) else str(value)


def table(out: Path, header: str) -> str:
    rows = [
        header,
        "",
        "| problem | KAN l2_rel | MLP l2_rel | KAN l2_rel at t_final | MLP l2_rel at t_final | KAN params | MLP params "
        "| KAN time [s] | MLP time [s] | lower l2_rel |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for stem in STEMS:
        path = out / stem / "metrics.json"
        if not path.is_file():
            rows.append(f"| {stem} | not run | | | | | | | | |")
            continue
        kan = json.loads(path.read_text())
        mlp = kan.get("baseline", {})
        better = "KAN" if kan["l2_rel"] < mlp.get("l2_rel", float("inf")) else "MLP"
        rows.append(
            f"| {stem} | {_cell(kan['l2_rel'])} | {_cell(mlp.get('l2_rel'))} | {_cell(kan.get('l2_rel_final'))} "
            f"| {_cell(mlp.get('l2_rel_final'))} | {kan['n_params']} | {mlp.get('n_params', '—')} "
            f"| {kan['train_seconds']:.0f} | {_cell(mlp.get('train_seconds'), '.0f')} | {better} |"
        )
    return "\n".join(rows) + "\n"


def _run_threads() -> str:
    """torch threads of every run: ``OMP_NUM_THREADS`` if set, else one (as ``run_problem`` passes it)."""
    return os.environ.get("OMP_NUM_THREADS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "problem-table", help="run directories and table.md")
    parser.add_argument("--problems", nargs="*", default=STEMS)
    parser.add_argument("--reduced", action="store_true", help="the smaller training budget REDUCED")
    parser.add_argument("--collect", type=Path, help="only rebuild the table from finished runs in this directory")
    parser.add_argument("--docs", type=Path, default=DOCS, metavar="PATH",
                        help="rewrite the table between the markers of this page (default: docs/problems.md)")
    parser.add_argument("--no-docs", action="store_true", help="leave the docs page alone (table.md and stdout only)")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = parser.parse_args()
    out = (args.collect or args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    settings_file = out / "settings.json"
    if args.collect:
        settings = json.loads(settings_file.read_text())
    else:
        overrides = (REDUCED if args.reduced else []) + args.overrides
        settings = {"overrides": overrides, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                    "date": time.strftime("%Y-%m-%d"),
                    "threads": _run_threads(),
                    "load": "shared with other jobs" if os.getloadavg()[0] > 1.5 else "otherwise idle"}
        settings_file.write_text(json.dumps(settings, indent=1))
    budget = "default configuration" if not settings["overrides"] else "overrides " + " ".join(
        f"`{o}`" for o in settings["overrides"])
    header = (f"Generated by `scripts/problem_table.py` on {settings['date']} ({settings['machine']}, "
              f"{settings.get('load', 'shared with other jobs')}, torch threads per run: {settings['threads']}): "
              f"KAN (`model=kan`) and its MLP baseline, "
              f"{budget}. Wall time is `train_seconds` of each model.")
    if not args.collect:
        for stem in args.problems:
            print(f"[problem_table] {stem}", flush=True)
            run_problem(stem, out, settings["overrides"])
            (out / "table.md").write_text(table(out, header))
            if not args.no_docs:
                write_section(args.docs, START, END, table(out, header))
    text = table(out, header)
    (out / "table.md").write_text(text)
    if not args.no_docs:
        write_section(args.docs, START, END, text)
    print(text)


if __name__ == "__main__":
    main()
