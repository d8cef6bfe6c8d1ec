"""Which CPU kernels a run compiles on the first run after installing, and what each one costs.

    python scripts/kernel_compile.py                        # the default run: poisson2d, KAN + MLP baseline
    python scripts/kernel_compile.py problem=poisson3d      # any run overrides (Hydra syntax)

Runs, in this process, what a run does before each model trains (:func:`kanpde.app.kernels.compile_ahead`
on the run's models, built from the composed configuration), with numba's disk cache pointed at a fresh
empty folder (``NUMBA_CACHE_DIR``, unless it is set already), so every kernel compiles as on a fresh
install. Prints one line per kernel compilation: its name, wall seconds and CPU seconds of the compiling
thread (``time.thread_time``: numba compiles in the calling thread, so CPU time is the number that holds
on a machine loaded by other work), then the totals per model. A second pass over a new process with
the same cache folder (``--cached``) shows the load times instead.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

if "NUMBA_CACHE_DIR" not in os.environ:  # before numba is imported: a fresh install's empty cache
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="kanpde-numba-")


def main(argv: list[str]) -> int:
    from hydra import compose, initialize_config_module

    import kanpde.models._kernels as kernels
    import kanpde.models._kernels.elementwise as elementwise
    import kanpde.models._kernels.spline as spline
    from kanpde.app.config import build_spec
    from kanpde.app.kernels import compile_ahead

    records: list[tuple[str, str, float, float, bool]] = []
    current = {"model": "setup"}

    def timed(call, what: str):
        dispatcher = call.dispatcher

        def wrapper(*args):
            known, misses = len(dispatcher.overloads), sum(dispatcher.stats.cache_misses.values())
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return call(*args)
            finally:
                if len(dispatcher.overloads) != known:
                    compiled = sum(dispatcher.stats.cache_misses.values()) > misses
                    records.append((current["model"], what, time.perf_counter() - wall, time.thread_time() - cpu, compiled))

        wrapper.dispatcher = dispatcher
        return wrapper

    spline._SEARCH_TABLES = timed(spline._SEARCH_TABLES, "knot search tables")
    elementwise._SILU_JET = timed(elementwise._SILU_JET, "silu")
    elementwise._TANH_JET = timed(elementwise._TANH_JET, "tanh")
    built = kernels._built

    def timed_built(what, make, config):
        forward, backward = built(what, make, config)
        return timed(forward, f"{what} forward {config or ''}".strip()), timed(backward, f"{what} backward {config or ''}".strip())

    spline._built = elementwise._built = timed_built

    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["device=cpu", *argv])
    with tempfile.TemporaryDirectory() as out:
        spec = build_spec(cfg, __import__("pathlib").Path(out), "kernel-compile")
    print(f"numba cache: {os.environ['NUMBA_CACHE_DIR']}")
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    for model_spec in spec.models:
        current["model"] = model_spec.name
        model = model_spec.make(spec.dtype, spec.device)
        compile_ahead(model, spec.fit_problem, spec.engine, spec.pde_weight)
    print(f"{'model':9} {'kernel':60} {'wall [s]':>9} {'CPU [s]':>8}  compiled")
    for model, what, wall, cpu, compiled in records:
        print(f"{model:9} {what:60} {wall:9.2f} {cpu:8.2f}  {'yes' if compiled else 'no (cache)'}")
    for name in dict.fromkeys(r[0] for r in records):
        rows = [r for r in records if r[0] == name]
        print(f"{name}: {sum(r[4] for r in rows)} compiled of {len(rows)}, wall {sum(r[2] for r in rows):.2f} s, "
              f"CPU {sum(r[3] for r in rows):.2f} s")
    print(f"all: wall {time.perf_counter() - start_wall:.2f} s, process CPU {time.process_time() - start_cpu:.2f} s, "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
