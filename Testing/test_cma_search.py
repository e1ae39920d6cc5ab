"""Coarse-to-fine CMA-ES: a finer level that continues the coarser level's adapted distribution
gets further on an ill-conditioned, rotated quadratic than one restarted isotropic, for the same
generations; without carrying, the levels behave as before (each restarts from the best)."""

import numpy as np
import pytest

from BoneReconLib.cma_search import coarse_to_fine

DIMENSION = 8
AXES = np.linalg.qr(np.random.default_rng(0).standard_normal((DIMENSION, DIMENSION)))[0]
SCALES = 10.0 ** np.linspace(0.0, 2.0, DIMENSION)  # condition number 10^4: parameters that move together
GOAL = np.linspace(-2.0, 2.0, DIMENSION)
BOUNDS = np.array([[-10.0, 10.0]] * DIMENSION)


def _cost(candidates):
    return (((candidates - GOAL) @ AXES.T * SCALES) ** 2).sum(axis=1)


def _search(carry, seed):
    return coarse_to_fine(lambda factor: _cost, DIMENSION, (2, 1), (60, 20), BOUNDS, seed=seed, carry=carry)


def test_a_finer_level_that_carries_the_distribution_gets_further():
    restarted, carried = [], []
    for seed in range(5):
        x, plain = _search(False, seed)
        assert len(plain) == 80 and np.all(np.diff(plain) <= 1e-9)  # the best so far never worsens
        assert plain[-1] == pytest.approx(_cost(x[None])[0])
        restarted.append(plain[-1])
        x, history = _search(True, seed)
        assert len(history) == 80 and np.all(np.diff(history) <= 1e-9)
        carried.append(history[-1])
        assert history[59] == plain[59]  # the coarse level is the same search either way
    assert all(c < r for c, r in zip(carried, restarted)), (carried, restarted)
    assert np.mean(carried) < 0.5 * np.mean(restarted), (carried, restarted)
