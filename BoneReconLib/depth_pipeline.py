"""DepthRecon from one radiograph to surfaces, in one call: the network, then each found bone
back-projected (surface + its part of the 3D label map).

Shared by ``bonerecon depth`` and the module's logic, so both give the same result. Each bone's
occupancy field is sampled once, on one voxel lattice (default: one network pixel at the object
plane), and serves both its surface and the label map. Progress is reported per bone, so a
long run can be cancelled between bones. Core module (numpy/torch/vtk), no MRML.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .depth_inference import SMOOTHING_ITERATIONS, DepthPrediction, predict_depth
from .depth_network import DepthNet
from .errors import InputError
from .geometry import View
from .progress import ProgressCallback, as_progress


@dataclass
class DepthReconstruction:
    """The network's prediction, {bone: (points, triangles)} in world mm, the 3D label map
    (k, j, i; 1..n = ``label_names``) with its IJK-to-RAS matrix, and seconds per stage."""

    prediction: DepthPrediction
    surfaces: Dict[str, Tuple[np.ndarray, np.ndarray]]
    labels: np.ndarray
    ijk_to_ras: np.ndarray
    label_names: List[str]
    seconds: Dict[str, float]


def reconstruct_bones(model: DepthNet, image: np.ndarray, view: View, centre_ij: Optional[Sequence[float]] = None,
                      voxel_mm: Optional[float] = None, progress: Optional[ProgressCallback] = None,
                      start: float = 0.0, end: float = 1.0) -> DepthReconstruction:
    """Bones of ``image`` (nv, nu; bone bright) seen in ``view``; InputError when none is found.
    Progress runs from ``start`` to ``end``."""
    from .depth_reconstruction import depth_field, field_surface, fields_label_map
    from .depth_reference import object_pixel_mm

    report = as_progress(progress)
    span = end - start
    seconds = {}
    mark = time.perf_counter()
    report(start, "Finding the bones and their depth")
    prediction = predict_depth(model, image, view, centre_ij)
    seconds["network"] = time.perf_counter() - mark
    if not prediction.found:
        raise InputError(prediction.message)
    mark = time.perf_counter()
    voxel = voxel_mm or object_pixel_mm(prediction.view, prediction.source_to_object)
    if not voxel > 0:
        raise InputError("The voxel size must be positive.")
    fields, surfaces = {}, {}
    for n, bone in enumerate(prediction.found):
        report(start + span * (0.1 + 0.8 * n / len(prediction.found)), f"Back-projecting {bone}")
        fields[bone] = depth_field(prediction.view, *prediction.maps(bone), voxel_mm=voxel)
        surfaces[bone] = field_surface(fields[bone], SMOOTHING_ITERATIONS)
    report(start + span * 0.9, "Building the label map")
    labels, ijk_to_ras, names = fields_label_map(fields)
    seconds["surfaces"] = time.perf_counter() - mark
    report(end, f"Reconstructed {', '.join(prediction.found)}")
    return DepthReconstruction(prediction, surfaces, labels, ijk_to_ras, list(names), seconds)
