"""AP + lateral per-vertebra images and landmarks -> L1-L5 shape-model instances (the biplanar pipeline).

Initial poses from the triangulated landmarks (:mod:`.spine_initialisation`), then each placed
vertebra registered to its own two images and landmarks (:mod:`.vertebra_registration`), then
with ``free_form_steps`` refined beyond its shape model's span (:mod:`.free_form_registration`). Levels
that cannot be placed or do not converge are named in ``messages``. Neighbours are registered
one after another, the best-placed first (least landmark residual of the initial fit): each level
is kept out of its neighbours already registered and converged (:mod:`.neighbour_clearance`,
a cost on its deepest vertex inside them beyond ``OVERLAP_NOTE_MM``), so a level whose landmarks
are poor cannot settle into a good neighbour. How deep reconstructed neighbours run into each
other is measured per segment (``overlap_mm``) and named in ``messages`` beyond
``OVERLAP_NOTE_MM``. Core module, no MRML.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from .free_form_registration import FreeFormSettings, refine_beyond_span
from .geometry import View
from .neighbour_clearance import clearance_of
from .progress import ProgressCallback, as_progress
from .shape_model import ShapeModel
from .spine_alignment import LEVELS, neighbour_overlaps
from .spine_initialisation import SpineInitialisation, initialise_spine, mean_landmarks
from .vertebra_registration import RegistrationResult, RegistrationWeights, VertebraTarget, register_vertebra


@dataclass
class SpineReconstruction:
    initialisation: SpineInitialisation
    results: Dict[str, RegistrationResult]
    points: Dict[str, np.ndarray]  # world vertices per reconstructed level
    messages: List[str]
    seconds: Dict[str, float] = field(default_factory=dict)  # per stage
    overlap_mm: Dict[str, float] = field(default_factory=dict)  # per segment of reconstructed neighbours


# Real neighbours never run into each other; deeper than twice the models' vertex spacing is an error.
OVERLAP_NOTE_MM = 3.0
# Each detected landmark weighed by its expected error (the network's ``uncertainty_mm``) and the same
# landmark sigma at every image level: on 24 held-out cases 1.14 mm against 1.17 with 2026-12-04's
# default, the confidence alone and the sigma doubled on the finest images
# (benchmarks/biplanar_reconstruction.py [--no-uncertainty --finest-landmark-sigma-factor 2], 2026-12-05).
# The finer image level continues the coarse level's CMA-ES distribution (cma_search): on 12 held-out cases
# 1.07 mm against 1.14 restarting isotropic, the same evaluations (2026-12-05, see the README).
SPINE_WEIGHTS = RegistrationWeights(overlap_tolerance_mm=OVERLAP_NOTE_MM, carry_search=True)


def adjacent_levels(level: str) -> List[str]:
    k = LEVELS.index(level)
    return [LEVELS[j] for j in (k - 1, k + 1) if 0 <= j < len(LEVELS)]


def landmark_uncertainties(landmarks: Sequence[Sequence[Mapping]], start: int, stop: int) -> Optional[List[np.ndarray]]:
    """Per view the expected errors (mm) of landmarks ``start:stop``, or None when the detector gave none
    (landmarks from elsewhere, e.g. a user's own)."""
    if not all("uncertainty_mm" in m for found in landmarks for m in found[start:stop]):
        return None
    return [np.array([m["uncertainty_mm"] for m in found[start:stop]], dtype=np.float64) for found in landmarks]


def reconstruct_spine(models: Mapping[str, ShapeModel], views: Sequence[View], images: Sequence[np.ndarray],
                      landmarks: Sequence[Sequence[Mapping]], levels: Sequence[str], modes: int = 6,
                      levels_of_detail: Sequence[int] = (4, 2), generations: Sequence[int] = (40, 25),
                      seed: int = 0, free_form_steps: int = 0, weights: Optional[RegistrationWeights] = None,
                      progress: Optional[ProgressCallback] = None) -> SpineReconstruction:
    """``images``: per view (levels, nv, nu) the per-vertebra images; ``landmarks``: per view the
    detected landmark dicts (vertebra, name, i, j, confidence), level by level. ``free_form_steps``:
    gradient steps of the refinement beyond the models' span after each registration (0: none);
    ``weights``: the registration's (default ``SPINE_WEIGHTS``; with ``overlap_weight`` 0 each level
    is registered blind to its neighbours)."""
    report = as_progress(progress)
    weights = weights or SPINE_WEIGHTS
    tick = time.perf_counter()
    means = mean_landmarks(models, levels)
    initialisation = initialise_spine(views, landmarks, means, levels)
    seconds = dict(initialisation=time.perf_counter() - tick)
    messages = list(initialisation.messages)
    results, points, clearances = {}, {}, {}
    per = len(next(iter(means.values()))) if means else 0
    placed = sorted((level for level in levels if initialisation.poses[level] is not None),
                    key=lambda level: initialisation.poses[level].rms_mm)
    tick = time.perf_counter()
    for n, level in enumerate(placed):
        k = list(levels).index(level)
        pose = initialisation.poses[level]
        neighbours = []
        for other in adjacent_levels(level) if weights.overlap_weight > 0 else []:
            if other in results and results[other].converged:
                if other not in clearances:
                    clearances[other] = clearance_of(points[other], models[other].triangles)
                neighbours.append(clearances[other])
        target = VertebraTarget(
            views, [np.asarray(images[v][k], dtype=np.float64) for v in range(len(views))],
            [np.array([[m["i"], m["j"]] for m in landmarks[v][k * per:(k + 1) * per]]) for v in range(len(views))],
            [np.array([m["confidence"] for m in landmarks[v][k * per:(k + 1) * per]]) for v in range(len(views))],
            neighbours=neighbours or None, uncertainties_mm=landmark_uncertainties(landmarks, k * per, (k + 1) * per))
        share = 0.8 if free_form_steps > 0 else 1.0
        result = register_vertebra(
            models[level], pose.rotation, pose.translation, pose.scale, target, modes=modes, levels=levels_of_detail,
            generations=generations, seed=seed, weights=weights,
            progress=lambda f, m, n=n: report((n + share * f) / max(len(placed), 1), m))
        if free_form_steps > 0 and result.converged:  # a failed fit is not bent into looking right
            result = refine_beyond_span(
                models[level], result, target, weights=weights, settings=FreeFormSettings(steps=free_form_steps),
                progress=lambda f, m, n=n: report((n + share + (1 - share) * f) / max(len(placed), 1), m))
        results[level] = result
        points[level] = result.points(models[level])
        if not result.converged:
            messages.append(f"{level}: the registration did not converge (image agreement "
                            f"{', '.join(f'{c:.2f}' for c in result.ncc)}, landmark residual "
                            f"{result.landmark_rms_mm:.1f} mm); shown for inspection only")
    seconds["registration"] = time.perf_counter() - tick
    results = {level: results[level] for level in levels if level in results}  # back in spine order
    points = {level: points[level] for level in levels if level in points}
    overlaps = neighbour_overlaps({level: models[level].triangles for level in points}, points)
    messages += [f"{segment}: the reconstructed neighbours run {depth:.1f} mm into each other" for segment, depth
                 in overlaps.items() if depth > OVERLAP_NOTE_MM]
    return SpineReconstruction(initialisation, results, points, messages, seconds, overlaps)
