"""Compare kanpde's reference solvers with published reference data.

    python scripts/check_references.py                       # fetches DeepXDE's source distribution with pip
    python scripts/check_references.py --data PATH/TO/examples/dataset

The published data are the datasets DeepXDE ships in its source distribution (``examples/dataset``):

* ``Burgers.npz`` -- the viscous Burgers solution of Raissi et al. (2019), ``nu = 0.01/pi``,
  ``u(x, 0) = -sin(pi x)``, 256 x 100 points. Compared with :func:`kanpde.problems._reference.burgers_cole_hopf`
  at the same points: this is exactly the shipped ``burgers1d`` problem's reference.
* ``Allen_Cahn.mat`` -- DeepXDE's Allen–Cahn solution, ``u_t = 0.001 u_xx + 5 (u - u^3)``,
  ``u(x, 0) = x^2 cos(pi x)``, ``u(±1, t) = -1``, 201 x 101 points. Compared with
  :func:`kanpde.problems._reference.allen_cahn_etdrk4` with ``boundary="dirichlet"``, ``eps=0.001``: the same ETDRK4
  solver that produces the shipped ``allencahn1d`` reference (periodic, ``eps = 1e-4``, Raissi et al.),
  whose own published file is not in any package this script can fetch.

Prints the maximum and root-mean-square differences and, for the Allen–Cahn solver, the change under
refinement (our own discretisation error), so the disagreement can be read against both.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from kanpde.problems._reference import allen_cahn_etdrk4, burgers_cole_hopf

NU = 0.01 / np.pi


def fetch_deepxde_datasets(dest: Path) -> Path:
    """Download DeepXDE's source distribution with pip (no install) and unpack its ``examples/dataset``."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "-q", "-d", str(dest),
                    "deepxde"], check=True)
    (sdist,) = dest.glob("deepxde-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/examples/dataset/" in m.name and m.name.endswith(("Burgers.npz", "Allen_Cahn.mat"))]
        tar.extractall(dest, members=members, filter="data")
    (data,) = {Path(dest, m.name).parent for m in members}
    print(f"published data: {sdist.name}, {data.relative_to(dest)}")
    return data


def check_burgers(data: Path) -> None:
    ref = np.load(data / "Burgers.npz")
    x, t, usol = ref["x"][:, 0], ref["t"][:, 0], ref["usol"]  # usol (256 x, 100 t)
    xx, tt = np.meshgrid(x, t, indexing="ij")
    ours = burgers_cole_hopf(xx.ravel(), tt.ravel(), NU).reshape(xx.shape)
    diff = np.abs(ours - usol)
    worst = np.unravel_index(diff.argmax(), diff.shape)
    print(f"Burgers (nu = 0.01/pi) vs Burgers.npz, {usol.size} points: max |diff| {diff.max():.2e} "
          f"(at x = {x[worst[0]]:+.4f}, t = {t[worst[1]]:.2f}), rms {np.sqrt(np.mean(diff**2)):.2e}, "
          f"max |u| {np.abs(usol).max():.3f}")


def check_allen_cahn(data: Path) -> None:
    from scipy.io import loadmat

    ref = loadmat(data / "Allen_Cahn.mat")
    x, t, u = ref["x"].ravel(), ref["t"].ravel(), ref["u"]  # u (101 t, 201 x)
    n_x = x.size - 1  # 200 intervals: our grid holds the published points when n is a multiple of it

    def solve(n: int, dt: float) -> np.ndarray:
        sol = allen_cahn_etdrk4(n=n, dt=dt, t_final=float(t[-1]), n_out=t.size, eps=1e-3, boundary="dirichlet")
        assert np.allclose(sol["x"][:: n // n_x], x, atol=1e-12) and np.allclose(sol["t"], t, atol=1e-12)
        return sol["u"][:, :: n // n_x]

    ours = solve(4 * n_x, 1e-4)
    finer = solve(8 * n_x, 5e-5)
    diff = np.abs(ours - u)
    worst = np.unravel_index(diff.argmax(), diff.shape)
    print(f"Allen-Cahn (eps = 0.001, u(±1) = -1) vs Allen_Cahn.mat, {u.size} points: max |diff| {diff.max():.2e} "
          f"(at x = {x[worst[1]]:+.3f}, t = {t[worst[0]]:.2f}), rms {np.sqrt(np.mean(diff**2)):.2e}; "
          f"at t = {t[-1]:.0f}: max |diff| {diff[-1].max():.2e}; our refinement (n 800 -> 1600, dt 1e-4 -> 5e-5) "
          f"changes it by {np.abs(finer - ours).max():.2e}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a folder holding Burgers.npz and Allen_Cahn.mat (default: fetch)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or fetch_deepxde_datasets(Path(tmp))
        check_burgers(data)
        check_allen_cahn(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
