"""The noise floor of the inverse Burgers problem: how well nu can be known from its data at all.

    python scripts/burgers_nu_floor.py                 # data seeds 0, 1, 2
    python scripts/burgers_nu_floor.py --seeds 0 1 2 3 --draws 400

For each data seed of ``problem=burgers1d_inverse`` (its points and noisy values, drawn by the problem
itself) it prints

* the maximum-likelihood nu with an exact forward model: the nu whose Cole–Hopf solution fits the noisy
  data best in least squares (the PDE, initial and boundary conditions held exactly; a bounded scalar
  minimisation over log nu). No network can do better than this on average: it is what a perfect PINN
  converges to as the PDE weight grows;
* the Cramér–Rao standard deviation of any unbiased estimate of nu from these points at this noise,
  ``sigma / ||du/d log nu||`` (the sensitivity by central differences of the Cole–Hopf solution);
* with ``--draws N``: the standard deviation of the maximum-likelihood nu over N fresh noise draws at
  the same points, and the fraction of them within 0.2 % and 1 % (a Monte-Carlo check of the bound).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from scipy.optimize import minimize_scalar

from kanpde.problems._reference import burgers_cole_hopf
from kanpde.problems.burgers1d_inverse import NU_TRUE, Burgers1DInverse


def observations(seed: int, n_data: int, noise: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The problem's observation points ``(n, 2)``, noisy values ``(n,)`` and noise standard deviation."""
    problem = Burgers1DInverse(n_data=n_data, noise=noise, data_seed=seed)
    data = next(c for c in problem.conditions if c.kind == "observation")
    pts, values = np.asarray(data.at), np.asarray(data.observed)
    clean = burgers_cole_hopf(pts[:, 0], pts[:, 1], NU_TRUE)
    return pts, values, noise * float(np.std(clean))


def mle_log_nu(pts: np.ndarray, values: np.ndarray) -> float:
    """``log(nu / NU_TRUE)`` of the least-squares fit of the Cole–Hopf solution to ``values``."""
    def misfit(s: float) -> float:
        return float(((burgers_cole_hopf(pts[:, 0], pts[:, 1], NU_TRUE * math.exp(s)) - values) ** 2).sum())
    return float(minimize_scalar(misfit, bounds=(-0.2, 0.2), method="bounded", options={"xatol": 1e-7}).x)


def cramer_rao(pts: np.ndarray, sigma: float, h: float = 1e-4) -> float:
    """Standard deviation bound of ``log nu`` (~ relative error of nu): ``sigma / ||du/d log nu||``."""
    up = burgers_cole_hopf(pts[:, 0], pts[:, 1], NU_TRUE * math.exp(h))
    down = burgers_cole_hopf(pts[:, 0], pts[:, 1], NU_TRUE * math.exp(-h))
    return sigma / float(np.linalg.norm((up - down) / (2 * h)))


def monte_carlo(pts: np.ndarray, sigma: float, draws: int, seed: int = 12345) -> np.ndarray:
    """Relative errors of the maximum-likelihood nu over ``draws`` fresh noise draws at ``pts``."""
    clean = burgers_cole_hopf(pts[:, 0], pts[:, 1], NU_TRUE)
    rng = np.random.default_rng(seed)
    return np.array([math.expm1(mle_log_nu(pts, clean + sigma * rng.standard_normal(clean.size))) for _ in range(draws)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data seeds (default: 0 1 2)")
    parser.add_argument("--n-data", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--draws", type=int, default=0, help="Monte-Carlo noise draws per seed (default: 0, none)")
    args = parser.parse_args(argv)
    for seed in args.seeds:
        pts, values, sigma = observations(seed, args.n_data, args.noise)
        line = (f"data_seed {seed}: maximum-likelihood nu error {math.expm1(mle_log_nu(pts, values)):+.3%}, "
                f"Cramer-Rao std {cramer_rao(pts, sigma):.3%}")
        if args.draws:
            errors = monte_carlo(pts, sigma, args.draws)
            line += (f"; over {args.draws} noise draws: std {errors.std():.3%}, within 0.2 %: "
                     f"{np.mean(np.abs(errors) <= 0.002):.0%}, within 1 %: {np.mean(np.abs(errors) <= 0.01):.0%}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
