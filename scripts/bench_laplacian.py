"""What carrying ``u.laplacian()`` as one trace row saves in the forward engine ("forward Laplacian").

    python scripts/bench_laplacian.py                  # 2-D, 3-D and 5-D Poisson, KAN and MLP, 2 threads
    python scripts/bench_laplacian.py --dims 2 --points 1024 --threads 1

For each problem (``poisson2d``, ``poisson3d``, ``poisson5d``: residual ``u.laplacian() - f``) and model
(KAN ``[d, 10, 1]`` at grid 20, MLP ``[d, 50, 50, 50, 1]`` tanh), one loss + gradient evaluation (the
trainer's ``loss_terms`` and ``backward``, float64, Sobol points) is timed with two derivative plans for
the interior points: ``pairs`` carries the ``d`` pure second derivatives ``u_ii`` and sums them,
``trace`` (what the probe plans for this residual) carries their sum as one row. Both evaluate the same
loss (checked to 1e-10 relative) in the same process, rounds interleaved; the medians and their ratio
are printed. Threads are pinned (``torch.set_num_threads``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

PROBLEMS = {2: ("poisson2d", "Poisson2D"), 3: ("poisson3d", "Poisson3D"), 5: ("poisson5d", "Poisson5D")}


def measure(kind: str, dim: int, n_points: int, rounds: int, steps: int) -> dict:
    """Median seconds per step with the ``pairs`` and ``trace`` plans for one model and problem."""
    import importlib

    import torch

    from kanpde import KAN, MLP
    from kanpde.derivatives.jet import DerivativePlan
    from kanpde.pde.sampling import Sampler
    from kanpde.training.loss import derivative_plans, loss_terms, weighted_loss

    module, name = PROBLEMS[dim]
    problem = getattr(importlib.import_module(f"kanpde.problems.{module}"), name)()
    batch = problem.sample(Sampler(method="sobol", seed=0), n_points, max(16, n_points // 4)).to(torch.float64, "cpu")
    torch.manual_seed(0)
    if kind == "kan":
        model = KAN([dim, 10, 1], grid_size=20, dtype=torch.float64)
    else:
        model = MLP([dim, 50, 50, 50, 1], activation="tanh", dtype=torch.float64)
    trace = derivative_plans(model, problem, batch, "forward")
    if trace["pde"].traces == ():
        raise SystemExit(f"{name}'s residual does not ask for u.laplacian(): nothing to compare")
    pairs = dict(trace, pde=DerivativePlan.of([(i, i) for i in range(dim)]))
    plans = {"pairs": pairs, "trace": trace}

    def step(plan: dict) -> float:
        model.zero_grad(set_to_none=True)
        loss = weighted_loss(loss_terms(model, problem, batch, "forward", plan), problem, 0.01)
        loss.backward()
        return loss.item()

    losses = {key: step(plan) for key, plan in plans.items()}  # also the warm-up (kernels compiled here)
    if abs(losses["trace"] - losses["pairs"]) > 1e-10 * abs(losses["pairs"]):
        raise SystemExit(f"{kind} {name}: the two plans disagree ({losses})")
    times: dict[str, list[float]] = {key: [] for key in plans}
    for _ in range(rounds):
        for key, plan in plans.items():
            start = time.perf_counter()
            for _ in range(steps):
                step(plan)
            times[key].append((time.perf_counter() - start) / steps)
    med = {key: statistics.median(v) for key, v in times.items()}
    return {"model": kind, "dim": dim, "n_points": batch.interior.shape[0], "pairs_s": med["pairs"],
            "trace_s": med["trace"], "ratio": med["trace"] / med["pairs"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="*", default=[2, 3, 5], choices=sorted(PROBLEMS))
    parser.add_argument("--models", nargs="*", default=["kan", "mlp"], choices=["kan", "mlp"])
    parser.add_argument("--points", type=int, default=4096, help="interior points (boundary: a quarter as many)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per plan")
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    args = parser.parse_args(argv)
    import torch

    from kanpde.app.runtime import tune_malloc

    tune_malloc()  # as the command line does
    torch.set_num_threads(args.threads)
    print(f"forward Laplacian: torch {torch.__version__}, {args.threads} thread(s), float64, {args.points} interior "
          f"points, median of {args.rounds} interleaved rounds of {args.steps} steps")
    print(f"{'model':>5} {'problem':>10} | {'pairs [ms]':>10} {'trace [ms]':>10} | trace/pairs")
    for kind in args.models:
        for dim in args.dims:
            r = measure(kind, dim, args.points, args.rounds, args.steps)
            print(f"{kind:>5} {PROBLEMS[dim][0]:>10} | {r['pairs_s'] * 1e3:10.2f} {r['trace_s'] * 1e3:10.2f} | "
                  f"{r['ratio']:11.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
