"""Initial vertebra poses from detected 2D landmarks: triangulate both views, fit each SSM mean.

Step one of the biplanar reconstruction. Each landmark seen with enough confidence in the AP and
the lateral radiograph is triangulated (the point closest to its two rays, ``geometry.triangulate``);
a landmark whose rays miss each other by more than ``max_ray_gap_mm`` is dropped (one of its two
detections is wrong). Each vertebra's shape-model mean is then placed by a similarity transform
(rotation, translation, scale) fitted to its triangulated landmarks, robustly: iteratively
reweighted least squares with Cauchy weights, so a few wrong landmarks do not drag the pose.
A vertebra with fewer than ``MIN_LANDMARKS`` usable landmarks gets no pose (the caller reports
it as not found). Core module (numpy), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Mapping, Optional, Sequence

import numpy as np

from .geometry import View, triangulate
from .shape_statistics import rigid_align

if TYPE_CHECKING:
    from .shape_model import ShapeModel

MIN_LANDMARKS = 4
SCALE_RANGE = (0.7, 1.4)  # a fitted scale outside this is not a plausible vertebra


@dataclass
class TriangulatedLandmarks:
    """(K, 3) points (NaN where not triangulated), per point the ray gap (mm) and the used mask."""

    points: np.ndarray
    ray_gap_mm: np.ndarray
    used: np.ndarray


def triangulate_landmarks(views: Sequence[View], pixels: Sequence[np.ndarray], confidences: Sequence[np.ndarray],
                          min_confidence: float = 0.2, max_ray_gap_mm: float = 10.0) -> TriangulatedLandmarks:
    """Landmarks (K, 2) pixel (i, j) per view, with confidences (K,) per view -> 3D points. A point is
    used when it is confident in every view and its rays pass within ``max_ray_gap_mm``."""
    if len(views) < 2 or len(pixels) != len(views) or len(confidences) != len(views):
        raise ValueError("Triangulation needs landmarks and confidences from at least two views.")
    pixels = [np.asarray(p, dtype=np.float64) for p in pixels]
    count = len(pixels[0])
    points = np.full((count, 3), np.nan)
    gap = np.full(count, np.nan)
    confident = np.all([np.asarray(c) >= min_confidence for c in confidences], axis=0)
    for k in np.nonzero(confident)[0]:
        found = triangulate(views, [p[k] for p in pixels])
        points[k] = found.point
        gap[k] = 2.0 * found.ray_distance_rms  # two rays: each is this far from the point
    used = confident & (gap <= max_ray_gap_mm)
    points[~used] = np.nan
    return TriangulatedLandmarks(points, gap, used)


@dataclass
class SimilarityFit:
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    scale: float
    inliers: np.ndarray  # (K,) bool over the points given
    rms_mm: float  # residual over the inliers

    def matrix(self) -> np.ndarray:
        """4x4: model point -> world point."""
        out = np.eye(4)
        out[:3, :3] = self.scale * self.rotation
        out[:3, 3] = self.translation
        return out

    def apply(self, points) -> np.ndarray:
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation


def robust_similarity(source, target, iterations: int = 20, min_scale_mm: float = 1.0,
                      scaling: bool = True) -> SimilarityFit:
    """Similarity transform of ``source`` (K, 3) onto ``target`` (K, 3), robust to outliers: IRLS
    with Cauchy weights of scale c = max(1.5 x median residual, ``min_scale_mm``); inliers are the
    points within 3 c. ``scaling`` False: a rigid transform (scale 1)."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    weights = np.ones(len(source))
    for _ in range(iterations):
        rotation, translation, scale = rigid_align(source, target, scaling=scaling, weights=weights)
        residual = np.linalg.norm(scale * source @ rotation.T + translation - target, axis=1)
        c = max(1.5 * float(np.median(residual)), min_scale_mm)
        weights = 1.0 / (1.0 + (residual / c) ** 2)
    inliers = residual <= 3.0 * c
    return SimilarityFit(rotation, translation, scale, inliers, float(np.sqrt(np.mean(residual[inliers] ** 2))))


def initial_poses(model_landmarks: Mapping[str, np.ndarray], triangulated: TriangulatedLandmarks,
                  levels: Sequence[str]) -> Dict[str, Optional[SimilarityFit]]:
    """Per level the similarity placing that shape-model mean's landmarks ``model_landmarks[level]``
    (L, 3) on the triangulated ones (levels in order, L landmarks each); None when fewer than
    ``MIN_LANDMARKS`` were triangulated or the fitted scale is implausible."""
    poses: Dict[str, Optional[SimilarityFit]] = {}
    if not levels:
        return poses
    per = len(next(iter(model_landmarks.values())))
    for n, level in enumerate(levels):
        used = triangulated.used[n * per:(n + 1) * per]
        if used.sum() < MIN_LANDMARKS:
            poses[level] = None
            continue
        target = triangulated.points[n * per:(n + 1) * per][used]
        fit = robust_similarity(np.asarray(model_landmarks[level])[used], target)
        poses[level] = fit if SCALE_RANGE[0] <= fit.scale <= SCALE_RANGE[1] else None
    return poses


def mean_landmarks(models: Mapping[str, "ShapeModel"], levels: Sequence[str]) -> Dict[str, np.ndarray]:
    """Per level the landmarks (L, 3) of that shape model's mean, in the model's frame."""
    return {level: np.array([landmark.position(models[level].mean) for landmark in models[level].landmarks])
            for level in levels}


@dataclass
class SpineInitialisation:
    """Initial poses per level (None: not found), the triangulated landmarks and what to tell the user."""

    poses: Dict[str, Optional[SimilarityFit]]
    triangulated: TriangulatedLandmarks
    messages: list


def initialise_spine(views: Sequence[View], landmarks: Sequence[Sequence[Mapping]],
                     model_landmarks: Mapping[str, np.ndarray], levels: Sequence[str],
                     min_confidence: float = 0.2) -> SpineInitialisation:
    """From the detected landmarks of each view (dicts with vertebra, name, i, j, confidence, in the
    order of ``model_landmarks``: level by level) to initial poses of every level's mean shape."""
    pixels = [np.array([[lm["i"], lm["j"]] for lm in found], dtype=np.float64) for found in landmarks]
    confidences = [np.array([lm["confidence"] for lm in found], dtype=np.float64) for found in landmarks]
    expected = sum(len(model_landmarks[level]) for level in levels)
    if any(len(p) != expected for p in pixels):
        raise ValueError(f"Every view needs {expected} landmarks ({len(levels)} levels).")
    triangulated = triangulate_landmarks(views, pixels, confidences, min_confidence)
    poses = initial_poses(model_landmarks, triangulated, levels)
    messages = [f"{level}: too few landmarks found in both views to place it" for level, pose in poses.items()
                if pose is None]
    return SpineInitialisation(poses, triangulated, messages)
