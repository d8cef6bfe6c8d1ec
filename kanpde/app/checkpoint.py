"""Restartable runs: a run's id, one run per output directory, finished runs skipped, stage checkpoints
written and resumed.

A run's id is a hash of its resolved configuration without the keys that do not change its results
(:data:`NON_RESULT_KEYS`), so a re-run of a sweep finds its finished runs. ``checkpoint.pt`` (and
``baseline_checkpoint.pt``) hold the model after every stage, its history and torch's RNG state;
``resume=true`` continues from there and ends with the same parameters as an uninterrupted run. A
checkpoint is data: it is read with ``torch.load(weights_only=True)`` and its model rebuilt only from
allowed classes (:func:`kanpde.io.run_file.build_model`), checked for every checkpoint before training.

:func:`output_lock` holds an exclusive lock on ``<output_dir>/.kanpde.lock`` while a run writes there, so a
second run into the same directory is refused at once. It is an ``fcntl.flock`` on an open file: the
operating system drops it when the process ends in any way (``kill -9`` included), so a lock left behind
by a killed run never blocks the next one (``resume=true`` after a kill works as before).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from kanpde.app.config import ConfigError, command_path
from kanpde.io.files import RunFileRefused, atomic_path
from kanpde.io.run_file import build_model
from kanpde.training import History

try:
    import fcntl
except ImportError:  # not a POSIX system (Windows): runs go unlocked, with a warning
    fcntl = None

__all__ = [
    "NON_RESULT_KEYS", "LOCK_NAME", "run_id", "output_lock", "finished_run", "checkpoint_path", "checkpoint_writer",
    "check_checkpoints", "resume_state",
]

log = logging.getLogger(__name__)

# Top-level keys that do not change a run's results: left out of its run id.
NON_RESULT_KEYS = ("hydra", "output", "force", "resume", "threads", "study")
LOCK_NAME = ".kanpde.lock"


def run_id(cfg: DictConfig) -> str:
    """A stable id of the results a configuration produces: a hash of the resolved config without the
    keys that don't change them (:data:`NON_RESULT_KEYS`: output paths and switches, Hydra's own), with
    the SHA-256 of the reference data file (``problem.reference``) where one is given."""
    data = OmegaConf.to_container(cfg, resolve=True)
    for key in NON_RESULT_KEYS:
        data.pop(key, None)
    problem = data.get("problem") if isinstance(data.get("problem"), dict) else {}
    if "reference" in problem and problem["reference"] is None:
        del problem["reference"]  # no reference data: the same id as before the key existed
    elif problem.get("reference") is not None:  # new data in the same file are a new run
        problem["reference_sha256"] = _file_digest(command_path(problem["reference"]))
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _file_digest(path: Path) -> str | None:
    """The SHA-256 of a file's bytes, None when it cannot be read (the run then refuses it in one line)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


@contextlib.contextmanager
def output_lock(output_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the run lock of ``output_dir`` (created if missing) for the ``with`` block.

    Raises :class:`~kanpde.app.config.ConfigError` at once, one line with the holder's process id, when
    another run holds it (another process, or another run of this one), and when the directory cannot
    be written. The lock file ``.kanpde.lock`` stays (removing it while held would let a third run lock a
    new file); its lock is the kernel's and ends with the process that holds it."""
    out = Path(output_dir)
    if fcntl is None:
        log.warning("no file locks on this system: nothing stops a second run from writing into %s", out)
        yield
        return
    path = out / LOCK_NAME
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise ConfigError(f"output directory {out} is not writable: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ConfigError(
                f"output directory {out} is in use by another run (process {holder}); wait for it to end or "
                "choose another directory (hydra.run.dir=...)"
            ) from None
        except OSError as exc:  # a file system without flock (some network mounts): run, but say so
            log.warning("cannot lock %s (%s): nothing stops a second run from writing there", path, exc.strerror or exc)
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


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


def checkpoint_path(output_dir: Path, name: str) -> Path:
    """Where the stage checkpoints of the model ``name`` (``"model"``, ``"baseline"``) are written."""
    return output_dir / ("checkpoint.pt" if name == "model" else f"{name}_checkpoint.pt")


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


def _reason(exc: Exception) -> str:
    """The line of a ``torch.load`` error that says what is wrong with the file (torch's text around it
    suggests ``weights_only=False``, which is exactly what a checkpoint of unknown origin must not get)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    boiler = ("Weights only load failed", "Please file an issue", "Check the documentation")
    return next((line for line in lines if not line.startswith(boiler)), type(exc).__name__)


def _read_checkpoint(path: Path, rid: str, allow: tuple[type, ...]) -> tuple[dict[str, Any], nn.Module] | None:
    """The checkpoint at ``path`` and its model (built from allowed classes only) when it belongs to the
    run ``rid``; None when there is none or it is another run's. Raises :class:`ConfigError` for a file
    that cannot be read safely or names a class that is not allowed."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ConfigError(f"resume=true: {path} cannot be read as a checkpoint: {_reason(exc)}") from None
    if not isinstance(state, dict):
        raise ConfigError(f"resume=true: {path} is not a kanpde checkpoint")
    stage = state.get("stage")
    if state.get("run_id") != rid or type(stage) is not int or stage < 0:
        log.warning("%s is from another configuration or a diverged fit: not resumed, training from the start", path)
        return None
    try:
        model = build_model(state.get("model_class"), state.get("model_config"), allow)
    except RunFileRefused as exc:
        raise ConfigError(f"resume=true: {path}: {exc}") from None
    except (TypeError, ValueError, KeyError) as exc:  # allowed classes, but arguments they do not take
        raise ConfigError(f"resume=true: the model of {path} cannot be rebuilt: {exc}") from None
    return state, model


def check_checkpoints(output_dir: Path, names: Iterable[str], rid: str, allow: Iterable[type]) -> None:
    """Check, before any training, that the checkpoints ``resume=true`` will read for the models ``names``
    are readable and name allowed classes only (:class:`ConfigError` otherwise)."""
    for name in names:
        _read_checkpoint(checkpoint_path(output_dir, name), rid, tuple(allow))


def resume_state(
    path: Path, rid: str, dtype: torch.dtype, device: torch.device, allow: Iterable[type] = ()
) -> tuple[int, nn.Module, History] | None:
    """``(next stage, model, history)`` from the checkpoint at ``path`` when it belongs to this run.

    The model is rebuilt only from allowed classes (:func:`kanpde.io.run_file.build_model`): kanpde's
    models and shipped problems, and the classes in ``allow`` (a run passes the problem and model classes
    its configuration names). Raises :class:`ConfigError` for a checkpoint that names anything else."""
    read = _read_checkpoint(path, rid, tuple(allow))
    if read is None:
        return None
    state, model = read
    model = model.to(dtype=dtype)
    model.load_state_dict(state["state_dict"])
    torch.set_rng_state(state["torch_rng"])
    history = History(steps=list(state["history"]["steps"]), stages=list(state["history"]["stages"]))
    log.info("resuming from %s after stage %d", path, int(state["stage"]) + 1)
    return int(state["stage"]) + 1, model.to(device=device), history
