"""The run file ``solution.h5`` (HDF5 via h5py), written atomically, and :func:`load_run`.

Layout of ``solution.h5`` (``m`` outputs, grid ``n_0 x ... x n_{d-1}``)::

    /                      attrs: format="kanpde-run", format_version, problem, coords, outputs
    /config                attrs: yaml (the resolved run configuration, if given)
    /main, /baseline       one group per trained model (baseline only when one was trained), each with
        attrs: name (e.g. "kan", "mlp")
        axes/<coord>                 (n_i,)            evaluation grid coordinates
        fields/<output>/predicted    (n_0, ..., n_{d-1})
        fields/<output>/exact        (n_0, ..., n_{d-1})   only when the problem has an exact solution
        fields/<output>/error        predicted - exact     only when the problem has an exact solution
        residuals/<name>             (n_0, ..., n_{d-1})   the PDE residual: "pde", or "pde_0", "pde_1", ...
                                     for a problem with several residuals
        mask                         (n_0, ..., n_{d-1}) bool, only for non-box domains: grid points inside
                                     (fields are NaN outside)
        history/<column>             (n_steps,)  stage, step, time, loss, pde, one per condition
        history attrs: stages (JSON list of per-stage summaries)
        metrics                      attrs: l2, l2_rel, h1_semi, h1, h1_rel, linf, mse, h1_mse (NaN when not
                                     computed), residual_rms, residual_max, condition_rms (JSON), ...
        model                        attrs: class ("module:QualName"), config (JSON constructor args)
        model/state/<name>           every entry of the model's state_dict (grids included)
    /reference             only when the run has reference solution data; attrs: source (file name),
                           n_points, error_source (whether the run's errors are these: "reference data
                           <file>, N points", or the exact solution's)
        points                       (N, d)     the data's nodes
        values                       (N, m)     the solution there
        gradients                    (N, m, d)  the solution's gradient there, where the data have it
        predicted/main, predicted/baseline      (N, m)  each model's prediction at the nodes

:func:`load_run` reads it back and rebuilds the models, which then evaluate at any new points.
Format versions: 3 (this one) adds ``/reference``; 2 stores a hard-constraint model's problem as its
:attr:`~kanpde.pde.Problem.spec`; 1 (before the package's layers were folders) stored class paths that
have moved since and the problem as a ``{"_target_": ...}`` mapping. Both are read.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from kanpde.evaluate import Evaluation, PointEvaluation, predict
from kanpde.models.protocol import module_dtype_device
from kanpde.io.files import RunFileRefused, atomic_path, json_default, plain_data, resolve_class
from kanpde.pde import Problem
from kanpde.training import History

__all__ = ["RunResult", "LoadedModel", "LoadedRun", "LoadedReference", "save_run", "load_run", "build_model", "FORMAT_VERSION"]

FORMAT = "kanpde-run"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


def residual_names(k: int) -> list[str]:
    """The names of ``k`` PDE residuals in the run file: ``["pde"]``, or ``["pde_0", "pde_1", ...]``."""
    return ["pde"] if k == 1 else [f"pde_{i}" for i in range(k)]


@dataclass
class RunResult:
    """One trained model of a run: the model, its training history, evaluation and metrics."""

    name: str
    model: nn.Module
    history: History
    evaluation: Evaluation
    metrics: dict[str, object]
    reference: PointEvaluation | None = None  # errors at the nodes of the run's reference data, if any


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
    pred = ev.on_grid(ev.predicted)
    exact = None if ev.exact is None else ev.on_grid(ev.exact)
    for i, out in enumerate(outputs):
        g = fields.create_group(out)
        g.create_dataset("predicted", data=pred[i])
        if exact is not None:  # a problem without an exact solution: its residual only
            g.create_dataset("exact", data=exact[i])
            g.create_dataset("error", data=pred[i] - exact[i])
    if ev.residual is not None:
        residuals = group.create_group("residuals")
        res = ev.on_grid(ev.residual)
        for k, name in enumerate(residual_names(res.shape[0])):
            residuals.create_dataset(name, data=res[k])
    if ev.mask is not None:  # non-box domains: fields are NaN outside, mask says which grid points are inside
        group.create_dataset("mask", data=ev.mask.reshape(ev.shape))
    hist = group.create_group("history")
    for name, values in result.history.arrays().items():
        hist.create_dataset(name, data=values)
    hist.attrs["stages"] = json.dumps(result.history.stages, default=json_default)
    metrics = group.create_group("metrics")
    for key, value in result.metrics.items():  # a metric not computed as NaN, a mapping or list as JSON
        metrics.attrs[key] = np.nan if value is None else json.dumps(value) if isinstance(value, (dict, list)) else value
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
        if main.reference is not None:
            _write_reference(f.create_group("reference"), main, baseline)
    return path


def _write_reference(group: h5py.Group, main: RunResult, baseline: RunResult | None) -> None:
    """``/reference``: the data's nodes, values (and gradients), each model's prediction there."""
    ref = main.reference
    group.attrs.update({"source": ref.source, "n_points": int(ref.points.shape[0]),
                        "error_source": str(main.metrics.get("error_source", ""))})
    group.create_dataset("points", data=ref.points)
    group.create_dataset("values", data=ref.values)
    if ref.gradients is not None:
        group.create_dataset("gradients", data=ref.gradients)
    predicted = group.create_group("predicted")
    for name, result in (("main", main), ("baseline", baseline)):
        if result is not None and result.reference is not None:
            predicted.create_dataset(name, data=result.reference.predicted)


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
    residuals: dict[str, np.ndarray] = field(default_factory=dict)  # PDE residual maps (none in older files)

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Evaluate the model at new points ``(n, d)``: ``(n, n_out)`` in the model's dtype, in chunks
        without a graph (:func:`kanpde.evaluate.predict`)."""
        dtype, device = module_dtype_device(self.model)
        return predict(self.model, torch.as_tensor(x).to(dtype=dtype, device=device))


@dataclass
class LoadedReference:
    """The ``/reference`` group of a run file: the data's ``points`` ``(N, d)``, ``values`` ``(N, m)``,
    ``gradients`` ``(N, m, d)`` or None, each model's ``predicted`` ``(N, m)`` by group name (``"main"``,
    ``"baseline"``), the data's ``source`` and the run's ``error_source``."""

    points: np.ndarray
    values: np.ndarray
    predicted: dict[str, np.ndarray]
    source: str
    error_source: str = ""
    gradients: np.ndarray | None = None

    def error(self, name: str = "main") -> np.ndarray:
        """``predicted - values`` of the model ``name`` at the nodes, ``(N, m)``."""
        return self.predicted[name] - self.values


def _read_reference(group: h5py.Group) -> LoadedReference:
    return LoadedReference(
        points=group["points"][()], values=group["values"][()],
        predicted={k: v[()] for k, v in group["predicted"].items()},
        source=str(group.attrs.get("source", "")), error_source=str(group.attrs.get("error_source", "")),
        gradients=group["gradients"][()] if "gradients" in group else None,
    )


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
    reference: LoadedReference | None = None  # the reference data and predictions there (format 3, when the run had some)

    @property
    def model(self) -> nn.Module:
        return self.main.model


def build_model(class_path: str, config: dict[str, object], allow: Iterable[type] = ()) -> nn.Module:
    """A fresh model of the class stored at ``class_path`` from its stored constructor arguments
    ``config`` (models that carry more than arguments, such as hard constraints, build themselves
    through their ``from_config``).

    A run file is data: ``class_path`` and every class path inside ``config`` must be allowed by
    :func:`~kanpde.io.files.resolve_class` (kanpde's registered model classes, its shipped problems, and
    the problem and model classes of your own in ``allow``) and ``config`` must be plain data; this is checked before
    anything is imported or called. Raises :class:`~kanpde.io.files.RunFileRefused` (a ``ValueError``),
    one line naming the class, otherwise."""
    allow = tuple(allow)
    for cls in allow:
        if not (isinstance(cls, type) and issubclass(cls, (Problem, nn.Module))):
            raise TypeError(f"allow: {cls!r} is not a kanpde.Problem or torch.nn.Module class")
    plain_data(config, f"saved constructor arguments of {class_path!r}")
    if not isinstance(config, dict):
        raise RunFileRefused(f"saved constructor arguments of {class_path!r} are not a mapping")
    cls = resolve_class(class_path, allow)
    if not issubclass(cls, nn.Module):
        raise RunFileRefused(f"saved model class {class_path!r} is not a model (torch.nn.Module)")
    from_config = getattr(cls, "from_config", None)
    if callable(from_config):
        return from_config(config, functools.partial(resolve_class, allow=allow))
    return cls(**config)


def _read_model(group: h5py.Group, map_location: str | torch.device, allow: tuple[type, ...]) -> nn.Module:
    state = {k: torch.from_numpy(np.asarray(v[()])) for k, v in group["state"].items()}
    model = build_model(str(group.attrs["class"]), json.loads(group.attrs["config"]), allow)
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model = model.to(dtype=dtypes.pop())
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()


def _read_result(group: h5py.Group, map_location: str | torch.device, allow: tuple[type, ...]) -> LoadedModel:
    return LoadedModel(
        name=str(group.attrs["name"]),
        model=_read_model(group["model"], map_location, allow),
        metrics={k: (v.item() if isinstance(v, np.generic) else v) for k, v in group["metrics"].attrs.items()},
        axes={k: v[()] for k, v in group["axes"].items()},
        fields={out: {k: v[()] for k, v in g.items()} for out, g in group["fields"].items()},
        history={k: v[()] for k, v in group["history"].items()},
        stages=json.loads(group["history"].attrs["stages"]),
        residuals={k: v[()] for k, v in group["residuals"].items()} if "residuals" in group else {},
    )


def load_run(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", allow: Iterable[type] = ()
) -> LoadedRun:
    """Read a ``solution.h5`` written by :func:`save_run` (a file, or a run directory holding one).

    The file is data: the models are rebuilt only from allowed classes (kanpde's registered model
    classes, see :mod:`kanpde.models.registry`, and its shipped problems) and plain constructor
    arguments, and nothing the file names is imported or called otherwise. A hard-constraint model
    (``hard_bc=true``) of a problem class of your own, or a model class of your own, needs that class in
    ``allow``, e.g. ``load_run(path, allow=[MyProblem])``. Raises :class:`~kanpde.io.files.RunFileRefused` (a
    ``ValueError``), one line naming the class, for a class that is not allowed."""
    path = Path(path)
    if path.is_dir():
        path = path / "solution.h5"
    if not path.is_file():
        raise FileNotFoundError(f"no kanpde run file at {path}")
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path} is not a kanpde run file (format attribute {f.attrs.get('format')!r})")
        version = int(f.attrs.get("format_version", 1))
        if version not in READABLE_VERSIONS:
            raise ValueError(f"{path} is a kanpde run file of format {version}; this kanpde reads {list(READABLE_VERSIONS)}")
        allow = tuple(allow)
        return LoadedRun(
            problem=str(f.attrs["problem"]),
            coords=tuple(str(c) for c in f.attrs["coords"]),
            outputs=tuple(str(o) for o in f.attrs["outputs"]),
            main=_read_result(f["main"], map_location, allow),
            baseline=_read_result(f["baseline"], map_location, allow) if "baseline" in f else None,
            config_yaml=str(f["config"].attrs["yaml"]) if "config" in f else None,
            attrs=dict(f.attrs),
            reference=_read_reference(f["reference"]) if "reference" in f else None,
        )
