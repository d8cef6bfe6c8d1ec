"""scripts/precision_table.py: the table is built from run outputs (metrics.json, resolved config, wall time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from tests.helpers import REPO_ROOT, load_script


@pytest.fixture(scope="module")
def script():
    return load_script(REPO_ROOT / "scripts" / "precision_table.py", "kanpde_precision_table")


def test_schedule_merges_repeated_stages(script) -> None:
    stages = [{"optimizer": "adam", "steps": 100, "grid_size": 5}] + [
        {"optimizer": "lm", "steps": 30, "grid_size": g} for g in (5, 10, 20)
    ]
    assert script._schedule(stages) == "adam 100 (G 5), lm 30 per grid (G 5 → 10 → 20)"


@pytest.mark.parametrize("preset", ["poisson2d_quick", "poisson2d_precise"])
def test_presets_compose_with_lm_stages_and_hard_constraints(preset: str) -> None:
    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["problem=poisson2d", f"experiment={preset}"])
    assert cfg.hard_bc is True and cfg.model.widths == [2, 10, 1] and cfg.baseline._target_.endswith("MLP")
    assert {s.optimizer for s in cfg.trainer.stages} == {"lm"}


def test_table_from_run_outputs(script, tmp_path: Path) -> None:
    run = tmp_path / "poisson2d_quick"
    (run / ".hydra").mkdir(parents=True)
    cfg = {"hard_bc": True, "trainer": {"n_interior": 300, "n_boundary": 10,
                                        "stages": [{"optimizer": "lm", "steps": 3, "grid_size": 5}]}}
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    kan = {"model": "kan", "widths": [2, 10, 1], "grid_size": 5, "n_params": 300, "l2_rel": 1.234e-5,
           "h1_rel": 5.678e-5, "train_seconds": 12.34}
    mlp = {"model": "mlp", "widths": [2, 20, 1], "grid_size": None, "n_params": 81, "l2_rel": 3e-3, "h1_rel": 4e-3,
           "train_seconds": 5.0}
    (run / "metrics.json").write_text(json.dumps({**kan, "baseline": mlp}))
    (run / "wall.json").write_text(json.dumps({"wall_seconds": 40.4, "returncode": 0}))
    text = script.table(tmp_path, {"date": "2026-01-01", "machine": "test"})
    assert "| `poisson2d_quick` | KAN [2,10,1] G=5 | 300 | 300 + 0 | yes | lm 3 (G 5) | 1.23e-05 | 5.68e-05 | 12.3 | 40 |" in text
    assert "| `poisson2d_quick` | MLP [2,20,1] | 81 |" in text
    assert "| `poisson2d_precise` | not run |" in text
