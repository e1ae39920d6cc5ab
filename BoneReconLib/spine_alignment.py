"""Plausible lumbar spine alignments: L1-L5 shape-model instances stacked disc by disc, without overlap.

Each vertebra is placed on the one below it through their endplates: the upper vertebra's
inferior endplate frame sits at the lower one's superior endplate frame, across a disc with a
height, a sagittal wedge (lordosis, anterior opening = rotation about the right axis), a coronal
wedge (scoliosis), an axial rotation and a slip (anterolisthesis, along the lower endplate's
anterior direction). An endplate's frame comes from the instance's own landmarks (centre, the
anterior/posterior and left/right corners), so a wedged vertebral body keeps its wedge.

Independently drawn shapes do not always fit at their facet joints: the upper vertebra's
inferior articular processes can run into the lower one's superior articular processes and
laminae. Stacking the bundled models' means already overlaps by 1-3 mm at L2-L3 and L3-L4 at any
lordosis (their levels were built from different people); single random instances by up to 10
mm (median 4 mm). So each level above L5 may be offered several candidate shapes, and the one
whose facets overlap least with the vertebra below is taken: a rejection sampler of neighbours
that fit (with 8 candidates the overlap falls to a median of about 2.4 mm, at most about 5 mm).
The overlap left is recorded per segment with every case (``overlap_mm``: the deepest vertex
of either mesh inside the other, by the distance to the nearest vertex of the other mesh when it
lies behind that vertex's normal; approximate at the models' vertex spacing of about 1.5 mm, and
blind beyond 10 mm). The radiographs count bone twice where facets overlap; the per-vertebra
images, landmarks and meshes are unaffected. Truly congruent joints (jointly modelled
neighbours) are future work. The lordosis of a disc is capped so that its posterior height
stays at least ``MIN_POSTERIOR_DISC_MM`` (the bodies never overlap).

Ranges (``sample_alignment``): disc wedges L1-L2 .. L4-L5 3, 5, 7, 10 deg +- 3 deg (segmental
disc angles of standing lumbar spines; Roussouly 2005, Been 2010 report 40-60 deg L1-S1
lordosis including the L5-S1 disc and the vertebral bodies' own wedging), disc heights 8-10.5
mm +- 1.5 mm, half of the spines scoliotic (Cobb 5-35 deg over L1-L5, vertebrae rotated toward
the convex side), one segment in five slipped forward 2-12 mm (Meyerding I-II).

Core module (numpy/torch), no MRML.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Mapping, Optional

import numpy as np
import torch

from .errors import InputError
from .geometry import rotation_about
from .mesh_depth import vertex_normals
from .shape_model import ShapeModel

LEVELS = ("L1", "L2", "L3", "L4", "L5")
SEGMENTS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5")  # named upper-lower; a disc's values belong to its segment
MIN_POSTERIOR_DISC_MM = 2.0

_NEAR_MM = 10.0  # vertices farther than this from the other mesh are not tested (deeper overlaps are not expected)


@dataclass
class SpineAlignment:
    """Per segment (upper-lower): disc wedge angles (deg), disc height at the centre and slip (mm);
    per level: axial rotation (deg) relative to the level below."""

    lordosis_deg: Dict[str, float]
    coronal_deg: Dict[str, float]
    disc_height_mm: Dict[str, float]
    slip_mm: Dict[str, float]
    axial_deg: Dict[str, float]

    def __post_init__(self):
        for name in ("lordosis_deg", "coronal_deg", "disc_height_mm", "slip_mm", "axial_deg"):
            values = getattr(self, name)
            missing = [s for s in SEGMENTS if s not in values]
            if missing:
                raise InputError(f"Spine alignment: {name} lacks {', '.join(missing)}.")
        for segment, height in self.disc_height_mm.items():
            if not 2.0 <= height <= 20.0:
                raise InputError(f"Spine alignment: disc {segment} is {height:.1f} mm high (2-20 mm expected).")

    def to_dict(self) -> dict:
        return {k: {s: round(float(v), 4) for s, v in d.items()} for k, d in asdict(self).items()}

    @classmethod
    def neutral(cls, disc_height_mm: float = 9.0, lordosis=(3.0, 5.0, 7.0, 10.0)) -> "SpineAlignment":
        zero = {s: 0.0 for s in SEGMENTS}
        return cls(dict(zip(SEGMENTS, lordosis)), dict(zero), {s: disc_height_mm for s in SEGMENTS}, dict(zero),
                   dict(zero))


def sample_alignment(rng: np.random.Generator) -> SpineAlignment:
    """A standing lumbar alignment drawn over the clinical ranges in the module notes."""
    lordosis = np.clip(rng.normal([3.0, 5.0, 7.0, 10.0], 3.0), -5.0, 20.0)
    height = np.clip(rng.normal([8.0, 9.0, 10.0, 10.5], 1.5), 5.0, 14.0)
    coronal = rng.normal(0.0, 1.0, 4)
    if rng.random() < 0.5:  # scoliotic: one curve over L1-L5, its Cobb angle shared by the discs
        cobb = rng.uniform(5.0, 35.0) * rng.choice([-1.0, 1.0])
        coronal = cobb * rng.dirichlet(np.full(4, 2.0)) + rng.normal(0.0, 0.5, 4)
    axial = 0.3 * coronal + rng.normal(0.0, 1.5, 4)  # vertebrae turn toward the convexity
    slip = rng.normal(0.0, 0.5, 4)
    if rng.random() < 0.2:
        slip[rng.integers(4)] = rng.uniform(2.0, 12.0)
    as_dict = lambda values: {s: float(v) for s, v in zip(SEGMENTS, values)}  # noqa: E731
    return SpineAlignment(as_dict(lordosis), as_dict(coronal), as_dict(height), as_dict(slip), as_dict(axial))


def landmarks_of(model: ShapeModel, points: np.ndarray) -> Dict[str, np.ndarray]:
    """Named landmark positions of one instance's vertices (P, 3)."""
    return {landmark.name: landmark.position(points) for landmark in model.landmarks}


def endplate_frame(landmarks: Mapping[str, np.ndarray], which: str) -> np.ndarray:
    """4x4 frame of the ``which`` ("superior"/"inferior") endplate: origin at its centre, x right,
    y anterior along the endplate, z its normal (superior)."""
    right = landmarks[f"body right {which}"] - landmarks[f"body left {which}"]
    forward = landmarks[f"body anterior {which}"] - landmarks[f"body posterior {which}"]
    x = right / np.linalg.norm(right)
    z = np.cross(right, forward)
    z /= np.linalg.norm(z)
    frame = np.eye(4)
    frame[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    frame[:3, 3] = landmarks[f"{which} endplate centre"]
    return frame


def disc_transform(lordosis_deg: float, coronal_deg: float, axial_deg: float, height_mm: float,
                   slip_mm: float) -> np.ndarray:
    """Lower superior endplate frame -> upper inferior endplate frame, turning about the disc's centre."""
    turn = (rotation_about((0, 0, 1), math.radians(axial_deg)) @ rotation_about((0, 1, 0), math.radians(coronal_deg))
            @ rotation_about((1, 0, 0), math.radians(lordosis_deg)))
    half = np.array([0.0, 0.0, height_mm / 2])
    transform = np.eye(4)
    transform[:3, :3] = turn
    transform[:3, 3] = np.array([0.0, slip_mm, 0.0]) + half + turn @ half
    return transform


def overlap_mm(lower: np.ndarray, upper: np.ndarray, triangles_lower: np.ndarray, triangles_upper: np.ndarray,
               lower_part=None, upper_part=None) -> float:
    """Deepest overlap (mm) of two placed meshes (world vertices): either one's vertices inside the
    other, probing only the given vertex indices (default all; normals come from the whole meshes)."""
    lower_t, upper_t = torch.as_tensor(lower, dtype=torch.float32), torch.as_tensor(upper, dtype=torch.float32)
    normals_l = vertex_normals(lower_t, torch.as_tensor(np.asarray(triangles_lower)))
    normals_u = vertex_normals(upper_t, torch.as_tensor(np.asarray(triangles_upper)))
    lower_part = torch.arange(len(lower)) if lower_part is None else torch.as_tensor(lower_part)
    upper_part = torch.arange(len(upper)) if upper_part is None else torch.as_tensor(upper_part)
    if len(lower_part) == 0 or len(upper_part) == 0:
        return 0.0
    upper_in = _depth_inside(upper_t[upper_part], lower_t[lower_part], normals_l[lower_part])
    lower_in = _depth_inside(lower_t[lower_part], upper_t[upper_part], normals_u[upper_part])
    return float(max(upper_in.max(), lower_in.max()))


def neighbour_overlaps(triangles: Mapping[str, np.ndarray], points: Mapping[str, np.ndarray]) -> Dict[str, float]:
    """Per segment ("L1-L2") of two neighbours both in ``points`` (world vertices per level, meshes
    ``triangles`` per level): the deepest vertex of either inside the other (mm), from each one's
    signed-distance grid (``neighbour_clearance``, what the registration keeps neighbours apart
    with). Not ``overlap_mm``: its nearest-vertex test takes a point beside a thin process or edge
    for one inside it (the demo's L3-L4 read 10 mm where neither has a vertex 2 mm inside the other)."""
    from .neighbour_clearance import clearance_of

    segments = [(upper, lower) for upper, lower in zip(LEVELS[:-1], LEVELS[1:]) if upper in points and lower in points]
    grids = {level: clearance_of(points[level], triangles[level]) for segment in segments for level in segment}
    return {f"{upper}-{lower}": float(max(grids[lower].depth_inside(points[upper]),
                                          grids[upper].depth_inside(points[lower])))
            for upper, lower in segments}


def _facing_parts(lower_local: np.ndarray, upper_local: np.ndarray, lower_marks, upper_marks):
    """Indices of the vertices that can meet across the disc: the lower vertebra's top, the upper's bottom."""
    top = np.nonzero(lower_local[:, 2] > lower_marks["superior endplate centre"][2] - 12.0)[0]
    bottom = np.nonzero(upper_local[:, 2] < upper_marks["inferior endplate centre"][2] + 12.0)[0]
    return top, bottom


def _depth_inside(probe: torch.Tensor, surface: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Per probe vertex (A, 3): how deep (mm, 0 = outside) it lies inside the surface (B, 3)."""
    distance = torch.cdist(probe, surface)
    closest, nearest = distance.min(dim=-1)
    offset = probe - surface[nearest]
    inside = (closest < _NEAR_MM) & ((offset * normals[nearest]).sum(dim=-1) < 0)
    return torch.where(inside, closest, torch.zeros_like(closest))


@dataclass
class PlacedSpine:
    """Per level: vertices in the model frame, pose (model frame -> world, 4x4) and which candidate
    shape was taken; the alignment as placed (lordosis capped); per segment the facet overlap (mm,
    see the module notes)."""

    points: Dict[str, np.ndarray]
    poses: Dict[str, np.ndarray]
    alignment: SpineAlignment
    overlap_mm: Dict[str, float]
    chosen: Dict[str, int]

    def world(self, level: str) -> np.ndarray:
        pose = self.poses[level]
        return self.points[level] @ pose[:3, :3].T + pose[:3, 3]


def place_spine(models: Mapping[str, ShapeModel], points: Mapping[str, np.ndarray], alignment: SpineAlignment,
                base_pose: Optional[np.ndarray] = None) -> PlacedSpine:
    """Stack L1-L5 instances (model-frame vertices per level) from L5 (at ``base_pose``) upward.

    A level may offer several candidate shapes (C, P, 3): the one whose facets overlap least with
    the vertebra already placed below it is taken (``PlacedSpine.chosen``), which draws neighbours
    that fit together (a rejection sampler of congruent facet joints)."""
    missing = [level for level in LEVELS if level not in models or level not in points]
    if missing:
        raise InputError(f"Placing a spine needs L1-L5; missing {', '.join(missing)}.")
    offered = {level: np.asarray(points[level], dtype=np.float64) for level in LEVELS}
    offered = {level: shapes if shapes.ndim == 3 else shapes[None] for level, shapes in offered.items()}
    chosen = {"L5": 0}
    chosen_points = {"L5": offered["L5"][0]}
    poses = {"L5": np.eye(4) if base_pose is None else np.asarray(base_pose, dtype=np.float64)}
    placed = {field: dict(values) for field, values in asdict(alignment).items()}
    overlaps = {}
    for upper, lower in zip(LEVELS[-2::-1], LEVELS[:0:-1]):
        segment = f"{upper}-{lower}"
        marks_lower = landmarks_of(models[lower], chosen_points[lower])
        lower_world = chosen_points[lower] @ poses[lower][:3, :3].T + poses[lower][:3, 3]
        depth = np.linalg.norm(marks_lower["body anterior superior"] - marks_lower["body posterior superior"])
        height = placed["disc_height_mm"][segment]
        cap = math.degrees(math.atan2(height - MIN_POSTERIOR_DISC_MM, depth / 2))
        placed["lordosis_deg"][segment] = min(placed["lordosis_deg"][segment], cap)
        disc = endplate_frame(marks_lower, "superior") @ disc_transform(
            placed["lordosis_deg"][segment], placed["coronal_deg"][segment], placed["axial_deg"][segment],
            height, placed["slip_mm"][segment])
        best = None
        for index, candidate in enumerate(offered[upper]):
            marks_upper = landmarks_of(models[upper], candidate)
            pose = poses[lower] @ disc @ np.linalg.inv(endplate_frame(marks_upper, "inferior"))
            top, bottom = _facing_parts(chosen_points[lower], candidate, marks_lower, marks_upper)
            overlap = overlap_mm(lower_world, candidate @ pose[:3, :3].T + pose[:3, 3], models[lower].triangles,
                                 models[upper].triangles, top, bottom)
            if best is None or overlap < best[0]:
                best = (overlap, index, pose)
        overlaps[segment], chosen[upper], poses[upper] = best
        chosen_points[upper] = offered[upper][chosen[upper]]
    return PlacedSpine(chosen_points, poses, SpineAlignment(**placed), overlaps, chosen)


def measured_alignment(models: Mapping[str, ShapeModel], points: Mapping[str, np.ndarray],
                       poses: Mapping[str, np.ndarray]) -> Dict[str, Dict[str, float]]:
    """Disc angles (deg) and centre height (mm) per segment, measured back from placed instances."""
    out: Dict[str, Dict[str, float]] = {}
    for upper, lower in zip(LEVELS[:-1], LEVELS[1:]):
        frames = []
        for level, which in ((lower, "superior"), (upper, "inferior")):
            moved = points[level] @ poses[level][:3, :3].T + poses[level][:3, 3]
            frames.append(endplate_frame(landmarks_of(models[level], moved), which))
        relative = np.linalg.inv(frames[0]) @ frames[1]
        r = relative[:3, :3]
        out[f"{upper}-{lower}"] = dict(lordosis_deg=math.degrees(math.atan2(r[2, 1], r[2, 2])),
                                       coronal_deg=math.degrees(math.asin(float(np.clip(-r[2, 0], -1, 1)))),
                                       height_mm=float(np.linalg.norm(frames[1][:3, 3] - frames[0][:3, 3])))
    return out
