"""How sparsification leaves the poisson2d_symbolic network: hidden-node importances after the preset's first
four stages (train, sparsify), for several seeds and sparsity settings; with ``--keep K`` the K most important
nodes are kept whatever their importance and the rest of the preset's schedule runs on them.

    python scripts/symbolic_node_scores.py --seeds 0 1 2 3 4 5            # lambda 1e-3, mu 1 (the preset's)
    python scripts/symbolic_node_scores.py --lam 1e-2 --seeds 1 2
    python scripts/symbolic_node_scores.py --early --seeds 1              # sparsify from the first stage on
    python scripts/symbolic_node_scores.py --keep 2 --seeds 1 4           # prune to the top 2, then snap
    python scripts/symbolic_node_scores.py --keep 2 --snap-lib "x^2" --seeds 1 4   # with the earlier snap

A diagnostic behind docs/interpretability.md ("The poisson2d_symbolic schedule"); it builds the stages in
Python with the CLI's default optimizer settings (trainer/default.yaml), a KAN [2, 5, 1] seeded by
``torch.manual_seed(seed)`` and points from ``Sampler(seed=seed)``, so its seeds are not the CLI's seeds.
The pruning threshold of the preset is 1e-2: a node whose importance is below it is removed.
"""

from __future__ import annotations

import argparse
import functools

import torch

from kanpde import KAN, LevenbergMarquardt, Sampler, Stage, SymbolicFailed, fit
from kanpde.problems.poisson2d import Poisson2D
from kanpde.training.prune import node_scores, prune

ADAM = functools.partial(torch.optim.Adam, lr=0.01)
LBFGS = functools.partial(torch.optim.LBFGS, lr=1.0, max_iter=20, history_size=50, line_search_fn="strong_wolfe",
                          tolerance_grad=1e-12, tolerance_change=1e-15)
POINTS = {"n_interior": 1024, "n_boundary": 256, "pde_weight": 0.01}
INNER = {"layers": [0], "refit": True, "r2_threshold": 0.999, "tie": 1e-4, "min_r2": 0.999}


def after_snap_stages(lib: list[str]) -> list[Stage]:
    """The preset's stages after its pruning: the forced snap to ``lib``, LM, the gated re-snaps, the polish."""
    return [Stage(LBFGS, 30),
            Stage(LevenbergMarquardt, 100, symbolic={"layers": [0], "lib": lib, "r2_threshold": 0.0}),
            Stage(LevenbergMarquardt, 100, grid_size=10),
            Stage(LBFGS, 50, symbolic=INNER),
            Stage(LBFGS, 30, symbolic={"layers": [1], "r2_threshold": 0.0, "min_r2": 0.999}),
            Stage(LBFGS, 30, symbolic=INNER),
            Stage(LBFGS, 1, update_grid=False, symbolic={"layers": [], "polish": True, "max_loss": 1e-12,
                                                          "max_loss_ratio": 1.0})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lam", type=float, default=1e-3, help="sparsify lambda (the preset: 1e-3)")
    parser.add_argument("--mu", type=float, default=1.0, help="sparsify entropy weight mu (the preset: 1)")
    parser.add_argument("--early", action="store_true", help="sparsify the first two stages too")
    parser.add_argument("--keep", type=int, default=None, help="prune to the K most important nodes, then snap")
    parser.add_argument("--snap-lib", nargs="+", default=["x", "x^2"],
                        help="library of the forced inner snap with --keep (the preset: x x^2; before: x^2)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sparsify = {"lambda": args.lam, "mu": args.mu}
    early = {"sparsify": sparsify} if args.early else {}
    problem = Poisson2D()
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = KAN([2, 5, 1], grid_size=5, dtype=torch.float64)
        stages = [Stage(ADAM, 500, grid_size=5, **early), Stage(LBFGS, 30, **early),
                  Stage(ADAM, 500, sparsify=sparsify), Stage(LBFGS, 30, sparsify=sparsify)]
        trained = fit(model, problem, stages, sampler=Sampler(seed=seed), **POINTS)
        x = problem.sample(Sampler(seed=seed), 1024, 256).interior.to(torch.float64)
        scores = sorted(node_scores(trained.model, x)[0].tolist(), reverse=True)
        line = (f"seed {seed}: loss {trained.history.stages[-1]['loss']:.2e}, node importances "
                + " ".join(f"{v:.3g}" for v in scores) + f" ({sum(v >= 1e-2 for v in scores)} at or above 1e-2)")
        if args.keep is not None:
            kept = prune(trained.model, x, scores[args.keep - 1] * (1 - 1e-9))
            try:
                done = fit(kept, problem, after_snap_stages(args.snap_lib), sampler=Sampler(seed=seed + 1000), **POINTS)
                line += f"; kept {kept.widths}: formula passes its check, loss {done.history.stages[-1]['loss']:.2e}"
            except SymbolicFailed as exc:
                losses = " ".join(f"{s['loss']:.2e}" for s in exc.history.stages)
                line += f"; kept {kept.widths}: {exc} (stage losses {losses})"
        print(line, flush=True)


if __name__ == "__main__":
    main()
