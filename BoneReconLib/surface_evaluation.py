"""How far a reconstructed bone surface is from the true one: the figures BiplanarRecon is judged by.

Per surface pair: mean surface distance (the mean of both directions' means: every found vertex
to the true surface and every true vertex to the found surface, exact point-to-triangle
distances), RMS and Hausdorff 95 over both directions together, Dice of the two shapes voxelised
on one grid, and for vertebrae the posterior-arch error: the mean distance from the true
vertices behind the body's posterior wall (more than ``ARCH_MARGIN_MM`` behind the plane through
the two posterior body landmarks, facing the anterior ones) to the found surface. Core module
(numpy + vtk), no MRML.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from .mesh_io import surface_mask
from .shape_correspondence import point_to_surface

ARCH_MARGIN_MM = 2.0
DICE_SPACING_MM = 0.5


def dice(points_a, triangles_a, points_b, triangles_b, spacing: float = DICE_SPACING_MM) -> float:
    """Dice of two closed surfaces' insides on one grid of ``spacing`` mm covering both."""
    both = np.concatenate([np.asarray(points_a, dtype=np.float64), np.asarray(points_b, dtype=np.float64)])
    low = np.floor((both.min(axis=0) - 2 * spacing) / spacing) * spacing
    size = np.ceil((both.max(axis=0) + 2 * spacing - low) / spacing).astype(int) + 1
    a, _ = surface_mask(points_a, triangles_a, spacing, low=low, size=size)
    b, _ = surface_mask(points_b, triangles_b, spacing, low=low, size=size)
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def posterior_vertices(points, landmarks: Mapping[str, np.ndarray], margin: float = ARCH_MARGIN_MM) -> np.ndarray:
    """Mask of the vertices more than ``margin`` mm behind the vertebral body's posterior wall."""
    back = 0.5 * (np.asarray(landmarks["body posterior superior"]) + np.asarray(landmarks["body posterior inferior"]))
    front = 0.5 * (np.asarray(landmarks["body anterior superior"]) + np.asarray(landmarks["body anterior inferior"]))
    anterior = (front - back) / np.linalg.norm(front - back)
    return (np.asarray(points, dtype=np.float64) - back) @ anterior < -margin


def compare_surfaces(found_points, found_triangles, true_points, true_triangles,
                     landmarks: Optional[Mapping[str, np.ndarray]] = None, with_dice: bool = True) -> dict:
    """mean_mm, rms_mm, hd95_mm, dice, and posterior_mm when a vertebra's body ``landmarks`` (the true
    or the found ones, world mm) say where its posterior wall is."""
    there = point_to_surface(found_points, true_points, true_triangles)
    back = point_to_surface(true_points, found_points, found_triangles)
    both = np.concatenate([there, back])
    result = dict(mean_mm=float(0.5 * (there.mean() + back.mean())), rms_mm=float(np.sqrt(np.mean(both ** 2))),
                  hd95_mm=float(np.percentile(both, 95)))
    if with_dice:
        result["dice"] = dice(found_points, found_triangles, true_points, true_triangles)
    if landmarks is not None:
        arch = posterior_vertices(true_points, landmarks)
        result["posterior_mm"] = float(back[arch].mean()) if arch.any() else float("nan")
    return result
