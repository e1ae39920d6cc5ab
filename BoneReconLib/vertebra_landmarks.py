"""Named anatomical landmarks of a lumbar vertebra surface, found by rules in its own anatomical frame.

The surface must be roughly in patient orientation (RAS: +x right, +y anterior, +z superior;
tilts of a few tens of degrees are fine). The frame is refined from the shape itself:

1. x (left-right): the normal of the mid-sagittal symmetry plane (the surface's mirror image
   is rigidly registered onto the surface; their composition is the reflection in that plane).
2. The spinal canal is the largest hole enclosed by bone in axial sections; the vertebral body
   is the bone anterior to it in the mid-sagittal section.
3. z (inferior-superior): perpendicular to the mean direction of the two endplates (top and
   bottom edges of the body in the mid-sagittal section), so a wedged body keeps its wedge.

Landmarks (region): the four body corners seen on a lateral view (mid-sagittal section) and the
four seen on an AP view (mid-coronal section through the body centre) (body); the centres of
the superior and inferior endplates (body); the left and right pedicle centres, inside the bone
at the canal's centre (pedicle); the tips of the transverse processes (transverse process), of
the spinous process (spinous process) and of the left/right superior and inferior articular
processes (articular process).

Core module (numpy, vtk, SimpleITK), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from .errors import InputError
from .shape_model import Landmark, landmark_on_surface
from .shape_statistics import apply, rigid_align

VOXEL = 0.5  # mm, sections are rasterised at this spacing
LANDMARKS = {  # name: region
    "body anterior superior": "body", "body anterior inferior": "body",
    "body posterior superior": "body", "body posterior inferior": "body",
    "body left superior": "body", "body left inferior": "body",
    "body right superior": "body", "body right inferior": "body",
    "superior endplate centre": "body", "inferior endplate centre": "body",
    "left pedicle centre": "pedicle", "right pedicle centre": "pedicle",
    "left transverse process tip": "transverse process", "right transverse process tip": "transverse process",
    "spinous process tip": "spinous process",
    "left superior articular process": "articular process", "right superior articular process": "articular process",
    "left inferior articular process": "articular process", "right inferior articular process": "articular process",
}


@dataclass
class VertebraFrame:
    """Anatomical frame: origin on the mid-sagittal plane, rows of ``axes`` = right, anterior, superior."""

    origin: np.ndarray
    axes: np.ndarray

    def to_frame(self, points) -> np.ndarray:
        return (np.asarray(points) - self.origin) @ self.axes.T

    def to_world(self, points) -> np.ndarray:
        return np.asarray(points) @ self.axes + self.origin


def symmetry_plane(points: np.ndarray, triangles: np.ndarray, frame: VertebraFrame,
                   iterations: int = 30) -> VertebraFrame:
    """The frame turned so that x is the normal of the surface's plane of mirror symmetry."""
    import torch

    from .shape_correspondence import nearest, surface_samples

    local = frame.to_frame(surface_samples(points, triangles, 3000)[0])
    mirrored = local * [-1.0, 1.0, 1.0]
    moved = mirrored
    target = torch.as_tensor(local)
    for _ in range(iterations):
        index, _ = nearest(torch.as_tensor(moved), target)
        rotation, translation, _ = rigid_align(moved, local[index.numpy()])
        moved = apply(moved, rotation, translation)
    rotation, translation, _ = rigid_align(mirrored, moved)
    reflection = rotation @ np.diag([-1.0, 1.0, 1.0])  # local -> its mirror image registered onto the surface
    values, vectors = np.linalg.eigh((reflection + reflection.T) / 2)
    normal = vectors[:, np.argmin(values)]
    normal *= np.sign(normal[0]) or 1.0
    images = local @ reflection.T + translation
    offset = float((((local + images) / 2) @ normal).mean())  # the plane passes half way to the mirror images
    anterior = np.array([0.0, 1.0, 0.0]) - normal[1] * normal
    anterior /= np.linalg.norm(anterior)
    local_axes = np.stack([normal, anterior, np.cross(normal, anterior)])
    origin = frame.to_world(offset * normal)
    return VertebraFrame(origin, local_axes @ frame.axes)


def voxelise(points: np.ndarray, triangles: np.ndarray, frame: VertebraFrame, margin: float = 2.0):
    """Inside mask [z, y, x] of the closed surface on a VOXEL grid in the frame, and the grid's origin (x, y, z)."""
    from .mesh_io import surface_mask

    return surface_mask(frame.to_frame(points), triangles, VOXEL, margin)


def _components(mask2d: np.ndarray) -> np.ndarray:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(mask2d.astype(np.uint8))
    return sitk.GetArrayFromImage(sitk.ConnectedComponent(image, True))


def _holes(mask2d: np.ndarray) -> np.ndarray:
    import SimpleITK as sitk

    filled = sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(mask2d.astype(np.uint8)), True))
    return filled.astype(bool) & ~mask2d


class _Grid:
    """Index <-> frame coordinates of the voxel grid."""

    def __init__(self, mask, low):
        self.mask, self.low = mask, low

    def index(self, value, axis):  # axis 0 = x, 1 = y, 2 = z
        return int(round((value - self.low[axis]) / VOXEL))

    def coord(self, index, axis):
        return self.low[axis] + np.asarray(index) * VOXEL


def find_canal_and_body(grid: _Grid):
    """(canal centre (x, y, z), half width, front y, depth, body pixels (z, y) of the mid-sagittal section)."""
    mask = grid.mask
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    holes = np.zeros_like(mask)
    for k in range(zs[0] + (zs[-1] - zs[0]) // 4, zs[-1] - (zs[-1] - zs[0]) // 4 + 1):
        holes[k] = _holes(mask[k])
    # The canal is the enclosed hole that runs through the most axial sections; a concave endplate
    # also encloses a hole in the few sections that cut its rim, but not over the pedicles' height.
    labels = _components(holes)
    best = None
    for value in range(1, labels.max() + 1):
        where = np.nonzero(labels == value)
        key = (len(np.unique(where[0])), len(where[0]))  # (sections, voxels)
        if best is None or key > best[0]:
            best = (key, value, where)
    if best is None or best[0][1] * VOXEL ** 2 < 20.0:
        raise InputError("No spinal canal found: the surface does not look like a vertebra (no bony ring), "
                         "or it is not in patient orientation.")
    _, value, where = best
    k = int(np.median(where[0]))
    canal = labels[k] == value
    rows, cols = np.nonzero(canal)  # rows = y index, cols = x index
    centre = np.array([grid.coord(cols.mean(), 0), grid.coord(rows.mean(), 1), grid.coord(k, 2)])
    half_width = (cols.max() - cols.min() + 1) * VOXEL / 2
    depth = (rows.max() - rows.min() + 1) * VOXEL
    front = grid.coord(rows.max(), 1) + VOXEL / 2
    sagittal = mask[:, :, grid.index(0.0, 0)]  # (z, y)
    anterior = sagittal & (grid.coord(np.arange(sagittal.shape[1]), 1) > front + VOXEL / 2)[None, :]
    labels = _components(anterior)
    if labels.max() == 0:
        raise InputError("No vertebral body found anterior to the spinal canal.")
    sizes = np.bincount(labels.ravel())[1:]
    body = labels == (int(np.argmax(sizes)) + 1)
    return centre, half_width, front, depth, body


def endplate_tilt(grid: _Grid, body: np.ndarray) -> float:
    """Angle (rad) about x that makes the mean of the two endplates' sagittal directions level."""
    columns = np.nonzero(body.any(axis=0))[0]
    # The middle half of the body's depth: clear of the corners, where a tilted wall would bias the fit.
    inner = columns[int(0.25 * len(columns)):max(int(0.75 * len(columns)), int(0.25 * len(columns)) + 2)]
    y = grid.coord(inner, 1)
    top = np.array([grid.coord(np.nonzero(body[:, c])[0].max(), 2) for c in inner])
    bottom = np.array([grid.coord(np.nonzero(body[:, c])[0].min(), 2) for c in inner])
    slope = (np.polyfit(y, top, 1)[0] + np.polyfit(y, bottom, 1)[0]) / 2
    return float(np.arctan(slope))


def vertebra_frame(points, triangles) -> VertebraFrame:
    """The vertebra's anatomical frame (see the module notes)."""
    points = np.asarray(points, dtype=np.float64)
    frame = symmetry_plane(points, triangles, VertebraFrame(points.mean(axis=0), np.eye(3)))
    grid = _Grid(*voxelise(points, triangles, frame))
    *_, body = find_canal_and_body(grid)
    tilt = endplate_tilt(grid, body)
    c, s = np.cos(tilt), np.sin(tilt)
    # Turn about x so that the anterior axis follows the endplates (y' along the endplate direction).
    turn = np.array([[1.0, 0, 0], [0, c, s], [0, -s, c]])
    return VertebraFrame(frame.origin, turn @ frame.axes)


def vertebra_landmarks(points, triangles) -> Tuple[List[Landmark], VertebraFrame]:
    """The named landmarks (see LANDMARKS) of a closed vertebra surface, and its frame."""
    points = np.asarray(points, dtype=np.float64)
    triangles = np.asarray(triangles)
    frame = vertebra_frame(points, triangles)
    grid = _Grid(*voxelise(points, triangles, frame))
    canal, half_width, canal_front, canal_depth, body = find_canal_and_body(grid)
    local = frame.to_frame(points)
    found: Dict[str, Landmark] = {}

    def on_surface(name, target_local):
        found[name] = landmark_on_surface(points, triangles, frame.to_world(target_local), name, LANDMARKS[name])

    def at_vertex(name, index):
        found[name] = Landmark(name, LANDMARKS[name], (int(index),), (1.0,))

    # Body corners in the mid-sagittal section (z rows, y columns).
    z_idx, y_idx = np.nonzero(body)
    y, z = grid.coord(y_idx, 1), grid.coord(z_idx, 2)
    for name, score in (("body anterior superior", y + z), ("body anterior inferior", y - z),
                        ("body posterior superior", -y + z), ("body posterior inferior", -y - z)):
        i = int(np.argmax(score))
        on_surface(name, [0.0, y[i], z[i]])
    body_y, body_z = float(y.mean()), float(z.mean())
    column = body[:, grid.index(body_y, 1)]
    rows = np.nonzero(column)[0]
    on_surface("superior endplate centre", [0.0, body_y, grid.coord(rows.max(), 2) + VOXEL / 2])
    on_surface("inferior endplate centre", [0.0, body_y, grid.coord(rows.min(), 2) - VOXEL / 2])

    # Body corners in the mid-coronal section through the body centre (z rows, x columns).
    coronal = grid.mask[:, grid.index(body_y, 1), :]
    labels = _components(coronal)
    centre_label = labels[grid.index(body_z, 2), grid.index(0.0, 0)]
    if centre_label == 0:
        raise InputError("The vertebral body's centre is not inside the bone (unusual shape).")
    z_idx, x_idx = np.nonzero(labels == centre_label)
    x, z = grid.coord(x_idx, 0), grid.coord(z_idx, 2)
    for name, score in (("body right superior", x + z), ("body right inferior", x - z),
                        ("body left superior", -x + z), ("body left inferior", -x - z)):
        i = int(np.argmax(score))
        on_surface(name, [x[i], body_y, z[i]])

    # Pedicles: the bone beside the canal in a coronal section through the canal's anterior quarter
    # (near the body, clear of the transverse processes, which leave the arch further back).
    pedicle_y = canal_front - 0.25 * canal_depth
    section = grid.mask[:, grid.index(pedicle_y, 1), :]
    labels = _components(section)
    for side, sign in (("left", -1.0), ("right", 1.0)):
        seed_x = sign * (half_width + 3.0)
        candidates = np.argwhere(labels > 0)
        distance = (grid.coord(candidates[:, 1], 0) - seed_x) ** 2 + (grid.coord(candidates[:, 0], 2) - canal[2]) ** 2
        nearest_label = labels[tuple(candidates[int(np.argmin(distance))])]
        z_idx, x_idx = np.nonzero(labels == nearest_label)
        x, z = grid.coord(x_idx, 0), grid.coord(z_idx, 2)
        keep = (np.abs(x) < half_width + 12.0) & (np.abs(z - canal[2]) < 15.0) & (sign * x > 0)
        x, z = x[keep], z[keep]
        # Wall points on the section's centre lines: lateral/medial at its mid height, top/bottom at its mid width.
        mid_z, mid_x = z[np.argmin(np.abs(z - z.mean()))], x[np.argmin(np.abs(x - x.mean()))]
        row, col = x[z == mid_z], z[x == mid_x]
        walls = [[row.min() - VOXEL / 2, mid_z], [row.max() + VOXEL / 2, mid_z],
                 [mid_x, col.min() - VOXEL / 2], [mid_x, col.max() + VOXEL / 2]]
        parts = [landmark_on_surface(points, triangles, frame.to_world([wx, pedicle_y, wz]), "wall", "pedicle")
                 for wx, wz in walls]
        found[f"{side} pedicle centre"] = Landmark.mean_of(f"{side} pedicle centre", "pedicle", parts)

    # Process tips: extreme vertices.
    at_vertex("right transverse process tip", np.argmax(local[:, 0]))
    at_vertex("left transverse process tip", np.argmin(local[:, 0]))
    near_midline = np.nonzero(np.abs(local[:, 0]) < 4.0)[0]
    at_vertex("spinous process tip", near_midline[np.argmin(local[near_midline, 1])])
    posterior = local[:, 1] < canal[1]
    for side, sign in (("left", -1.0), ("right", 1.0)):
        lateral = np.nonzero(posterior & (sign * local[:, 0] > 6.0))[0]
        at_vertex(f"{side} superior articular process", lateral[np.argmax(local[lateral, 2])])
        at_vertex(f"{side} inferior articular process", lateral[np.argmin(local[lateral, 2])])
    return [found[name] for name in LANDMARKS], frame
