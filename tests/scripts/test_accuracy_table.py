"""scripts/accuracy_table.py: its commands, the table from crafted runs (medians, spreads, targets, skipped
runs), and the recipe through the CLI on debug=fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, load_script

table_mod = load_script(REPO_ROOT / "scripts" / "accuracy_table.py", "kanpde_accuracy_table")


def _write_run(out: Path, stem: str, seed: int, kan_l2: float, mlp_l2: float, out_of_time: bool = False) -> None:
    run_dir = out / stem / f"seed_{seed}"
    (run_dir / ".hydra").mkdir(parents=True)
    common = {"problem": stem, "mse": 0.0, "h1_mse": 0.0, "h1_rel": 0.0, "status": "ok", "max_seconds": 60.0}
    mlp = {**common, "model": "mlp", "widths": [2, 18, 18, 18, 1], "n_params": 757, "l2_rel": mlp_l2,
           "train_seconds": 60.5, "out_of_time": True, "matched_params": 750}
    kan = {**common, "model": "kan", "widths": [2, 10, 1], "grid_size": 20, "n_params": 750, "l2_rel": kan_l2,
           "train_seconds": 40.0 + seed, "out_of_time": out_of_time, "baseline": mlp}
    (run_dir / "metrics.json").write_text(json.dumps(kan))
    (run_dir / ".hydra" / "config.yaml").write_text(f"seed: {seed}\n")
    cmd = table_mod.command(stem, seed, 60.0, run_dir, [])
    overrides = [a for a in cmd[3:] if not a.startswith(("hydra.", "output."))]
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))


def test_commands_hold_the_recipe_the_preset_the_seed_and_the_budget(tmp_path: Path) -> None:
    cmd = table_mod.command("helmholtz2d", 2, 120.0, tmp_path / "seed_2", ["eval.n_per_axis=101"])
    assert cmd[1:3] == ["-m", "kanpde"]
    assert ["problem=helmholtz2d", "trainer=accurate", "baseline.match_params=true", "hard_bc=true", "seed=2",
            "trainer.max_seconds=120"] == cmd[3:9]
    assert cmd[-1] == "eval.n_per_axis=101" and f"hydra.run.dir={tmp_path / 'seed_2'}" in cmd
    assert "periodic_embedding=true" in table_mod.command("allencahn1d", 0, 60.0, tmp_path, [])
    assert not any(a.startswith(("hard_bc", "periodic")) for a in table_mod.command("burgers1d", 0, 60.0, tmp_path, []))


def test_the_table_gives_medians_spreads_and_targets_of_finished_runs(tmp_path: Path) -> None:
    """Three helmholtz2d seeds (KAN 3e-6, 8e-6, 4e-6: median 4e-6, target 5e-6 met), one poisson2d seed (1e-6:
    target 1e-7 missed, on 1 of 3 seeds), burgers1d not run; the docs page's marked section is rewritten, the rest kept."""
    out = tmp_path / "runs"
    for seed, (k, m) in enumerate(((3e-6, 2e-3), (8e-6, 1e-3), (4e-6, 5e-3))):
        _write_run(out, "helmholtz2d", seed, k, m, out_of_time=seed == 1)
    _write_run(out, "poisson2d", 0, 1e-6, 1e-4)
    settings = {"problems": ["poisson2d", "helmholtz2d", "burgers1d"], "seeds": [0, 1, 2], "budget": 60.0, "extra": [],
                "machine": "x86_64, 2 cores", "date": "2026-12-01", "load": "3.0", "threads": "1"}
    (out / "settings.json").write_text(json.dumps(settings))
    page = tmp_path / "page.md"
    page.write_text(f"intro\n{table_mod.START}\nold\n{table_mod.END}\nrest\n")
    table_mod.main(["--collect", "--out", str(out), "--docs", str(page)])
    text = page.read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n") and "old" not in text
    assert ("| helmholtz2d | `hard_bc=true` | 3 | 4.00e-06 [3.0e-06–8.0e-06] | 2.00e-03 [1.0e-03–5.0e-03] | 750/757 "
            "| 41/60 | 1/3 | ≤ 5e-06: met |") in text
    assert "| poisson2d | `hard_bc=true` | 1 | 1.00e-06 [1.0e-06–1.0e-06] |" in text and "≤ 1e-07: missed so far (1 of 3 seeds)" in text
    assert "| burgers1d | — | 0 | not run |" in text and "≤ 1e-04: not run" in text
    assert "seeds 0 1 2" in text and "budget 60 s" in text and "x86_64, 2 cores" in text
    assert ("| helmholtz2d | 1 | 8.0e-06 / 0.0e+00 | 1.0e-03 / 0.0e+00 | [2,10,1] / [2,18,18,18,1] | 41/60 | 20 "
            "| ok/ok |") in text  # one row per finished run
    assert text.count("| poisson2d | 0 |") == 1 and "| burgers1d | 0 |" not in text
    assert (out / "table.md").read_text() == text[text.index(table_mod.START) + len(table_mod.START) + 1:text.index(table_mod.END)]


def test_finished_runs_are_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    _write_run(out, "poisson2d", 0, 1e-6, 1e-4)
    table_mod.main(["--out", str(out), "--problems", "poisson2d", "--seeds", "0", "--no-docs"])
    assert "poisson2d seed 0: finished, skipped" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [(["--problems", "nope"], "unknown problem(s) ['nope']"),
                                          (["--budget", "0"], "--budget must be > 0 seconds")])
def test_bad_arguments_give_one_line(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        table_mod.main(["--out", str(tmp_path), *argv])
    assert info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_recipe_runs_through_the_cli_on_debug_fast(tmp_path: Path) -> None:
    """The script's command for poisson2d with debug=fast, with stages of the recipe's shape (Adam, then LM
    with RAD and a grid extension): status ok, the budget and the parameter match stated in metrics.json."""
    stages = ("trainer.stages=[{optimizer: adam, steps: 5, grid_size: 5, n_interior: 32},"
              "{optimizer: lm, steps: 4, grid_size: 7, adaptive: {method: rad, every: 2, candidates: 256}}]")
    cmd = table_mod.command("poisson2d", 0, 300.0, tmp_path / "run", ["debug=fast", stages, "output.checkpoint=false"])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    base = m["baseline"]
    assert m["status"] == base["status"] == "ok" and m["grid_size"] == 7
    assert m["max_seconds"] == base["max_seconds"] == 300.0 and m["out_of_time"] is base["out_of_time"] is False
    assert base["matched_params"] == m["n_params"] and abs(base["n_params"] - m["n_params"]) <= 10
    assert len(base["widths"]) == 3  # debug=fast's baseline depth, one hidden layer
