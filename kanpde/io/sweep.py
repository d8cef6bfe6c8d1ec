"""Aggregate a sweep of runs into tables, scaling exponents and figures.

``python -m kanpde.report multirun/<study> [--out DIR]`` (:mod:`kanpde.report`) finds every run below the directory (a folder
holding ``metrics.json``), and writes into ``--out`` (default: ``<dir>/report``):

* ``runs.csv``: one row per run, model (``main``/``baseline``) and size point;
* ``summary.csv``, ``summary.md``: mean ± std (and median, min, max) over seeds per configuration, and
  the fitted scaling exponents ``error ∝ n_params^slope`` (least squares in log-log) per series and per
  model family;
* ``comparison.csv`` (and a section of ``summary.md``): each run configuration's main model against its
  baseline, trained in the same runs: median and min–max over seeds of ``l2_rel`` and ``h1_rel``, median
  parameter counts and training times, the wall-clock budget (``trainer.max_seconds``) and how many
  seeds stopped at it; so a KAN and a parameter-matched baseline (``baseline.match_params=true``) compare
  at equal parameter count and equal budget;
* ``scaling.png``: L2² (``mse``) and H1² (``h1_mse``) against the number of parameters, KAN and MLP on
  the same axes (the layout of the KAN paper's Figure 3.3); ``time.png``: the same errors against
  training time; ``loss_curves.png``: the training loss per step, stage starts marked.

Size points: a run evaluated after every stage (``eval.every_stage=true``) gives one point at the end
of each model size (a KAN after each grid of its grid extension); otherwise its final metrics.
Configurations are grouped by problem, model family, widths, grid size and every other command-line
override except ``seed``; a series (one line of the plots) is a KAN's widths across grids or an MLP's
depth (number of linear layers) across widths.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = ["ReportError", "Point", "find_runs", "collect", "aggregate", "compare", "fit_exponent", "exponents", "report"]

log = logging.getLogger(__name__)

ERRORS = ("mse", "h1_mse", "l2_rel", "h1_rel")
AGGREGATED = ("n_params", "train_seconds", *ERRORS)
ERROR_LABELS = {"mse": "L2² (mse)", "h1_mse": "H1² (h1_mse)"}


class ReportError(ValueError):
    """The directory holds no usable runs; the message says what was looked for and where."""


@dataclass
class Point:
    """One (run, model, size) measurement: ``role`` is ``main`` or ``baseline``."""

    run_dir: Path
    role: str
    family: str
    problem: str
    widths: tuple[int, ...]
    grid_size: int | None
    seed: int | None
    overrides: tuple[str, ...]  # the run's command-line overrides that are not seed or model choices
    values: dict[str, float]
    final: bool
    max_seconds: float | None = None  # the run's wall-clock budget per model (trainer.max_seconds), if any
    out_of_time: bool = False  # training stopped at that budget
    run_overrides: tuple[str, ...] = ()  # all the run's overrides but the seed and run switches (model choices kept)

    @property
    def series(self) -> str:
        """The plot line: a KAN's widths (across grids), an MLP's depth (across widths)."""
        if self.family == "kan":
            return f"KAN [{','.join(map(str, self.widths))}]"
        return f"{self.family.upper()} depth {len(self.widths) - 1}"

    @property
    def config(self) -> str:
        """The configuration label (all but the seed)."""
        label = f"{self.family.upper()} [{','.join(map(str, self.widths))}]"
        label += f" G={self.grid_size}" if self.grid_size is not None else ""
        return label + (f" ({self.role})" if self.role != "main" else "")

    def key(self) -> tuple:
        return (self.problem, self.role, self.family, self.widths, self.grid_size, self.overrides)


def find_runs(directory: str | os.PathLike) -> list[Path]:
    """Run directories (holding ``metrics.json``) below ``directory``, sorted; :class:`ReportError` if none."""
    directory = Path(directory)
    if not directory.exists():
        raise ReportError(f"{directory} does not exist")
    if not directory.is_dir():
        raise ReportError(f"{directory} is not a directory (give the sweep's directory, e.g. multirun/<study>)")
    runs = sorted(p.parent for p in directory.rglob("metrics.json"))
    if not runs:
        raise ReportError(
            f"no runs in {directory}: no */metrics.json below it (a run writes metrics.json when it finishes; "
            "give the multirun directory of a sweep, e.g. multirun/<study>)"
        )
    return runs


def _read_config(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The run's config (``.hydra/config.yaml``, else solution.h5's copy) and its overrides, read as plain
    YAML data (``yaml.safe_load``: nothing in them is executed or resolved)."""
    cfg: Any = {}
    hydra_dir = run_dir / ".hydra"
    if (hydra_dir / "config.yaml").is_file():
        cfg = yaml.safe_load((hydra_dir / "config.yaml").read_text())
    elif (run_dir / "solution.h5").is_file():
        import h5py

        with h5py.File(run_dir / "solution.h5", "r") as f:
            if "config" in f:
                cfg = yaml.safe_load(str(f["config"].attrs["yaml"]))
    overrides: list[str] = []
    if (hydra_dir / "overrides.yaml").is_file():
        overrides = [str(o) for o in yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []]
    if not isinstance(cfg, dict):
        raise ValueError("its config is not a mapping")
    return cfg, overrides


def _other_overrides(overrides: Sequence[str]) -> tuple[str, ...]:
    """Overrides that may change results beyond the model itself: not seed, model, baseline, run switches."""
    skip = ("seed", "model", "baseline", "arch", "force", "resume", "threads", "study", "hydra", "experiment")
    kept = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key.split(".")[0].split("@")[0] not in skip:
            kept.append(item)
    return tuple(sorted(kept))


def _run_overrides(overrides: Sequence[str]) -> tuple[str, ...]:
    """The overrides that make a run configuration: all but the seed and the run switches."""
    skip = ("seed", "force", "resume", "threads", "study", "hydra", "output")
    return tuple(sorted(o for o in overrides if o.split("=", 1)[0].lstrip("+~").split(".")[0] not in skip))


def _points_of(run_dir: Path, role: str, m: dict[str, Any], seed: int | None, others: tuple[str, ...],
               run_overrides: tuple[str, ...] = ()) -> list[Point]:
    common = dict(run_dir=run_dir, role=role, family=str(m.get("model", "?")), problem=str(m.get("problem", "?")),
                  widths=tuple(int(w) for w in m.get("widths") or ()), seed=seed, overrides=others,
                  run_overrides=run_overrides)
    points = []
    by_size: dict[int, dict[str, Any]] = {}
    for stage in m.get("stages") or []:  # the last stage of each model size
        by_size[int(stage["n_params"])] = stage
    for stage in by_size.values():
        if int(stage["n_params"]) != int(m["n_params"]):
            values = {k: float(stage[k]) for k in AGGREGATED}
            points.append(Point(grid_size=stage.get("grid_size"), values=values, final=False, **common))
    values = {k: float(m[k]) for k in AGGREGATED}
    if by_size:  # time to the end of the last stage, like the other points (fit's time adds the evaluations)
        values["train_seconds"] = float(list(by_size.values())[-1]["train_seconds"])
    budget = m.get("max_seconds")
    points.append(Point(grid_size=m.get("grid_size"), values=values, final=True,
                        max_seconds=None if budget is None else float(budget), out_of_time=bool(m.get("out_of_time")),
                        **common))
    return points


def collect(directory: str | os.PathLike) -> list[Point]:
    """Every size point of every successful run below ``directory`` (main model and baseline)."""
    points: list[Point] = []
    for run_dir in find_runs(directory):
        try:
            metrics = json.loads((run_dir / "metrics.json").read_text())
            if not isinstance(metrics, dict):
                raise ValueError("not a JSON object")
            cfg, overrides = _read_config(run_dir)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ReportError(f"{run_dir / 'metrics.json'} cannot be read: {exc}") from None
        seed = cfg.get("seed")
        others = _other_overrides(overrides)
        for role, m in (("main", metrics), ("baseline", metrics.get("baseline"))):
            if not m:
                continue
            if m.get("status", "ok") != "ok":
                log.warning("%s: %s model %s, left out", run_dir, role, m.get("status"))
                continue
            missing = [k for k in (*AGGREGATED, "model") if k not in m]
            if missing:
                raise ReportError(f"{run_dir / 'metrics.json'} ({role}) lacks {missing}: not a kanpde run's metrics")
            points.extend(_points_of(run_dir, role, m, None if seed is None else int(seed), others,
                                     _run_overrides(overrides)))
    if not points:
        raise ReportError(f"no successful runs in {directory}")
    return points


def aggregate(points: Sequence[Point]) -> list[dict[str, Any]]:
    """Mean and standard deviation (ddof=1; 0 for one seed), median, minimum and maximum over seeds of
    each configuration and size (``<key>_mean``, ``_std``, ``_median``, ``_min``, ``_max``).

    A baseline trained identically in several runs of a sweep (same configuration and seed) counts once.
    Rows are sorted by problem, role, family, series and number of parameters.
    """
    groups: dict[tuple, dict[Any, Point]] = defaultdict(dict)
    for p in points:
        groups[p.key()].setdefault(p.seed, p)  # one point per seed
    rows = []
    for key, by_seed in groups.items():
        first = next(iter(by_seed.values()))
        row: dict[str, Any] = {
            "problem": first.problem, "role": first.role, "family": first.family, "series": first.series,
            "config": first.config, "widths": "-".join(map(str, first.widths)), "grid_size": first.grid_size,
            "overrides": " ".join(first.overrides), "final": first.final, "n_seeds": len(by_seed),
        }
        for k in AGGREGATED:
            vals = np.array([p.values[k] for p in by_seed.values()], dtype=np.float64)
            row[f"{k}_mean"] = float(vals.mean())
            row[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
            row.update(_spread(vals, k))
        rows.append(row)
    rows.sort(key=lambda r: (r["problem"], r["role"] != "main", r["family"], r["series"], r["overrides"], r["n_params_mean"]))
    return rows


def _spread(values: np.ndarray, key: str) -> dict[str, float]:
    """Median, minimum and maximum of ``values`` as ``<key>_median``, ``<key>_min``, ``<key>_max``."""
    return {f"{key}_median": float(np.median(values)), f"{key}_min": float(values.min()), f"{key}_max": float(values.max())}


COMPARED = ("l2_rel", "h1_rel", "n_params", "train_seconds")


def compare(points: Sequence[Point]) -> list[dict[str, Any]]:
    """Each run configuration's main model against its baseline, over seeds.

    Final points are grouped by problem and the run's overrides (everything but the seed and the run
    switches such as ``output.*``), whatever size each model ended at (a model stopped by its wall-clock budget may end at a smaller
    grid than another seed's); each seed counts once per role. A row holds, per role (``main_``,
    ``baseline_``): the family, the number of seeds, and the median, minimum and maximum over seeds of
    :data:`COMPARED`; the budget (``max_seconds``, None without one or when the seeds differ) and
    ``<role>_out_of_time`` (seeds that stopped at it). Configurations without a baseline are left out.
    """
    groups: dict[tuple, dict[str, dict[Any, Point]]] = defaultdict(lambda: {"main": {}, "baseline": {}})
    for p in points:
        if p.final:
            groups[(p.problem, p.run_overrides)][p.role].setdefault(p.seed, p)
    rows = []
    for (problem, overrides), roles in sorted(groups.items()):
        if not roles["main"] or not roles["baseline"]:
            continue
        row: dict[str, Any] = {"problem": problem, "overrides": " ".join(overrides)}
        budgets = {p.max_seconds for by_seed in roles.values() for p in by_seed.values()}
        row["max_seconds"] = budgets.pop() if len(budgets) == 1 else None
        for role, by_seed in roles.items():
            members = list(by_seed.values())
            row[f"{role}_family"] = "/".join(sorted({p.family for p in members}))
            row[f"{role}_seeds"] = len(members)
            row[f"{role}_out_of_time"] = sum(p.out_of_time for p in members)
            for k in COMPARED:
                row.update(_spread(np.array([p.values[k] for p in members], dtype=np.float64), f"{role}_{k}"))
        rows.append(row)
    return rows


def comparison_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The :func:`compare` rows as a Markdown table: median [min–max] over seeds."""
    def cell(r: dict[str, Any], key: str, fmt: str = ".2e") -> str:
        med, lo, hi = r[f"{key}_median"], r[f"{key}_min"], r[f"{key}_max"]
        return f"{med:{fmt}} [{lo:{fmt}}–{hi:{fmt}}]"

    lines = ["| problem | overrides | models | seeds | params | budget s | l2_rel main | l2_rel baseline "
             "| h1_rel main | h1_rel baseline | train s main | train s baseline | at budget |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        budget = "-" if r["max_seconds"] is None else f"{r['max_seconds']:g}"
        lines.append(
            f"| {r['problem']} | {r['overrides'] or '-'} | {r['main_family'].upper()} vs {r['baseline_family'].upper()} "
            f"| {r['main_seeds']}/{r['baseline_seeds']} | {r['main_n_params_median']:.0f}/{r['baseline_n_params_median']:.0f} "
            f"| {budget} | {cell(r, 'main_l2_rel')} | {cell(r, 'baseline_l2_rel')} | {cell(r, 'main_h1_rel')} "
            f"| {cell(r, 'baseline_h1_rel')} | {r['main_train_seconds_median']:.0f} | {r['baseline_train_seconds_median']:.0f} "
            f"| {r['main_out_of_time']}/{r['baseline_out_of_time']} |")
    return "\n".join(lines) + "\n"


def fit_exponent(n_params: Sequence[float], errors: Sequence[float]) -> float:
    """Least-squares slope of ``log(error)`` against ``log(n_params)``: ``error ∝ n_params^slope``.

    NaN with fewer than two distinct sizes (or non-positive values)."""
    x, y = np.asarray(n_params, dtype=np.float64), np.asarray(errors, dtype=np.float64)
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    x, y = np.log(x[ok]), np.log(y[ok])
    if len(np.unique(x)) < 2:
        return math.nan
    return float(np.polyfit(x, y, 1)[0])


def exponents(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fitted exponents of ``mse`` and ``h1_mse`` (group means) per series and per family."""
    out = []
    for level in ("series", "family"):
        groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            groups[(r["problem"], r["role"], r["overrides"], r[level])].append(r)
        for (problem, role, overrides, name), members in sorted(groups.items()):
            label = name.upper() + " (all sizes)" if level == "family" else name
            entry = {"problem": problem, "role": role, "overrides": overrides, "level": level, "name": label,
                     "n_sizes": len({m["n_params_mean"] for m in members})}
            for k in ("mse", "h1_mse"):
                entry[f"{k}_slope"] = fit_exponent([m["n_params_mean"] for m in members], [m[f"{k}_mean"] for m in members])
            out.append(entry)
    return out


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    from kanpde.io.files import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        names = list(rows[0]) if rows else []
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)


def _pm(row: dict[str, Any], key: str, fmt: str = ".3e") -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    return f"{mean:{fmt}} ± {std:{fmt}}" if row["n_seeds"] > 1 else f"{mean:{fmt}}"


def markdown(rows: Sequence[dict[str, Any]], slopes: Sequence[dict[str, Any]]) -> str:
    """The summary table (mean ± std over seeds) and the exponents table, as Markdown."""
    lines = [
        "| problem | model | overrides | params | seeds | L2² (mse) | H1² (h1_mse) | l2_rel | train s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['problem']} | {r['config']} | {r['overrides'] or '-'} | {r['n_params_mean']:.0f} | {r['n_seeds']} | "
            f"{_pm(r, 'mse')} | {_pm(r, 'h1_mse')} | {_pm(r, 'l2_rel')} | {_pm(r, 'train_seconds', '.1f')} |"
        )
    lines += ["", "Fitted scaling exponents, error ∝ params^slope (least squares in log-log over the mean errors):", "",
              "| problem | series | overrides | sizes | L2² slope | H1² slope |", "|---|---|---|---:|---:|---:|"]
    for e in slopes:
        role = "" if e["role"] == "main" else f" ({e['role']})"
        lines.append(f"| {e['problem']} | {e['name']}{role} | {e['overrides'] or '-'} | {e['n_sizes']} | "
                     f"{e['mse_slope']:.2f} | {e['h1_mse_slope']:.2f} |")
    return "\n".join(lines) + "\n"


def _series_rows(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        label = r["series"] + ("" if r["role"] == "main" else f" ({r['role']})")
        label += f" {r['overrides']}" if r["overrides"] else ""
        label += f" [{r['problem']}]" if len({x["problem"] for x in rows}) > 1 else ""
        series[label].append(r)
    return series


def _style(label: str) -> dict[str, Any]:
    return {"marker": "o", "ls": "-"} if label.startswith("KAN") else {"marker": "s", "ls": "--"}


def plot_errors(rows: Sequence[dict[str, Any]], path: Path, x_key: str) -> Path:
    """L2² and H1² (mean ± std over seeds) against ``x_key`` (``n_params`` or ``train_seconds``), log-log,
    one line per series with its fitted slope in the legend."""
    from matplotlib.figure import Figure

    from kanpde.io.plots import _save

    fig = Figure(figsize=(12, 4.8), layout="constrained")
    series = _series_rows(rows)
    for col, err in enumerate(("mse", "h1_mse")):
        ax = fig.add_subplot(1, 2, col + 1)
        for i, (label, members) in enumerate(sorted(series.items())):
            members = sorted(members, key=lambda r: r[f"{x_key}_mean"])
            x = np.array([m[f"{x_key}_mean"] for m in members])
            y = np.array([m[f"{err}_mean"] for m in members])
            yerr = np.array([m[f"{err}_std"] for m in members])
            slope = fit_exponent(x, y)
            text = f"{label}" + (f" (slope {slope:.2f})" if math.isfinite(slope) else "")
            ax.errorbar(x, y, yerr=np.minimum(yerr, 0.999 * y), color=f"C{i}", label=text, capsize=2, **_style(label))
        kan = [m for label, members in series.items() if label.startswith("KAN") for m in members]
        if x_key == "n_params" and kan:  # the KAN paper's reference slope, through the first KAN point
            x0, y0 = min((m["n_params_mean"], m[f"{err}_mean"]) for m in kan)
            xs = np.array([x0, max(m["n_params_mean"] for m in kan)])
            ax.plot(xs, y0 * (xs / x0) ** -4.0, color="0.5", ls=":", label="N^-4 (reference)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of parameters" if x_key == "n_params" else "training time [s]")
        ax.set_ylabel(ERROR_LABELS[err])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_loss_curves(points: Sequence[Point], path: Path) -> Path | None:
    """Training loss against optimizer step (first seed of each final configuration), stage starts marked."""
    import h5py
    from matplotlib.figure import Figure

    from kanpde.io.plots import _save

    chosen: dict[tuple, Point] = {}
    for p in sorted((p for p in points if p.final), key=lambda p: (p.seed is None, p.seed)):
        chosen.setdefault(p.key(), p)
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    drawn = 0
    for i, p in enumerate(sorted(chosen.values(), key=lambda p: p.config)):
        h5 = p.run_dir / "solution.h5"
        group = "main" if p.role == "main" else "baseline"
        if not h5.is_file():
            continue
        with h5py.File(h5, "r") as f:
            if f"{group}/history/loss" not in f:
                continue
            step, loss, stage = (f[f"{group}/history/{k}"][()] for k in ("step", "loss", "stage"))
        color = f"C{i % 10}"
        ax.semilogy(step, loss, color=color, lw=1, label=p.config, ls="-" if p.family == "kan" else "--")
        for s in np.flatnonzero(np.diff(stage) != 0) + 1:
            ax.axvline(step[s], color=color, alpha=0.2, lw=0.8)
        drawn += 1
    if not drawn:
        return None
    ax.set_xlabel("optimizer step (stage starts marked)")
    ax.set_ylabel("training loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def report(directory: str | os.PathLike, out: str | os.PathLike | None = None, figures: bool = True) -> dict[str, Path]:
    """Aggregate the runs below ``directory`` and write tables and figures into ``out``; returns the paths."""
    directory = Path(directory)
    out = Path(out) if out is not None else directory / "report"
    points = collect(directory)
    rows = aggregate(points)
    slopes = exponents(rows)
    pairs = compare(points)
    out.mkdir(parents=True, exist_ok=True)
    raw = [{"run_dir": str(p.run_dir.relative_to(directory)) if p.run_dir.is_relative_to(directory) else str(p.run_dir),
            "role": p.role, "family": p.family, "problem": p.problem, "config": p.config,
            "widths": "-".join(map(str, p.widths)), "grid_size": p.grid_size, "seed": p.seed, "final": p.final,
            "overrides": " ".join(p.overrides), **p.values} for p in points]
    paths = {"runs": out / "runs.csv", "summary": out / "summary.csv", "exponents": out / "exponents.csv",
             "markdown": out / "summary.md"}
    _write_csv(paths["runs"], raw)
    _write_csv(paths["summary"], rows)
    _write_csv(paths["exponents"], slopes)
    text = markdown(rows, slopes)
    if pairs:
        paths["comparison"] = out / "comparison.csv"
        _write_csv(paths["comparison"], pairs)
        text += ("\nMain model against its baseline (the same runs), median [min–max] over seeds; params and "
                 "at budget: main/baseline:\n\n" + comparison_markdown(pairs))
    from kanpde.io.files import atomic_path

    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(text)
    if figures:
        paths["scaling"] = plot_errors(rows, out / "scaling.png", "n_params")
        paths["time"] = plot_errors(rows, out / "time.png", "train_seconds")
        curves = plot_loss_curves(points, out / "loss_curves.png")
        if curves is not None:
            paths["loss_curves"] = curves
    return paths
