"""Seeded collocation samplers over the unit cube: grid, uniform random, Sobol and Latin hypercube.

Quasi-random sequences come from :mod:`scipy.stats.qmc`. A :class:`Sampler` draws unit-cube points;
domains (:mod:`kanpde.pde.geometry`) map them to interior and boundary points.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

__all__ = ["Sampler", "METHODS"]

METHODS = ("grid", "uniform", "sobol", "lhs", "halton")


class Sampler:
    """Unit-cube point sets ``(n, d)`` (NumPy float64) by ``method``.

    * ``"grid"``: a tensor grid of cell centres, ``ceil(n^(1/d))`` per axis, thinned evenly to ``n``;
    * ``"uniform"``: i.i.d. uniform;
    * ``"sobol"``: scrambled Sobol (best balanced when ``n`` is a power of two);
    * ``"lhs"``: Latin hypercube; ``"halton"``: scrambled Halton.

    Draws are reproducible: the ``k``-th call of :meth:`unit` on a sampler made with ``seed`` returns
    the same points every time; :meth:`reseed` starts a new stream (used to resample between stages).
    """

    def __init__(self, method: str = "sobol", seed: int = 0) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown sampling method {method!r}; valid: {list(METHODS)}")
        self.method = method
        self.seed = int(seed)
        self.reseed(0)
        if method in ("sobol", "lhs", "halton"):
            # scipy.stats takes ~0.5 s to import: paid when the sampler is made, not by the first draw
            # (in a run that is inside the first model's timed training); `import kanpde` stays light
            import scipy.stats.qmc  # noqa: F401

    def reseed(self, offset: int) -> None:
        """Restart the stream at ``seed + offset``."""
        self._rng = np.random.default_rng([self.seed, offset])

    def unit(self, n: int, d: int) -> np.ndarray:
        """``n`` points of the unit cube ``[0, 1]^d``: ``(n, d)``."""
        if n < 1 or d < 0:
            raise ValueError(f"need n >= 1 points in d >= 0 dimensions, got n={n}, d={d}")
        if d == 0:
            return np.empty((n, 0))
        if self.method == "grid":
            per_axis = math.ceil(round(n ** (1.0 / d), 9))
            axes = [(np.arange(per_axis) + 0.5) / per_axis] * d
            pts = np.stack([m.reshape(-1) for m in np.meshgrid(*axes, indexing="ij")], axis=1)
            keep = np.linspace(0, pts.shape[0] - 1, n).round().astype(int)
            return pts[keep]
        if self.method == "uniform":
            return self._rng.random((n, d))
        from scipy.stats import qmc

        engine = {
            "sobol": lambda: qmc.Sobol(d, scramble=True, seed=self._rng),
            "lhs": lambda: qmc.LatinHypercube(d, seed=self._rng),
            "halton": lambda: qmc.Halton(d, scramble=True, seed=self._rng),
        }[self.method]()
        with warnings.catch_warnings():
            # Sobol warns for n that are not powers of two; the points are still fine for collocation.
            warnings.filterwarnings("ignore", message=".*balance properties.*", category=UserWarning)
            return engine.random(n)

    def __repr__(self) -> str:
        return f"Sampler(method={self.method!r}, seed={self.seed})"
