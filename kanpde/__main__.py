"""Command line: ``python -m kanpde problem=poisson2d [model=kan|mlp] [key=value ...]``, ``-m`` for sweeps."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig
from tqdm.auto import tqdm

from kanpde.run import ConfigError, RunFailed, format_table, run
from kanpde.train import ProgressEvent


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


@hydra.main(version_base="1.3", config_path="pkg://kanpde.conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        metrics = run(cfg, progress=ProgressBar())
    except ConfigError as exc:
        print(f"kanpde: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except RunFailed as exc:
        print(f"kanpde: training failed: {exc}", file=sys.stderr)
        sys.exit(1)
    print(format_table(metrics))
    return float(metrics["l2_rel"])


if __name__ == "__main__":
    main()
