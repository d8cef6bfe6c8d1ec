"""Restartable runs: a run's id, finished runs skipped, stage checkpoints written and resumed.

A run's id is a hash of its resolved configuration without the keys that do not change its results
(:data:`NON_RESULT_KEYS`), so a re-run of a sweep finds its finished runs. ``checkpoint.pt`` (and
``baseline_checkpoint.pt``) hold the model after every stage, its history and torch's RNG state;
``resume=true`` continues from there and ends with the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from kanpde.io.files import atomic_path
from kanpde.io.run_file import build_model
from kanpde.training import History

__all__ = ["NON_RESULT_KEYS", "run_id", "finished_run", "checkpoint_writer", "resume_state"]

log = logging.getLogger(__name__)

# Top-level keys that do not change a run's results: left out of its run id.
NON_RESULT_KEYS = ("hydra", "output", "force", "resume", "threads", "study")


def run_id(cfg: DictConfig) -> str:
    """A stable id of the results a configuration produces: a hash of the resolved config without the
    keys that don't change them (:data:`NON_RESULT_KEYS`: output paths and switches, Hydra's own)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    for key in NON_RESULT_KEYS:
        data.pop(key, None)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finished_run(output_dir: str | os.PathLike, rid: str) -> dict[str, Any] | None:
    """The metrics of a finished, successful run with id ``rid`` in ``output_dir``, or None."""
    path = Path(output_dir) / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    statuses = [metrics.get("status"), (metrics.get("baseline") or {}).get("status", "ok")]
    ok = metrics.get("run_id") == rid and statuses == ["ok", "ok"]
    return metrics if ok and (Path(output_dir) / "solution.h5").is_file() else None


def checkpoint_writer(path: Path, rid: str) -> Callable[[int, nn.Module, History], None]:
    """An ``on_stage_end`` callback writing ``path`` atomically after every finished stage (a diverged stage
    is not written: the file keeps the last good stage, from which ``resume=true`` continues)."""

    def write(stage: int, model: nn.Module, history: History) -> None:
        state = {
            "stage": stage,
            "run_id": rid,
            "model_class": f"{type(model).__module__}:{type(model).__qualname__}",
            "model_config": getattr(model, "config", {}),
            "state_dict": model.state_dict(),
            "history": {"steps": history.steps, "stages": history.stages},
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    return write


def resume_state(path: Path, rid: str, dtype: torch.dtype, device: torch.device) -> tuple[int, nn.Module, History] | None:
    """``(next stage, model, history)`` from the checkpoint at ``path`` when it belongs to this run."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("run_id") != rid or int(state["stage"]) < 0:
        log.warning("%s is from another configuration or a diverged fit: not resumed, training from the start", path)
        return None
    model = build_model(str(state["model_class"]), state["model_config"]).to(dtype=dtype)
    model.load_state_dict(state["state_dict"])
    torch.set_rng_state(state["torch_rng"])
    history = History(steps=list(state["history"]["steps"]), stages=list(state["history"]["stages"]))
    log.info("resuming from %s after stage %d", path, int(state["stage"]) + 1)
    return int(state["stage"]) + 1, model.to(device=device), history
