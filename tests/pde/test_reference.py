"""Reference solution data (kanpde.pde.reference): read from every file format with its gradient columns,
declared by a problem (a path next to its module, or a method), and refused in one line when unusable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kanpde import Box, Dirichlet, Disk, Problem
from kanpde.pde.reference import declared_reference, read_reference, reference_data
from tests.helpers import BAD_REFERENCE_KINDS, bad_reference_file, comsol_export, load_script

RNG = np.random.default_rng(1)
PTS = RNG.uniform(-1, 1, (40, 2))
U = np.sin(np.pi * PTS[:, 0]) * PTS[:, 1]
GRAD = np.column_stack([np.pi * np.cos(np.pi * PTS[:, 0]) * PTS[:, 1], np.sin(np.pi * PTS[:, 0])])


class Square(Problem):
    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(Box([-1, -1], [1, 1], self.coords), [Dirichlet("all", 0.0)])

    def pde(self, x, u):
        return u.laplacian()


class Flow(Square):
    outputs = ("u", "p")

    def __init__(self) -> None:
        Problem.__init__(self, Box([-1, -1], [1, 1], self.coords), [Dirichlet("all", 0.0, component="u")])


@pytest.mark.parametrize("kind", ["npz", "npz_arrays", "comsol", "csv", "paraview"])
def test_every_format_gives_the_nodes_values_and_gradients(tmp_path: Path, kind: str) -> None:
    if kind == "npz":
        path = tmp_path / "ref.npz"
        np.savez(path, x=PTS[:, 0], y=PTS[:, 1], u=U, u_x=GRAD[:, 0], u_y=GRAD[:, 1])
    elif kind == "npz_arrays":
        path = tmp_path / "ref.npz"
        np.savez(path, points=PTS, values=U, gradients=GRAD[:, None, :])
    elif kind == "comsol":
        path = comsol_export(tmp_path / "ref.txt", np.column_stack([PTS, U, GRAD]), "x   y   u (1)   u_x (1/m)   u_y (1/m)")
    elif kind == "csv":
        path = tmp_path / "ref.csv"
        np.savetxt(path, np.column_stack([PTS, U, GRAD]), delimiter=",", header="x,y,u,u_x,u_y", comments="", fmt="%.17g")
    else:
        path = tmp_path / "ref.csv"
        rows = "\n".join(f"{u:.17g},{gx:.17g},{gy:.17g},{x:.17g},{y:.17g},0" for (x, y), u, (gx, gy) in zip(PTS, U, GRAD))
        path.write_text('"u","u_x","u_y","Points:0","Points:1","Points:2"\n' + rows + "\n")
    ref = read_reference(path, Square())
    np.testing.assert_array_equal(ref.points, PTS)
    np.testing.assert_array_equal(ref.values[:, 0], U)
    np.testing.assert_array_equal(ref.gradients[:, 0], GRAD)
    assert ref.source == path.name and ref.describe() == f"reference data {path.name}, 40 points"


def test_a_file_without_gradient_columns_has_no_gradients(tmp_path: Path) -> None:
    ref = read_reference(comsol_export(tmp_path / "u.txt", np.column_stack([PTS, U])), Square())
    assert ref.gradients is None and ref.values.shape == (40, 1)


def test_several_outputs_by_name(tmp_path: Path) -> None:
    path = tmp_path / "flow.npz"
    np.savez(path, p=U**2, x=PTS[:, 0], y=PTS[:, 1], u=U)
    ref = read_reference(path, Flow())
    np.testing.assert_array_equal(ref.values, np.column_stack([U, U**2]))


@pytest.mark.parametrize("kind", BAD_REFERENCE_KINDS)
def test_unusable_files_are_refused_in_one_line(tmp_path: Path, kind: str) -> None:
    path, message = bad_reference_file(tmp_path, kind, PTS, "Square")
    with pytest.raises(ValueError, match=message) as info:
        read_reference(path, Square())
    assert "\n" not in str(info.value)


def test_points_on_the_boundary_rounded_by_the_export_count_as_inside(tmp_path: Path) -> None:
    disk = Problem.__new__(Square)
    Problem.__init__(disk, Disk((0.0, 0.0), 1.0, names=("x", "y")), [Dirichlet("all", 0.0)])
    on_circle = np.column_stack([np.cos(np.linspace(0, 6, 9)), np.sin(np.linspace(0, 6, 9))])
    ref = reference_data(disk, np.round(on_circle, 7), np.zeros(9))  # rounded to 7 digits: up to 5e-8 outside
    assert ref.n_points == 9
    with pytest.raises(ValueError, match="1 of 9 points lie outside"):
        reference_data(disk, np.vstack([on_circle[:8], [[1.001, 0.0]]]), np.zeros(9))


def test_arrays_are_checked_like_files() -> None:
    problem = Square()
    with pytest.raises(ValueError, match=r"values have shape \(40, 2\), expected \(40, 1\)"):
        reference_data(problem, PTS, np.column_stack([U, U]))
    with pytest.raises(ValueError, match=r"points have shape \(40, 3\), expected \(n, 2\)"):
        reference_data(problem, np.column_stack([PTS, U]), U)
    with pytest.raises(ValueError, match=r"gradients have shape \(40, 3\), expected \(40, 1, 2\)"):
        reference_data(problem, PTS, U, np.column_stack([GRAD, U]))
    with pytest.raises(ValueError, match="1 non-finite values"):
        reference_data(problem, PTS, np.where(np.arange(40) == 2, np.inf, U))


def test_a_problem_declares_its_reference_as_a_file_next_to_its_module(tmp_path: Path) -> None:
    comsol_export(tmp_path / "square_fem.txt", np.column_stack([PTS, U]))
    module = tmp_path / "my_square.py"
    module.write_text("from kanpde import Box, Dirichlet, Problem\n\n"
                      "class MySquare(Problem):\n    coords = ('x', 'y')\n    reference = 'square_fem.txt'\n\n"
                      "    def __init__(self):\n        super().__init__(Box([-1, -1], [1, 1], self.coords), [Dirichlet('all', 0.0)])\n\n"
                      "    def pde(self, x, u):\n        return u.laplacian()\n")
    problem = load_script(module, "my_square_reference_test").MySquare()
    ref = declared_reference(problem)
    assert ref.source == "square_fem.txt"
    np.testing.assert_array_equal(ref.values[:, 0], U)
    assert declared_reference(Square()) is None


def test_a_problem_declares_its_reference_as_a_method() -> None:
    class WithData(Square):
        def reference(self):
            return PTS, U, GRAD

    ref = declared_reference(WithData())
    assert ref.source == "WithData.reference()" and ref.gradients.shape == (40, 1, 2)

    class Wrong(Square):
        def reference(self):
            return PTS

    with pytest.raises(ValueError, match=r"Wrong.reference\(\) must be a file path or \(points, values\[, gradients\]\), "
                                         "not ndarray"):
        declared_reference(Wrong())

    class AsAttribute(Square):
        reference = (PTS, U)

    assert declared_reference(AsAttribute()).source == "AsAttribute.reference"


def test_values_of_a_torch_exact_solution_can_be_the_data() -> None:
    """Data sampled from a solution: the arrays may come straight from torch tensors."""
    x = torch.from_numpy(PTS)
    ref = reference_data(Square(), x, torch.sin(np.pi * x[:, 0]) * x[:, 1])
    np.testing.assert_allclose(ref.values[:, 0], U, rtol=0, atol=1e-15)


def test_no_shipped_problem_declares_reference_data() -> None:
    """Their solutions are exact or computed: no member named ``reference`` may be mistaken for data."""
    import importlib

    from tests.helpers import PROBLEMS_DIR, SMALL_PROBLEM_KWARGS

    stems = sorted(p.stem for p in PROBLEMS_DIR.glob("*.py") if not p.stem.startswith("_"))
    assert "allencahn1d" in stems
    for stem in stems:
        module = importlib.import_module(f"kanpde.problems.{stem}")
        classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, Problem)
                   and c.__module__ == module.__name__]
        for cls in classes:
            assert declared_reference(cls(**SMALL_PROBLEM_KWARGS.get(stem, {}))) is None, stem
