"""The CPU kernels a run uses, compiled before its timed parts.

The forward engine's fused CPU kernels (numba) are specialised per derivative plan and layer kind and
compiled on first use, then kept in numba's disk cache. The first run after installing would otherwise
compile them inside the first model's timed training (tens of seconds, making a KAN look slower than
it is). :func:`compile_ahead` runs a model's residuals -- the PDE and every condition, forward and
backward -- and its evaluation on a few points, so every kernel the run needs is compiled (or loaded
from the cache) before training starts; the time goes to ``compile_seconds`` in ``metrics.json``, never
to ``train_seconds`` (the trainer's clock leaves out any compilation that still happens inside it).
"""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from kanpde.derivatives import resolve_engine
from kanpde.evaluate import _predict_with_grad
from kanpde.models import compile_seconds, compiled_kernels, fused_available, kernels_cached
from kanpde.models.protocol import module_dtype_device
from kanpde.pde import Problem, Sampler
from kanpde.training.loss import derivative_plans, loss_terms, weighted_loss

__all__ = ["compile_ahead"]

log = logging.getLogger(__name__)

_ANNOUNCED = {"compiling": False}


def compile_ahead(model: nn.Module, problem: Problem, engine: str = "auto", pde_weight: float = 0.01,
                  n_points: int = 8) -> float:
    """Compile (or load from numba's cache) the CPU kernels ``model`` uses on ``problem``: one loss and its
    gradient on ``n_points`` interior points (and as many per condition), and the evaluation's values and
    gradients. Leaves the model's parameters, gradients and torch's random state as they were. Returns
    the seconds spent compiling or loading kernels (0 where the kernels do not apply)."""
    dtype, device = module_dtype_device(model)
    if resolve_engine(engine, model) != "forward" or not fused_available(torch.empty(0, dtype=dtype, device=device)):
        return 0.0
    if kernels_cached() is False and not _ANNOUNCED["compiling"]:
        _ANNOUNCED["compiling"] = True
        log.info("first run after installing: compiling the CPU kernels (once; numba keeps them for later runs, "
                 "and the time is recorded as compile_seconds, not train_seconds)")
    seconds, misses, start = compile_seconds(), compiled_kernels(), time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        batch = problem.sample(Sampler(seed=0), n_points, n_points * max(len(problem.conditions), 1)).to(dtype, device)
        plans = derivative_plans(model, problem, batch, engine)
        loss = weighted_loss(loss_terms(model, problem, batch, engine, plans), problem, pde_weight)
        params = [p for p in model.parameters() if p.requires_grad]
        torch.autograd.grad(loss, params, allow_unused=True)  # the backward kernels; no .grad is touched
        _predict_with_grad(model, problem, batch.interior, engine)  # the evaluation's kernels
    compiled = compiled_kernels() - misses
    if compiled:
        log.info("compiled %d CPU kernel(s) for %s in %.1f s (not training time)", compiled, type(model).__name__,
                 time.perf_counter() - start)
    return compile_seconds() - seconds
