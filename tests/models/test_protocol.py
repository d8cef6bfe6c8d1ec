"""kanpde.models.protocol: capabilities asked without naming classes, so interpretation reaches the network
inside hard constraints, and stage kinds that cannot apply are refused before training."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from kanpde.problems.poisson2d import Poisson2D

import kanpde
from kanpde.app.config import ConfigError
from kanpde.app.run import run
from kanpde.models.protocol import GridModel, JetModel, Wrapper, is_edge_model, rewrap, unwrap
from kanpde.pde.hard import soft_problem

F64 = torch.float64


def test_unwrap_rewrap_and_capabilities() -> None:
    problem = Poisson2D()
    kan, mlp = kanpde.KAN([2, 4, 1], grid_size=4, dtype=F64), kanpde.MLP([2, 8, 1], dtype=F64)
    hard = kanpde.HardDirichlet(kan, problem)
    assert unwrap(hard) is kan and unwrap(kan) is kan and isinstance(hard, Wrapper) and not isinstance(kan, Wrapper)
    assert is_edge_model(hard) and is_edge_model(kan) and not is_edge_model(kanpde.HardDirichlet(mlp, problem))
    assert isinstance(hard, GridModel) and isinstance(kan, GridModel) and not isinstance(mlp, GridModel)
    assert isinstance(hard, JetModel) and isinstance(mlp, JetModel)
    other = kanpde.KAN([2, 3, 1], grid_size=4, dtype=F64)
    swapped = rewrap(hard, other)
    assert isinstance(swapped, kanpde.HardDirichlet) and swapped.net is other and swapped.problem is problem
    assert rewrap(kan, other) is other


@pytest.mark.parametrize("wrapper", [kanpde.HardDirichlet, kanpde.PeriodicEmbedding])
def test_from_config_checks_the_resolved_classes_before_building_anything(wrapper) -> None:
    """The wrappers' shared ``WrapsNet.from_config``: a saved network class that is not an ``nn.Module``, or
    a problem class that is not a ``Problem``, is refused in one line naming the wrapper, and nothing is built."""
    built = []

    class Net(torch.nn.Module):
        def __init__(self, **kwargs) -> None:
            built.append(kwargs)
            super().__init__()

    class NotAModule:
        def __init__(self, **kwargs) -> None:
            built.append(kwargs)

    config = {"net": {"class": "net", "config": {}}, "problem": {"class": "problem"}}
    with pytest.raises(ValueError, match=f"^{wrapper.__name__}: saved network class 'net' is not a torch.nn.Module$"):
        wrapper.from_config(config, {"net": NotAModule, "problem": Poisson2D}.__getitem__)
    with pytest.raises(ValueError, match=f"^{wrapper.__name__}: saved problem class 'problem' is not a kanpde Problem$"):
        wrapper.from_config(config, {"net": Net, "problem": NotAModule}.__getitem__)
    assert built == []


def test_prune_and_sparsify_stages_reach_the_kan_inside_hard_constraints() -> None:
    """Under hard constraints the stages prune and sparsify the wrapped KAN (they used to do nothing)."""
    problem = Poisson2D()
    torch.manual_seed(0)
    model = kanpde.HardDirichlet(kanpde.KAN([2, 6, 1], grid_size=4, dtype=F64), problem)
    adam = partial(torch.optim.Adam, lr=1e-2)
    stages = [kanpde.Stage(adam, 20, sparsify={"lambda": 1e-2, "mu": 1.0}),
              kanpde.Stage(adam, 5, prune=0.5)]  # a high threshold: some hidden nodes must go
    result = kanpde.fit(model, soft_problem(problem), stages, sampler=kanpde.Sampler(seed=0), n_interior=64,
                        n_boundary=16)
    summary = result.history.stages
    assert "sparsity" in summary[0] and summary[0]["sparsity"] > 0
    assert isinstance(result.model, kanpde.HardDirichlet) and summary[1]["widths"][1] < 6
    assert result.model.net.widths == summary[1]["widths"]
    edge = torch.tensor([[-1.0, 0.3], [0.2, 1.0]], dtype=F64)
    with torch.no_grad():
        assert float(result.model(edge).abs().max()) == 0.0


def _cfg(*overrides: str):
    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        return compose(config_name="config", overrides=["debug=fast", "device=cpu", "output.figures=false", *overrides])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("hard_bc=true", "trainer.stages=[{optimizer: adam, steps: 2, symbolic: true}]"),
         r"trainer.stages\[0\]: symbolic stages with hard_bc=true would snap the network N inside u = g \+ D N"),
        (("model=mlp", "trainer.stages=[{optimizer: adam, steps: 2, prune: true}]"),
         r"trainer.stages\[0\]: prune needs a model with edge functions \(a KAN\), not MLP"),
        (("model=mlp", "trainer.stages=[{optimizer: adam, steps: 2, sparsify: {lambda: 0.01}}]"),
         r"sparsify needs a model with edge functions"),
    ],
)
def test_stage_kinds_that_cannot_apply_are_refused_before_training(overrides, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        run(_cfg(*overrides), output_dir=tmp_path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "solution.h5").exists()


def test_hard_bc_with_prune_and_sparsify_runs_end_to_end(tmp_path: Path) -> None:
    stages = "[{optimizer: adam, steps: 3, sparsify: {lambda: 0.01}}, {optimizer: adam, steps: 2, prune: 0.0}]"
    metrics = run(_cfg("hard_bc=true", "baseline=null", f"trainer.stages={stages}"), output_dir=tmp_path)
    assert metrics["status"] == "ok" and metrics["model"] == "kan" and metrics["widths"] == [2, 3, 1]
    assert isinstance(kanpde.load_run(tmp_path).model, kanpde.HardDirichlet)
