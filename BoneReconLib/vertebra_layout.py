"""How far each level's decoded landmarks are from the layout of a vertebra's landmarks, in mm.

Why: the landmark confidence alone tells a lumbar vertebra poorly from a leg, a blob or noise
that happens to give a few sharp heatmap peaks, and it is low on real radiographs (the 0.25 rule
of biplanar-1.4.0 found a "vertebra" on 3 of 90 images without a spine read as AP and on 15 of
them read as lateral, missed a quarter of the synthetic validation vertebrae, and found 1 of 100
real AP ones). A
vertebra's landmarks also lie where a vertebra's landmarks lie relative to each other, which the
guesses on those images do not: the residual below was 1.6-4.7 mm (5th-95th percentile) on the
validation vertebrae, and its 5th percentile 5.5-22.6 mm on each kind of image without a spine
(``benchmarks/biplanar_found_rule.py``).

The layout of a level is its shape model's mean landmarks seen from the view's direction
(orthographic: the perspective of a 5 cm vertebra at 1 m is within the fitted scale), turned out
of the image plane by the best of a grid of tilts and turns (a lordotic or rotated vertebra), then
fitted to the decoded landmarks by the best similarity in the image plane (shift, turn, scale,
no mirror). The residual is the RMS distance left. Core module (numpy), no MRML.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from .geometry import rotation_about

TILT_DEG = np.arange(-30.0, 30.1, 5.0)  # about the image's column axis (toward / away from the source)
TURN_DEG = np.arange(-20.0, 20.1, 5.0)  # about the image's row axis (the vertebra turned in the image's depth)


def view_layouts(landmarks_3d: np.ndarray, column: Sequence[float], row: Sequence[float]) -> np.ndarray:
    """(G, L, K, 2) the layouts (mm) of landmarks (L, K, 3) in a model frame seen on a detector whose
    columns and rows run along ``column`` and ``row`` (unit vectors in that frame), for each of the
    G = len(TILT_DEG) x len(TURN_DEG) out-of-plane rotations."""
    column, row = np.asarray(column, float), np.asarray(row, float)
    frame = np.stack([column, row, np.cross(column, row)])  # model -> (column, row, depth)
    seen = np.asarray(landmarks_3d, float) @ frame.T  # (L, K, 3)
    rotations = np.stack([rotation_about((1, 0, 0), np.radians(tilt)) @ rotation_about((0, 1, 0), np.radians(turn))
                          for tilt in TILT_DEG for turn in TURN_DEG])
    return np.einsum("gij,lkj->glki", rotations, seen)[..., :2]


def layout_residual(points: np.ndarray, layouts: np.ndarray) -> np.ndarray:
    """(L,) RMS residual of decoded points (L, K, 2) after the best similarity fit of any of the
    layouts (G, L, K, 2) to them (in the points' units)."""
    z = points[..., 0] + 1j * points[..., 1]  # (L, K)
    w = layouts[..., 0] + 1j * layouts[..., 1]  # (G, L, K)
    z = z - z.mean(axis=-1, keepdims=True)
    w = w - w.mean(axis=-1, keepdims=True)
    a = (np.conj(w) * z).sum(-1) / np.maximum((np.abs(w) ** 2).sum(-1), 1e-12)  # (G, L) turn x scale
    left = z[None] - a[..., None] * w
    rms = np.sqrt((np.abs(left) ** 2).mean(axis=-1))  # (G, L)
    return rms.min(axis=0)


@lru_cache(maxsize=4)
def bundled_layouts(view: str, levels: tuple, names: tuple) -> np.ndarray:
    """The layouts (G, L, K, 2) of the bundled shape models' mean landmarks ``names`` of ``levels``
    in an AP or lateral view (as ``geometry.biplanar_rig`` lays them out)."""
    from .errors import InputError
    from .geometry import biplanar_rig
    from .shape_model_library import load_models
    from .spine_initialisation import mean_landmarks

    models = load_models(levels=list(levels))
    means = mean_landmarks(models, levels)
    points = []
    for level in levels:
        missing = [name for name in names if name not in models[level].landmark_names]
        if missing:
            raise InputError(f"The {level} shape model has no landmark {', '.join(missing)}.")
        points.append(means[level][[models[level].landmark_names.index(name) for name in names]])
    rig = {view.name: view for view in biplanar_rig()}
    if view not in rig:
        raise InputError(f"The view must be one of {', '.join(rig)}, got '{view}'.")
    return view_layouts(np.stack(points), rig[view].detector_u, rig[view].detector_v)
