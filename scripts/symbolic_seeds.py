"""Run the poisson2d_symbolic preset for several seeds and thread counts and tabulate the outcomes.

    python scripts/symbolic_seeds.py --out symbolic-seeds                  # seeds 0-4 x threads 1, 2; docs updated
    python scripts/symbolic_seeds.py --out symbolic-seeds --seeds 3 --threads 2 --no-docs   # one run
    python scripts/symbolic_seeds.py --collect symbolic-seeds              # table from finished runs only

Each run is ``python -m kanpde experiment=poisson2d_symbolic seed=S threads=T`` in ``<out>/s<S>_t<T>``, one
after the other. The script is resumable: a run whose directory holds ``wall.json`` (written, atomically,
after the run ends) is not run again, so an interrupted sweep continues where it stopped and partial
results survive. A run counts as recovering the formula when its ``formula.txt``, parsed by SymPy, is
within 1e-6 of sin(pi x) sin(pi y^2) on a 401 x 401 grid of [-1, 1]^2; a run without ``formula.txt``
reports its status (``symbolic_failed``) and its one-line failure. Nothing in the table is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _docs import write_section

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "interpretability.md"
START, END = "<!-- symbolic-seeds:start -->", "<!-- symbolic-seeds:end -->"
TOL = 1e-6
N_GRID = 401


def run_dir(out: Path, seed: int, threads: int) -> Path:
    return out / f"s{seed}_t{threads}"


def run_one(out: Path, seed: int, threads: int) -> float:
    """One preset run in its own directory (output in ``<dir>.log``); its wall time, also written to ``wall.json``."""
    target = run_dir(out, seed, threads)
    cmd = [sys.executable, "-m", "kanpde", "experiment=poisson2d_symbolic", f"seed={seed}", f"threads={threads}",
           f"hydra.run.dir={target}", "force=true"]
    start = time.perf_counter()
    with open(out / f"{target.name}.log", "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    wall = time.perf_counter() - start
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / ".wall.json.tmp"
    tmp.write_text(json.dumps({"wall_seconds": wall, "returncode": rc}))
    os.replace(tmp, target / "wall.json")
    return wall


def formula_error(text: str, n: int = N_GRID) -> float:
    """Max |formula - sin(pi x) sin(pi y^2)| on an ``n`` x ``n`` grid of [-1, 1]^2."""
    import sympy

    x, y = sympy.symbols("x y")
    f = sympy.lambdify((x, y), sympy.sympify(text.strip(), locals={"x": x, "y": y}), "numpy")
    g = np.linspace(-1.0, 1.0, n)
    X, Y = np.meshgrid(g, g, indexing="ij")
    value = np.broadcast_to(np.asarray(f(X, Y), dtype=np.float64), X.shape)
    return float(np.abs(value - np.sin(np.pi * X) * np.sin(np.pi * Y**2)).max())


def outcome(path: Path) -> dict[str, object] | None:
    """What one finished run says: status, max error of its formula, restarts used, wall and train time; None if not run."""
    if not (path / "wall.json").is_file():
        return None
    wall = json.loads((path / "wall.json").read_text())
    row: dict[str, object] = {"wall": wall["wall_seconds"], "returncode": wall["returncode"]}
    try:
        metrics = json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError) as exc:
        return {**row, "status": f"no metrics.json ({type(exc).__name__})"}
    log = path / "kanpde.log"
    tried = re.findall(r"restart (\d+)/\d+: stages", log.read_text()) if log.is_file() else []
    row.update(status=metrics.get("status"), failure=metrics.get("failure"), train=metrics.get("train_seconds"),
               initialisations=int(tried[-1]) if tried else None)
    formula = path / "formula.txt"
    row["formula"] = formula.is_file()
    if row["formula"]:
        try:
            row["error"] = formula_error(formula.read_text())
        except Exception as exc:  # a formula SymPy cannot evaluate is a failure of the pipeline, reported
            row["error"] = float("nan")
            print(f"{path.name}: formula not evaluable: {exc}", file=sys.stderr)
    return row


def table(out: Path, seeds: list[int], threads: list[int], header: str) -> str:
    rows = [header, "", "| seed | threads | status | formula.txt | max error of the formula | initialisations | "
            "wall [s] | train [s] |", "|---|---|---|---|---|---|---|---|"]
    failures = []
    for seed in seeds:
        for t in threads:
            row = outcome(run_dir(out, seed, t))
            if row is None:
                rows.append(f"| {seed} | {t} | not run | | | | | |")
                continue
            err = f"{row['error']:.1e}" if "error" in row else "—"
            recovered = " (recovered)" if "error" in row and row["error"] <= TOL else ""
            inits = "—" if row.get("initialisations") is None else str(row["initialisations"])
            train = "—" if row.get("train") is None else f"{row['train']:.0f}"
            rows.append(f"| {seed} | {t} | {row['status']}{recovered} | {'yes' if row.get('formula') else 'no'} | "
                        f"{err} | {inits} | {row['wall']:.0f} | {train} |")
            if row.get("failure"):
                failures.append(f"- seed {seed}, threads {t}: {row['failure']}")
    return "\n".join(rows + ([""] + failures if failures else [])) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("symbolic-seeds"))
    parser.add_argument("--collect", type=Path, help="only rebuild the table from the runs in this directory")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--docs", type=Path, default=DOCS, metavar="PATH",
                        help="rewrite the table between the markers of this page (default: docs/interpretability.md)")
    parser.add_argument("--no-docs", action="store_true", help="leave the docs page alone (table.md and stdout only)")
    args = parser.parse_args()
    if any(t < 1 for t in args.threads) or any(s < 0 for s in args.seeds):
        parser.error("seeds must be >= 0 and threads >= 1")
    out = (args.collect or args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    if not args.collect:
        for seed in args.seeds:
            for t in args.threads:
                if (run_dir(out, seed, t) / "wall.json").is_file():
                    continue  # finished before: resumable
                print(f"seed {seed} threads {t}: {run_one(out, seed, t):.0f} s wall", flush=True)
    header = (
        f"Generated by `scripts/symbolic_seeds.py` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, "
        f"{os.cpu_count()} cores, shared with other jobs). Recovered: `formula.txt` "
        f"parsed by SymPy is within {TOL:g} of sin(πx) sin(πy²) on a {N_GRID} × {N_GRID} grid of [-1, 1]²; "
        "initialisations: how many the restarts trained; wall: the whole command; train: its `train_seconds`."
    )
    text = table(out, args.seeds, args.threads, header)
    (out / "table.md").write_text(text)
    print(text)
    if not args.no_docs:
        write_section(args.docs, START, END, text)


if __name__ == "__main__":
    main()
