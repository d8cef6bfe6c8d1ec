"""kanpde.io.files: atomic writes, JSON, class paths that moved; run files of format 1 still read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import kanpde
from kanpde.models.hard import HardDirichlet
from kanpde.models.symbolic import SymbolicKAN
from kanpde.io.files import MOVED, RunFileRefused, atomic_path, resolve_class, write_json
from kanpde.io.run_file import FORMAT_VERSION
from tests.helpers import format_1_run_file


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"l2": np.float64(0.5), "n": np.int64(3), "v": np.arange(2)})
    assert json.loads(target.read_text()) == {"l2": 0.5, "n": 3, "v": [0, 1]}
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("boom")
    assert json.loads(target.read_text())["l2"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary file left behind
    with pytest.raises(TypeError):
        write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()




def test_moved_class_paths_resolve_to_the_classes_of_today() -> None:
    assert resolve_class("kanpde.hard:HardDirichlet") is HardDirichlet
    assert resolve_class("kanpde.symbolic:SymbolicKAN") is SymbolicKAN
    assert resolve_class("kanpde.models.kan.KAN") is kanpde.KAN  # the dotted form of format 1's nested classes
    assert resolve_class("kanpde.models.mlp:MLP") is kanpde.MLP
    assert all(resolve_class(new) is resolve_class(old) for old, new in MOVED.items())
    for name in ("kanpde.nowhere:Thing", "kanpde.io.files:resolve_class", "kanpde.models.kan:KANLinear",
                 "kanpde.problems.poisson2d:Problem", "kanpde.problems.poisson2d:torch"):
        with pytest.raises(RunFileRefused, match=f"saved class '{name}' is not allowed"):
            resolve_class(name)


@pytest.mark.parametrize("name", ["v1_solution", "v1_hard_solution"])
def test_format_1_run_files_load_and_predict_what_they_stored(name: str, tmp_path: Path) -> None:
    run = kanpde.load_run(format_1_run_file(name, tmp_path))
    assert int(run.attrs["format_version"]) == 1 < FORMAT_VERSION
    assert run.problem == "poisson2d" and run.coords == ("x", "y")
    for loaded in (run.main, run.baseline):
        axes = [loaded.axes[c] for c in run.coords]
        x = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
        stored = loaded.fields["u"]["predicted"].ravel()
        predicted = loaded(torch.from_numpy(x))[:, 0].numpy()
        assert np.allclose(predicted, stored, rtol=0, atol=1e-12)
    if name.startswith("v1_hard"):
        assert isinstance(run.model, HardDirichlet) and isinstance(run.model.net, kanpde.KAN)
        assert run.model.config["problem"] == {"class": "kanpde.problems.poisson2d:Poisson2D", "kwargs": {}}
        edge = torch.tensor([[-1.0, 0.3], [0.2, 1.0]], dtype=torch.float64)
        assert float(run.main(edge).abs().max()) == 0.0  # the Dirichlet data hold exactly


def test_a_newer_format_is_refused_with_one_line(tmp_path: Path) -> None:
    import h5py

    path = format_1_run_file("v1_solution", tmp_path)
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(ValueError, match="format 99"):
        kanpde.load_run(path)
