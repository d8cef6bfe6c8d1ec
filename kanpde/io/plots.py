"""Matplotlib figures of a saved run: solution, exact solution and error maps (PDE residual maps for a
problem without an exact solution), the error at the nodes of reference data, and loss histories.

Figures are built with the object-oriented ``matplotlib.figure.Figure`` API (no pyplot, no global
backend state) and saved atomically as PNG.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from kanpde.io.files import atomic_path
from kanpde.io.run_file import LoadedModel, LoadedRun, load_run

__all__ = ["plot_fields", "plot_history", "plot_final_time", "plot_reference", "plot_run", "plot_activations"]


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _middle_slice(array: np.ndarray) -> np.ndarray:
    """A 2-D slice through the middle of every axis beyond the first two."""
    while array.ndim > 2:
        array = array[..., array.shape[-1] // 2]
    return array


def _panels(result: LoadedModel) -> list[list[tuple[np.ndarray, str, bool]]]:
    """The rows of (data, title, signed) panels: per output its prediction, exact solution and error, or,
    without an exact solution, its prediction and a PDE residual map (one residual per row)."""
    names = list(result.fields)
    if all("exact" in result.fields[n] and "error" in result.fields[n] for n in names):
        return [[(f["predicted"], f"{n} ({result.name})", False), (f["exact"], f"{n} exact", False),
                 (f["error"], "error", True)] for n, f in result.fields.items()]
    residuals = list(result.residuals.items())
    rows = []
    for i in range(max(len(names), len(residuals))):
        row = [(result.fields[names[i]]["predicted"], f"{names[i]} ({result.name})", False)] if i < len(names) else [None]
        if i < len(residuals):
            row.append((residuals[i][1], f"{residuals[i][0]} residual (no exact solution)", True))
        rows.append(row)
    return rows


def plot_fields(result: LoadedModel, coords: tuple[str, ...], path: str | os.PathLike, title: str = "") -> Path:
    """Predicted, exact and error fields of one model side by side (2-D maps; lines in 1-D; mid-slices in 3-D+);
    without an exact solution (no ``exact`` in the run file), the predicted fields and the PDE residual maps."""
    path = Path(path)
    rows = _panels(result)
    n_cols = max(len(r) for r in rows)
    fig = Figure(figsize=(4.4 * n_cols, 3.8 * len(rows)), layout="constrained")
    axes_vals = [result.axes[c] for c in coords]
    for row, panels in enumerate(rows):
        for col, panel in enumerate(panels):
            if panel is None:
                continue
            data, label, signed = panel
            ax = fig.add_subplot(len(rows), n_cols, row * n_cols + col + 1)
            if data.ndim == 1:
                ax.plot(axes_vals[0], data)
                ax.set_xlabel(coords[0])
            else:
                data = _middle_slice(data)
                cmap = "RdBu_r" if signed else "viridis"
                lim = np.nanmax(np.abs(data)) if signed else None
                mesh = ax.pcolormesh(axes_vals[0], axes_vals[1], data.T, shading="auto", cmap=cmap,
                                     vmin=-lim if lim else None, vmax=lim)
                fig.colorbar(mesh, ax=ax)
                ax.set_xlabel(coords[0])
                ax.set_ylabel(coords[1])
                if coords[-1] != "t":  # space-time maps (x across, t up) keep their own aspect
                    ax.set_aspect("equal")
            ax.set_title(label)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_final_time(results: list[LoadedModel], coords: tuple[str, ...], path: str | os.PathLike) -> Path:
    """Predicted and exact solution at the final time ``t`` (last grid slice) of a 1-D + time problem (the
    exact one only where the run file has it)."""
    path = Path(path)
    fig = Figure(figsize=(7, 3.6 * len(results[0].fields)), layout="constrained")
    x, t = results[0].axes[coords[0]], results[0].axes["t"]
    for row, name in enumerate(results[0].fields):
        ax = fig.add_subplot(len(results[0].fields), 1, row + 1)
        if "exact" in results[0].fields[name]:
            ax.plot(x, results[0].fields[name]["exact"][:, -1], "k-", lw=2, label="reference")
        for i, result in enumerate(results):
            ax.plot(x, result.fields[name]["predicted"][:, -1], f"C{i}--", label=result.name)
        ax.set_xlabel(coords[0])
        ax.set_ylabel(f"{name}({coords[0]}, t={t[-1]:g})")
        ax.legend()
    return _save(fig, path)


def plot_reference(run: LoadedRun, path: str | os.PathLike) -> Path:
    """The error ``predicted - reference`` at the nodes of the run's reference data, one panel per output
    and model: points coloured by the error (the first two coordinates; in 1-D the error against ``x``)."""
    ref = run.reference
    if ref is None:
        raise ValueError("the run has no reference data (no /reference group in its run file)")
    path = Path(path)
    models = [(k, g.name) for k, g in (("main", run.main), ("baseline", run.baseline)) if g is not None and k in ref.predicted]
    fig = Figure(figsize=(4.6 * len(models), 3.8 * len(run.outputs)), layout="constrained")
    for row, out in enumerate(run.outputs):
        for col, (key, name) in enumerate(models):
            err = ref.error(key)[:, row]
            ax = fig.add_subplot(len(run.outputs), len(models), row * len(models) + col + 1)
            ax.set_title(f"{out} error ({name}) vs reference data\n{ref.source}, {len(err)} points", fontsize=9)
            if ref.points.shape[1] == 1:
                order = np.argsort(ref.points[:, 0])
                ax.plot(ref.points[order, 0], err[order], ".-", ms=3, lw=0.6)
                ax.axhline(0.0, color="k", lw=0.5)
                ax.set_xlabel(run.coords[0])
                continue
            lim = float(np.max(np.abs(err))) or 1.0
            dots = ax.scatter(ref.points[:, 0], ref.points[:, 1], c=err, s=8, cmap="RdBu_r", vmin=-lim, vmax=lim)
            fig.colorbar(dots, ax=ax)
            ax.set_xlabel(run.coords[0])
            ax.set_ylabel(run.coords[1])
            if run.coords[-1] != "t":
                ax.set_aspect("equal")
    return _save(fig, path)


def plot_history(results: list[LoadedModel], path: str | os.PathLike) -> Path:
    """Training loss (weighted total and PDE term) against step, one line per model, stage starts marked."""
    path = Path(path)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for i, result in enumerate(results):
        h = result.history
        if "loss" not in h:
            continue
        color = f"C{i}"
        ax.semilogy(h["step"], h["loss"], color=color, label=f"{result.name} loss")
        ax.semilogy(h["step"], h["pde"], color=color, ls=":", label=f"{result.name} pde term")
        starts = np.flatnonzero(np.diff(h["stage"]) != 0) + 1
        for s in starts:
            ax.axvline(h["step"][s], color=color, alpha=0.25, lw=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def _node_x(widths: list[int], l: int, i: int) -> float:
    return (i + 0.5) / widths[l]


def _draw_nodes(main: object, widths: list[int], node_y: list[float], coords: tuple[str, ...] | None,
                outputs: tuple[str, ...] | None) -> None:
    """The network's nodes in rows, inputs at the bottom, labelled with coordinate and output names."""
    n_layers = len(widths) - 1
    for l in range(n_layers + 1):
        names = (coords if l == 0 else outputs if l == n_layers else None) or ()
        for i in range(widths[l]):
            main.plot(_node_x(widths, l, i), node_y[l], "ko", ms=6)
            if i < len(names):
                main.annotate(names[i], (_node_x(widths, l, i), node_y[l]), textcoords="offset points",
                              xytext=(0, -14 if l == 0 else 8), ha="center", fontsize=10)


def _draw_edges(fig: Figure, main: object, widths: list[int], node_y: list[float], row: float, l: int,
                h: np.ndarray, edges: np.ndarray, layer: object, beta: float) -> None:
    """Layer ``l``'s edges: a line from each input node to a small plot of ``phi_oi`` over its inputs
    ``h`` ``(n, in)`` and on to the output node, with opacity ``tanh(beta * mean |phi_oi|)``."""
    from kanpde.models.symbolic import LIBRARY

    n_out, n_in = edges.shape[:2]
    score = np.abs(edges).mean(-1)  # (out, in)
    n_edges = n_out * n_in
    box_w, box_h = min(0.8 / n_edges, 0.18), 0.45 * row
    mask = getattr(layer, "symbolic_mask", None)
    for i in range(n_in):
        order = np.argsort(h[:, i])
        for o in range(n_out):
            alpha = float(np.tanh(beta * score[o, i]))
            cx = (i * n_out + o + 0.5) / n_edges
            bottom = node_y[l] + 0.27 * row
            symbolic = mask is not None and float(mask[o, i]) > 0
            color = "tab:red" if symbolic else "k"
            main.plot([_node_x(widths, l, i), cx], [node_y[l], bottom], color=color, alpha=alpha, lw=1)
            main.plot([cx, _node_x(widths, l + 1, o)], [bottom + box_h, node_y[l + 1]], color=color, alpha=alpha, lw=1)
            ax = fig.add_axes((cx - box_w / 2, bottom, box_w, box_h))
            ax.plot(h[order, i], edges[o, i, order], color=color, alpha=max(alpha, 0.05), lw=1.5)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_alpha(max(alpha, 0.05))
            if symbolic:
                ax.set_title(LIBRARY[int(layer.symbolic_index[o, i])].name, fontsize=8, color="tab:red", pad=2)


def plot_activations(
    model: object,
    x: object,
    path: str | os.PathLike,
    coords: tuple[str, ...] | None = None,
    outputs: tuple[str, ...] | None = None,
    beta: float = 3.0,
) -> Path:
    """The KAN drawn as in Liu et al. (2024): nodes in rows (inputs at the bottom), every edge's function
    ``phi_oi`` plotted over the inputs it received when the network was fed ``x`` ``(n, widths[0])``, with
    opacity ``tanh(beta * A_oi)``, ``A_oi`` the edge's mean ``|phi|`` (:func:`kanpde.training.prune.edge_scores`).
    Symbolic edges of a :class:`~kanpde.models.symbolic.SymbolicKAN` are titled with their function and drawn in red.
    """
    import torch

    from kanpde.training.prune import edge_activations

    with torch.no_grad():
        layers = [(h.detach().cpu().double().numpy(), e.detach().cpu().double().numpy())
                  for h, e in edge_activations(model, x)]
    widths = list(model.widths)
    n_layers = len(layers)
    fig = Figure(figsize=(max(4.0, 1.6 * max(w_in * w_out for w_in, w_out in zip(widths, widths[1:]))), 2.6 * n_layers),
                 layout=None)
    main = fig.add_axes((0, 0, 1, 1))
    main.set_xlim(0, 1)
    main.set_ylim(0, 1)
    main.axis("off")
    row = 1.0 / (n_layers + 0.5)
    node_y = [0.25 * row + l * row for l in range(n_layers + 1)]
    _draw_nodes(main, widths, node_y, coords, outputs)
    for l, (h, edges) in enumerate(layers):
        _draw_edges(fig, main, widths, node_y, row, l, h, edges, model.layers[l], beta)
    return _save(fig, Path(path))


def plot_run(
    run: LoadedRun | str | os.PathLike, out_dir: str | os.PathLike | None = None, allow: Iterable[type] = ()
) -> list[Path]:
    """Write ``solution.png`` (and ``baseline_solution.png``), ``history.png`` and, for a run with reference
    data, ``reference_error.png`` for a saved run
    (``allow``: the problem and model classes of your own that :func:`~kanpde.io.run_file.load_run` may rebuild)."""
    if not isinstance(run, LoadedRun):
        src = Path(run)
        run = load_run(src, allow=allow)
        out_dir = out_dir if out_dir is not None else (src if src.is_dir() else src.parent)
    if out_dir is None:
        raise ValueError("plot_run needs out_dir when given a loaded run")
    out = Path(out_dir)
    written = [plot_fields(run.main, run.coords, out / "solution.png", f"{run.problem}: {run.main.name}")]
    results = [run.main]
    if run.baseline is not None:
        written.append(plot_fields(run.baseline, run.coords, out / "baseline_solution.png", f"{run.problem}: {run.baseline.name}"))
        results.append(run.baseline)
    written.append(plot_history(results, out / "history.png"))
    if run.reference is not None:
        written.append(plot_reference(run, out / "reference_error.png"))
    if len(run.coords) == 2 and run.coords[-1] == "t":
        written.append(plot_final_time(results, run.coords, out / "final_time.png"))
    return written
