"""The allow-list of model classes run files may name (kanpde.models.registry): kanpde's models are on it,
a class joins by one declaration, and the run-file reader (kanpde.io.files.resolve_class) follows it without
importing what a file names. Crafted files: tests/io/test_run_file.py, tests/app/test_checkpoint.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
from torch import nn

import kanpde
from kanpde.io.files import RunFileRefused, resolve_class
from kanpde.models.registry import class_path, register_model, registered_model
from kanpde.models.symbolic import SymbolicKAN


def test_kanpde_models_are_registered() -> None:
    for cls in (kanpde.KAN, kanpde.MLP, kanpde.HardDirichlet, SymbolicKAN):
        assert registered_model(class_path(cls)) is cls
        assert resolve_class(class_path(cls)) is cls
    assert registered_model("kanpde.models.kan:KANLinear") is None  # a layer, not a model a run file stores


class WideMLP(kanpde.MLP):
    """A model class of one's own (another package's, say): not on the allow-list until declared."""


def test_a_model_class_joins_by_one_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    from kanpde.models import registry

    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # the declaration below ends with the test
    with pytest.raises(RunFileRefused, match=f"saved class '{class_path(WideMLP)}' is not allowed"):
        resolve_class(class_path(WideMLP))
    assert register_model(WideMLP) is WideMLP
    assert resolve_class(class_path(WideMLP)) is WideMLP
    with pytest.raises(TypeError, match="is not a torch.nn.Module class"):
        register_model(dict)


def test_names_outside_the_allow_list_are_refused_without_importing_them() -> None:
    assert "antigravity" not in sys.modules  # importing it opens a web browser: a module with effects
    for name in ("antigravity:Anything", "kanpde.models.nowhere:Thing", "kanpde.problems.nowhere:Thing",
                 "kanpde.problems._reference:cached", "os.path:join", "kanpde.models.kan:KAN.__init__", "", "a:b:c"):
        with pytest.raises(RunFileRefused, match="is not allowed"):
            resolve_class(name)
    assert "antigravity" not in sys.modules
    with pytest.raises(RunFileRefused, match="is not a class path"):
        resolve_class(nn.Module)  # type: ignore[arg-type]


def test_own_classes_are_allowed_by_the_caller_only() -> None:
    from tests.helpers import SineLine

    with pytest.raises(RunFileRefused):
        resolve_class(class_path(SineLine))
    assert resolve_class(class_path(SineLine), allow=[SineLine]) is SineLine
    assert resolve_class(f"{SineLine.__module__}.SineLine", allow=[SineLine]) is SineLine  # format 1's dotted form


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_models_module_not_imported_yet_is_found() -> None:
    """The symbolic models (SymPy) are imported on use: a file naming them imports kanpde's own module."""
    code = ("import sys; from kanpde.io.files import resolve_class; assert 'kanpde.models.symbolic' not in sys.modules; "
            "print(resolve_class('kanpde.symbolic:SymbolicKAN').__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "kanpde.models.symbolic"
