"""Command line: ``python -m kanpde problem=poisson2d [model=kan|mlp] [key=value ...]``, ``-m`` for sweeps."""

from __future__ import annotations

import gc
import math
import sys
from typing import Any

import hydra
from omegaconf import DictConfig
from tqdm.auto import tqdm

from kanpde.app.config import ConfigError, check_command_line
from kanpde.app.run import RunFailed, run
from kanpde.evaluate import NO_EXACT
from kanpde.app.runtime import tune_malloc
from kanpde.training import ProgressEvent


class ProgressBar:
    """A live tqdm bar per training stage (on a terminal only: tqdm stays silent when stderr is not a TTY)."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "stage":
            self.bar = tqdm(total=event.steps, desc=event.description, leave=True, disable=None, dynamic_ncols=True)
        elif event.kind == "step" and self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{event.loss:.3e}", refresh=False)
        elif event.kind == "stage_end" and self.bar is not None:
            self.bar.close()
            self.bar = None


def _fmt(value: Any) -> str:
    if value is None:  # a metric not computed (metrics.json "messages" says why)
        return "n/a"
    if isinstance(value, float):
        return f"{value:.1f}" if math.isfinite(value) and abs(value) >= 1e4 else f"{value:.3e}"
    return str(value)


def _cell(metrics: dict[str, Any], key: str | tuple[str, str]) -> str:
    if isinstance(key, tuple):  # a metric of a group ("reference", "exact")
        return _fmt((metrics.get(key[0]) or {}).get(key[1]))
    return f"{metrics[key]:.1f}" if key.endswith("_seconds") else _fmt(metrics.get(key))


def format_table(metrics: dict[str, Any]) -> str:
    """A side-by-side text table of the main model's and the baseline's metrics."""
    columns = [metrics] + ([metrics["baseline"]] if "baseline" in metrics else [])
    rows = [("model", "model"), ("params", "n_params"), ("train time [s]", "train_seconds")]
    if any(m.get("compile_seconds", 0.0) >= 0.5 for m in columns):  # a first run: kernels compiled, not trained
        rows.append(("compile [s]", "compile_seconds"))
    # without an exact solution there are no error rows (metrics.json says why), only the residual ones
    if not all(NO_EXACT in (m.get("messages") or []) for m in columns):
        rows += [("l2_rel", "l2_rel"), ("h1_rel", "h1_rel"), ("linf", "linf"), ("mse (L2^2)", "mse"),
                 ("h1_mse (H1^2)", "h1_mse")]
    # the other error source where there are two: the reference data's, or the exact solution's on the grid
    on_data = str(metrics.get("error_source") or "").startswith("reference data")
    other = ("exact", "l2_rel (exact)") if on_data else ("reference", "l2_rel (data)")
    if any(other[0] in m for m in columns):
        rows.append((other[1], (other[0], "l2_rel")))
    rows += [("residual rms", "residual_rms"), ("residual max", "residual_max")]
    lines = []
    for label, key in rows:
        cells = [f"{label:<15}"] + [f"{_cell(m, key):>12}" for m in columns]
        lines.append(" ".join(cells))
    if "baseline_rel_diff" in metrics:  # model vs baseline, one number
        lines.append(f"{'vs baseline':<15} {_fmt(metrics['baseline_rel_diff']):>12}   (relative L2 difference)")
    if on_data:  # say where the errors were measured
        lines.append(f"errors vs {metrics['error_source']}")
    for name, entry in (metrics.get("unknowns") or {}).items():  # an inverse problem's learned scalars
        if "value" in entry:
            cells = [_fmt((m.get("unknowns") or {}).get(name, {}).get("value")) for m in columns]
            true = f"   (true {_fmt(entry['true'])})" if "true" in entry else ""
            lines.append(" ".join([f"{name:<15}"] + [f"{c:>12}" for c in cells]) + true)
    return "\n".join(lines)


def _set_threads(threads: int | None) -> None:
    """torch's intra-op threads for this process (the app may set them; the library never does): as
    given, else one per run in a sweep, where parallel runs already share the cores."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if threads is None and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        threads = 1
    if threads:
        import torch

        torch.set_num_threads(int(threads))


@hydra.main(version_base="1.3", config_path="pkg://kanpde.conf", config_name="config")
def main(cfg: DictConfig) -> float:
    _set_threads(cfg.get("threads"))
    try:
        metrics = run(cfg, progress=ProgressBar())
    except ConfigError as exc:
        print(f"kanpde: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except RunFailed as exc:
        print(f"kanpde: training failed: {exc}", file=sys.stderr)
        sys.exit(1)
    print(format_table(metrics))
    if NO_EXACT in (metrics.get("messages") or []):
        print(NO_EXACT)
    return math.nan if metrics["l2_rel"] is None else float(metrics["l2_rel"])


def cli() -> None:
    """Entry point of ``python -m kanpde`` and the ``kanpde`` script."""
    try:  # before Hydra: its failures here would be a traceback (run directory) or a 23-line message (options)
        check_command_line(sys.argv[1:])
    except ConfigError as exc:
        print(f"kanpde: error: {exc}", file=sys.stderr)
        sys.exit(2)
    tune_malloc()  # keep freed tensor memory for reuse (kanpde.app.runtime); a process-wide choice of the app
    main()
    # The run is over and written. Interpreter shutdown would now walk every object torch, Hydra and
    # matplotlib created (~1 s of a ~12 s default run); frozen objects are skipped and the OS takes the
    # memory back at exit. Files are closed and logs flushed already (atexit still runs).
    gc.freeze()


if __name__ == "__main__":
    cli()
