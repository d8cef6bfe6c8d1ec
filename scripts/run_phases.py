"""Where the time of one ``python -m kanpde`` run goes: phases, models, optimizers.

    python scripts/run_phases.py                               # the default run (problem=poisson2d)
    python scripts/run_phases.py problem=helmholtz2d threads=1 # any overrides of the CLI

Runs the CLI in this process (``force=true``, into a temporary directory) with timers around its
phases: imports, Hydra's configuration, building the run (the first ``torch.optim`` optimizer imports
``torch._dynamo`` and a quasi-random sampler imports ``scipy.stats``; both are imported first here and
timed on their own), each model's training and evaluation, writing and figures. Every optimizer's
``step`` is timed too, with the closure calls inside it: a step's time that is not the closure's is
the optimizer's own work (for L-BFGS its two-loop recursion and line search), reported per model with
the loss evaluations and, for L-BFGS, iterations. The timers add a few microseconds per step.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import collections  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

PHASES: list[tuple[str, float, float]] = []  # (name, start offset, seconds)
OPTIMIZERS: dict[tuple[str, str, int], list[float]] = collections.defaultdict(lambda: [0, 0, 0.0, 0.0, 0])
_CURRENT = ["-"]  # the model being trained: "model" or "baseline"


def _phase(name: str, start: float) -> None:
    PHASES.append((name, start - T0, time.perf_counter() - start))


def _timed(module, attr: str, name) -> None:
    """Replace ``module.attr`` by a wrapper recording a phase (``name`` may be a function of the args)."""
    original = getattr(module, attr)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _phase(name(*args) if callable(name) else name, start)

    setattr(module, attr, wrapper)


def _count_steps(cls) -> None:
    """Time ``cls.step`` and the closure calls inside it, per (model, optimizer, parameter count)."""
    original = cls.step

    def step(self, closure=None):
        n_params = sum(p.numel() for group in self.param_groups for p in group["params"])
        record = OPTIMIZERS[(_CURRENT[0], type(self).__name__, n_params)]
        state = self.state[self.param_groups[0]["params"][0]] if type(self).__name__ == "LBFGS" else None
        iters_before = state.get("n_iter", 0) if state is not None else 0

        def timed_closure():
            start = time.perf_counter()
            try:
                return closure()
            finally:
                record[1] += 1
                record[3] += time.perf_counter() - start

        start = time.perf_counter()
        try:
            return original(self, timed_closure if closure is not None else None)
        finally:
            record[0] += 1
            record[2] += time.perf_counter() - start
            if state is not None:
                record[4] += state.get("n_iter", 0) - iters_before

    cls.step = step


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    start = time.perf_counter()
    import torch

    _phase("import torch", start)
    start = time.perf_counter()
    import kanpde.__main__ as cli_module
    import kanpde.io.plots
    import kanpde.app.run as run_module

    _phase("import kanpde (numba, Hydra, h5py, ...)", start)

    original_build = run_module.build_spec

    def build(*args, **kwargs):
        for module in ("torch._dynamo", "scipy.stats"):
            start = time.perf_counter()
            __import__(module)
            _phase(f"  import {module}", start)
        start = time.perf_counter()
        try:
            return original_build(*args, **kwargs)
        finally:
            _phase("  build the rest (problem, configs, optimizers)", start)

    run_module.build_spec = build
    original_train = run_module._train_and_evaluate

    def train_and_evaluate(model_spec, *args, **kwargs):
        name = model_spec.name
        _CURRENT[0] = name
        start = time.perf_counter()
        try:
            return original_train(model_spec, *args, **kwargs)
        finally:
            _phase(f"train + evaluate: {name}", start)
            _CURRENT[0] = "-"

    run_module._train_and_evaluate = train_and_evaluate
    _timed(run_module, "_evaluate", lambda *a: f"  evaluate {_CURRENT[0]}")
    for attr in ("save_run", "write_xdmf", "write_json"):
        _timed(run_module, attr, f"write ({attr})")
    _timed(kanpde.io.plots, "plot_run", "figures")
    classes = {c for c in vars(torch.optim).values() if isinstance(c, type) and issubclass(c, torch.optim.Optimizer)}
    from kanpde.training.lm import LevenbergMarquardt

    for cls in classes | {LevenbergMarquardt}:
        if "step" in vars(cls):
            _count_steps(cls)

    out = tempfile.mkdtemp(prefix="kanpde_phases_")
    overrides = argv or ["problem=poisson2d"]
    sys.argv = ["kanpde", *overrides, f"hydra.run.dir={out}", "force=true"]
    start = time.perf_counter()
    try:
        cli_module.cli()
    finally:
        _phase("the whole CLI call", start)
        shutil.rmtree(out, ignore_errors=True)
    total = time.perf_counter() - T0
    _report(total, overrides)
    return 0


def _report(total: float, overrides: list[str]) -> None:
    print(f"\nphases of `python -m kanpde {' '.join(overrides)}` (seconds from this script's start):")
    for name, at, seconds in sorted(PHASES, key=lambda p: p[1]):
        print(f"  {at:7.2f}  {seconds:7.3f} s  {name}")
    cli = next((at, seconds) for name, at, seconds in PHASES if name == "the whole CLI call")
    parts = sum(s for name, at, s in PHASES if cli[0] < at < cli[0] + cli[1] and not name.startswith("  evaluate"))
    print(f"  {'':7}  {cli[1] - parts:7.3f} s  the rest of the CLI call (Hydra's configuration, logging, ...)")
    print(f"  {total:7.2f}           total (interpreter start-up not counted)")
    if OPTIMIZERS:
        print("\noptimizers (per model):")
        print(f"  {'model':<9} {'optimizer':<19} {'params':>7} {'steps':>6} {'evals':>6} {'iters':>6} "
              f"{'step s':>7} {'closure s':>9} {'own s':>6} {'ms/eval':>8} {'own ms/iter':>11}")
        for (model, name, n_params), (steps, evals, step_s, closure_s, iters) in OPTIMIZERS.items():
            own = step_s - closure_s
            per_iter = f"{own / iters * 1e3:11.2f}" if iters else f"{'-':>11}"
            per_eval = f"{closure_s / evals * 1e3:8.2f}" if evals else f"{'-':>8}"
            print(f"  {model:<9} {name:<19} {n_params:>7} {steps:>6} {evals:>6} {iters or '-':>6} "
                  f"{step_s:7.3f} {closure_s:9.3f} {own:6.3f} {per_eval} {per_iter}")
    trained = {name.split(": ")[1]: s for name, _, s in PHASES if name.startswith("train + evaluate")}
    if "model" in trained:
        print(f"\nthe run without the main model's training and evaluation: {total - trained['model']:.2f} s")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
