"""Peak memory of training against the number of interior points, for the default KAN and the default MLP.

    python scripts/bench_memory.py                                     # 1e4 ... 2e6 points, KAN and MLP
    python scripts/bench_memory.py --sizes 10000 100000 --models mlp   # some cases only
    python scripts/bench_memory.py --docs docs/performance.md          # and the table in the docs

Each case (model, interior points) runs in a fresh Python process, one at a time: poisson2d with the
model of ``conf/model/<model>.yaml`` (no baseline), ``trainer.n_interior`` points (and the default
boundary points), a few training steps through the trainer (``--stages``: by default 2 Adam steps, each
a loss and gradient over all points, then the stage's final loss terms; an L-BFGS stage, at most 3
iterations a step, and grid extension can be added, e.g. ``--stages "[{optimizer: adam, steps: 2},
{optimizer: lbfgs, steps: 1, grid_size: 10}]"``), then the run's default evaluation (201 x 201 grid). The process
reports its peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) after importing,
after sampling the points and at the end. ``--chunk-size`` sets ``trainer.chunk_size`` (``null``: the
loss over all points at once). Results go to ``--out`` (JSON) after every case; a case already there
is skipped, so an interrupted sweep resumes where it stopped (``--table-only``: just the table of what
``--out`` holds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _docs import write_section

SIZES = [10_000, 100_000, 500_000, 1_000_000, 2_000_000]
MODELS = ["kan", "mlp"]
STAGES = "[{optimizer: adam, steps: 2}]"
LIMIT_MB = 4096.0  # the target: at most 4 GB at 2e6 interior points
START, END = "<!-- bench-memory:start -->", "<!-- bench-memory:end -->"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def run_case(model: str, n_interior: int, chunk_size: str, stages: str, threads: int) -> dict:
    """One case, in this process: train and evaluate as described in the module docstring."""
    import torch

    from kanpde.app.config import build_spec
    from kanpde.evaluate import evaluate
    from kanpde.training import fit

    torch.set_num_threads(threads)
    after_import = _peak_mb()
    cfg = _compose([f"model={model}", "baseline=null", "problem=poisson2d", "device=cpu", "output.figures=false",
                    f"trainer.n_interior={n_interior}", f"trainer.chunk_size={chunk_size}",
                    f"trainer.stages={stages}", "trainer.optimizers.lbfgs.max_iter=3"])
    with tempfile.TemporaryDirectory() as tmp:
        spec = build_spec(cfg, Path(tmp), "bench-memory")
    torch.manual_seed(spec.seed)
    net = spec.models[0].make(spec.dtype, spec.device)
    sampler = spec.make_sampler()
    start = time.perf_counter()
    spec.problem.sample(sampler, spec.n_interior, spec.n_boundary)  # what the first stage draws
    after_sampling = _peak_mb()
    sampler = spec.make_sampler()  # fit draws the same points again from a fresh sampler
    result = fit(net, spec.fit_problem, spec.stages, sampler=sampler, n_interior=spec.n_interior,
                 n_boundary=spec.n_boundary, pde_weight=spec.pde_weight, engine=spec.engine,
                 divergence_factor=spec.divergence_factor, chunk_size=spec.chunk_size)
    train_seconds = time.perf_counter() - start
    ev = spec.eval
    metrics = evaluate(result.model, spec.problem, ev.n_per_axis, engine=spec.engine, chunk_size=ev.chunk_size,
                       max_points=ev.max_points).metrics
    return {"model": model, "n_interior": n_interior, "chunk_size": chunk_size, "threads": threads,
            "n_params": metrics["n_params"], "steps": len(result.history.steps),
            "final_loss": result.history.stages[-1]["loss"], "l2_rel": metrics["l2_rel"],
            "seconds": time.perf_counter() - start, "train_seconds": train_seconds,
            "rss_import_mb": after_import, "rss_sampling_mb": after_sampling, "peak_rss_mb": _peak_mb()}


def _key(model: str, n: int, chunk: str) -> str:
    return f"{model}:{n}:{chunk}"


def _save(path: Path, results: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def table(results: dict, chunk: str, sizes: list[int], models: list[str]) -> str:
    """The docs table: peak RSS and seconds per interior-point count, one column pair per model."""
    head = "| interior points | " + " | ".join(f"{m.upper()} peak RSS (MB) | {m.upper()} wall s" for m in models) + " |"
    rows = [head, "|" + "---:|" * (1 + 2 * len(models))]
    for n in sizes:
        cells = []
        for m in models:
            rec = results.get(_key(m, n, chunk))
            cells += [f"{rec['peak_rss_mb']:.0f}", f"{rec['seconds']:.0f}"] if rec else ["", ""]
        rows.append(f"| {n:,} | " + " | ".join(cells) + " |")
    recs = [r for r in results.values() if r["chunk_size"] == chunk]
    base = max((r["rss_import_mb"] for r in recs), default=0.0)
    note = (f"\n`trainer.chunk_size={chunk}`, {recs[0]['threads'] if recs else '?'} threads, float64; "
            f"after importing torch and kanpde a process holds about {base:.0f} MB. Target: at most "
            f"{LIMIT_MB:.0f} MB at 2,000,000 interior points. Wall times include the process's start and "
            f"evaluation and depend on the machine's load: they are not a speed benchmark.\n")
    return "\n".join(rows) + "\n" + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=SIZES, help="interior point counts")
    parser.add_argument("--models", nargs="*", default=MODELS, choices=MODELS)
    parser.add_argument("--chunk-size", default="32768", help="trainer.chunk_size (an integer, or null)")
    parser.add_argument("--stages", default=STAGES, help="trainer.stages of every case")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in each case")
    parser.add_argument("--out", type=Path, default=Path("bench_memory.json"), help="results (JSON), resumable")
    parser.add_argument("--docs", type=Path, default=None, help="write the table between the markers of this page")
    parser.add_argument("--table-only", action="store_true", help="run nothing: the table of the results in --out")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.sizes) or args.threads < 1:
        parser.error("sizes and threads must be positive")
    if args.chunk_size != "null" and not (args.chunk_size.isdigit() and int(args.chunk_size) > 0):
        parser.error(f"--chunk-size must be a positive integer or null, got {args.chunk_size!r}")
    if args.child:  # one case, reported as one JSON line
        print(json.dumps(run_case(args.models[0], args.sizes[0], args.chunk_size, args.stages, args.threads)))
        return 0
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for model in args.models:
        for n in args.sizes:
            key = _key(model, n, args.chunk_size)
            if args.table_only:
                continue
            if key in results:
                print(f"{key}: done before ({results[key]['peak_rss_mb']:.0f} MB)", flush=True)
                continue
            cmd = [sys.executable, __file__, "--child", "--models", model, "--sizes", str(n), "--chunk-size",
                   args.chunk_size, "--stages", args.stages, "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                print(f"{key}: failed (exit {proc.returncode}): {tail}", flush=True)
                continue
            results[key] = json.loads(proc.stdout.strip().splitlines()[-1])
            _save(args.out, results)
            rec = results[key]
            print(f"{key}: peak RSS {rec['peak_rss_mb']:.0f} MB, {rec['seconds']:.0f} s", flush=True)
    text = table(results, args.chunk_size, sorted(set(args.sizes)), args.models)
    print(text)
    if args.docs is not None:
        write_section(args.docs, START, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
