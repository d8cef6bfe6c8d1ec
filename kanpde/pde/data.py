"""Point data read from files: columns of coordinates and values (observations, reference solutions).

:func:`read_points` reads

* ``.npz`` — one array per column name (``x``, ``y``, ``u``, …), or ``points`` ``(n, d)`` and ``values``
  ``(n,)`` / ``(n, k)``;
* ``.csv`` — comma-separated with a header line of column names;
* ``.txt``, ``.dat`` and other plain text — whitespace- or comma-separated numbers, as COMSOL exports them
  (comment lines starting with ``%``; the last comment line before the numbers names the columns, e.g.
  ``% x  y  u``), NumPy's ``savetxt`` / FEniCS scripts write them (``#`` comments, same rule), or with a
  plain header line of names. Without names the columns are the coordinates in order, then the values.

and gives ``(points (n, d), values (n, k))`` in float64 for the named coordinate and value columns
(:func:`read_columns` also reads optional columns, e.g. a solution's gradient, where the file has them).
Column names may be quoted (``"u"``); coordinates missing by name are found as ParaView's
``Points:0``, ``Points:1``, … (its *Save Data* CSV of a FEniCS or other VTK solution), and a value
``u`` as COMSOL's component-scoped ``comp1.u`` when that is the one such column. Bad
files — missing, unreadable, a missing column, a wrong number of columns, NaN or infinite entries, no
rows — raise one ``ValueError`` line naming the file. Nothing in a file is executed (NumPy's ``.npz``
is read with ``allow_pickle=False``).
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["read_points", "read_columns"]


def read_points(path: str | os.PathLike, coords: Sequence[str], values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(points, values)`` of the columns ``coords`` and ``values`` of the data file ``path`` (module docstring)."""
    points, vals, _ = read_columns(path, coords, values)
    return points, vals


def read_columns(
    path: str | os.PathLike, coords: Sequence[str], values: Sequence[str], optional: Sequence[str] = (),
    npz_extra: str = "extra",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(points (n, d), values (n, k), extra (n, len(optional)) or None)``: :func:`read_points` plus the
    ``optional`` columns, read when the file has every one of them (else None). In an ``.npz`` of
    ``points`` and ``values`` arrays they are the array named ``npz_extra`` (``(n, ...)``, flattened per row); in
    unnamed text columns, the columns after the values when there are exactly that many more."""
    path = Path(path)
    coords, values, optional = list(coords), list(values), list(optional)
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    try:
        if path.suffix.lower() == ".npz":
            names, table = _read_npz(path, coords, values, optional, npz_extra)
        else:
            names, table = _read_text(path)
    except ValueError as exc:
        raise ValueError(f"data file {str(path)!r}: {exc}") from None
    except OSError as exc:
        raise ValueError(f"data file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except zipfile.BadZipFile:
        raise ValueError(f"data file {str(path)!r} is not an .npz archive (NumPy's np.savez writes them)") from None
    wanted = coords + values
    if names is None:
        if optional and table.shape[1] == len(wanted) + len(optional):
            names = wanted + optional
        elif table.shape[1] != len(wanted):
            raise ValueError(
                f"data file {str(path)!r} has {table.shape[1]} unnamed columns; expected {len(wanted)}: {wanted} "
                "(or name the columns in a header line)"
            )
        else:
            names = wanted
    names = _aliased(names, coords, values + optional)
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"data file {str(path)!r} has no column(s) {missing}; its columns are {names}")
    if optional and all(c in names for c in optional):
        wanted = wanted + optional
    data = table[:, [names.index(c) for c in wanted]]
    if data.shape[0] == 0:
        raise ValueError(f"data file {str(path)!r} has no rows")
    bad = ~np.isfinite(data)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"data file {str(path)!r}: {int(bad.sum())} non-finite entries (first: row {row + 1}, column {wanted[col]!r})")
    d, k = len(coords), len(values)
    extra = data[:, d + k:].copy() if len(wanted) > d + k else None
    return data[:, :d].copy(), data[:, d : d + k].copy(), extra


def _aliased(names: list[str], coords: list[str], values: list[str]) -> list[str]:
    """Column names without quotes; ParaView's ``Points:k`` named for the k-th coordinate, and the one
    column ``<component>.<name>`` (COMSOL's ``comp1.u``) for a value ``name``, where no column has the name."""
    names = [n.strip().strip("\"'") for n in names]
    for k, c in enumerate(coords):
        if c not in names and f"Points:{k}" in names:
            names[names.index(f"Points:{k}")] = c
    for v in values:
        scoped = [i for i, n in enumerate(names) if n.endswith(f".{v}")]
        if v not in names and len(scoped) == 1:
            names[scoped[0]] = v
    return names


def _read_npz(path: Path, coords: list[str], values: list[str], optional: list[str] = (),
              extra_key: str = "extra") -> tuple[list[str], np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: np.asarray(npz[k], dtype=np.float64) for k in npz.files}
    if "points" in arrays and not all(c in arrays for c in coords):
        pts = arrays["points"].reshape(arrays["points"].shape[0], -1)
        if pts.shape[1] != len(coords):
            raise ValueError(f"'points' has {pts.shape[1]} columns, expected {len(coords)} ({coords})")
        vals = arrays.get("values")
        if vals is None:
            raise ValueError("has 'points' but no 'values' array")
        vals = vals.reshape(vals.shape[0], -1)
        if vals.shape[1] != len(values):
            raise ValueError(f"'values' has {vals.shape[1]} columns, expected {len(values)} ({values})")
        if vals.shape[0] != pts.shape[0]:
            raise ValueError(f"'points' has {pts.shape[0]} rows but 'values' {vals.shape[0]}")
        extra = arrays.get(extra_key)
        if optional and extra is not None:
            extra = extra.reshape(extra.shape[0], -1)
            if extra.shape != (pts.shape[0], len(optional)):
                raise ValueError(f"{extra_key!r} has shape {extra.shape}, expected ({pts.shape[0]}, {len(optional)}): {optional}")
            return coords + values + list(optional), np.concatenate([pts, vals, extra], axis=1)
        return coords + values, np.concatenate([pts, vals], axis=1)
    names = [n for n in arrays if arrays[n].ndim <= 1 or arrays[n].size == arrays[n].shape[0]]
    lengths = {arrays[n].size for n in names}
    if len(lengths) > 1:
        raise ValueError(f"columns of different lengths: { {n: arrays[n].size for n in names} }")
    return names, np.stack([arrays[n].reshape(-1) for n in names], axis=1) if names else np.empty((0, 0))


_NUMBER = re.compile(r"^[\s,;]*[-+]?(\d|\.\d|nan|inf)", re.IGNORECASE)


def _read_text(path: Path) -> tuple[list[str] | None, np.ndarray]:
    lines = path.read_text(errors="replace").splitlines()
    names: list[str] | None = None
    rows: list[list[float]] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        if text[0] in "%#":
            if not rows:
                head = _split(text.lstrip("%#").strip())
                names = head or names
            continue
        if not _NUMBER.match(text):
            if rows:
                raise ValueError(f"line {number} is not a row of numbers: {text[:60]!r}")
            names = _split(text)  # a header line of column names
            continue
        try:
            rows.append([float(v) for v in _split(text)])
        except ValueError:
            raise ValueError(f"line {number} is not a row of numbers: {text[:60]!r}") from None
    if not rows:
        return names, np.empty((0, len(names or [])))
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise ValueError(f"rows have different numbers of columns: {sorted(widths)}")
    table = np.asarray(rows, dtype=np.float64)
    if names is not None and len(names) != table.shape[1]:
        names = _names_of_columns(names, table.shape[1])
    return names, table


def _names_of_columns(names: list[str], n: int) -> list[str] | None:
    """A header whose count differs from the columns' (COMSOL writes ``% x y u (m)`` with units): drop
    parenthesised units; else the header is not usable."""
    kept = [t for t in names if not (t.startswith("(") and t.endswith(")"))]
    return kept if len(kept) == n else None


def _split(text: str) -> list[str]:
    return [t for t in re.split(r"[\s,;]+", text.strip()) if t]
