"""Point data files (kanpde.pde.data.read_points): every format gives the same columns; bad files give one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kanpde.pde.data import read_points
from tests.helpers import comsol_export

RNG = np.random.default_rng(0)
PTS = RNG.uniform(-1, 1, (7, 2))
VALS = np.sin(PTS[:, 0]) * PTS[:, 1]


def write(tmp_path: Path, kind: str) -> Path:
    table = np.column_stack([PTS, VALS])
    if kind == "npz_columns":
        path = tmp_path / "d.npz"
        np.savez(path, x=PTS[:, 0], y=PTS[:, 1], u=VALS)
    elif kind == "npz_arrays":
        path = tmp_path / "d.npz"
        np.savez(path, points=PTS, values=VALS)
    elif kind == "csv":
        path = tmp_path / "d.csv"
        np.savetxt(path, table, delimiter=",", header="x,y,u", comments="", fmt="%.17g")
    elif kind == "comsol":
        path = comsol_export(tmp_path / "d.txt", table, model="plate.mph")
    elif kind == "savetxt":
        path = tmp_path / "d.dat"
        np.savetxt(path, table, header="x y u", fmt="%.17g")
    elif kind == "unnamed":
        path = tmp_path / "d.txt"
        np.savetxt(path, table, fmt="%.17g")
    elif kind == "reordered_csv":
        path = tmp_path / "r.csv"
        np.savetxt(path, np.column_stack([VALS, PTS[:, 1], PTS[:, 0]]), delimiter=",", header="u,y,x", comments="", fmt="%.17g")
    return path


@pytest.mark.parametrize("kind", ["npz_columns", "npz_arrays", "csv", "comsol", "savetxt", "unnamed", "reordered_csv"])
def test_every_format_gives_the_same_points_and_values(tmp_path: Path, kind: str) -> None:
    points, values = read_points(write(tmp_path, kind), ("x", "y"), ("u",))
    assert points.shape == (7, 2) and values.shape == (7, 1)
    np.testing.assert_array_equal(points, PTS)
    np.testing.assert_array_equal(values[:, 0], VALS)


@pytest.mark.parametrize(
    ("content", "suffix", "match"),
    [
        ("x,y\n0,1\n", ".csv", r"no column\(s\) \['u'\]"),
        ("x,y,u\n0,1,nan\n", ".csv", "non-finite entries.*row 1, column 'u'"),
        ("x,y,u\n", ".csv", "no rows"),
        ("0 1\n2 3\n", ".txt", "2 unnamed columns; expected 3"),
        ("x y u\n0 1 2\n0 1\n", ".txt", "different numbers of columns"),
        ("x y u\n0 1 2\nend of data\n", ".txt", "line 3 is not a row of numbers"),
        ("not a zip", ".npz", "cannot be read|d.npz"),
    ],
)
def test_bad_files_are_refused_with_one_line(tmp_path: Path, content: str, suffix: str, match: str) -> None:
    path = tmp_path / f"d{suffix}"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        read_points(path, ("x", "y"), ("u",))
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_missing_file_and_mismatched_npz_arrays_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        read_points(tmp_path / "nope.csv", ("x",), ("u",))
    np.savez(tmp_path / "a.npz", points=PTS, values=np.column_stack([VALS, VALS]))
    with pytest.raises(ValueError, match="'values' has 2 columns, expected 1"):
        read_points(tmp_path / "a.npz", ("x", "y"), ("u",))


def test_npz_files_are_read_without_pickles(tmp_path: Path) -> None:
    path = tmp_path / "p.npz"
    np.savez(path, x=np.array([object()], dtype=object), y=np.zeros(1), u=np.zeros(1))
    with pytest.raises(ValueError, match="p.npz"):
        read_points(path, ("x", "y"), ("u",))


def test_optional_columns_are_read_where_the_file_has_them(tmp_path: Path) -> None:
    from kanpde.pde.data import read_columns

    grads = np.column_stack([np.cos(PTS[:, 0]) * PTS[:, 1], np.sin(PTS[:, 0])])
    named = tmp_path / "g.csv"
    np.savetxt(named, np.column_stack([grads, PTS, VALS]), delimiter=",", header="u_x,u_y,x,y,u", comments="", fmt="%.17g")
    unnamed = tmp_path / "g.txt"
    np.savetxt(unnamed, np.column_stack([PTS, VALS, grads]), fmt="%.17g")
    arrays = tmp_path / "g.npz"
    np.savez(arrays, points=PTS, values=VALS, extra=grads)
    for path in (named, unnamed, arrays):
        pts, vals, extra = read_columns(path, ("x", "y"), ("u",), ("u_x", "u_y"))
        np.testing.assert_array_equal(pts, PTS)
        np.testing.assert_array_equal(vals[:, 0], VALS)
        np.testing.assert_array_equal(extra, grads)
    without = write(tmp_path, "csv")
    assert read_columns(without, ("x", "y"), ("u",), ("u_x", "u_y"))[2] is None
    np.savez(arrays, points=PTS, values=VALS, extra=grads[:, :1])
    with pytest.raises(ValueError, match=r"'extra' has shape \(7, 1\), expected \(7, 2\)"):
        read_columns(arrays, ("x", "y"), ("u",), ("u_x", "u_y"))


def test_paraview_csv_quoted_names_and_points_columns(tmp_path: Path) -> None:
    """ParaView's Save Data: quoted names, the coordinates as "Points:0", "Points:1", "Points:2" (z = 0 in 2-D)."""
    path = tmp_path / "pv.csv"
    rows = "\n".join(f"{u:.17g},{x:.17g},{y:.17g},0" for (x, y), u in zip(PTS, VALS))
    path.write_text('"u","Points:0","Points:1","Points:2"\n' + rows + "\n")
    pts, vals = read_points(path, ("x", "y"), ("u",))
    np.testing.assert_array_equal(pts, PTS)
    np.testing.assert_array_equal(vals[:, 0], VALS)


def test_a_component_scoped_comsol_name_is_the_value_column(tmp_path: Path) -> None:
    path = tmp_path / "scoped.txt"
    rows = "\n".join(f"{x:.17g} {y:.17g} {u:.17g}" for (x, y), u in zip(PTS, VALS))
    path.write_text("% Model: plate.mph\n% x  y  comp1.u (1)\n" + rows + "\n")
    np.testing.assert_array_equal(read_points(path, ("x", "y"), ("u",))[1][:, 0], VALS)
    path.write_text("% x  y  comp1.u  comp2.u\n" + "\n".join(f"{x} {y} {u} {u}" for (x, y), u in zip(PTS, VALS)) + "\n")
    with pytest.raises(ValueError, match=r"has no column\(s\) \['u'\]; its columns are \['x', 'y', 'comp1.u', 'comp2.u'\]"):
        read_points(path, ("x", "y"), ("u",))  # two candidates: no guess
