"""AP + lateral radiographs and their views -> L1-L5 surfaces and measurements (the whole BiplanarRecon chain).

The inputs are checked before any work: each image against its view's detector size, the two
views for a common field at a usable angle, and the AP / lateral roles (the network is run with
the roles swapped too; when the swapped reading finds clearly more vertebrae, the images were
given the wrong way round). Then the network finds landmarks and per-vertebra images in each
view (levels it finds in neither view are reported and left out; with none found it stops), the
landmark-initialised registration (:mod:`.spine_reconstruction`) fits each level's shape model at
a working resolution of about ``WORKING_SPACING_MM`` detector pixels, and the measurements are
taken from the fitted models' landmarks over the longest run of consecutive levels that
converged. Presets trade time for accuracy. Core module, no MRML.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from .biplanar_inference import Detection, detect
from .errors import InputError
from .geometry import View, triangulate
from .progress import ProgressCallback, as_progress
from .shape_model import ShapeModel
from .spine_alignment import LEVELS
from .spine_measurements import consecutive_levels, measure_spine
from .spine_reconstruction import SpineReconstruction, reconstruct_spine
from .vertebra_registration import RegistrationWeights, block_pool, coarser

PRESETS = {  # measured with benchmarks/biplanar_reconstruction.py (see the README)
    "fast": dict(modes=6, levels_of_detail=(4, 2), generations=(25, 15), free_form_steps=0),
    "balanced": dict(modes=12, levels_of_detail=(4, 2), generations=(80, 50), free_form_steps=0),
    "accurate": dict(modes=16, levels_of_detail=(4, 2), generations=(100, 60), free_form_steps=0),
}
WORKING_SPACING_MM = 1.5  # registration pixels at the detector (the network's own resolution)
MIN_VIEW_ANGLE_DEG = 30.0  # between the two beams; AP + lateral is about 90
VIEW_NAMES = ("AP", "LAT")


@dataclass
class BiplanarResult:
    detections: Dict[str, Detection]  # "AP", "LAT"
    reconstruction: SpineReconstruction
    landmarks: Dict[str, Dict[str, np.ndarray]]  # reconstructed level -> landmark name -> (3,) world mm
    measurements: Optional[dict]  # spine_measurements.measure_spine, or None (fewer than two good levels)
    measured_levels: List[str]
    messages: List[str]
    views: List[View]  # AP, lateral: the radiographs' own detectors
    seconds: Dict[str, float] = field(default_factory=dict)

    @property
    def converged(self) -> List[str]:
        return [level for level, r in self.reconstruction.results.items() if r.converged]


def check_views(images: Sequence[np.ndarray], views: Sequence[View]) -> None:
    """InputError when an image does not fit its view or the two views cannot be combined."""
    if len(images) != 2 or len(views) != 2:
        raise InputError("BiplanarRecon needs exactly two radiographs (AP and lateral) with one view each.")
    for name, image, view in zip(VIEW_NAMES, images, views):
        rows, columns = np.asarray(image).shape[-2:]
        if (columns, rows) != tuple(view.size):
            raise InputError(f"The {name} radiograph is {columns}x{rows} pixels but its geometry describes a "
                             f"{view.size[0]}x{view.size[1]} detector: wrong geometry file or view order?")
    cosine = abs(float(views[0].normal @ views[1].normal))
    angle = math.degrees(math.acos(min(cosine, 1.0)))
    if angle < MIN_VIEW_ANGLE_DEG:
        raise InputError(f"The two views are only {angle:.0f} degrees apart; biplanar reconstruction needs two "
                         f"directions at least {MIN_VIEW_ANGLE_DEG:.0f} degrees apart (AP and lateral: about 90).")
    centres = [(np.asarray(v.size, dtype=np.float64) - 1) / 2 for v in views]
    middle = triangulate(views, centres).point
    for name, view in zip(VIEW_NAMES, views):
        ij, _ = view.project(middle[None])
        if not bool(view.contains(ij[0])):
            raise InputError(f"The two views do not overlap: the point both central rays pass closest to falls "
                             f"outside the {name} detector. Check the geometry.")


def _working_resolution(views, images, landmarks, spacing_mm: float):
    """Views, images and landmark pixels at about ``spacing_mm`` detector pixels (block means)."""
    factor = max(1, int(math.floor(spacing_mm / min(min(v.pixel_spacing) for v in views) + 1e-9)))
    if factor == 1:
        return views, images, landmarks
    out_views, out_images, out_landmarks = [], [], []
    for view, image, found in zip(views, images, landmarks):
        small = coarser(view, factor)
        pooled = block_pool(image, factor).numpy()
        # Same millimetres from the detector centre at both resolutions (see vertebra_registration).
        half, small_half = (np.asarray(view.size) - 1) / 2, (np.asarray(small.size) - 1) / 2
        moved = [dict(m, i=(m["i"] - half[0]) / factor + small_half[0], j=(m["j"] - half[1]) / factor + small_half[1])
                 for m in found]
        out_views.append(small)
        out_images.append(pooled)
        out_landmarks.append(moved)
    return out_views, out_images, out_landmarks


def _roles_swapped(network, images, views, names, given: Sequence[Detection]) -> Optional[str]:
    """A sentence when the images read clearly better with the AP / lateral roles exchanged."""
    swapped = [detect(network, image, view.pixel_spacing, role, names)
               for image, view, role in zip(images, views, reversed(VIEW_NAMES))]
    found_given = sum(len(d.found) for d in given)
    found_swapped = sum(len(d.found) for d in swapped)
    if found_swapped >= found_given + 2:
        return (f"The radiographs look swapped: read the other way round the network finds {found_swapped} "
                f"vertebrae instead of {found_given}. Give the AP image as AP and the lateral image as lateral "
                "(each with its own view).")
    return None


def reconstruct_biplanar(network, models: Mapping[str, ShapeModel], images: Sequence[np.ndarray],
                         views: Sequence[View], levels: Sequence[str] = LEVELS, preset: str = "balanced",
                         check_roles: bool = True, seed: int = 0, modes: Optional[int] = None,
                         free_form_steps: Optional[int] = None, weights: Optional[RegistrationWeights] = None,
                         progress: Optional[ProgressCallback] = None) -> BiplanarResult:
    """``images``: the AP and lateral radiographs, bone bright, in [0, 1] (``radiograph_file.displayed``),
    on the detectors of ``views`` (AP first); ``modes`` and ``free_form_steps`` (the refinement
    beyond the models' span) override the preset's and ``weights`` the registration's (see
    :mod:`.spine_reconstruction`). Raises InputError for inputs that cannot be combined."""
    if preset not in PRESETS:
        raise InputError(f"Unknown preset '{preset}'; use one of {', '.join(PRESETS)}.")
    unknown = [level for level in levels if level not in LEVELS]
    if unknown or not levels:
        raise InputError(f"Levels must be among {', '.join(LEVELS)}, got {', '.join(levels) or 'none'}.")
    report = as_progress(progress)
    views = list(views)
    check_views(images, views)
    names = models["L1"].landmark_names
    seconds = {}
    tick = time.perf_counter()
    report(0.0, "Finding landmarks and vertebra images in both radiographs")
    detections = {role: detect(network, image, view.pixel_spacing, role, names)
                  for role, image, view in zip(VIEW_NAMES, images, views)}
    messages = [f"{role}: {d.message}" for role, d in detections.items() if d.message]
    # Reconstruct what is visible: a level the found rule finds in neither view is not placed (its
    # landmarks are guesses; the sample's L5, cut by both DRRs' edge, would be fitted to nothing).
    visible = [level for level in levels if any(level in d.found for d in detections.values())]
    if not visible:  # before the roles check: two images without a spine would look "swapped" too
        raise InputError(f"No lumbar vertebra ({', '.join(levels)}) was found in either radiograph, so nothing "
                         f"was reconstructed. " + " ".join(messages))
    if check_roles:
        problem = _roles_swapped(network, images, views, names, list(detections.values()))
        if problem:
            raise InputError(problem)
    seconds["network"] = time.perf_counter() - tick
    unseen = [level for level in levels if level not in visible]
    if unseen:
        messages.append(f"{', '.join(unseen)}: found in neither radiograph, so not reconstructed")
    per = len(names)
    chosen = [LEVELS.index(level) for level in visible]
    found_images = [detections[role].decomposition[chosen] for role in VIEW_NAMES]
    found_marks = [[m for k in chosen for m in detections[role].landmarks[k * per:(k + 1) * per]]
                   for role in VIEW_NAMES]
    work_views, work_images, work_marks = _working_resolution(views, found_images, found_marks, WORKING_SPACING_MM)
    settings = dict(PRESETS[preset], **({"modes": modes} if modes else {}),
                    **({"free_form_steps": free_form_steps} if free_form_steps is not None else {}))
    reconstruction = reconstruct_spine(models, work_views, work_images, work_marks, visible, seed=seed,
                                       weights=weights,
                                       progress=lambda f, m: report(0.05 + 0.9 * f, m), **settings)
    seconds.update(reconstruction.seconds)
    messages += reconstruction.messages

    tick = time.perf_counter()
    landmarks = {}
    for level, points in reconstruction.points.items():
        positions = models[level].landmark_positions(torch.as_tensor(points)[None])[0].numpy()
        landmarks[level] = {name: positions[k] for k, name in enumerate(names)}
    measured = consecutive_levels(levels, [level for level in levels if level in reconstruction.results
                                         and reconstruction.results[level].converged])
    measurements = measure_spine(landmarks, measured) if len(measured) >= 2 else None
    if measurements is None:
        messages.append("No measurements: they need at least two neighbouring levels that converged.")
    elif len(measured) < len(levels):
        messages.append(f"Measurements cover {measured[0]}-{measured[-1]} only (the levels that converged).")
    seconds["measurements"] = time.perf_counter() - tick
    report(1.0, "Reconstruction finished")
    return BiplanarResult(detections, reconstruction, landmarks, measurements, measured, messages, views,
                          seconds)
