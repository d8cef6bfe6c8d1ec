"""Reference solutions computed by classical solvers, for problems without a closed form.

* :func:`burgers_cole_hopf`: viscous Burgers ``u_t + u u_x = nu u_xx`` on ``[-1, 1]`` with
  ``u(x, 0) = -sin(pi x)`` and ``u(±1, t) = 0``, from the Cole–Hopf formula

      u(x, t) = - ∫ sin(pi (x - s z)) F(x - s z) e^{-z^2} dz / ∫ F(x - s z) e^{-z^2} dz,
      F(y) = exp(-cos(pi y) / (2 pi nu)),   s = sqrt(4 nu t),

  evaluated by the trapezoidal rule in ``z`` on ``[-z_max, z_max]`` (spectrally accurate for this
  smooth, rapidly decaying integrand) with the exponent shifted by its maximum (log-sum-exp), so no
  overflow even though ``1 / (2 pi nu) = 50`` for ``nu = 0.01 / pi``.
* :func:`allen_cahn_etdrk4`: ``u_t = eps u_xx + 5 (u - u^3)`` on ``[-1, 1]``, periodic (Fourier
  pseudo-spectral in ``x``) or with ``u(±1) = -1`` (sine series), and the ETDRK4 scheme of Cox &
  Matthews in time, with the ``phi`` functions computed by contour integrals (Kassam & Trefethen 2005).
* :func:`cached`: computes an array set once and keeps it as ``.npz`` in :func:`cache_dir`
  (``$XDG_CACHE_HOME/kanpde`` or ``~/.cache/kanpde``), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["burgers_cole_hopf", "allen_cahn_etdrk4", "fourier_eval", "cache_dir", "cached"]


def burgers_cole_hopf(
    x: np.ndarray, t: np.ndarray, nu: float, *, n_nodes: int = 1201, z_max: float = 14.0, chunk: int = 2048,
    derivative: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Viscous Burgers solution ``u(x, t)`` (and ``u_x`` when ``derivative``) at points ``x``, ``t`` ``(n,)``.

    Float64 NumPy in and out. At ``t = 0`` it is ``-sin(pi x)``. For ``nu = 0.01 / pi`` the defaults
    (1201 nodes on ``|z| <= 14``) reproduce the published steepest slope ``u_x(0, 1.6037/pi) =
    -152.00516`` (Basdevant et al. 1986) to 1e-8 relative; 4001 nodes on ``|z| <= 16`` give the same digits.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    t = np.broadcast_to(np.asarray(t, dtype=np.float64), x.shape).reshape(-1)
    z = np.linspace(-z_max, z_max, n_nodes)
    k = 1.0 / (2 * np.pi * nu)
    u = np.empty_like(x)
    ux = np.empty_like(x)
    for a in range(0, x.size, chunk):
        xs, ts = x[a : a + chunk, None], t[a : a + chunk, None]
        y = xs - np.sqrt(4 * nu * ts) * z[None, :]  # (n, nodes)
        expo = -np.cos(np.pi * y) * k - z[None, :] ** 2
        w = np.exp(expo - expo.max(axis=1, keepdims=True))
        sin_y, cos_y = np.sin(np.pi * y), np.cos(np.pi * y)
        den = w.sum(axis=1)
        num = (sin_y * w).sum(axis=1)
        u[a : a + chunk] = -num / den
        if derivative:  # d/dx under the integral: d(e^E)/dx = e^E pi k sin(pi y)
            dnum = (w * (np.pi * cos_y + np.pi * k * sin_y**2)).sum(axis=1)
            dden = (w * np.pi * k * sin_y).sum(axis=1)
            ux[a : a + chunk] = -(dnum * den - num * dden) / den**2
    zero = t == 0
    u[zero] = -np.sin(np.pi * x[zero])
    ux[zero] = -np.pi * np.cos(np.pi * x[zero])
    return (u, ux) if derivative else u


def _etdrk4_coefficients(lin: np.ndarray, dt: float, m: int = 32) -> tuple[np.ndarray, ...]:
    """``exp(dt L)``, ``exp(dt L / 2)`` and the ETDRK4 weights ``Q, f1, f2, f3`` of Cox & Matthews for a
    diagonal linear part ``lin``, with the ``phi`` functions by contour integrals over ``m`` points
    (Kassam & Trefethen 2005), which stay accurate where ``dt L`` is near zero."""
    r = np.exp(1j * np.pi * (np.arange(1, m + 1) - 0.5) / m)
    lr = dt * lin[:, None] + r[None, :]
    q = dt * np.real(np.mean((np.exp(lr / 2) - 1) / lr, axis=1))
    f1 = dt * np.real(np.mean((-4 - lr + np.exp(lr) * (4 - 3 * lr + lr**2)) / lr**3, axis=1))
    f2 = dt * np.real(np.mean((2 + lr + np.exp(lr) * (-2 + lr)) / lr**3, axis=1))
    f3 = dt * np.real(np.mean((-4 - 3 * lr - lr**2 + np.exp(lr) * (4 - lr)) / lr**3, axis=1))
    return np.exp(dt * lin), np.exp(dt * lin / 2), q, f1, f2, f3


def allen_cahn_etdrk4(
    n: int = 512, dt: float = 1e-4, t_final: float = 1.0, n_out: int = 1001, eps: float = 1e-4, gamma: float = 5.0,
    boundary: str = "periodic",
) -> dict[str, np.ndarray]:
    """Allen–Cahn ``u_t = eps u_xx + gamma (u - u^3)`` on ``[-1, 1]`` from ``u0 = x^2 cos(pi x)``.

    ``boundary="periodic"`` (the PINN benchmark of Raissi et al.): Fourier pseudo-spectral in ``x`` on
    ``n`` points ``x_j = -1 + 2j/n``, ``j < n``; ``gamma u`` is part of the linear operator.
    ``boundary="dirichlet"``: ``u(±1, t) = -1`` (= ``u0(±1)``; DeepXDE's variant), as ``v = u + 1`` in a
    sine series (type-I DST, exact for the Dirichlet Laplacian) on ``n + 1`` points ``x_j = -1 + 2j/n``,
    ``j <= n``, with the whole reaction term treated as the nonlinear part.
    ETDRK4 in time (Cox & Matthews). Returns ``{"x", "t": (n_out,), "u": (n_out, len(x))}``: ``n_out``
    equispaced times in ``[0, t_final]`` (``t_final / (n_out - 1)`` must be a multiple of ``dt``).
    """
    if boundary not in ("periodic", "dirichlet"):
        raise ValueError(f"boundary must be 'periodic' or 'dirichlet', got {boundary!r}")
    steps_per_out = (t_final / (n_out - 1)) / dt
    if abs(steps_per_out - round(steps_per_out)) > 1e-9 or steps_per_out < 1:
        raise ValueError(f"output spacing {t_final / (n_out - 1)} is not a multiple of dt={dt}")
    steps_per_out = int(round(steps_per_out))
    if boundary == "periodic":
        x = -1.0 + 2.0 * np.arange(n) / n
        k = np.pi * np.fft.fftfreq(n, 1.0 / n)  # wavenumbers for period 2
        lin = gamma - eps * k**2

        def to_space(v: np.ndarray) -> np.ndarray:
            return np.real(np.fft.ifft(v))

        def nonlinear(v: np.ndarray) -> np.ndarray:
            return -gamma * np.fft.fft(to_space(v) ** 3)

        v = np.fft.fft(x**2 * np.cos(np.pi * x))
    else:
        from scipy.fft import dst, idst

        x = -1.0 + 2.0 * np.arange(n + 1) / n
        k = np.pi * np.arange(1, n) / 2.0  # sin(k (x + 1)) vanishes at x = ±1
        lin = -eps * k**2

        def to_space(v: np.ndarray) -> np.ndarray:
            return np.concatenate([[-1.0], idst(v, type=1) - 1.0, [-1.0]])

        def nonlinear(v: np.ndarray) -> np.ndarray:
            u = idst(v, type=1) - 1.0
            return dst(gamma * (u - u**3), type=1)

        v = dst(x[1:-1] ** 2 * np.cos(np.pi * x[1:-1]) + 1.0, type=1)
    e, e2, q, f1, f2, f3 = _etdrk4_coefficients(lin, dt)
    out = np.empty((n_out, x.shape[0]))
    out[0] = to_space(v)
    for j in range(1, n_out):
        for _ in range(steps_per_out):
            nv = nonlinear(v)
            a = e2 * v + q * nv
            na = nonlinear(a)
            b = e2 * v + q * na
            nb = nonlinear(b)
            c = e2 * a + q * (2 * nb - nv)
            nc = nonlinear(c)
            v = e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3
        out[j] = to_space(v)
    return {"x": x, "t": np.linspace(0.0, t_final, n_out), "u": out}


def fourier_eval(values: np.ndarray, x: np.ndarray, period: float = 2.0, x0: float = -1.0, derivative: int = 0,
                 chunk: int = 4096) -> np.ndarray:
    """Trigonometric interpolant of equispaced periodic samples ``values`` ``(m, n)`` at points ``x`` ``(p,)``.

    Row ``i`` of the result ``(m, p)`` interpolates row ``i`` of ``values``; ``derivative`` takes that
    many x-derivatives of the interpolant.
    """
    values = np.atleast_2d(values)
    n = values.shape[1]
    coef = np.fft.fft(values, axis=1) / n  # (m, n)
    freq = np.fft.fftfreq(n, 1.0 / n)
    if n % 2 == 0:  # split the Nyquist mode evenly so the interpolant is real
        coef[:, n // 2] /= 2
        coef = np.concatenate([coef, coef[:, n // 2 : n // 2 + 1]], axis=1)
        freq = np.concatenate([freq, [n // 2]])
    kk = 2 * np.pi / period * freq
    coef = coef * (1j * kk) ** derivative
    out = np.empty((values.shape[0], x.size))
    for a in range(0, x.size, chunk):
        phase = np.exp(1j * np.outer(x[a : a + chunk] - x0, kk))  # (p, n)
        out[:, a : a + chunk] = np.real(coef @ phase.T)
    return out


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/kanpde`` or ``~/.cache/kanpde`` (created on demand)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kanpde"


def cached(name: str, params: dict, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``compute()`` once per ``(name, params)``, kept as ``<cache_dir>/<name>-<hash>.npz`` (atomic write)."""
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"{name}-{key}.npz"
    if path.is_file():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)
    return arrays
