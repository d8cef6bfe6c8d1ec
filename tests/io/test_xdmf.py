"""The XDMF sidecar (kanpde.io.xdmf): well-formed XML whose every reference points at a dataset of
solution.h5, written by a run in 2-D, for 3-D run files, and not for 1-D ones."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np

from kanpde import MLP, Box, Dirichlet, Problem
from kanpde.app.run import run
from kanpde.evaluate import evaluate
from kanpde.io.run_file import RunResult, save_run
from kanpde.io.xdmf import write_xdmf
from kanpde.training.fit import History
from tests.helpers import DOCS_DIR, code_block, fast_cfg


def _check_xdmf(xdmf: Path, h5: Path, dims: int) -> None:
    root = ET.parse(xdmf).getroot()  # well-formed XML
    assert root.tag == "Xdmf" and root.get("Version") == "3.0"
    grids = root.findall("./Domain/Grid")
    assert [g.get("Name").split()[0] for g in grids] == ["main", "baseline"]
    with h5py.File(h5) as f:
        coords = [str(c) for c in f.attrs["coords"]]
        for grid in grids:
            group = grid.get("Name").split()[0]
            topo = grid.find("Topology")
            assert topo.get("TopologyType") == f"{dims}DRectMesh"
            shape = tuple(int(n) for n in topo.get("Dimensions").split())
            assert shape == f[f"{group}/fields/u/predicted"].shape
            geo = grid.find("Geometry")
            assert geo.get("GeometryType") == "VXVYVZ"[: 2 * dims]
            axes = [item.text.split(":")[1] for item in geo.findall("DataItem")]
            assert axes == [f"/{group}/axes/{c}" for c in reversed(coords)]
            items = grid.findall(".//DataItem")
            names = {a.get("Name") for a in grid.findall("Attribute")}
            assert names == {"u_predicted", "u_exact", "u_error", "pde_residual"}
            for item in items:
                file_name, _, path = item.text.partition(":")
                assert (xdmf.parent / file_name).resolve() == h5.resolve()
                assert path in f, path  # every reference points at an existing dataset
                assert tuple(int(n) for n in item.get("Dimensions").split()) == f[path].shape
                assert int(item.get("Precision")) == f[path].dtype.itemsize


def _docs_snippet(contains: str, run_file: Path) -> str:
    """A Python block of docs/outputs.md, verbatim but for its placeholder path."""
    snippet = code_block(DOCS_DIR / "outputs.md", contains)
    assert '"outputs/.../solution.h5"' in snippet
    return snippet.replace('"outputs/.../solution.h5"', repr(str(run_file)))


def test_run_writes_a_well_formed_xdmf_sidecar(tmp_path: Path) -> None:
    run(fast_cfg(), tmp_path)
    _check_xdmf(tmp_path / "solution.xdmf", tmp_path / "solution.h5", 2)
    # the docs' h5py and load_run reading
    ns: dict = {}
    exec(_docs_snippet("kanpde.load_run(", tmp_path / "solution.h5"), ns)
    assert ns["u"].shape == (21, 21) and ns["u_new"].shape == (2, 1)
    try:
        import xarray  # noqa: F401
    except ImportError:
        return
    # the docs' xarray reading
    import matplotlib.pyplot as plt

    ns = {}
    try:
        exec(_docs_snippet("xr.Dataset(", tmp_path / "solution.h5"), ns)
    finally:
        plt.close("all")
    ds = ns["ds"]
    assert ds.u_error.dims == ("x", "y") and ds.u_error.shape == (21, 21)
    np.testing.assert_array_equal(ds.u_predicted.sel(x=ds.x[3], y=ds.y[5]), ds.u_predicted.values[3, 5])


def test_xdmf_in_3d_and_none_in_1d(tmp_path: Path) -> None:
    class Cube(Problem):
        coords = ("x", "y", "z")

        def __init__(self, dim: int = 3) -> None:
            self.coords = ("x", "y", "z")[:dim]
            super().__init__(Box([0.0] * dim, [1.0] * dim, self.coords), [Dirichlet("all", 0.0)])

        def pde(self, x, u):
            return u.laplacian()

        def exact(self, x):
            return x.sum(dim=1)

    for dim in (3, 1):
        problem = Cube(dim)
        model = MLP([dim, 4, 1]).double()
        ev = evaluate(model, problem, 5)
        result = RunResult("mlp", model, History(), ev, {"mse": 1.0})
        h5 = save_run(tmp_path / f"d{dim}" / "solution.h5", "cube", problem.coords, ("u",), result, result)
        out = write_xdmf(h5)
        if dim == 3:
            _check_xdmf(out, h5, 3)
        else:
            assert out is None and not (tmp_path / "d1" / "solution.xdmf").exists()
