"""Time one Levenberg-Marquardt system build (``J^T J``, ``J^T r`` over chunks) of a hard-constrained KAN,
with the lift's derivatives given per chunk (``jet_constants``, the default) against computing them for
every point inside ``vmap`` (the holders list emptied: what the Jacobian did before), side by side in one
process, and the loss value beside them for scale.

    python scripts/bench_lm_jacobian.py                                  # poisson2d, KAN [2,10,1], grids 5 20 40
    python scripts/bench_lm_jacobian.py --problem helmholtz2d --grids 10 --repeats 7

Each timing is the minimum over ``--repeats`` alternating calls (the first call of the default path, which
computes and keeps the constants, is included in its list); the machine's load average is printed, as
timings on a shared machine are comparable only as ratios within one run. The two systems' normal
equations are checked equal to rounding before anything is printed.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from kanpde import KAN, HardDirichlet, Sampler
from kanpde.io.files import import_object
from kanpde.pde.hard import soft_problem
from kanpde.training.loss import PinnLeastSquares, derivative_plans

PROBLEMS = {"poisson2d": "kanpde.problems.poisson2d.Poisson2D", "helmholtz2d": "kanpde.problems.helmholtz2d.Helmholtz2D",
            "poisson5d": "kanpde.problems.poisson5d.Poisson5D"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="poisson2d", choices=sorted(PROBLEMS))
    parser.add_argument("--grids", type=int, nargs="+", default=[5, 20, 40])
    parser.add_argument("--n-interior", type=int, default=4000)
    parser.add_argument("--n-boundary", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem = import_object(PROBLEMS[args.problem])()
    fit_problem = soft_problem(problem)
    batch = fit_problem.sample(Sampler(seed=0), args.n_interior, args.n_boundary)
    print(f"{args.problem}, hard_bc, {batch.interior.shape[0]} interior points, torch threads {args.threads}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| grid | parameters | loss value [s] | J^T J, lift per point [s] | J^T J, lift per chunk [s] | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for grid in args.grids:
        torch.manual_seed(0)
        model = HardDirichlet(KAN([problem.dim, 10, problem.n_outputs], grid_size=grid, dtype=torch.float64), problem)
        plans = derivative_plans(model, fit_problem, batch)
        given = PinnLeastSquares(model, fit_problem, batch, plans=plans)
        per_point = PinnLeastSquares(model, fit_problem, batch, plans=plans)
        per_point._holders = []  # no constants given: the lift is computed inside vmap, point by point
        times: dict[str, list[float]] = {"value": [], "point": [], "chunk": []}
        for _ in range(args.repeats):
            outs = {}
            for name, run in (("chunk", given.normal_equations), ("point", per_point.normal_equations),
                              ("value", given.value)):
                start = time.perf_counter()
                outs[name] = run()
                times[name].append(time.perf_counter() - start)
            a, b = outs["chunk"], outs["point"]
            scale = float(b[0].abs().max())
            assert torch.allclose(a[0], b[0], rtol=0, atol=1e-12 * scale) and abs(a[2] - b[2]) <= 1e-12 * max(b[2], 1.0)
        best = {k: min(v) for k, v in times.items()}
        n_params = sum(p.numel() for p in model.parameters())
        print(f"| {grid} | {n_params:,} | {best['value']:.4f} | {best['point']:.3f} | {best['chunk']:.3f} | "
              f"{best['point'] / best['chunk']:.1f} |")


if __name__ == "__main__":
    main()
