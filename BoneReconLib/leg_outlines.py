"""Boxes and ellipses of the leg detector, carried as points: each outline is its four extreme points.

The detector finds heatmap points well, so a bone's bounding box and the projected outlines of
its round features are taught and found as points too: for each outline, the points of its
projection farthest to the image's left, right, top and bottom. A box is those four extremes; an
ellipse is fully determined by them (centre = the midpoints; with M the ellipse's matrix,
``(p - c)^T M^-1 (p - c) = 1``: M_ii = (half width)^2, M_jj = (half height)^2, and the rightmost
point sits M_ij / sqrt(M_ii) below the centre), so rotated ellipses come back with their angle.

Outlines (``OUTLINES``): each bone's box (its whole projected surface), the femoral head (the
projected outline of the sphere fitted to it), the medial and lateral posterior condyles (their
spheres), the tibial plateau (its rim ring). Core module (numpy), no MRML.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from .geometry import View
from .leg_landmarks import fit_sphere
from .shape_model import ShapeModel

OUTLINES = (("femur", "femur box"), ("tibia", "tibia box"), ("femur", "femoral head"),
            ("femur", "medial posterior condyle"), ("femur", "lateral posterior condyle"), ("tibia", "tibial plateau"))
EXTREMES = ("left", "right", "top", "bottom")
SPHERE_SAMPLES = 400


def outline_names() -> List[str]:
    """The detector's outline points, "femur: femoral head outline left", ..., after the feature points
    ("outline" keeps them apart from feature points such as "femoral head top")."""
    return [f"{bone}: {name} outline {end}" for bone, name in OUTLINES for end in EXTREMES]


def flipped_order(names: Sequence[str]) -> np.ndarray:
    """Index of each point's partner in an image mirrored left-right ("... left" <-> "... right";
    anatomical points keep their own place)."""
    index = {name: k for k, name in enumerate(names)}
    order = []
    for name in names:
        for a, b in ((" left", " right"), (" right", " left")):
            if name.endswith(a) and name[:-len(a)] + b in index:
                name = name[:-len(a)] + b
                break
        order.append(index[name])
    return np.array(order)


def _sphere_points(centre: np.ndarray, radius: float) -> np.ndarray:
    """Points spread evenly over a sphere (Fibonacci lattice)."""
    k = np.arange(SPHERE_SAMPLES) + 0.5
    z = 1.0 - 2.0 * k / SPHERE_SAMPLES
    angle = np.pi * (1.0 + 5 ** 0.5) * k
    r = np.sqrt(1.0 - z * z)
    return centre + radius * np.stack([r * np.cos(angle), r * np.sin(angle), z], axis=1)


def outline_sets(bone: str, model: ShapeModel, points: np.ndarray) -> Dict[str, np.ndarray]:
    """{outline: 3D points whose projection's extremes are the outline's} of one bone instance."""
    sets = {f"{bone} box": points}
    for feature in model.info.get("features", []):
        vertices = points[feature["vertices"]]
        if feature["kind"] == "sphere":
            sets[feature["name"]] = _sphere_points(*fit_sphere(vertices))
        else:
            sets[feature["name"]] = vertices
    return sets


def outline_pixels(models: Mapping[str, ShapeModel], legs: Mapping[str, np.ndarray], view: View) -> np.ndarray:
    """(len(OUTLINES) x 4, 2) pixels (i, j) of every outline's left, right, top and bottom extreme."""
    sets = {}
    for bone in ("femur", "tibia"):
        sets.update(outline_sets(bone, models[bone], legs[bone]))
    found = []
    for _, name in OUTLINES:
        ij, _ = view.project(sets[name])
        found += [ij[np.argmin(ij[:, 0])], ij[np.argmax(ij[:, 0])], ij[np.argmin(ij[:, 1])], ij[np.argmax(ij[:, 1])]]
    return np.array(found)


def box_from_extremes(extremes: np.ndarray) -> np.ndarray:
    """[i min, j min, i max, j max] of the (4, 2) left, right, top, bottom points."""
    left, right, top, bottom = np.asarray(extremes, dtype=np.float64)
    return np.array([left[0], top[1], right[0], bottom[1]])


def box_iou(a, b) -> float:
    """Intersection over union of two boxes [i min, j min, i max, j max]."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    overlap = float(np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0.0, None)))
    union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2])) - overlap
    return overlap / union if union > 0 else 0.0


def ellipse_from_extremes(extremes: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
    """(centre (2,), semi-axes (major, minor), angle of the major axis in degrees from the image's
    i axis towards j) of the ellipse whose left, right, top and bottom extremes are ``extremes``."""
    left, right, top, bottom = np.asarray(extremes, dtype=np.float64)
    centre = np.array([(left[0] + right[0]) / 2, (top[1] + bottom[1]) / 2])
    half_i, half_j = max((right[0] - left[0]) / 2, 1e-9), max((bottom[1] - top[1]) / 2, 1e-9)
    # The off-diagonal term, from both pairs (the rightmost point's j offset, the lowest point's i offset).
    m_ij = 0.5 * (((right[1] - left[1]) / 2) * half_i + ((bottom[0] - top[0]) / 2) * half_j)
    m_ij = float(np.clip(m_ij, -0.999 * half_i * half_j, 0.999 * half_i * half_j))
    values, vectors = np.linalg.eigh(np.array([[half_i ** 2, m_ij], [m_ij, half_j ** 2]]))
    major = vectors[:, 1]
    angle = float(np.degrees(np.arctan2(major[1], major[0])))
    angle = angle - 180.0 if angle > 90.0 else angle + 180.0 if angle <= -90.0 else angle
    return centre, np.sqrt(np.clip(values[::-1], 0.0, None)), angle
