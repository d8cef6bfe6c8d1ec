"""Dense quasi-Newton optimizers with a strong-Wolfe line search: BFGS and the self-scaled family
(SSBFGS, SSBroyden) of Urbán, Stefanou & Pons (2025, arXiv 2405.04230), used for PINNs and PIKANs by
Kiyani et al. (2025, arXiv 2501.16371).

All keep a dense inverse-Hessian approximation ``H`` (``P x P``, float64) of the loss over the flattened
parameters. An iteration moves along ``d = -H g`` by a step ``alpha`` satisfying the strong Wolfe conditions

    f(x + alpha d) <= f(x) + c1 alpha g^T d,        |g(x + alpha d)^T d| <= c2 |g^T d|

(:func:`scipy.optimize.line_search`), then, with ``s = alpha d``, ``y = g_new - g``, ``rho = 1 / y^T s``,
``h = rho y^T H y``, ``b = rho s^T H^{-1} s = -alpha rho s^T g`` and ``v = rho s - H y / y^T H y``,
updates

    H <- (H - H y y^T H / y^T H y + phi y^T H y v v^T) / tau + rho s s^T

(the Broyden class of inverse updates, self-scaled by ``tau``: ``phi = 1`` is BFGS, ``phi = 0`` DFP).
The members differ only in ``(phi, tau)``:

- ``bfgs``: ``phi = 1``, ``tau = 1`` -- scipy's BFGS update;
- ``ssbfgs``: ``phi = 1``, ``tau = min(1, 1 / b)`` (Al-Baali's self-scaling, "SSBFGS_AB");
- ``ssbroyden``: ``a = b h - 1``, ``rho- = min(1, h (1 - sqrt(a / (1 + a))))``, ``theta- = (rho- - 1) / a``,
  ``theta+ = 1 / rho-``, ``theta = max(theta-, min(theta+, (1 - b) / b))``, ``phi = (1 - theta) / (1 + a theta)``,
  ``sigma = 1 + a theta``, ``r = min(1, 1 / b)``; ``tau = min(r sigma^(1/(1-P)), sigma)`` when ``theta <= 0``,
  else ``tau = r min(sigma^(1/(1-P)), 1 / theta)`` (the paper's "SSBroyden2", its eqs. 13-23).

With ``initial_scale`` (the default) the first update after ``H = I`` scales instead by ``tau = h`` (for
SSBroyden ``tau = h / (1 + a theta)``), i.e. ``H_0 = (y^T s / y^T y) I`` as in Nocedal & Wright (6.20).
Every choice keeps ``H`` symmetric positive definite whenever ``y^T s > 0``, which the curvature condition
guarantees; an update with ``y^T s <= 0`` (round-off) is skipped.

Memory and time: ``H`` takes ``8 P^2`` bytes (P = 10,000 parameters: 800 MB; 20,000: 3.2 GB) and the update
is four passes over it (rank-one terms added a block of rows at a time: no ``P x P`` temporaries), so an
iteration costs one ``P x P`` product and ``O(P^2)`` updates besides the loss and gradient evaluations of
its line search. An optimizer over more than ``max_params`` parameters (10,000 by default) is refused at
construction (and :mod:`kanpde.app.config` refuses such a stage before training).

Line search: :func:`scipy.optimize.line_search` (Nocedal & Wright's zoom, algorithms 3.5-3.6), a public,
documented and tested routine that reports a failure as ``None`` instead of returning a step that violates
the conditions -- unlike ``torch.optim.lbfgs._strong_wolfe`` (private, and it returns its best point when it
gives up). scipy's own BFGS, and the papers' implementation built on it, call it when MINPACK's search
fails. Its first trial step follows scipy's BFGS (``min(1, 2.02 (f_prev - f) / g^T d)``). A non-finite loss at a trial
point counts as ``+inf``, so the search backs off from it.

When a line search fails, ``H`` is reset to the identity and the iteration retried along ``-g``; when that
fails too (or the gradient is below ``tolerance_grad``), the optimizer is *converged*: later steps only call
the closure (so that the trainer records the loss), as :class:`~kanpde.training.lm.LevenbergMarquardt` does.

State across stages (the rule): the state -- ``H`` and the scale of the first trial step -- lives as long as
the optimizer, i.e. across all the steps of one stage, and :func:`kanpde.fit` builds a fresh optimizer at every
stage start, so each stage starts from ``H = I`` (scaled at its first update). A grid extension changes the
parameter vector's length and meaning (spline coefficients on other knots), so there is nothing to carry;
other stage boundaries change the loss (new points, sizes, terms) or the parameters (knot updates, pruning,
snapping), and a run resumed from a stage checkpoint must give the result of the uninterrupted run without
storing ``8 P^2`` bytes per checkpoint. A schedule that wants the curvature kept uses one longer stage.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import torch
from scipy.optimize import line_search
from torch import Tensor

__all__ = ["QuasiNewton", "BFGS", "SSBFGS", "SSBroyden", "UPDATES", "MAX_PARAMS"]

log = logging.getLogger(__name__)

UPDATES = ("bfgs", "ssbfgs", "ssbroyden")
MAX_PARAMS = 10_000  # 800 MB of float64 inverse Hessian


def _check_number(name: str, value: object, low: float, high: float = math.inf, *, open_low: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and value < high
    if not ok:
        bounds = f"{'>' if open_low else '>='} {low}" + (f" and < {high}" if high < math.inf else "")
        raise ValueError(f"{name} must be a finite number {bounds}, got {value!r}")
    return float(value)


def _add_outer(H: Tensor, u: Tensor, alpha: float, rows: int = 1024) -> None:
    """``H += alpha u u^T`` in place, ``rows`` rows at a time (a ``rows x P`` temporary, not ``P x P``). Each
    entry gets ``alpha (u_i u_j)``, the same for ``(i, j)`` and ``(j, i)``, so a symmetric ``H`` stays exactly
    symmetric (BLAS's ``ger``, behind ``Tensor.addr_``, rounds ``alpha u_i`` first and does not)."""
    for start in range(0, u.shape[0], rows):
        H[start : start + rows].add_(torch.outer(u[start : start + rows], u), alpha=alpha)


class QuasiNewton(torch.optim.Optimizer):
    """Dense BFGS / SSBFGS / SSBroyden with a strong-Wolfe line search (module docstring), as a
    ``torch.optim`` optimizer with the closure interface of :class:`torch.optim.LBFGS`.

    One :meth:`step` runs up to ``max_iter`` iterations (each one line search and one inverse-Hessian
    update); the closure must zero the gradients, compute the loss, call ``backward`` and return the
    loss, and is called once at the start of the step and at every trial point of the line searches.
    The parameters may be float32 or float64; the iterates, the gradients and ``H`` are float64 on the
    parameters' device, and the parameters are set to each trial point in their own dtype.

    ``update``: ``"bfgs"``, ``"ssbfgs"`` or ``"ssbroyden"``; ``max_iter``: iterations per step;
    ``tolerance_grad``: converged once ``max |g| <=`` this; ``tolerance_change``: the step ends when an
    iteration lowers the loss by less than this (absolute; ``0`` never); ``c1``, ``c2``: the Wolfe constants
    (``0 < c1 < c2 < 1``); ``max_ls``: trial steps per line search; ``initial_scale``: scale ``H = I`` at the
    first update (module docstring); ``max_params``: the largest parameter count accepted (memory
    ``8 max_params^2`` bytes).

    ``trace`` holds, for the last step, one record per iteration: ``loss``, ``new_loss``, ``alpha``,
    ``slope`` (``g^T d``), ``new_slope`` (``g_new^T d``), ``tau``, ``phi`` and ``reset`` (``H`` was reset first).
    """

    update_name = "ssbroyden"
    limits_parameter_count = True  # kanpde.app.config checks the stage's parameter count before training

    def __init__(
        self,
        params: Iterable[Tensor],
        update: str | None = None,
        max_iter: int = 20,
        tolerance_grad: float = 1e-12,
        tolerance_change: float = 0.0,
        c1: float = 1e-4,
        c2: float = 0.9,
        max_ls: int = 20,
        initial_scale: bool = True,
        max_params: int = MAX_PARAMS,
    ) -> None:
        name = type(self).__name__
        update = self.update_name if update is None else update
        if update not in UPDATES:
            raise ValueError(f"{name} update must be one of {list(UPDATES)}, got {update!r}")
        for key, value in (("max_iter", max_iter), ("max_ls", max_ls), ("max_params", max_params)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} {key} must be a positive integer, got {value!r}")
        tolerance_grad = _check_number(f"{name} tolerance_grad", tolerance_grad, 0.0, open_low=False)
        tolerance_change = _check_number(f"{name} tolerance_change", tolerance_change, 0.0, open_low=False)
        c1 = _check_number(f"{name} c1", c1, 0.0, 1.0)
        c2 = _check_number(f"{name} c2", c2, c1, 1.0)
        if not isinstance(initial_scale, bool):
            raise ValueError(f"{name} initial_scale must be true or false, got {initial_scale!r}")
        super().__init__(params, {})
        n = sum(p.numel() for p in self._params)
        if n > max_params:
            raise ValueError(
                f"{name} keeps a dense {n} x {n} float64 inverse Hessian ({8 * n * n / 1e9:.2g} GB) for {n} parameters, "
                f"more than max_params={max_params}; use lbfgs, a smaller model or a larger max_params"
            )
        self.update, self.max_iter, self.max_ls, self.max_params = update, max_iter, max_ls, max_params
        self.tolerance_grad, self.tolerance_change, self.c1, self.c2 = tolerance_grad, tolerance_change, c1, c2
        self.initial_scale = initial_scale
        self.n_params = n
        self.H: Tensor | None = None  # allocated at the first step
        self.n_updates = 0  # updates since H was last the identity
        self.converged = False
        self.trace: list[dict[str, float]] = []
        self._x_end: Tensor | None = None  # the parameters the last step ended at
        self._last: tuple[np.ndarray, float, np.ndarray] | None = None
        self._f_prev: float | None = None  # the loss before the last iteration (the first trial step's scale)

    @property
    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    # -- parameters as one float64 vector ---------------------------------------------------------------------------

    def _flat_params(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1).to(torch.float64) for p in self._params])

    def _flat_grad(self) -> Tensor:
        parts = [torch.full((p.numel(),), math.nan, dtype=torch.float64, device=p.device) if p.grad is None
                 else p.grad.detach().reshape(-1).to(torch.float64) for p in self._params]
        return torch.cat(parts)

    @torch.no_grad()
    def _set_params(self, x: Tensor) -> None:
        offset = 0
        for p in self._params:
            n = p.numel()
            p.copy_(x[offset : offset + n].view_as(p))
            offset += n

    def _evaluate(self, closure: Callable[[], Tensor], x: np.ndarray, device: torch.device) -> tuple[float, np.ndarray]:
        """Loss and gradient at ``x`` (the parameters are left at ``x``); the last point is cached, as the
        line search asks for the value and the gradient at the same point in two calls."""
        if self._last is not None and np.array_equal(self._last[0], x):
            return self._last[1], self._last[2]
        self._set_params(torch.from_numpy(x).to(device))
        with torch.enable_grad():
            loss = float(torch.as_tensor(closure()).detach())
        f = loss if math.isfinite(loss) else math.inf
        g = self._flat_grad().cpu().numpy() if math.isfinite(loss) else np.full(x.shape, np.nan)
        self._last = (x.copy(), f, g)
        return f, g

    # -- the update ------------------------------------------------------------------------------------------------

    def _scaling(self, alpha: float, s: Tensor, y: Tensor, g: Tensor, Hy: Tensor) -> tuple[float, float]:
        """``(phi, tau)`` of the update (module docstring)."""
        rho = 1.0 / float(y @ s)
        h = float(y @ Hy) * rho
        b = -alpha * rho * float(s @ g)  # = s^T H^-1 s / y^T s, as s = -alpha H g
        first = self.initial_scale and self.n_updates == 0
        if self.update == "bfgs":
            return 1.0, (h if first else 1.0)
        if self.update == "ssbfgs":
            return 1.0, (h if first else min(1.0, 1.0 / b))
        a = max(b * h - 1.0, 0.0)  # >= 0 by Cauchy-Schwarz; round-off may take it below
        rho_minus = min(1.0, h * (1.0 - math.sqrt(a / (1.0 + a))))
        if a > 0:
            theta_minus = (rho_minus - 1.0) / a
        else:  # H y is parallel to s: v = 0 and theta only enters tau
            theta_minus = -math.inf if rho_minus < 1.0 else 0.0
        theta = max(theta_minus, min(1.0 / rho_minus, (1.0 - b) / b))
        sigma = 1.0 + a * theta
        phi = (1.0 - theta) / sigma
        if first:
            return phi, h / sigma
        n = self.n_params
        sigma_root = abs(sigma) ** (1.0 / (1.0 - n)) if n > 1 else 1.0
        r = min(1.0, 1.0 / b)
        tau = min(r * sigma_root, sigma) if theta <= 0 else r * min(sigma_root, 1.0 / theta)
        return phi, tau

    def _update(self, alpha: float, s: Tensor, y: Tensor, g: Tensor) -> tuple[float, float]:
        H = self.H
        ys = float(y @ s)
        if not ys > 0:
            return math.nan, math.nan  # no curvature information (round-off): keep H
        Hy = H @ y
        yHy = float(y @ Hy)
        phi, tau = self._scaling(alpha, s, y, g, Hy)
        if not (yHy > 0 and math.isfinite(phi) and math.isfinite(tau) and tau > 0):
            return math.nan, math.nan
        v = s / ys - Hy / yHy
        _add_outer(H, Hy, -1.0 / yHy)
        _add_outer(H, v, phi * yHy)
        H.div_(tau)
        _add_outer(H, s, 1.0 / ys)
        self.n_updates += 1
        return phi, tau

    def _reset(self, device: torch.device) -> None:
        if self.H is None:
            self.H = torch.eye(self.n_params, dtype=torch.float64, device=device)
        else:
            self.H.zero_().diagonal().fill_(1.0)
        self.n_updates = 0

    # -- one step --------------------------------------------------------------------------------------------------

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """Up to ``max_iter`` quasi-Newton iterations; returns the loss the step started from."""
        if closure is None:
            raise RuntimeError(f"{type(self).__name__} needs a closure that returns the loss after backward()")
        with torch.enable_grad():
            loss = closure()
        self.trace = []
        if self.converged or not torch.isfinite(torch.as_tensor(loss)).all():
            return loss
        device = self._params[0].device
        x = self._flat_params().cpu().numpy()
        g = self._flat_grad().cpu().numpy()
        f = float(torch.as_tensor(loss).detach())
        self._last = (x.copy(), f, g)
        if self.H is None:
            self._reset(device)
        continued = self._x_end is not None and self._f_prev is not None and np.array_equal(x, self._x_end.cpu().numpy())
        # the first trial step: scipy's BFGS rule min(1, 2.02 (f_prev - f) / g^T d), from f_prev = f + |g| / 2
        # (a step of about 1 / |g|) unless the step goes on from where the last one ended
        f_prev = self._f_prev if continued else f + float(np.linalg.norm(g)) / 2

        def fun(z: np.ndarray) -> float:
            return self._evaluate(closure, z, device)[0]

        def grad(z: np.ndarray) -> np.ndarray:
            return self._evaluate(closure, z, device)[1]

        for _ in range(self.max_iter):
            if not np.all(np.isfinite(g)) or float(np.abs(g).max()) <= self.tolerance_grad:
                self.converged = True
                break
            reset = False
            gt = torch.from_numpy(g).to(device)
            d = -(self.H @ gt)
            if not float(gt @ d) < 0:  # H lost positive definiteness to round-off
                self._reset(device)
                d, reset = -gt, True
            d_np = d.cpu().numpy()
            alpha, f_new, g_new = self._search(fun, grad, x, d_np, g, f, f_prev)
            if alpha is None and not reset and self.n_updates > 0:
                self._reset(device)  # retry along -g with H = I
                d, reset = -gt, True
                d_np = d.cpu().numpy()
                alpha, f_new, g_new = self._search(fun, grad, x, d_np, g, f, f_prev)
            if alpha is None:
                log.info("%s: line search failed from loss %.6e; converged", type(self).__name__, f)
                self.converged = True
                break
            s_np = alpha * d_np
            x_new = x + s_np
            f_new, g_new = self._evaluate(closure, x_new, device)  # cached: the search's last point
            s = torch.from_numpy(s_np).to(device)
            y = torch.from_numpy(g_new - g).to(device)
            phi, tau = self._update(alpha, s, y, gt)
            self.trace.append({"loss": f, "new_loss": f_new, "alpha": alpha, "slope": float(g @ d_np),
                               "new_slope": float(g_new @ d_np), "phi": phi, "tau": tau, "reset": float(reset)})
            change = f - f_new
            f_prev, f, g, x = f, f_new, g_new, x_new
            if change < self.tolerance_change:
                break
        self._set_params(torch.from_numpy(x).to(device))
        self._x_end, self._f_prev, self._last = self._flat_params(), f_prev, None
        return loss

    def _search(self, fun, grad, x, d, g, f, f_prev) -> tuple[float | None, float, np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its LineSearchWarning on failure: a None step, handled by the caller
            with np.errstate(all="ignore"):
                alpha, _, _, f_new, _, g_new = line_search(
                    fun, grad, x, d, gfk=g, old_fval=f, old_old_fval=f_prev, c1=self.c1, c2=self.c2,
                    maxiter=self.max_ls,
                )
        if alpha is None or g_new is None or not math.isfinite(alpha) or alpha <= 0:
            return None, f, g
        return float(alpha), f_new, g_new


class BFGS(QuasiNewton):
    """Dense BFGS (``update="bfgs"``) with the strong-Wolfe line search of :class:`QuasiNewton`; with
    ``initial_scale=False`` its iterations are those of scipy's BFGS with :func:`scipy.optimize.line_search`."""

    update_name = "bfgs"


class SSBFGS(QuasiNewton):
    """Self-scaled BFGS (Al-Baali's ``tau = min(1, 1/b)``, ``update="ssbfgs"``): :class:`QuasiNewton`."""

    update_name = "ssbfgs"


class SSBroyden(QuasiNewton):
    """Self-scaled Broyden (``update="ssbroyden"``, the papers' SSBroyden2): :class:`QuasiNewton`."""

    update_name = "ssbroyden"
