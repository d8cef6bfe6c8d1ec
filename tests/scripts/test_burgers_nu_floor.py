"""scripts/burgers_nu_floor.py: the maximum-likelihood nu and the Cramér–Rao bound of the inverse Burgers data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kanpde.problems._reference import burgers_cole_hopf
from kanpde.problems.burgers1d_inverse import NU_TRUE
from tests.helpers import REPO_ROOT, load_script

floor = load_script(REPO_ROOT / "scripts" / "burgers_nu_floor.py")


def test_the_problems_own_data_is_read_back() -> None:
    pts, values, sigma = floor.observations(seed=3, n_data=50, noise=0.0)
    assert pts.shape == (50, 2) and sigma == 0.0
    np.testing.assert_allclose(values, burgers_cole_hopf(pts[:, 0], pts[:, 1], NU_TRUE), rtol=0, atol=1e-14)


def test_the_maximum_likelihood_nu_of_noise_free_data_is_the_nu_that_made_it() -> None:
    pts, _, _ = floor.observations(seed=0, n_data=300, noise=0.0)
    values = burgers_cole_hopf(pts[:, 0], pts[:, 1], NU_TRUE * 1.03)
    assert floor.mle_log_nu(pts, values) == pytest.approx(math.log(1.03), abs=1e-5)


def test_the_cramer_rao_bound_is_sigma_over_the_sensitivity() -> None:
    """Linear in sigma, and equal to sigma / ||u(nu e^h) - u(nu)|| * h for a small step h."""
    pts, _, _ = floor.observations(seed=0, n_data=300, noise=0.0)
    bound = floor.cramer_rao(pts, 0.01)
    assert floor.cramer_rao(pts, 0.02) == pytest.approx(2 * bound, rel=1e-12)
    h = 1e-3
    step = burgers_cole_hopf(pts[:, 0], pts[:, 1], NU_TRUE * math.exp(h)) - burgers_cole_hopf(pts[:, 0], pts[:, 1], NU_TRUE)
    assert bound == pytest.approx(0.01 * h / np.linalg.norm(step), rel=1e-2)
