"""Coarse-to-fine CMA-ES: one search per image resolution, each starting from the last one's best.

Shared by the shape-model registration (``vertebra_registration``) and the rigid CT registration
(``rigid_registration``): both score a whole population per call. A finer level either restarts
isotropic (half the first step) or, with ``carry``, continues the coarser search's adapted
distribution: its covariance, and its step size x ``CARRIED_STEP_FACTOR`` (at most half the
first step). The coarse search has learnt which parameters move together (pose against shape
modes); restarting isotropic spends the finer, dearer generations learning it again.
Core module (numpy + cmaes).
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from .progress import ProgressCallback, as_progress

Costs = Callable[[np.ndarray], np.ndarray]  # (N, D) parameter vectors -> (N,) costs
CARRIED_STEP_FACTOR = 1.0  # a finer level's step: the coarser search's last one x this


def coarse_to_fine(costs_at: Callable[[int], Costs], dimension: int, levels: Sequence[int],
                   generations: Sequence[int], bounds: np.ndarray, seed: int = 0, population: Optional[int] = None,
                   progress: Optional[ProgressCallback] = None,
                   describe: Callable[[float], str] = "cost {:.3f}".format,
                   step: float = 1.0, carry: bool = False) -> Tuple[np.ndarray, List[float]]:
    """(best parameter vector, best cost after every generation). ``costs_at(factor)`` gives the cost
    function at that resolution; the search starts at zero with ``step`` (1 unit), later levels with
    half of it, or with ``carry`` from the last level's distribution (see the module docstring)."""
    from cmaes import CMA

    report = as_progress(progress)
    best_x, history = np.zeros(dimension), []
    total, done = sum(generations), 0
    optimizer = None
    for factor, count in zip(levels, generations):
        costs_of = costs_at(factor)
        if carry and optimizer is not None:  # cmaes keeps the adapted covariance and step without a public getter
            optimizer = CMA(mean=best_x.copy(), sigma=min(CARRIED_STEP_FACTOR * float(optimizer._sigma), 0.5 * step),
                            bounds=bounds, seed=seed, population_size=population, cov=np.array(optimizer._C))
        else:
            optimizer = CMA(mean=best_x.copy(), sigma=step if not history else 0.5 * step, bounds=bounds,
                            seed=seed, population_size=population)
        best_cost = float(costs_of(best_x[None])[0])
        for _ in range(count):
            candidates = np.array([optimizer.ask() for _ in range(optimizer.population_size)])
            costs = costs_of(candidates)
            optimizer.tell(list(zip(candidates, costs)))
            k = int(np.argmin(costs))
            if costs[k] < best_cost:
                best_cost, best_x = float(costs[k]), candidates[k].copy()
            history.append(best_cost)
            done += 1
            report(done / total, describe(best_cost))
    return best_x, history
