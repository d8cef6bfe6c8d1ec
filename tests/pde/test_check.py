"""The probe of a problem before training (kanpde.pde.check.check_problem): one line naming the class,
the method and the expected against the actual shape, dtype or values; every shipped problem passes."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil

import pytest
import torch
from torch import Tensor

import kanpde.problems
from kanpde.pde import Box, Dirichlet, Periodic, Problem, check_problem
from tests.helpers import SMALL_PROBLEM_KWARGS

PI = torch.pi


class Good(Problem):
    """u'' = -pi^2 sin(pi x) on [0, 1], u = sin(pi x); every method can be broken by a subclass."""

    coords = ("x",)

    def __init__(self) -> None:
        super().__init__(Box([0.0], [1.0], self.coords), [Dirichlet("all", self.target)])

    def target(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x[:, 0])

    def pde(self, x: Tensor, u) -> Tensor:
        return u.d("xx") + PI**2 * torch.sin(PI * x[:, 0])

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(PI * x[:, 0])


class Scalar(Good):
    def pde(self, x, u):
        return super().pde(x, u).mean()


class OneShort(Good):
    def pde(self, x, u):
        return super().pde(x, u)[1:]


class ThreeColumns(Good):
    def pde(self, x, u):
        return super().pde(x, u)[:, None].expand(-1, 3)


class Float32Residual(Good):
    def pde(self, x, u):
        return super().pde(x, u).float()


class NaNResidual(Good):
    def pde(self, x, u):
        return super().pde(x, u) / 0 * 0


class ListOfOneBad(Good):
    def pde(self, x, u):
        r = super().pde(x, u)
        return [r, r[:2]]


class RaisingPde(Good):
    def pde(self, x, u):
        return u.d("yy")


class NaNExact(Good):
    def exact(self, x):
        return torch.full_like(x[:, 0], float("nan"))


class WideExact(Good):
    def exact(self, x):
        return super().exact(x)[:, None].expand(-1, 2)


class BadExactGrad(Good):
    def exact_grad(self, x):
        return PI * torch.cos(PI * x)[:, :, None, None]


class WideTarget(Good):
    def target(self, x):
        return torch.zeros_like(x)[:, [0, 0]]


class NoExact(Good):
    exact = Problem.exact  # issue 18: problems without an exact solution must pass on their residuals


class DataExact(Good):
    """An exact solution interpolated from tabulated data: no autograd graph, no exact_grad."""

    def exact(self, x):
        xs = torch.linspace(0.0, 1.0, 101, dtype=x.dtype)
        return torch.from_numpy(__import__("numpy").interp(x[:, 0].detach().numpy(), xs.numpy(),
                                                           torch.sin(PI * xs).numpy())).to(x.dtype)


class Ring(Problem):
    """A periodic problem: the residual of a periodic pair of value and derivative has 2 entries per pair."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(Box([0.0, 0.0], [1.0, 1.0], self.coords),
                         [Periodic(("x-", "x+"), derivatives=("x",)), Dirichlet(("y-", "y+"))])

    def pde(self, x, u):
        return u.laplacian()

    def exact(self, x):
        return torch.zeros_like(x[:, 0])


BAD = [
    (Scalar, r"^Scalar\.pde returned shape \(\) at 8 interior points, expected \(8,\)$"),
    (OneShort, r"^OneShort\.pde returned shape \(7,\) at 8 interior points, expected \(8,\)$"),
    (ThreeColumns, r"^ThreeColumns\.pde returned shape \(8, 3\) at 8 interior points, expected \(8,\)$"),
    (Float32Residual, r"^Float32Residual\.pde returned dtype float32 for float64 points"),
    (NaNResidual, r"^NaNResidual\.pde returned 8 non-finite value\(s\) of 8 at 8 interior points$"),
    (ListOfOneBad, r"^ListOfOneBad\.pde returned shape \(2,\)"),
    (RaisingPde, r"^RaisingPde\.pde raised KeyError on 8 probe points: .*cannot read derivative 'yy'"),
    (NaNExact, r"^NaNExact\.exact returned 24 non-finite value\(s\) of 24 at 24 points$"),
    (WideExact, r"^WideExact\.exact returned shape \(24, 2\) at 24 points, expected \(24,\) or \(24, 1\)$"),
    (BadExactGrad, r"^BadExactGrad\.exact_grad returned shape \(24, 1, 1, 1\) at 24 points, expected \(24, 1\) or \(24, 1, 1\)$"),
    (WideTarget, r"^WideTarget\.conditions\['dirichlet\[all\]'\] value returned shape \(16, 2\)"),
]


@pytest.mark.parametrize("cls,message", BAD, ids=[c.__name__ for c, _ in BAD])
def test_a_faulty_problem_is_refused_in_one_line(cls, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        check_problem(cls(), torch.float64, "cpu")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cls", [Good, NoExact, Ring])
def test_sound_problems_pass(cls) -> None:
    for dtype in (torch.float32, torch.float64):
        check_problem(cls(), dtype, "cpu")


def test_exact_without_graph_or_gradient_passes_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kanpde.pde.check"):
        check_problem(DataExact())
    assert "DataExact.exact has no autograd graph and there is no exact_grad" in caplog.text
    assert "H1 metrics will be skipped" in caplog.text


def _shipped() -> list[type[Problem]]:
    found = []
    for info in pkgutil.iter_modules(kanpde.problems.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"kanpde.problems.{info.name}")
        found += [c for c in vars(module).values()
                  if inspect.isclass(c) and issubclass(c, Problem) and c.__module__ == module.__name__]
    return found


@pytest.mark.parametrize("cls", _shipped(), ids=lambda c: c.__name__)
def test_every_shipped_problem_passes(cls) -> None:
    problem = cls(**SMALL_PROBLEM_KWARGS.get(cls.__module__.rsplit(".", 1)[-1], {}))
    for dtype in (torch.float32, torch.float64):
        check_problem(problem, dtype, "cpu")

