"""Shared helpers of the kanpde test suite (imported as ``tests.helpers``; fixtures and hooks live in conftest.py).

Everything here is test infrastructure: the library itself never sets threads, dtypes or seeds.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import kanpde
import kanpde.conf
import kanpde.problems
from kanpde import Box, Dirichlet, LShape, Problem, Stage, evaluate, fit, save_run
from kanpde.models import KAN
from kanpde.models.bspline import fit_coefficients
from kanpde.io.run_file import RunResult

PACKAGE_DIR = Path(kanpde.__file__).resolve().parent
CONF_DIR = Path(kanpde.conf.__file__).resolve().parent
PROBLEMS_DIR = Path(kanpde.problems.__file__).resolve().parent
REPO_ROOT = Path(__file__).resolve().parent.parent  # scripts/, examples/, pyproject.toml
DOCS_DIR = REPO_ROOT / "docs"
SCRIPTS_DIR = REPO_ROOT / "scripts"
F64 = torch.float64

# The shared dtype / device parametrization: float32 and float64; the CPU, and CUDA where there is one.
DTYPES = [torch.float32, torch.float64]
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
parametrize_dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
parametrize_devices = pytest.mark.parametrize("device", DEVICES)

# Constructor arguments that keep a shipped problem cheap in tests (the Allen–Cahn reference solver's
# resolution; its accuracy at the shipped resolution is measured in tests/problems/test_reference.py).
SMALL_PROBLEM_KWARGS = {"allencahn1d": {"n_modes": 256, "dt": 1e-3, "n_out": 101},
                        "burgers1d_inverse": {"n_data": 64, "noise": 0.0}}
SMALL_PROBLEM_OVERRIDES = {stem: [f"problem.{k}={v}" for k, v in kw.items()] for stem, kw in SMALL_PROBLEM_KWARGS.items()}

# metrics.json (DESIGN.md): the norms and the keys of every model's metrics.
NORMS = ("l2", "l2_rel", "h1_semi", "h1", "h1_rel", "linf", "mse", "h1_mse")
METRIC_KEYS = {*NORMS, "n_params", "train_seconds", "model", "problem"}


def make_cfg(*overrides: str, hydra: bool = False):
    """The shipped Hydra configuration composed with ``overrides`` (``hydra=True``: with Hydra's own node)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def fast_cfg(*overrides: str):
    """``debug=fast`` on the CPU without figures, then ``overrides``."""
    return make_cfg("debug=fast", "device=cpu", "output.figures=false", *overrides)


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """Import a file that is not on the path (a script of scripts/, an example) as a module; its folder is
    on ``sys.path`` while it loads, as when it runs (scripts import their shared ``_docs`` helper)."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def code_blocks(path: Path, lang: str = "python") -> list[str]:
    """The fenced ``lang`` code blocks of a Markdown file, in order, without their fences."""
    return re.findall(rf"^```{lang}\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def code_block(path: Path, contains: str, lang: str = "python") -> str:
    """The one fenced ``lang`` block of a Markdown file that contains ``contains``: tests run the docs' own text."""
    found = [b for b in code_blocks(path, lang) if contains in b]
    assert len(found) == 1, f"{path}: {len(found)} {lang} blocks contain {contains!r}"
    return found[0]


class FunctionModule(nn.Module):
    """An ``nn.Module`` wrapping a closed-form ``f(x) -> (n,)`` or ``(n, m)``, returned as ``(n, m)``.

    It holds one unused parameter so that code looking up the model's dtype/device via
    ``next(model.parameters())`` works, and counts its forward calls.
    """

    def __init__(self, f: Callable[[Tensor], Tensor], scale: float = 1.0, dtype: torch.dtype = F64) -> None:
        super().__init__()
        self.f = f
        self.scale = scale
        self.dummy = nn.Parameter(torch.zeros((), dtype=dtype))
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        out = self.scale * self.f(x)
        return (out if out.ndim == 2 else out.unsqueeze(1)) + 0.0 * self.dummy


def layer_ranges(model: KAN) -> list[tuple[Tensor, Tensor]]:
    """``(lo, hi)`` of every layer's grid range ``[t_k, t_{G+k}]``, each ``(in,)``."""
    out = []
    for layer in model.layers:
        k, g = layer.spline_order, layer.grid_size
        out.append((layer.grid[:, k], layer.grid[:, k + g]))
    return out


def inside_grids(model: KAN, x: Tensor) -> Tensor:
    """Mask ``(n,)`` of points whose inputs to every layer lie inside that layer's grid range."""
    mask = torch.ones(x.shape[0], dtype=torch.bool)
    with torch.no_grad():
        for layer, (lo, hi) in zip(model.layers, layer_ranges(model)):
            mask &= ((x >= lo) & (x <= hi)).all(dim=1)
            x = layer(x)
    return mask


@torch.no_grad()
def smooth_layer(layer: nn.Module, freq: float = 1.0, amplitude: float = 0.5) -> None:
    """Replace every edge spline of a KANLinear by the least-squares fit of a smooth function.

    Edge ``(o, i)`` gets ``amplitude * sin(w_oi * x + 0.3)`` with ``w_oi`` spread over ``freq * [0.5, 1]``,
    fitted on 400 points over the layer's current grid range.
    """
    k = layer.spline_order
    lo, hi = layer.grid[:, k], layer.grid[:, k + layer.grid_size]
    frac = torch.linspace(0.0, 1.0, 400, dtype=layer.grid.dtype)
    pts = lo + (hi - lo) * frac[:, None]  # (400, in)
    o, i = layer.out_features, layer.in_features
    w = freq * torch.linspace(0.5, 1.0, o * i, dtype=layer.grid.dtype).reshape(o, i).T  # (in, out)
    y = amplitude * torch.sin(w[None] * pts[:, :, None] + 0.3)  # (400, in, out)
    layer.spline_weight.copy_(fit_coefficients(pts, y, layer.grid, k))


def smooth_kan(widths: Sequence[int], grid_size: int = 5, freq: float = 1.0, **kwargs) -> KAN:
    """A float64 KAN whose every edge spline is smooth (see :func:`smooth_layer`)."""
    model = KAN(widths, grid_size=grid_size, dtype=F64, **kwargs)
    for layer in model.layers:
        smooth_layer(layer, freq)
    return model


def perturb(model: nn.Module, scale: float = 0.3, seed: int = 0) -> nn.Module:
    """Move parameters away from their initialisation so every term of the chain rule matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def max_rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def observed_orders(errors: Sequence[float], ratio: float = 2.0) -> list[float]:
    """``log(e_i / e_{i+1}) / log(ratio)`` for a sequence of errors on grids refined by ``ratio``."""
    return [math.log(a / b) / math.log(ratio) for a, b in zip(errors[:-1], errors[1:])]


# -- small problems shared by several test files ---------------------------------------------------------------


class SineLine(Problem):
    """u'' = -pi^2 sin(pi x) on [-1, 1], u = sin(pi x)."""

    coords = ("x",)

    def __init__(self) -> None:
        super().__init__(Box([-1.0], [1.0], self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x: Tensor, u) -> Tensor:
        return u.d("xx") + math.pi**2 * torch.sin(math.pi * x[:, 0])

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(math.pi * x[:, 0])


class SineCube(Problem):
    """Δu = -3 pi^2 u on [0, 1]^3, u = sin(pi x) sin(pi y) sin(pi z)."""

    coords = ("x", "y", "z")

    def __init__(self) -> None:
        super().__init__(Box([0.0] * 3, [1.0] * 3, self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x: Tensor, u) -> Tensor:
        return u.laplacian() + 3 * math.pi**2 * self.exact(x)

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(math.pi * x).prod(dim=1)


class LinearLShape(Problem):
    """Δu = 0 on the L-shape, u = x + 2 y (Dirichlet 0 declared: only the geometry and the evaluation matter)."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(LShape(self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x: Tensor, u) -> Tensor:
        return u.laplacian()

    def exact(self, x: Tensor) -> Tensor:
        return x[:, 0] + 2 * x[:, 1]


def save_small_run(problem: Problem, widths: Sequence[int], n: int, path: Path) -> Path:
    """A KAN after 3 Adam steps on ``problem``, evaluated on ``n`` points per axis and saved to ``path``."""
    fitted = fit(KAN(widths, grid_size=3, dtype=F64), problem,
                 [Stage(functools.partial(torch.optim.Adam, lr=0.01), 3)], n_interior=32, n_boundary=12)
    ev = evaluate(fitted.model, problem, n)
    result = RunResult("kan", fitted.model, fitted.history, ev, dict(ev.metrics))
    return save_run(path, problem.name, problem.coords, problem.outputs, result)


# -- reference data files (tests/pde/test_reference.py, tests/pde/test_data.py, tests/app/test_reference_data.py) --


def comsol_export(path: Path, table: np.ndarray, header: str = "x                        y                        u (1)",
                  model: str = "square.mph") -> Path:
    """``table`` (rows of numbers) written to ``path`` as COMSOL's Export > Data writes a text file: a '%' block
    whose last line, ``header``, names the columns, then the rows in padded columns (17 significant digits)."""
    head = (f"% Model:              {model}\n% Version:            COMSOL 6.2.0.290\n% Date:               Dec 1 2026\n"
            f"% Dimension:          2\n% Nodes:              {len(table)}\n% Expressions:        1\n"
            "% Description:        Dependent variable u\n% Length unit:        m\n" f"% {header}\n")
    path.write_text(head + "".join(" ".join(f"{v:<24.17g}" for v in row).rstrip() + "\n" for row in table))
    return path


# The ways a reference data file of u on [-1, 1]² can be unusable (bad_reference_file): the reader refuses
# each in one line, and a run refuses it before training.
BAD_REFERENCE_KINDS = ("missing column", "nan", "outside", "output count", "unnamed columns", "not an npz",
                       "not numbers", "absent")


def bad_reference_file(folder: Path, kind: str, points: np.ndarray, domain: str) -> tuple[Path, str]:
    """A reference data file of ``u = sin(x) y`` at ``points`` ``(n, 2)`` (inside ``[-1, 1]^2``, ``n > 5``)
    written under ``folder``, unusable in the way ``kind`` (of :data:`BAD_REFERENCE_KINDS`) says, and the
    regular expression its refusal matches (``domain``: the name of the problem class it is read for)."""
    pts, u = points.copy(), np.sin(points[:, 0]) * points[:, 1]
    if kind == "missing column":  # a CSV whose value column has another name
        np.savetxt(path := folder / "bad.csv", np.column_stack([pts, u]), delimiter=",", header="x,y,v", comments="",
                   fmt="%.17g")
        return path, r"has no column\(s\) \['u'\]; its columns are \['x', 'y', 'v'\]"
    if kind == "nan":  # a COMSOL export with a NaN in its fourth row
        u[3] = np.nan
        path = comsol_export(folder / "bad.txt", np.column_stack([pts, u]))
        return path, r"1 non-finite entries \(first: row 4, column 'u'\)"
    if kind == "outside":
        pts[5] = (1.5, 0.0)
        np.savez(path := folder / "bad.npz", x=pts[:, 0], y=pts[:, 1], u=u)
        return path, rf"1 of {len(pts)} points lie outside the domain of {domain} \(first at x=1.5, y=0\)"
    if kind == "output count":
        np.savez(path := folder / "bad.npz", points=pts, values=np.column_stack([u, u]))
        return path, r"'values' has 2 columns, expected 1 \(\['u'\]\)"
    if kind == "unnamed columns":
        np.savetxt(path := folder / "bad.txt", np.column_stack([pts, u, u]))
        return path, r"has 4 unnamed columns; expected 3"
    if kind == "not an npz":
        (path := folder / "bad.npz").write_bytes(b"PK\x03\x04 not a zip archive")
        return path, r"'.*bad.npz' is not an .npz archive"
    if kind == "not numbers":
        (path := folder / "bad.txt").write_bytes(b"% x y u\n0.1 0.2 zero\n")
        return path, r"line 2 is not a row of numbers"
    assert kind == "absent", kind
    return folder / "absent.txt", r"does not exist"


# -- run files are data (tests/io/test_run_file.py, tests/app/test_checkpoint.py) -------------------------------

# (module, attribute, as a crafted run file stores it): callables a crafted file names, in the colon and in
# format 1's dotted form; subprocess.Popen is a class whose constructor runs a command.
CALLABLES = [("os", "system", "os:system"), ("subprocess", "run", "subprocess.run"), ("builtins", "eval", "builtins:eval"),
             ("subprocess", "Popen", "subprocess:Popen")]


CRAFTED = "kanpde-crafted-run-file"  # in the arguments of every crafted call: {"args": ["sh", "-c", "echo " + CRAFTED]}


CRAFTED_KAN_CONFIG = {"widths": [2, 3, 1], "grid_size": 7, "spline_order": 3, "grid_range": [-1.0, 1.0],
                      "noise_scale": 0.1, "base_activation": "silu", "grid_eps": 0.02}


def crafted_model_cases() -> list:
    """``(model_class, config, named)`` of crafted run files: each callable of :data:`CALLABLES` stored as the
    model's class, as HardDirichlet's network, as its problem (format 2), and as format 1's ``_target_`` node;
    ``named`` is how the refusal names it."""
    cases = []
    for _, _, stored in CALLABLES:
        args = {"args": ["sh", "-c", f"echo {CRAFTED}"]}
        cases += [
            pytest.param(stored, args, stored, id=f"top-{stored}"),
            pytest.param("kanpde.models.hard:HardDirichlet",
                         {"net": {"class": stored, "config": args},
                          "problem": {"class": "kanpde.problems.poisson2d:Poisson2D", "kwargs": {}}}, stored, id=f"net-{stored}"),
            pytest.param("kanpde.models.hard:HardDirichlet",
                         {"net": {"class": "kanpde.models.kan:KAN", "config": CRAFTED_KAN_CONFIG},
                          "problem": {"class": stored, "kwargs": args}}, stored, id=f"problem-{stored}"),
            pytest.param("kanpde.hard:HardDirichlet",
                         {"net": {"class": "kanpde.models.kan.KAN", "config": CRAFTED_KAN_CONFIG},
                          "problem": {"_target_": stored.replace(":", "."), **args}}, stored.replace(":", "."),
                         id=f"v1-target-{stored}"),
        ]
    return cases


def spy_on_callables(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Replace every callable of :data:`CALLABLES` by a class whose call with :data:`CRAFTED` among its arguments
    is recorded and fails the test (other calls, such as ``namedtuple``'s use of ``eval``, go to the original).
    A class, so that a reader whose only gate is "is it a class" would call it. Returns the list of recorded
    calls, which must stay empty."""
    import builtins
    import os
    import subprocess

    calls: list[tuple] = []
    modules = {"os": os, "subprocess": subprocess, "builtins": builtins}

    def spy(module: ModuleType, name: str) -> type:
        original = getattr(module, name)

        def new(cls: type, *args: object, **kwargs: object) -> object:
            if CRAFTED in repr((args, kwargs)):
                calls.append((name, args, kwargs))
                pytest.fail(f"{name} was called with a crafted run file's arguments")
            if name == "eval":
                if len(args) == 1 and not kwargs:  # eval(expr) runs in its caller's namespace, not in this frame
                    caller = sys._getframe(1)
                    args = (args[0], caller.f_globals, caller.f_locals)
            return original(*args, **kwargs)

        return type(f"Spy_{name}", (), {"__new__": new})

    for module, name, _ in CALLABLES:
        monkeypatch.setattr(modules[module], name, spy(modules[module], name))
    return calls


DATA = Path(__file__).resolve().parent / "data"


def format_1_run_file(name: str, folder: Path) -> Path:
    """``folder/<name>.h5``: the format-1 run file kept as ``tests/data/<name>.json`` (every group, dataset and
    attribute of a file kanpde wrote at commit 709d5f9, exact to the bit: tests/data/README.md), written with
    h5py. The fixture is text so that no binary run file is tracked."""
    import json

    import h5py

    def decode(v: dict):
        if "str" in v:
            return v["str"]
        if v["dtype"] == "str":
            return np.array(v["data"], dtype=h5py.string_dtype()).reshape(v["shape"])
        return np.array(v["data"], dtype=np.dtype(v["dtype"])).reshape(v["shape"])

    spec = json.loads((DATA / f"{name}.json").read_text())
    path = folder / f"{name}.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update({k: decode(v) for k, v in spec["attrs"].items()})
        for group, attrs in spec["groups"].items():
            f.require_group(group).attrs.update({k: decode(v) for k, v in attrs.items()})
        for name_, ds in spec["datasets"].items():
            f.create_dataset(name_, data=decode(ds)).attrs.update({k: decode(v) for k, v in ds["attrs"].items()})
    return path
