"""Atomic writes and JSON output (kanpde.outputs.run_file today, kanpde.outputs.files after the split)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kanpde.outputs.run_file import atomic_path, write_json


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
