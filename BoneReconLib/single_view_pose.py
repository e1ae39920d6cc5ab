"""Pose and shape of a model from its feature points seen in ONE radiograph.

Two views triangulate each point; one view gives only its ray. What is left to pin the depth is
the perspective magnification, which a bone's size mimics exactly (a bigger bone farther from the
detector casts the same shadow). So the fit carries two priors: the shape coefficients' Gaussian
prior (size is the models' first mode) and the bone's distance from the source, centred on the
view's object plane (``source_to_object`` in the geometry, else the assumption of
:func:`.depth_reference.object_distance`) with a standard deviation of ``DEPTH_SD_MM`` (given: the
bone's half-thickness and the user's measuring; assumed: the spread of where limbs lie).

Method: the points back-projected onto the object plane give a first rigid fit (robust
similarity, :mod:`.spine_initialisation`); then Levenberg-Marquardt over rotation (3),
translation (3) and the first shape coefficients on the points' reprojection error (in mm at the
detector, Cauchy-weighted so a few wrong detections do not pull), plus both priors. Core module
(numpy), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
import numpy as np

from .depth_reference import object_distance
from .errors import InputError
from .geometry import View, rotation_about
from .spine_initialisation import SimilarityFit, robust_similarity

DEPTH_SD_MM = {"given": 10.0, "assumed": 30.0}


@dataclass
class SingleViewFit:
    pose: SimilarityFit
    coefficients: np.ndarray
    reprojection_rms_mm: float  # over the points used, at the detector
    source_to_object_mm: float  # the depth prior's centre
    assumed_depth: bool  # whether that came from an assumption rather than the geometry


def _rotation(vector: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(vector))
    return np.eye(3) if angle < 1e-12 else rotation_about(vector / angle, angle)


def back_projected(view: View, pixels: np.ndarray, source_to_object: float) -> np.ndarray:
    """Where the rays through ``pixels`` (K, 2) cross the plane ``source_to_object`` mm from the source."""
    _, directions = view.rays(pixels[:, 0], pixels[:, 1])
    return view.source + directions * (source_to_object / (directions @ view.normal))[:, None]


def single_view_pose(mean_points: np.ndarray, basis: np.ndarray, view: View, pixels: np.ndarray,
                     weights: np.ndarray, noise_mm: float = 2.0, depth_sd_mm: Optional[float] = None,
                     iterations: int = 40, anchor: Optional[np.ndarray] = None) -> SingleViewFit:
    """Rigid pose and coefficients of points ``mean_points + coefficients . basis`` ((K, 3) and
    (M, K, 3), one s.d. per mode) whose projections in ``view`` best match ``pixels`` (K, 2) with
    ``weights`` (K,) (0 = not found). ``noise_mm``: the points' error at the detector the prior is
    weighed against; ``depth_sd_mm``: the depth prior's s.d. (default ``DEPTH_SD_MM``); ``anchor``:
    the model point held near the object plane (default: the points' centroid; give the bone's
    centre, since the points found may cluster at one end)."""
    used = np.asarray(weights) > 0
    if used.sum() < 4:
        raise InputError(f"Only {int(used.sum())} feature points were found in the view (at least 4 are needed).")
    source_to_object, assumed = object_distance(view)
    if depth_sd_mm is None:
        depth_sd_mm = DEPTH_SD_MM["assumed" if assumed else "given"]
    mean_points, basis, pixels = mean_points[used], basis[:, used], np.asarray(pixels, np.float64)[used]
    weights = np.asarray(weights, np.float64)[used]
    spacing = float(np.mean(view.pixel_spacing))
    start = robust_similarity(mean_points, back_projected(view, pixels, source_to_object), scaling=False)
    centre = mean_points.mean(axis=0)
    modes = len(basis)

    anchor = centre if anchor is None else np.asarray(anchor, np.float64)

    def placed(x: np.ndarray, shape=None) -> np.ndarray:
        shape = mean_points + np.tensordot(x[6:], basis, axes=1) if shape is None else shape
        return (shape - centre) @ (_rotation(x[:3]) @ start.rotation).T + start.apply(centre) + x[3:6]

    def residuals(x: np.ndarray, robust: np.ndarray) -> np.ndarray:
        points = placed(x)
        ij, _ = view.project(points)
        error = (ij - pixels) * spacing / noise_mm * np.sqrt(weights * robust)[:, None]
        depth = (placed(x, anchor) - view.source) @ view.normal
        return np.concatenate([error.ravel(), x[6:], [(depth - source_to_object) / depth_sd_mm]])

    x = np.zeros(6 + modes)
    robust = np.ones(len(pixels))
    damping = 1e-3
    for _ in range(iterations):
        r = residuals(x, robust)
        jacobian = np.empty((len(r), len(x)))
        for k in range(len(x)):
            step = np.zeros_like(x)
            step[k] = 1e-6 if k < 3 else 1e-4
            jacobian[:, k] = (residuals(x + step, robust) - r) / step[k]
        normal = jacobian.T @ jacobian
        gradient = jacobian.T @ r
        while damping < 1e8:
            candidate = x - np.linalg.solve(normal + damping * np.diag(np.diag(normal) + 1e-9), gradient)
            if np.sum(residuals(candidate, robust) ** 2) < np.sum(r ** 2):
                x, damping = candidate, max(damping / 3.0, 1e-7)
                break
            damping *= 4.0
        # Cauchy weights from the current reprojection errors (scale: 1.5 x median, at least the noise).
        error_mm = np.linalg.norm((view.project(placed(x))[0] - pixels) * spacing, axis=1)
        c = max(1.5 * float(np.median(error_mm)), noise_mm)
        robust = 1.0 / (1.0 + (error_mm / c) ** 2)
    rotation = _rotation(x[:3]) @ start.rotation
    translation = start.apply(centre) + x[3:6] - centre @ rotation.T
    error_mm = np.linalg.norm((view.project(placed(x))[0] - pixels) * spacing, axis=1)
    inliers = np.zeros(len(used), dtype=bool)
    inliers[np.nonzero(used)[0]] = error_mm <= 3.0 * max(1.5 * float(np.median(error_mm)), noise_mm)
    pose = SimilarityFit(rotation, translation, 1.0, inliers, float(np.sqrt(np.mean(error_mm ** 2))))
    return SingleViewFit(pose, x[6:], pose.rms_mm, source_to_object, assumed)


def depth_note(view: View) -> str:
    """What a one-view result rests on, for the report."""
    distance, assumed = object_distance(view)
    where = "assumed: the geometry gives no source_to_object" if assumed else "the geometry's source_to_object"
    sd = DEPTH_SD_MM["assumed" if assumed else "given"]
    return (f"One view ({view.name}): depth along the beam is not seen, and a bone's size and its distance from the "
            f"detector cast the same shadow; the bones were held near the object plane {distance:.0f} mm from the "
            f"source ({where}; s.d. {sd:.0f} mm), so their size and position along the beam are only "
            "as good as that (give source_to_object, e.g. from a calibration marker, for metric results).")
