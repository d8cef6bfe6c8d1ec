"""The hard-constraint wrapper (kanpde.models.hard.HardDirichlet) and its lifting (kanpde.pde.hard.Lifting):
targets called only on the boundary (a spy records every point, eager and inside torch.func), exact
boundary values (box, time-dependent box, disk, annulus, L-shape; a target per piece), derivatives of the
wrapped model by the forward engine and the LM Jacobian against autograd, a C^2 lifting where the closest
point is not smooth, grid extension through the wrapper, refused domains. (Runs with hard_bc=true: tests/app/.)"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

import kanpde
from kanpde.derivatives.field import AutogradField, ForwardField
from kanpde.derivatives.jet import DerivativePlan
from kanpde.models import hard as hard_module
from kanpde.models.hard import HardDirichlet
from kanpde.io.files import import_object, resolve_class
from kanpde.pde.hard import Lifting, hard_conditions, soft_problem
from kanpde.training.loss import PinnLeastSquares
from kanpde.pde.sampling import Sampler
from kanpde.training.loss import derivative_plans, residual_sets

F64 = torch.float64


class DiskPoisson(kanpde.Problem):
    """Δu = 0 on the unit disk centred at (0.2, -0.1), u = e^x sin y + 1 on the circle (a non-zero target)."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(kanpde.Disk((0.2, -0.1), 1.0), [kanpde.Dirichlet("circle", self.exact)])

    def pde(self, x, u):
        return u.laplacian()

    def exact(self, x):
        return torch.exp(x[:, 0]) * torch.sin(x[:, 1]) + 1.0


class AnnulusLaplace(kanpde.Problem):
    """Δu = 0 on an annulus, u = 1 + x on both circles."""

    coords = ("x", "y")

    def __init__(self) -> None:
        super().__init__(kanpde.Annulus((0.0, 0.0), 0.4, 1.2), [kanpde.Dirichlet("all", self.exact)])

    def pde(self, x, u):
        return u.laplacian()

    def exact(self, x):
        return 1.0 + x[:, 0]


# Importable by name, as HardDirichlet's config and load_run need.
_module = types.ModuleType("kanpde_test_hard_problems")
_module.DiskPoisson, _module.AnnulusLaplace = DiskPoisson, AnnulusLaplace
DiskPoisson.__module__ = AnnulusLaplace.__module__ = _module.__name__
sys.modules[_module.__name__] = _module

CASES = {
    "poisson2d": {"_target_": "kanpde.problems.poisson2d.Poisson2D"},
    "poisson5d": {"_target_": "kanpde.problems.poisson5d.Poisson5D"},
    "poisson2d_robin": {"_target_": "kanpde.problems.poisson2d_robin.Poisson2DRobin"},
    "disk": {"_target_": f"{_module.__name__}.DiskPoisson"},
    "annulus": {"_target_": f"{_module.__name__}.AnnulusLaplace"},
    "kovasznay": {"_target_": "kanpde.problems.kovasznay.Kovasznay"},
}


def _build_problem(spec: dict) -> kanpde.Problem:
    spec = dict(spec)
    return import_object(spec.pop("_target_"))(**spec)


def _wrapped(spec: dict, kind: str = "kan") -> HardDirichlet:
    problem = _build_problem(spec)
    widths = [problem.dim, 5, problem.n_outputs]
    net = kanpde.KAN(widths, grid_size=4, dtype=F64) if kind == "kan" else kanpde.MLP(widths, dtype=F64)
    return HardDirichlet(net, problem)


@pytest.mark.parametrize("name", ["poisson2d", "poisson5d", "poisson2d_robin", "disk", "annulus", "kovasznay"])
def test_dirichlet_data_hold_to_machine_precision(name: str) -> None:
    model = _wrapped(CASES[name])
    problem = model.problem
    with torch.no_grad():  # scramble the network: the boundary values must not depend on it
        for p in model.net.parameters():
            p.add_(torch.randn_like(p))
    batch = problem.sample(Sampler(method="sobol", seed=3), 64, 400)
    checked = 0
    for comp, pieces in hard_conditions(problem).items():
        for cond in dict.fromkeys(pieces.values()):
            pts = batch.boundary[cond.label].x
            with torch.no_grad():
                u, n = model(pts)[:, comp], model.net(pts)[:, comp]
            g = cond.target(pts)
            if problem.geometry.is_box and not callable(cond.value):  # the face factor is exactly zero on the face
                assert torch.equal(u, g)
            else:  # round-off of the points (x = c + r (cos t, sin t)) and of the interpolation weights
                assert float((u - g).abs().max()) <= 1e-12 * (1 + float(g.abs().max()) + float(n.abs().max()))
            checked += pts.shape[0]
            with torch.no_grad():  # and inside the domain the network does act
                inside = model(batch.interior)[:, comp] - model.lifting(batch.interior)[:, 1, comp]
            assert float(inside.abs().max()) > 1e-3
    assert checked > 0


@pytest.mark.parametrize("kind", ["kan", "mlp"])
@pytest.mark.parametrize("name", ["poisson2d", "disk", "annulus"])
def test_forward_engine_matches_autograd(name: str, kind: str) -> None:
    """The product rule of HardDirichlet.forward_jet against nested autograd of its forward."""
    model = _wrapped(CASES[name], kind)
    problem = model.problem
    x = torch.from_numpy(problem.geometry.sample_interior(Sampler(method="sobol", seed=1), 50))
    coords = problem.coords
    fwd = ForwardField(model, x, coords, plan={(0,), (1,), (0, 0), (0, 1), (1, 1)})
    ref = AutogradField(model, x, coords)
    for spec in [coords[0], coords[1], coords[0] * 2, coords[0] + coords[1], coords[1] * 2]:
        assert torch.allclose(fwd.d(spec), ref.d(spec), atol=1e-11, rtol=1e-11), spec
    assert torch.allclose(fwd.value, ref.value, atol=1e-14, rtol=0)
    traced = ForwardField(model, x, coords, plan=DerivativePlan.of([], [(0, 1)]))  # the Laplacian as one row
    assert torch.allclose(traced.laplacian(), ref.laplacian(), atol=1e-11, rtol=1e-11)
    assert traced.plan.pairs == ()


@pytest.mark.parametrize("name", ["poisson2d", "poisson2d_robin", "disk", "kovasznay"])
def test_lm_jacobian_through_the_wrapper_matches_autograd(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-point Jacobians (vmap) take the lift's derivatives computed once per chunk outside the
    transform (jet_constants), keep them for the system's life, and still equal autograd's Jacobian;
    soft conditions left beside the hard ones (Robin, Kovasznay's pressure) go the same way."""
    model = _wrapped(CASES[name])
    problem = soft_problem(model.problem)
    if name == "poisson2d":
        assert problem.conditions == ()
    batch = problem.sample(Sampler(method="sobol", seed=0), 30, 12 if problem.conditions else 0)
    plans = derivative_plans(model, problem, batch, "forward")
    calls = []
    compute = HardDirichlet._compute_lift_derivatives
    monkeypatch.setattr(HardDirichlet, "_compute_lift_derivatives",
                        lambda self, x, plan: calls.append(x.shape[0]) or compute(self, x, plan))
    system = PinnLeastSquares(model, problem, batch, 0.01, "forward", plans, chunk_size=8)
    J, r = system.jacobian()
    chunks = sum(math.ceil(s.units / 8) for s in residual_sets(problem, batch))
    assert 0 < len(calls) <= chunks and all(n <= 8 for n in calls)  # once per chunk, not per point under vmap
    first = len(calls)
    J2, r2 = system.jacobian()
    assert len(calls) == first  # kept: the points of a system do not change
    assert torch.equal(J, J2) and torch.equal(r, r2)
    J_ref, r_ref = PinnLeastSquares(model, problem, batch, 0.01, "autograd", None, chunk_size=8).jacobian()
    # the rows of a point's several residuals (Kovasznay: 3) are ordered differently by the two engines
    order, order_ref = torch.sort(r).indices, torch.sort(r_ref).indices
    assert torch.allclose(r[order], r_ref[order_ref], atol=1e-14, rtol=0)
    assert torch.allclose(J[order], J_ref[order_ref], atol=1e-12 * float(J_ref.abs().max()), rtol=0)


def test_lift_derivatives_are_taken_in_blocks_of_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of at most LIFT_CHUNK points give what all points at once give, for every kind of plan."""
    model = _wrapped(CASES["disk"])
    x = torch.from_numpy(model.problem.geometry.sample_interior(Sampler(method="sobol", seed=1), 30))
    plans = [DerivativePlan.of([(0,), (1,), (0, 1), (1, 1)]), DerivativePlan.of([(1,)], [(0, 1)]),
             DerivativePlan.of([(0,)]), DerivativePlan()]
    whole = [model._compute_lift_derivatives(x, plan) for plan in plans]
    sizes = []
    block = HardDirichlet._lift_derivatives_block
    monkeypatch.setattr(hard_module, "LIFT_CHUNK", 7)
    monkeypatch.setattr(HardDirichlet, "_lift_derivatives_block",
                        lambda self, x, plan: sizes.append(x.shape[0]) or block(self, x, plan))
    for plan, ref in zip(plans, whole):
        got = model._compute_lift_derivatives(x, plan)
        assert [None if t is None else t.shape[-1] for t in got[1:]] == [plan.m or None, len(plan.entries) or None]
        for g, r in zip(got, ref):
            assert (g is None) == (r is None)
            if r is not None:
                assert g.shape == r.shape and torch.allclose(g, r, atol=1e-14, rtol=0)
    assert sizes == [7, 7, 7, 7, 2] * len(plans)


def test_box_lift_blocks_hold_a_number_of_point_term_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a box a block holds LIFT_TERMS_PER_BLOCK (point, Coons term) pairs (at least LIFT_CHUNK points):
    kovasznay's 8 terms a point give blocks of 2**17 / 8 points; the result does not depend on the blocks."""
    model = _wrapped(CASES["kovasznay"])
    assert model.lifting.box_terms == 8 and _wrapped(CASES["poisson5d"]).lifting.box_terms == 3**5 - 1
    assert _wrapped(CASES["disk"]).lifting.box_terms is None
    x = torch.from_numpy(model.problem.geometry.sample_interior(Sampler(seed=4), 20000))
    plan = DerivativePlan.of([(0,), (1,)], [(0, 1)])
    sizes = []
    block = HardDirichlet._lift_derivatives_block
    monkeypatch.setattr(HardDirichlet, "_lift_derivatives_block",
                        lambda self, x, plan: sizes.append(x.shape[0]) or block(self, x, plan))
    big = model._compute_lift_derivatives(x, plan)
    assert sizes == [16384, 20000 - 16384]
    monkeypatch.setattr(hard_module, "LIFT_TERMS_PER_BLOCK", 0)  # LIFT_CHUNK points
    small = model._compute_lift_derivatives(x, plan)
    assert len(sizes) == 2 + math.ceil(20000 / hard_module.LIFT_CHUNK)
    for a, b in zip(big, small):
        assert torch.allclose(a, b, atol=1e-13, rtol=0)


def test_lift_derivatives_are_the_plans_entries_of_the_hessian() -> None:
    """First derivatives along the plan's directions and the second derivatives of its entries (mixed
    pairs and the pure ones of a trace) equal those of the lift's full Jacobian and Hessian."""
    model = _wrapped(CASES["kovasznay"])
    x = torch.from_numpy(model.problem.geometry.sample_interior(Sampler(method="sobol", seed=3), 20))
    one = lambda xi: model.lifting(xi[None])[0]  # noqa: E731
    jac = torch.func.vmap(torch.func.jacrev(one))(x)  # (n, 2, n_out, d)
    hess = torch.func.vmap(torch.func.jacrev(torch.func.jacrev(one)))(x)  # (n, 2, n_out, d, d)
    plan = DerivativePlan.of([(1,), (0, 1)], [(0, 1)])
    value, first, second = model._compute_lift_derivatives(x, plan)
    assert torch.allclose(value, model.lifting(x), atol=1e-15, rtol=0)
    assert torch.allclose(first, jac[..., list(plan.dirs)], atol=1e-12, rtol=0)
    a, b = ([plan.dirs[i] for i in pos] for pos in plan.pair_dirs)
    assert len(a) == 3  # (0, 1), then (0, 0) and (1, 1) of the trace
    assert torch.allclose(second, hess[..., a, b], atol=1e-10, rtol=0)


_PEAK_SCRIPT = """
import resource, torch
from kanpde import KAN, HardDirichlet, Sampler
from kanpde.derivatives.jet import DerivativePlan
from kanpde.problems.poisson5d import Poisson5D
torch.set_num_threads(1)
problem = Poisson5D()
x = torch.from_numpy(problem.geometry.sample_interior(Sampler(seed=0), 2048))
model = HardDirichlet(KAN([5, 3, 1], grid_size=3, dtype=torch.float64), problem)
plan = DerivativePlan.of([(c, c) for c in range(5)])  # every pure second derivative
model._compute_lift_derivatives(x[:8], plan)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
value, first, second = model._compute_lift_derivatives(x, plan)
assert second.shape == (2048, 2, 1, 5)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB is Linux's")
def test_the_5d_lift_derivatives_on_many_points_stay_within_memory() -> None:
    """The Hessian of the 5-D Coons lift on 2,048 points, all at once by nested jacfwd, raised the peak by
    2.9 GB (poisson5d with hard_bc=true on the accurate recipe's 8,000 points was killed for memory); in
    blocks of points it grows by far less."""
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) < 600  # MiB above the process's peak before


def test_the_lifting_on_a_polygon_is_singular_at_its_corners_and_says_so() -> None:
    """On the L-shape the Laplacians of D and G grow like 1/r towards a convex corner (ten times larger at a
    tenth of the distance), which corner_note warns about; boxes (Coons) and smooth boundaries get no note."""
    from kanpde.pde.hard import corner_note
    from kanpde.problems.laplace_lshape import LaplaceLShape

    problem = LaplaceLShape()
    model = HardDirichlet(kanpde.KAN([2, 3, 1], grid_size=3, dtype=F64), problem)
    plan = DerivativePlan.of([], [(0, 1)])
    lap = {}
    for eps in (1e-2, 1e-3):
        x = torch.tensor([[-1 + eps / 2**0.5, -1 + eps / 2**0.5]], dtype=F64)  # towards the corner (-1, -1)
        lap[eps] = model._compute_lift_derivatives(x, plan)[2][0, :, 0, 0]  # (D, G)
    ratio = lap[1e-3] / lap[1e-2]
    assert torch.all((ratio > 9) & (ratio < 11)), ratio
    assert "1/r at the corners" in corner_note(problem)
    for name in ("poisson2d", "poisson5d", "disk", "annulus"):
        assert corner_note(_build_problem(CASES[name])) is None, name


def test_evaluation_takes_the_lift_derivatives_once_per_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluation's gradient pass and residual pass share each chunk's lift derivatives (the small
    derivative probes between them do not evict them), and the metrics are those of separate passes."""
    model = _wrapped(CASES["poisson2d"])
    ref = kanpde.evaluate(model, model.problem, n_per_axis=21, chunk_size=100)
    calls = []
    compute = HardDirichlet._compute_lift_derivatives
    monkeypatch.setattr(HardDirichlet, "_compute_lift_derivatives",
                        lambda self, x, plan: calls.append(x.shape[0] if plan.m else 0) or compute(self, x, plan))
    monkeypatch.setattr(hard_module, "LIFT_SHARED_MIB", 0)  # the per-wrapper cache alone
    monkeypatch.setattr(hard_module, "LIFT_CACHE", 1)  # one entry: every probe evicts the chunk's
    kanpde.evaluate(model, model.problem, n_per_axis=21, chunk_size=100)
    assert sorted(n for n in calls if n > 10) == [41, 41] + [100] * 8  # twice each
    calls.clear()
    monkeypatch.setattr(hard_module, "LIFT_CACHE", 4)
    ev = kanpde.evaluate(model, model.problem, n_per_axis=21, chunk_size=100)
    assert sorted(n for n in calls if n > 10) == [41] + [100] * 4  # 441 points: 4 chunks of 100, one of 41
    for key in ("l2_rel", "h1_rel", "residual_rms", "residual_max"):
        assert ev.metrics[key] == pytest.approx(ref.metrics[key], rel=1e-12, abs=0), key
    monkeypatch.setattr(hard_module, "LIFT_SHARED_MIB", 256)  # a baseline on the same grid: no chunk again
    kanpde.evaluate(model, model.problem, n_per_axis=21, chunk_size=100)
    calls.clear()
    baseline = HardDirichlet(kanpde.MLP([2, 6, 1], dtype=F64), model.problem)
    kanpde.evaluate(baseline, model.problem, n_per_axis=21, chunk_size=100)
    assert [n for n in calls if n > 10] == []


def test_wrappers_of_one_problem_share_the_lift_derivatives(monkeypatch: pytest.MonkeyPatch) -> None:
    """Equal points, given as another tensor or to another wrapper of the same problem (the baseline, the
    wrapper after grid extension), reuse the lift's derivatives; other points, another problem or another
    plan compute them again; the kept results stay within LIFT_SHARED_MIB."""
    model = _wrapped(CASES["poisson5d"])
    baseline = HardDirichlet(kanpde.MLP([5, 6, 1], dtype=F64), model.problem)
    other = _wrapped(CASES["poisson5d"])  # an equal problem, another object: not shared
    x = torch.from_numpy(model.problem.geometry.sample_interior(Sampler(method="sobol", seed=3), 40))
    plan = DerivativePlan.of([(c,) for c in range(5)], [tuple(range(5))])
    calls = []
    compute = HardDirichlet._compute_lift_derivatives
    monkeypatch.setattr(HardDirichlet, "_compute_lift_derivatives",
                        lambda self, x, plan: calls.append(x.shape[0]) or compute(self, x, plan))
    ref = model.forward_jet(x, plan)
    for m in (model, baseline, model.refine(6, x)):
        m.forward_jet(x.clone(), plan)
    assert calls == [40]
    got = baseline.forward_jet(x.clone(), plan)
    again = HardDirichlet(model.net, model.problem).forward_jet(x.clone(), plan)  # baseline's lift, model's net
    for field in ("value", "first", "second"):
        assert torch.equal(getattr(again, field), getattr(ref, field))
    assert not torch.equal(got.value, ref.value)
    y = x.clone()
    y[17, 2] += 1e-12  # one value differs: computed again
    model.forward_jet(y, plan)
    other.forward_jet(x.clone(), plan)
    model.forward_jet(x.clone(), DerivativePlan.of([(0,)]))
    assert calls == [40] * 4
    monkeypatch.setattr(hard_module, "LIFT_SHARED_MIB", 0.03)  # ~31 kB: two of these point sets
    for seed in range(6):
        z = torch.from_numpy(model.problem.geometry.sample_interior(Sampler(seed=seed), 40))
        baseline.forward_jet(z, plan)
    kept = hard_module._SHARED[model.problem]
    assert 0 < len(kept) <= 3 and sum(entry[2] for entry in kept.values()) <= 0.03 * 2**20


def test_refine_keeps_the_wrapper_and_the_function() -> None:
    model = _wrapped(CASES["poisson2d"])
    x = torch.from_numpy(model.problem.geometry.sample_interior(Sampler(method="sobol", seed=2), 100))
    model.update_grid(x)  # every layer's inputs inside its grid: grid extension is then exact
    finer = model.refine(8, x)
    assert isinstance(finer, HardDirichlet) and finer.grid_size == 8 and model.grid_size == 4
    with torch.no_grad():
        assert torch.allclose(finer(x), model(x), atol=1e-10, rtol=0)
    rebuilt = HardDirichlet.from_config(json.loads(json.dumps(finer.config)), resolve_class, dtype=F64)
    rebuilt.load_state_dict(finer.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), finer(x))


def test_a_domain_without_an_extension_is_refused() -> None:
    class NoExtension(kanpde.Disk):  # a distance factor, but no boundary extension
        extension = kanpde.Geometry.extension

    class P(DiskPoisson):
        def __init__(self) -> None:
            kanpde.Problem.__init__(self, NoExtension((0.0, 0.0), 1.0), [kanpde.Dirichlet("circle", 1.0)])

    with pytest.raises(ValueError, match="Geometry.dirichlet_factor and Geometry.extension; NoExtension has no extension"):
        HardDirichlet(kanpde.KAN([2, 3, 1]), P())
    with pytest.raises(NotImplementedError, match="NoExtension has no boundary extension"):
        NoExtension().extension("circle", torch.zeros(1, 2))


# -- boundary data only: a spy on every target ---------------------------------------------------------------

_F = torch._C._functorch  # the spy sees points inside torch.func transforms (the forward engine's jets)


class Spy:
    """A target that records every point it is called at (eager, or inside vmap/jacfwd), then evaluates ``fn``."""

    def __init__(self, fn) -> None:
        self.fn, self.calls = fn, []

    def __call__(self, x):
        t = x
        while _F.is_functorch_wrapped_tensor(t):
            t = _F.get_unwrapped(t)
        self.calls.append(t.detach())
        return self.fn(x)

    def points(self, d: int) -> np.ndarray:
        out = []
        for t in self.calls:
            for _ in range(8):  # wrappers of finished transforms
                t = _F.unwrap_if_dead(t)
            out.append(t.reshape(-1, d).numpy())
        return np.concatenate(out)


def _smooth(x):
    return torch.exp(0.3 * x[:, 0]) * torch.cos(x[:, 1]) + 0.5 * x[:, 0] * x[:, 1]


class SpyBox(kanpde.Problem):
    """A box with a different target on each Dirichlet face (they agree at the corners: all from one smooth
    function plus terms that vanish on the shared edges) and a Neumann face left soft."""

    coords = ("x", "y")

    def __init__(self) -> None:
        self.spies = {
            "x-": Spy(_smooth),
            "y-": Spy(lambda x: _smooth(x) + (x[:, 0] + 1) * (x[:, 0] - 2) ** 2),  # = _smooth at x = -1 and x = 2
            "y+": Spy(lambda x: _smooth(x) + torch.sin(math.pi * (x[:, 0] + 1) / 3)),  # = _smooth at x = -1 and 2
        }
        conds = [kanpde.Dirichlet(face, spy) for face, spy in self.spies.items()] + [kanpde.Neumann("x+", 0.0)]
        super().__init__(kanpde.Box([-1.0, -0.5], [2.0, 1.5], self.coords), conds)

    def pde(self, x, u):
        return u.laplacian()


class SpyHeat(kanpde.Problem):
    """A time-dependent box: Dirichlet ends and an Initial value (different targets, equal at the corners)."""

    coords = ("x", "t")

    def __init__(self) -> None:
        self.spies = {"ends": Spy(lambda x: 0.2 * x[:, 1] ** 2 * torch.cos(math.pi * x[:, 0])),
                      "initial": Spy(lambda x: torch.sin(math.pi * x[:, 0]) ** 2)}
        conds = [kanpde.Dirichlet(("x-", "x+"), self.spies["ends"]), kanpde.Initial(self.spies["initial"])]
        super().__init__(kanpde.Box([0.0, 0.0], [1.0, 0.5], self.coords), conds)

    def pde(self, x, u):
        return u.d("t") - u.d("xx")


class SpyDisk(kanpde.Problem):
    coords = ("x", "y")

    def __init__(self) -> None:
        self.spies = {"circle": Spy(_smooth)}
        super().__init__(kanpde.Disk((0.2, -0.1), 1.3), [kanpde.Dirichlet("circle", self.spies["circle"])])

    def pde(self, x, u):
        return u.laplacian()


class SpyAnnulus(kanpde.Problem):
    coords = ("x", "y")

    def __init__(self) -> None:
        self.spies = {"outer": Spy(_smooth), "inner": Spy(lambda x: 2.0 - x[:, 1] ** 3)}
        conds = [kanpde.Dirichlet(p, s) for p, s in self.spies.items()]
        super().__init__(kanpde.Annulus((0.1, 0.0), 0.4, 1.2), conds)

    def pde(self, x, u):
        return u.laplacian()


class SpyLShape(kanpde.Problem):
    """The L-shape with the exact data of laplace_lshape on four edges and other targets on the notch."""

    coords = ("x", "y")

    def __init__(self) -> None:
        from kanpde.problems.laplace_lshape import LaplaceLShape

        exact = LaplaceLShape().exact
        self.spies = {"outer": Spy(exact), "notch_x": Spy(lambda x: x[:, 1] ** 2), "notch_y": Spy(lambda x: torch.sin(x[:, 0]))}
        conds = [kanpde.Dirichlet(("bottom", "right", "top", "left"), self.spies["outer"]),
                 kanpde.Dirichlet("notch_x", self.spies["notch_x"]), kanpde.Dirichlet("notch_y", self.spies["notch_y"])]
        super().__init__(kanpde.LShape(self.coords), conds)

    def pde(self, x, u):
        return u.laplacian()


class Capsule(kanpde.Geometry):
    """A domain of a user's own, one boundary piece: the points within ``r`` of the segment ``a b`` (a stadium).
    Its ``sdf`` is written in operations NumPy arrays and torch tensors share (the square root guarded, so
    its gradient is finite on the segment), so hard constraints come from it alone."""

    names = ("x", "y")
    pieces = ("wall",)

    def __init__(self, half: float = 0.5, r: float = 0.5) -> None:
        self.half, self.r = half, r
        self.bounding_box = (np.array([-half - r, -r]), np.array([half + r, r]))
        self.volume = 4 * half * r + math.pi * r**2

    def measure(self, piece: str) -> float:
        return 4 * self.half + 2 * math.pi * self.r

    def sample_boundary(self, piece, sampler, n):  # not uniform in length: enough for these tests
        t = 2 * math.pi * sampler.unit(n, 1)[:, 0]
        normals = np.stack([np.cos(t), np.sin(t)], axis=1)
        centre = np.stack([np.where(normals[:, 0] >= 0, self.half, -self.half), np.zeros(n)], axis=1)
        return centre + self.r * normals, normals

    def sdf(self, x):
        h = (x[:, 0] / (2 * self.half) + 0.5).clip(0.0, 1.0)
        dx = x[:, 0] - (2 * h - 1) * self.half
        return (dx**2 + x[:, 1] ** 2 + 1e-300) ** 0.5 - self.r


class SpyCapsule(kanpde.Problem):
    coords = ("x", "y")

    def __init__(self) -> None:
        self.spies = {"wall": Spy(_smooth)}
        super().__init__(Capsule(), [kanpde.Dirichlet("wall", self.spies["wall"])])

    def pde(self, x, u):
        return u.laplacian()


SPY_PROBLEMS = {"box": SpyBox, "heat": SpyHeat, "disk": SpyDisk, "annulus": SpyAnnulus, "lshape": SpyLShape,
                "custom": SpyCapsule}


def _spy_points(problem: kanpde.Problem, n: int = 200) -> torch.Tensor:
    """Interior points, with the hard places of each lifting: near a disk's centre (the cut-off band), on
    the lines through the L-shape's vertices, and beyond its edges' end points."""
    geo = problem.geometry
    x = geo.sample_interior(Sampler(method="sobol", seed=5), n)
    extra = {
        "Disk": lambda: [geo.center + d for d in ([0.0, 0.0], [0.05, 0.0], [0.0, 0.3], [0.4, 0.4], [-0.5, 0.2])],
        "LShape": lambda: [[0.0, 0.5], [-0.5, 0.0], [0.3, 0.7], [-0.9, -0.9], [1e-9, 0.2]],
    }.get(type(geo).__name__, list)()
    pts = np.concatenate([x, np.asarray(extra, dtype=np.float64).reshape(-1, 2)]) if extra else x
    return torch.from_numpy(pts)


@pytest.mark.parametrize("name", sorted(SPY_PROBLEMS))
def test_targets_are_called_only_on_their_boundary_pieces(name: str) -> None:
    """Eager forward, autograd derivatives and the forward engine's jets: every point a target sees lies on
    the boundary (sdf 0 to 1e-12), on a piece the target belongs to."""
    problem = SPY_PROBLEMS[name]()
    model = HardDirichlet(kanpde.MLP([2, 6, 1], dtype=F64), problem)
    x = _spy_points(problem)
    coords = problem.coords
    model(x)
    AutogradField(model, x.clone().requires_grad_(False), coords).laplacian()
    ForwardField(model, x, coords, plan={(0,), (1,), (0, 0), (0, 1), (1, 1)}).laplacian()
    geo = problem.geometry
    pieces_of = {}
    for cond in problem.conditions:
        for spy in problem.spies.values():
            if cond.value is spy:
                pieces_of[id(spy)] = geo.resolve_faces(cond.on)
    for label, spy in problem.spies.items():
        pts = spy.points(2)
        assert len(spy.calls) >= 3 and pts.shape[0] > 0, label
        assert np.abs(geo.sdf(pts)).max() <= 1e-12, label
        # on the target's own pieces: the nearest of them is at distance 0
        dist = np.min([_piece_distance(geo, p, pts) for p in pieces_of[id(spy)]], axis=0)
        assert dist.max() <= 1e-12, label


def _piece_distance(geo, piece: str, pts: np.ndarray) -> np.ndarray:
    if isinstance(geo, kanpde.Box):
        axis, upper = geo._face_axis(piece)
        return np.abs(pts[:, axis] - (geo.hi[axis] if upper else geo.lo[axis])) + np.maximum(
            0.0, np.abs(pts - (geo.lo + geo.hi) / 2) - (geo.hi - geo.lo) / 2).sum(axis=1)
    if isinstance(geo, kanpde.Polygon):
        a, b = geo._edge(piece)
        s = np.clip((pts - a) @ (b - a) / ((b - a) @ (b - a)), 0.0, 1.0)
        return np.linalg.norm(pts - (a + s[:, None] * (b - a)), axis=1)
    if isinstance(geo, Capsule):
        return np.abs(geo.sdf(pts))
    r = {"circle": getattr(geo, "radius", None), "outer": getattr(geo, "r_outer", None), "inner": getattr(geo, "r_inner", None)}[piece]
    return np.abs(np.linalg.norm(pts - geo.center, axis=1) - r)


@pytest.mark.parametrize("name", sorted(SPY_PROBLEMS))
def test_dirichlet_data_hold_on_every_piece_with_its_own_target(name: str) -> None:
    problem = SPY_PROBLEMS[name]()
    model = HardDirichlet(kanpde.KAN([2, 4, 1], grid_size=4, dtype=F64), problem)
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(torch.randn_like(p))
        for cond in problem.conditions:
            if cond.kind not in ("dirichlet", "initial"):
                continue
            for piece in problem.geometry.resolve_faces(cond.on):
                x, _ = problem.geometry.sample_boundary(piece, Sampler(method="sobol", seed=7), 64)
                x = torch.from_numpy(x)
                u, g, n = model(x)[:, 0], cond.target(x), model.net(x)[:, 0]
                assert float((u - g).abs().max()) <= 1e-12 * (1 + float(n.abs().max())), (cond.label, piece)


@pytest.mark.parametrize("name", sorted(SPY_PROBLEMS))
def test_forward_jet_of_the_lifting_matches_autograd(name: str) -> None:
    """First and second derivatives of u = G + D N by the forward engine (torch.func on the lifting) and by
    nested autograd, at interior points and the places where the lifting blends (float64, 1e-10)."""
    problem = SPY_PROBLEMS[name]()
    torch.manual_seed(0)
    model = HardDirichlet(kanpde.KAN([2, 4, 1], grid_size=4, dtype=F64), problem)
    x = _spy_points(problem, 60)
    coords = problem.coords
    fwd = ForwardField(model, x, coords, plan={(0,), (1,), (0, 0), (0, 1), (1, 1)})
    ref = AutogradField(model, x, coords)
    for spec in [coords[0], coords[1], coords[0] * 2, coords[0] + coords[1], coords[1] * 2]:
        got, want = fwd.d(spec), ref.d(spec)
        assert torch.isfinite(got).all(), spec
        assert torch.allclose(got, want, atol=1e-10, rtol=1e-10), (spec, float((got - want).abs().max()))
    again = ForwardField(model, x, coords, plan={(0,), (1,), (0, 0), (0, 1), (1, 1)})  # the cached lifting jets
    assert torch.equal(again.d(coords[0] * 2), fwd.d(coords[0] * 2))


def _hessian(f, x: torch.Tensor) -> torch.Tensor:
    from torch.func import hessian, vmap

    return vmap(hessian(lambda xi: f(xi[None])[0]))(x)


@pytest.mark.parametrize("name", ["lshape", "disk"])
def test_the_lifting_is_c2_where_the_closest_point_is_not(name: str) -> None:
    """Second derivatives of D and G agree on both sides of the lines where the closest point has a kink
    (the L-shape: x = 0 and y = 0 inside, through the re-entrant vertex; a clamped projection fails this)
    and across the disk's cut-off radii; they converge as the two sides meet."""
    problem = SPY_PROBLEMS[name]()
    lift = Lifting(problem)
    if name == "lshape":
        lines = [(np.array([0.0, y]), np.array([1.0, 0.0])) for y in (0.3, 0.7)]
        lines += [(np.array([x, 0.0]), np.array([0.0, 1.0])) for x in (-0.6, -0.3)]
    else:
        c, r = problem.geometry.center, problem.geometry.radius
        lines = [(c + np.array([f * r, 0.0]), np.array([1.0, 0.0])) for f in (0.25, 0.5)]
    for base, normal in lines:
        gaps = []
        for h in (1e-3, 1e-4):
            pts = torch.from_numpy(np.stack([base - h * normal, base + h * normal]))
            hess = _hessian(lift, pts)  # (2, 2, n_out, d, d)
            gaps.append(float((hess[0] - hess[1]).abs().max()))
        assert gaps[1] <= 1e-2 and gaps[1] <= 0.2 * gaps[0] + 1e-9, (base, gaps)


# NumpyCapsule below is numpy-only on purpose (it must be refused); numpy warns when handed torch tensors
@pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")
def test_a_custom_domain_gets_hard_constraints_from_its_signed_distance() -> None:
    """One boundary piece and a torch-capable sdf: D = -sdf, the extension's points all lie on the boundary
    (the projection onto sdf = 0, the closest point off the medial axis, the identity on the boundary, blended
    into fixed boundary points deep inside); an sdf in NumPy functions gets no default (one line)."""
    geo = Capsule()
    assert geo.has_dirichlet_factor
    x = torch.from_numpy(geo.sample_interior(Sampler(method="sobol", seed=3), 300))
    x = torch.cat([x, torch.tensor([[0.0, 0.0], [0.2, 0.0], [-0.7, 0.1]], dtype=F64)])  # on the segment too
    phi, depth = geo.dirichlet_factor("wall", x), -geo.sdf(x)
    h = geo._sdf_blend_data("wall")[0]  # the largest depth, estimated from random points: 0.5
    assert 0.49 <= h <= 0.5
    b = 0.75 * h  # the cut-off: the distance near the boundary, levelled off to b / 2 from depth b on
    assert ((phi - depth).abs() <= 7 * b * (depth / b) ** 5 + 1e-15).all()  # phi = t - b J(t / b), J(z) <= 7 z^5
    deep = depth >= b
    assert deep.any() and torch.allclose(phi[deep], torch.full_like(phi[deep], b / 2), atol=1e-15)
    assert (phi > 0).all() and (phi <= depth + 1e-15).all()
    points, weights = geo.extension("wall", x)
    k = 1 + geo.MEAN_POINTS
    assert points.shape == (x.shape[0], k, 2) and weights.shape == (x.shape[0], k)
    assert torch.allclose(weights.sum(dim=1), torch.ones(x.shape[0], dtype=F64), atol=1e-14) and (weights >= 0).all()
    assert float(geo.sdf(points.reshape(-1, 2)).abs().max()) <= 1e-12
    assert torch.equal(weights[deep, 0], torch.zeros(int(deep.sum()), dtype=F64))  # the mean of the data alone
    # off the medial axis (the segment) the projection is the closest point: |x - p| = dist(x)
    assert torch.allclose((x - points[:, 0]).norm(dim=1)[:300], -geo.sdf(x)[:300], atol=1e-12)
    on, _ = geo.sample_boundary("wall", Sampler(method="sobol", seed=4), 50)
    on = torch.from_numpy(on)
    points, weights = geo.extension("wall", on)
    assert torch.allclose(points[:, 0], on, atol=1e-14) and torch.equal(weights[:, 0], torch.ones(50, dtype=F64))

    class NumpyCapsule(Capsule):
        def sdf(self, x):
            h = np.clip(x[:, 0] / (2 * self.half) + 0.5, 0.0, 1.0)
            return np.hypot(x[:, 0] - (2 * h - 1) * self.half, x[:, 1]) - self.r

    class P(SpyCapsule):
        def __init__(self) -> None:
            kanpde.Problem.__init__(self, NumpyCapsule(), [kanpde.Dirichlet("wall", 1.0)])

    assert not NumpyCapsule().has_dirichlet_factor
    with pytest.raises(ValueError, match="NumpyCapsule has neither"):
        HardDirichlet(kanpde.KAN([2, 3, 1]), P())
    with pytest.raises(NotImplementedError, match="write sdf\\(\\) in operations NumPy arrays and torch tensors share"):
        NumpyCapsule().extension("wall", torch.zeros(1, 2, dtype=F64))


@pytest.mark.slow
def test_a_custom_domain_with_hard_constraints_trains() -> None:
    """kanpde.fit with hard constraints on the capsule: the data hold exactly, the error of a harmonic solution
    drops (measured: l2_rel 0.579 -> 0.046 after 25 Levenberg-Marquardt steps)."""
    class Harmonic(kanpde.Problem):
        coords = ("x", "y")

        def __init__(self) -> None:
            super().__init__(Capsule(), [kanpde.Dirichlet("wall", self.exact)])

        def pde(self, x, u):
            return u.laplacian()

        def exact(self, x):
            return x[:, 0] ** 2 - x[:, 1] ** 2 + 0.5 * x[:, 0]

    problem = Harmonic()
    torch.manual_seed(0)
    model = HardDirichlet(kanpde.KAN([2, 6, 1], grid_size=5, dtype=F64), problem)
    x = torch.from_numpy(problem.geometry.sample_interior(Sampler(method="sobol", seed=9), 400))
    with torch.no_grad():
        before = float((model(x)[:, 0] - problem.exact(x)).norm() / problem.exact(x).norm())
    fitted = kanpde.fit(model, soft_problem(problem), [kanpde.Stage(kanpde.LevenbergMarquardt, 25)],
                        n_interior=256, n_boundary=0)
    with torch.no_grad():
        after = float((fitted.model(x)[:, 0] - problem.exact(x)).norm() / problem.exact(x).norm())
        on = torch.from_numpy(problem.geometry.sample_boundary("wall", Sampler(method="sobol", seed=2), 64)[0])
        assert float((fitted.model(on)[:, 0] - problem.exact(on)).abs().max()) <= 1e-12
    print(f"capsule: l2_rel {before:.3g} -> {after:.3g}")
    assert after <= 0.1 and after <= 0.2 * before, (before, after)


def test_coons_lifting_reproduces_data_from_a_polynomial_of_the_boundary() -> None:
    """The transfinite interpolation on a box is exact for functions linear in each coordinate (the Boolean
    sum's precision), here a bilinear u on the whole boundary of a 3-D box."""

    def u(x):
        return 1 + 2 * x[:, 0] - x[:, 1] + 0.5 * x[:, 0] * x[:, 2] - 3 * x[:, 0] * x[:, 1] * x[:, 2]

    class P(kanpde.Problem):
        coords = ("a", "b", "c")

        def __init__(self) -> None:
            super().__init__(kanpde.Box([0, -1, 0.5], [1, 1, 2], self.coords), [kanpde.Dirichlet("all", u)])

        def pde(self, x, v):
            return v.laplacian()

    problem = P()
    x = torch.from_numpy(problem.geometry.sample_interior(Sampler(method="sobol", seed=1), 100))
    lift = Lifting(problem)(x)
    assert torch.allclose(lift[:, 1, 0], u(x), atol=1e-13, rtol=0)


BOX_PROBLEMS = {"poisson2d": "Poisson2D", "poisson5d": "Poisson5D", "poisson2d_robin": "Poisson2DRobin",
                "kovasznay": "Kovasznay", "burgers1d": "Burgers1D", "wave1d": "Wave1D", "heat1d": "Heat1D"}


@pytest.mark.parametrize("stem", sorted(BOX_PROBLEMS))
def test_the_box_lift_derivatives_by_the_product_rule_equal_forward_mode_through_the_lift(
        stem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On boxes the lift's derivatives come from the product rule on the Coons terms (targets differentiated
    only along the coordinates a term leaves free): they equal jvp through the whole lift, for the full
    Hessian (mixed entries included), a Laplacian, and one direction; one-sided, time-dependent and
    several-output boxes."""
    model = _wrapped({"_target_": f"kanpde.problems.{stem}.{BOX_PROBLEMS[stem]}"})
    d = model.problem.dim
    x = torch.from_numpy(model.problem.geometry.sample_interior(Sampler(seed=0), 60))
    plans = [DerivativePlan.of([(c,) for c in range(d)] + [(i, j) for i in range(d) for j in range(i, d)]),
             DerivativePlan.of([(c,) for c in range(d)], [tuple(range(d))]), DerivativePlan.of([(d - 1,)])]
    by_hand = [model._compute_lift_derivatives(x, plan) for plan in plans]
    monkeypatch.setattr(model.lifting, "derivatives", lambda *args: None)
    for plan, got in zip(plans, by_hand):
        ref = model._compute_lift_derivatives(x, plan)
        for g, r in zip(got, ref):
            assert (g is None) == (r is None)
            if r is not None:
                assert g.shape == r.shape and torch.allclose(g, r, atol=1e-12 * (1 + r.abs().max()), rtol=0)


def test_the_lift_derivatives_by_hand_are_for_boxes_only() -> None:
    for name in ("disk", "annulus"):
        assert _wrapped(CASES[name]).lifting.derivatives(torch.zeros(3, 2, dtype=F64), [0], [(0, 0)]) is None


class Ode1D(kanpde.Problem):
    """u'' = -pi^2 sin(pi x) + 2 on [0, 1], u(0) = 0.5, u(1) = 1.5 (u = sin(pi x) + x^2 + 0.5): every Coons
    term pins the one coordinate."""

    coords = ("x",)

    def __init__(self) -> None:
        super().__init__(kanpde.Box([0.0], [1.0], self.coords), [kanpde.Dirichlet("all", self.exact)])

    def pde(self, x, u):
        return u.d("x", "x") + math.pi**2 * torch.sin(math.pi * x[:, 0]) - 2.0

    def exact(self, x):
        return torch.sin(math.pi * x[:, 0]) + x[:, 0] ** 2 + 0.5


def test_the_box_lift_on_an_interval_is_the_line_through_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    model = HardDirichlet(kanpde.KAN([1, 4, 1], grid_size=4, dtype=F64), Ode1D())
    x = torch.linspace(0.05, 0.95, 7, dtype=F64)[:, None]
    value, first, second = model._compute_lift_derivatives(x, DerivativePlan.of([(0,), (0, 0)]))
    assert torch.allclose(value[:, 1, 0], 0.5 + x[:, 0], atol=1e-14) and torch.allclose(first[:, 1, 0, 0], torch.ones(7, dtype=F64))
    assert torch.equal(second[:, 1], torch.zeros_like(second[:, 1]))
    assert torch.allclose(value[:, 0, 0], 4 * x[:, 0] * (1 - x[:, 0]), atol=1e-14)  # D = (2/L)^2 x (1 - x)
    assert torch.allclose(second[:, 0, 0, 0], torch.full((7,), -8.0, dtype=F64))
