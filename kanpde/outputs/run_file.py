"""Run outputs: ``solution.h5`` (HDF5 via h5py) and JSON, always written atomically.

Layout of ``solution.h5`` (``m`` outputs, grid ``n_0 x ... x n_{d-1}``)::

    /                      attrs: format="kanpde-run", format_version, problem, coords, outputs
    /config                attrs: yaml (the resolved run configuration, if given)
    /main, /baseline       one group per trained model (baseline only when one was trained), each with
        attrs: name (e.g. "kan", "mlp")
        axes/<coord>                 (n_i,)            evaluation grid coordinates
        fields/<output>/predicted    (n_0, ..., n_{d-1})
        fields/<output>/exact        (n_0, ..., n_{d-1})
        fields/<output>/error        predicted - exact
        mask                         (n_0, ..., n_{d-1}) bool, only for non-box domains: grid points inside
                                     (fields are NaN outside)
        history/<column>             (n_steps,)  stage, step, time, loss, pde, one per condition
        history attrs: stages (JSON list of per-stage summaries)
        metrics                      attrs: l2, l2_rel, h1_semi, h1, h1_rel, linf, mse, h1_mse, ...
        model                        attrs: class ("module:QualName"), config (JSON constructor args)
        model/state/<name>           every entry of the model's state_dict (grids included)

:func:`load_run` reads it back and rebuilds the models, which then evaluate at any new points.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from kanpde.evaluate import Evaluation, module_dtype_device
from kanpde.training.fit import History

__all__ = ["RunResult", "LoadedModel", "LoadedRun", "save_run", "load_run", "atomic_path", "write_json"]

FORMAT = "kanpde-run"
FORMAT_VERSION = 1
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    A crash or exception leaves any previous ``path`` untouched and removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, data: object) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def replace_marked_section(path: str | os.PathLike, start: str, end: str, text: str) -> None:
    """Replace everything between the marker lines ``start`` and ``end`` of a text file (a README's
    generated table) by ``text``, atomically. Raises ``ValueError`` when a marker is missing."""
    path = Path(path)
    src = path.read_text()
    if start not in src or end not in src:
        raise ValueError(f"{path} has no {start} ... {end} markers")
    new = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{text}{end}", src, flags=re.S)
    with atomic_path(path) as tmp:
        tmp.write_text(new)


def _json_default(obj: object) -> object:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


@dataclass
class RunResult:
    """One trained model of a run: the model, its training history, evaluation and metrics."""

    name: str
    model: nn.Module
    history: History
    evaluation: Evaluation
    metrics: dict[str, object]


def import_object(path: str) -> object:
    """The object named by ``path``: ``"module:Qual.Name"`` (how :func:`save_run` records classes) or a
    dotted ``"module.Name"`` (a Hydra ``_target_``)."""
    module_name, _, qualname = path.partition(":") if ":" in path else path.rpartition(".")
    obj: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _class_path(model: nn.Module) -> str:
    cls = type(model)
    return f"{cls.__module__}:{cls.__qualname__}"


def _write_result(group: h5py.Group, result: RunResult, coords: tuple[str, ...], outputs: tuple[str, ...]) -> None:
    group.attrs["name"] = result.name
    ev = result.evaluation
    axes = group.create_group("axes")
    for name, values in zip(coords, ev.axes):
        axes.create_dataset(name, data=values)
    fields = group.create_group("fields")
    pred, exact = ev.on_grid(ev.predicted), ev.on_grid(ev.exact)
    for i, out in enumerate(outputs):
        g = fields.create_group(out)
        g.create_dataset("predicted", data=pred[i])
        g.create_dataset("exact", data=exact[i])
        g.create_dataset("error", data=pred[i] - exact[i])
    if ev.mask is not None:  # non-box domains: fields are NaN outside, mask says which grid points are inside
        group.create_dataset("mask", data=ev.mask.reshape(ev.shape))
    hist = group.create_group("history")
    for name, values in result.history.arrays().items():
        hist.create_dataset(name, data=values)
    hist.attrs["stages"] = json.dumps(result.history.stages, default=_json_default)
    metrics = group.create_group("metrics")
    for key, value in result.metrics.items():
        metrics.attrs[key] = value
    model = group.create_group("model")
    model.attrs["class"] = _class_path(result.model)
    model.attrs["config"] = json.dumps(getattr(result.model, "config", {}))
    state = model.create_group("state")
    for key, value in result.model.state_dict().items():
        state.create_dataset(key, data=value.detach().cpu().numpy())


def save_run(
    path: str | os.PathLike,
    problem_name: str,
    coords: tuple[str, ...],
    outputs: tuple[str, ...],
    main: RunResult,
    baseline: RunResult | None = None,
    config_yaml: str | None = None,
) -> Path:
    """Write ``solution.h5`` with the layout of the module docstring, atomically. Returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(
            {"format": FORMAT, "format_version": FORMAT_VERSION, "problem": problem_name,
             "coords": list(coords), "outputs": list(outputs)}
        )
        if config_yaml is not None:
            f.create_group("config").attrs["yaml"] = config_yaml
        _write_result(f.create_group("main"), main, coords, outputs)
        if baseline is not None:
            _write_result(f.create_group("baseline"), baseline, coords, outputs)
    return path


@dataclass
class LoadedModel:
    """A model read back by :func:`load_run`, with its saved fields, history and metrics."""

    name: str
    model: nn.Module
    metrics: dict[str, object]
    axes: dict[str, np.ndarray]
    fields: dict[str, dict[str, np.ndarray]]
    history: dict[str, np.ndarray]
    stages: list[dict[str, object]]

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Evaluate the model at new points ``(n, d)``: ``(n, n_out)`` in the model's dtype."""
        dtype, device = module_dtype_device(self.model)
        x = torch.as_tensor(x).to(dtype=dtype, device=device)
        with torch.no_grad():
            return self.model(x)


@dataclass
class LoadedRun:
    """Everything :func:`load_run` reads: ``main`` and ``baseline`` (or None) models, config, names."""

    problem: str
    coords: tuple[str, ...]
    outputs: tuple[str, ...]
    main: LoadedModel
    baseline: LoadedModel | None = None
    config_yaml: str | None = None
    attrs: dict[str, object] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        return self.main.model


def _read_model(group: h5py.Group, map_location: str | torch.device) -> nn.Module:
    obj = import_object(str(group.attrs["class"]))
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ValueError(f"saved model class {group.attrs['class']!r} is not a torch.nn.Module")
    state = {k: torch.from_numpy(np.asarray(v[()])) for k, v in group["state"].items()}
    model = obj(**json.loads(group.attrs["config"]))
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtype=dtypes.pop())
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()


def _read_result(group: h5py.Group, map_location: str | torch.device) -> LoadedModel:
    return LoadedModel(
        name=str(group.attrs["name"]),
        model=_read_model(group["model"], map_location),
        metrics={k: (v.item() if isinstance(v, np.generic) else v) for k, v in group["metrics"].attrs.items()},
        axes={k: v[()] for k, v in group["axes"].items()},
        fields={out: {k: v[()] for k, v in g.items()} for out, g in group["fields"].items()},
        history={k: v[()] for k, v in group["history"].items()},
        stages=json.loads(group["history"].attrs["stages"]),
    )


def load_run(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LoadedRun:
    """Read a ``solution.h5`` written by :func:`save_run` (a file, or a run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "solution.h5"
    if not path.is_file():
        raise FileNotFoundError(f"no kanpde run file at {path}")
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path} is not a kanpde run file (format attribute {f.attrs.get('format')!r})")
        return LoadedRun(
            problem=str(f.attrs["problem"]),
            coords=tuple(str(c) for c in f.attrs["coords"]),
            outputs=tuple(str(o) for o in f.attrs["outputs"]),
            main=_read_result(f["main"], map_location),
            baseline=_read_result(f["baseline"], map_location) if "baseline" in f else None,
            config_yaml=str(f["config"].attrs["yaml"]) if "config" in f else None,
            attrs=dict(f.attrs),
        )
