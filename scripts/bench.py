"""Side-by-side cost of one PINN loss + gradient evaluation: kanpde's engines, pykan and an MLP.

    python scripts/bench.py                       # full: grids 5, 10, 20, 50 at 10^4 and 10^5 interior points
    python scripts/bench.py --quick --json out.json   # grids 5, 20, 50 at 10^4 interior points (minutes)

What is timed, for every implementation, on the same points and dtype (float64 by default): one
forward pass, the Poisson residual ``u_xx + u_yy - f`` on the interior points (kanpde: ``u.laplacian() - f``,
carried as one trace row by the forward engine), the Dirichlet residual on
the boundary points, the loss ``0.01 * mean(r_pde^2) + mean(r_bc^2)`` and its backward pass to the
parameters -- i.e. one optimizer step's worth of work (the paper's Poisson problem on [-1, 1]^2,
Sobol points, 800 boundary points per 10^4 interior points).

Implementations (``impl`` in the JSON records):

* ``kanpde-forward``:   kanpde KAN [2, 10, 1], k = 3, forward derivative engine (``engine=forward``).
* ``kanpde-autograd``:  the same KAN through the autograd engine (nested reverse mode over the same
  local-support forward pass).
* ``pykan``:            pykan's ``KAN(width=[2, 10, 1], grid=G, k=3)`` in its ``speed()`` mode (symbolic
  branch and activation saving off), residual by its PDE tutorial's nested ``batch_jacobian``
  (``torch.autograd.functional.jacobian`` with ``create_graph=True``); skipped with a message if pykan
  is not installed (``pip install pykan``, plus its undeclared imports scikit-learn and pandas).
* ``mlp-autograd`` / ``mlp-forward``: kanpde's MLP [2, 100, 100, 100, 100, 1] (tanh) through either
  engine (no grid: ``"grid": null``).

Also printed, not in the JSON: ``dense-autograd``, the autograd engine over the foundation's original
dense KAN layer (full ``(n, in, G + k)`` Cox–de Boor basis and one contraction), to show what the
local-support forward pass alone changed (not run by ``--quick`` unless asked for with ``--impls``).

Each configuration runs in a fresh subprocess with the stated number of intra-op threads: warm-up, then
the median over repeated steps. Peak memory is, on CPU, the growth of the process's maximum resident
set size (``getrusage`` ``ru_maxrss``) from after setup to after the timed steps -- everything torch
allocates for the step, graph included; on CUDA, ``torch.cuda.max_memory_allocated``. Setup ends with
one step of the same model on 16 points, so one-time costs (compiled kernels loaded, lazy
initialisation) are not counted as the step's memory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPLS = ("kanpde-forward", "kanpde-autograd", "dense-autograd", "pykan", "mlp-autograd", "mlp-forward")
JSON_IMPLS = ("kanpde-forward", "kanpde-autograd", "pykan", "mlp-autograd", "mlp-forward")
GRID_FREE = ("mlp-autograd", "mlp-forward")
PDE_WEIGHT = 0.01


# -- one configuration, in its own process ------------------------------------------------------------


def _points(n_interior: int, dtype, device):
    """Interior and boundary points of the Poisson problem (deterministic Sobol, as the trainer draws them)."""
    import torch

    from kanpde.problems.poisson2d import Poisson2D
    from kanpde.pde.sampling import Sampler

    problem = Poisson2D()
    batch = problem.sample(Sampler(method="sobol", seed=0), n_interior, max(4, round(0.08 * n_interior)))
    batch = batch.to(dtype, torch.device(device))
    return problem, batch


def _kanpde_step(impl: str, grid: int | None, problem, batch, dtype, device):
    import torch

    from kanpde import KAN, MLP
    from kanpde.training.loss import derivative_plans, loss_terms, weighted_loss

    torch.manual_seed(0)
    if impl.startswith("mlp"):
        model = MLP([2, 100, 100, 100, 100, 1], activation="tanh", dtype=dtype, device=device)
    else:
        model = KAN([2, 10, 1], grid_size=grid, spline_order=3, dtype=dtype, device=device)
    if impl == "dense-autograd":
        _use_dense_kan_layers(model)
    engine = "forward" if impl.endswith("forward") else "autograd"
    plans = derivative_plans(model, problem, batch, engine)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = weighted_loss(loss_terms(model, problem, batch, engine, plans), problem, PDE_WEIGHT)
        loss.backward()

    return step


def _use_dense_kan_layers(model) -> None:
    """The foundation's KANLinear.forward: the dense basis (n, in, G + k) and one contraction."""
    import types

    from torch.nn import functional as F

    from kanpde.models.bspline import bspline_basis

    def dense_forward(layer, x):
        n = x.shape[0]
        base = F.linear(layer.base_activation(x), layer.base_weight)  # (n, out)
        basis = bspline_basis(x, layer.grid, layer.spline_order).reshape(n, -1)  # (n, in*C)
        return base + F.linear(basis, layer.scaled_spline_weight.reshape(layer.out_features, -1))

    for layer in model.layers:
        layer.forward = types.MethodType(dense_forward, layer)


def _pykan_step(grid: int, problem, batch, dtype, device):
    import torch

    try:
        from kan import KAN as PyKAN
    except ImportError as exc:  # pykan missing, or one of its undeclared imports (sklearn, pandas)
        raise SystemExit(f"SKIP pykan is not importable ({exc}); pip install pykan scikit-learn pandas") from None

    torch.set_default_dtype(dtype)  # pykan builds its parameters in the default dtype
    with tempfile.TemporaryDirectory() as ckpt:
        model = PyKAN(width=[2, 10, 1], grid=grid, k=3, seed=1, auto_save=False, ckpt_path=ckpt, device=device)
    model = model.speed()  # pykan's own speed mode: symbolic branch, activation saving, autosave off
    x_i = batch.interior
    x_b = torch.cat([b.x for b in batch.boundary.values()])
    source = problem.f(x_i)[:, None]

    def batch_jacobian(func, x, create_graph=False):  # as in pykan's PDE tutorial
        def _func_sum(x):
            return func(x).sum(dim=0)

        return torch.autograd.functional.jacobian(_func_sum, x, create_graph=create_graph).permute(1, 0, 2)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        sol_d1_fun = lambda x: batch_jacobian(model, x, create_graph=True)[:, 0, :]  # noqa: E731
        sol_d2 = batch_jacobian(sol_d1_fun, x_i, create_graph=True)
        lap = torch.sum(torch.diagonal(sol_d2, dim1=1, dim2=2), dim=1, keepdim=True)
        pde_loss = torch.mean((lap - source) ** 2)
        bc_loss = torch.mean(model(x_b) ** 2)
        (PDE_WEIGHT * pde_loss + bc_loss).backward()

    return step


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def worker(cfg: dict) -> dict:
    import torch

    from kanpde.app.runtime import tune_malloc

    if cfg.get("tune_malloc", True):
        tune_malloc()  # as the command line does; the same for every implementation
    torch.set_num_threads(cfg["threads"])
    dtype = getattr(torch, cfg["dtype"])
    device = cfg["device"]
    problem, batch = _points(cfg["n_interior"], dtype, device)

    def make_step(points):
        if cfg["impl"] == "pykan":
            return _pykan_step(cfg["grid"], problem, points, dtype, device)
        return _kanpde_step(cfg["impl"], cfg["grid"], problem, points, dtype, device)

    # One step of the same model on a few points first: one-time costs (compiled kernels loaded from
    # numba's cache, lazy initialisation inside torch) stay out of the peak memory below, which is then
    # the step's own working memory.
    make_step(_points(16, dtype, device)[1])()
    step = make_step(batch)
    cuda = torch.device(device).type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    rss_before = _max_rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(cfg["warmup"]):
        step()
    sync()
    times: list[float] = []
    budget_end = time.perf_counter() + cfg["budget_s"]
    while len(times) < cfg["repeats"] and (len(times) < cfg["min_repeats"] or time.perf_counter() < budget_end):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _max_rss_mb() - rss_before
    n_points = batch.interior.shape[0] + sum(b.x.shape[0] for b in batch.boundary.values())
    return {
        "impl": cfg["impl"],
        "grid": cfg["grid"],
        "n_points": n_points,
        "median_s": statistics.median(times),
        "peak_mb": round(peak, 1),
        "repeats": len(times),
        "times_s": [round(t, 6) for t in times],
    }


# -- driver -------------------------------------------------------------------------------------------


def _run_config(cfg: dict, timeout: float) -> dict | str:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(cfg["threads"])
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(cfg)],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("RESULT ", "SKIP "))]
    if proc.returncode == 0 and lines and lines[-1].startswith("RESULT "):
        return json.loads(lines[-1][len("RESULT ") :])
    if lines and lines[-1].startswith("SKIP "):
        return lines[-1]
    err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return f"failed (exit {proc.returncode}): {err}"


def _fmt_ms(rec: dict | None) -> str:
    return f"{rec['median_s'] * 1e3:9.1f}" if rec else f"{'-':>9}"


def _fmt_mb(rec: dict | None) -> str:
    return f"{rec['peak_mb']:7.0f}" if rec else f"{'-':>7}"


def _ratio(a: dict | None, b: dict | None) -> float:
    return a["median_s"] / b["median_s"] if a and b else math.nan


def _table(results: list[dict], grids: list[int], sizes: list[int]) -> tuple[str, dict]:
    def find(impl: str, grid: int | None, n: int) -> dict | None:
        key = None if impl in GRID_FREE else grid
        return next((r for r in results if r["impl"] == impl and r["grid"] == key and r["n_points"] == n), None)

    header = (
        f"{'points':>8} {'G':>3} | {'forward':>9} {'autograd':>9} {'dense-ag':>9} {'pykan':>9} {'mlp-ag':>9} "
        f"{'mlp-fwd':>9} | {'pykan/':>7} {'autog/':>7} {'dense/':>7} {'mlp-ag/':>7} | peak MB: {'fwd':>7} "
        f"{'autog':>7} {'pykan':>7} {'mlp-ag':>7}"
    )
    sub = f"{'':>8} {'':>3} | {'median time per step [ms]':^59} | {'ratios to forward':^31} |"
    lines = [sub, header, "-" * len(header)]
    summary: dict = {}
    for n in sizes:
        for g in grids:
            rec = {i: find(i, g, n) for i in IMPLS}
            if not any(rec.values()):
                continue
            fwd = rec["kanpde-forward"]
            ratios = [_ratio(rec[i], fwd) for i in ("pykan", "kanpde-autograd", "dense-autograd", "mlp-autograd")]
            lines.append(
                f"{n:>8} {g:>3} | "
                + " ".join(_fmt_ms(rec[i]) for i in IMPLS)
                + " | "
                + " ".join(f"{r:7.1f}" for r in ratios)
                + " |          "
                + " ".join(_fmt_mb(rec[i]) for i in ("kanpde-forward", "kanpde-autograd", "pykan", "mlp-autograd"))
            )
            summary[(n, g)] = rec
    return "\n".join(lines), summary


def _verdicts(summary: dict, sizes: list[int], grids: list[int]) -> list[str]:
    n = min(sizes)
    out = []
    at20 = summary.get((n, 20))
    if at20:
        fwd = at20["kanpde-forward"]
        for impl, target, label in (
            ("pykan", 50.0, "fast engine >= 50x faster than pykan"),
            ("kanpde-autograd", 10.0, "fast engine >= 10x faster than kanpde's autograd engine"),
            ("dense-autograd", 10.0, "(for reference) >= 10x faster than autograd over the foundation's dense KAN layer"),
        ):
            r = _ratio(at20[impl], fwd)
            status = "n/a" if math.isnan(r) else ("MET" if r >= target else "MISSED")
            out.append(f"  [{status:>6}] {label}: {r:.1f}x (grid 20, {n} points)")
        r = _ratio(at20["mlp-autograd"], fwd)
        status = "n/a" if math.isnan(r) else ("MET" if r >= 1.0 else "MISSED")
        out.append(f"  [{status:>6}] fast engine no slower than MLP 4x100 (autograd): MLP/KAN = {r:.1f}x")
    for size in sizes:
        lo, hi = summary.get((size, min(grids))), summary.get((size, max(grids)))
        if lo and hi and lo["kanpde-forward"] and hi["kanpde-forward"]:
            r = _ratio(hi["kanpde-forward"], lo["kanpde-forward"])
            status = "MET" if r <= 1.3 else "MISSED"
            out.append(f"  [{status:>6}] cost flat in grid size: grid {max(grids)} / grid {min(grids)} = {r:.2f} ({size} points)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="grids 5, 20, 50 at 10^4 interior points only")
    parser.add_argument("--json", type=Path, help="write the records to this JSON file")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads per run (torch.set_num_threads)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--grids", type=int, nargs="*", help="override the grid sizes")
    parser.add_argument("--sizes", type=int, nargs="*", help="override the interior point counts")
    parser.add_argument("--impls", nargs="*", choices=IMPLS, help="default: all (--quick: all but dense-autograd)")
    parser.add_argument("--repeats", type=int, default=30, help="at most this many timed steps per configuration")
    parser.add_argument("--budget", type=float, default=8.0, help="seconds of timed steps per configuration (>= 3 steps)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before one configuration is given up")
    parser.add_argument("--no-tune-malloc", dest="tune_malloc", action="store_false",
                        help="leave glibc's allocator at its defaults (by default every run, of every implementation, "
                        "applies kanpde.app.runtime.tune_malloc as the command line does)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        try:
            print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        except SystemExit as exc:
            if isinstance(exc.code, str) and exc.code.startswith("SKIP"):
                print(exc.code, flush=True)
                return 0
            raise
        return 0

    grids = args.grids or ([5, 20, 50] if args.quick else [5, 10, 20, 50])
    impls = args.impls or [i for i in IMPLS if not (args.quick and i == "dense-autograd")]
    sizes = args.sizes or ([10_000] if args.quick else [10_000, 100_000])
    import torch

    print(f"kanpde benchmark: torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, device {args.device}, dtype {args.dtype}")
    print(f"threads: torch.set_num_threads({args.threads}) and OMP/MKL_NUM_THREADS={args.threads} in every run; "
          f"each configuration in a fresh process: 2 warm-up steps, then the median of up to {args.repeats} steps "
          f"(at least 3, about {args.budget:.0f} s)")
    print("allocator: " + ("glibc mmap/trim thresholds raised in every run (kanpde.app.runtime.tune_malloc, as the CLI does)"
                           if args.tune_malloc else "glibc defaults (--no-tune-malloc)"))
    if args.device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(torch.device(args.device)) if torch.cuda.is_available() else 'not available'}")
    print("peak memory: " + ("torch.cuda.max_memory_allocated" if args.device.startswith("cuda")
                              else "growth of the process's max RSS over the timed steps (getrusage)"))
    load_start = os.getloadavg()
    print(f"load average at start (1/5/15 min): {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    results: list[dict] = []
    skipped: dict[str, str] = {}
    start = time.perf_counter()
    for n in sizes:
        for impl in impls:
            for g in [None] if impl in GRID_FREE else grids:
                if impl in skipped:
                    continue
                cfg = {
                    "impl": impl, "grid": g, "n_interior": n, "threads": args.threads, "device": args.device,
                    "dtype": args.dtype, "warmup": 2, "repeats": args.repeats, "min_repeats": 3,
                    "budget_s": args.budget, "tune_malloc": args.tune_malloc,
                }
                res = _run_config(cfg, timeout=args.timeout)
                if isinstance(res, str):
                    print(f"  {impl} grid {g} n {n}: {res}")
                    if res.startswith("SKIP"):
                        skipped[impl] = res
                    continue
                results.append(res)
                print(f"  {impl:>16} grid {str(g):>4} points {res['n_points']:>7}: {res['median_s'] * 1e3:9.2f} ms "
                      f"(median of {res['repeats']}), peak {res['peak_mb']:.0f} MB", flush=True)
    n_points = sorted({r["n_points"] for r in results})
    table, summary = _table(results, grids, n_points)
    print()
    print(table)
    print()
    print("targets (ratios within this run):")
    for line in _verdicts(summary, n_points, grids):
        print(line)
    for impl, why in skipped.items():
        print(f"  {impl}: {why}")
    load_end = os.getloadavg()
    print(f"total benchmark time {time.perf_counter() - start:.0f} s; load average at end: {load_end[0]:.2f} "
          f"{load_end[1]:.2f} {load_end[2]:.2f}")
    if load_start[0] > 1.0 and args.threads > 1 and not args.device.startswith("cuda"):
        print(f"warning: other processes were using the CPUs; with {args.threads} threads per run a busy machine "
              "stalls every parallel region (times then mostly measure the neighbours). Compare with --threads 1.")
    if args.json:
        records = [{k: r[k] for k in ("impl", "grid", "n_points", "median_s", "peak_mb")} for r in results if r["impl"] in JSON_IMPLS]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1) + "\n")
        print(f"wrote {len(records)} records to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
