"""Joint posing of limb bones: fingers flexed, wrists deviated and flexed, before they are X-rayed.

A pose is a list of hinge joints, proximal first, each with a centre, an axis (a positive angle is
flexion, or ulnar deviation) and the bones it moves (those distal to it). Posing applies the
distal joints first, in the unposed frame, then each more proximal joint moves everything
distal to it, which is forward kinematics along the chain.

Two presets find their joints from the bones themselves:

- ``finger_joints``: the proximal, middle and distal phalanges of one finger (as in the OpenHands
  finger model, assembled straight). The long axis runs from the proximal to the distal
  phalanx; the palmar side is the flat side of the proximal phalanx's D-shaped shaft (its
  cross-sections' centroids lie nearer the flat side than the middle of their depth); the PIP and
  DIP joints turn about the radial-ulnar axis through the head of the more proximal phalanx
  (its end, set back by half the head's depth). Ranges: PIP -5..90 deg, DIP -5..70 deg.
- ``wrist_joints``: a distal radius and ulna (fixed) and carpal bones (and metacarpals) that move
  together about the head of the capitate: flexion-extension (about the radius-ulna axis,
  -40..40 deg; which sign is flexion is not resolved, hence the symmetric range) and deviation
  (about the dorsal-palmar axis, -15 radial .. 25 deg ulnar). The whole
  carpus as one rigid block is a simplification (in a real wrist the proximal row moves about
  half as much as the distal row).

Core module (numpy), no MRML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError
from .geometry import rotation_about
from .limb_radiograph import Bone


@dataclass(frozen=True)
class Joint:
    """A hinge: centre (mm), unit axis, the bones it moves, its range (deg)."""

    name: str
    centre: Tuple[float, float, float]
    axis: Tuple[float, float, float]
    moves: Tuple[str, ...]
    range_deg: Tuple[float, float]

    def transform(self, angle_deg: float) -> np.ndarray:
        rotation = rotation_about(self.axis, math.radians(angle_deg))
        pose = np.eye(4)
        pose[:3, :3] = rotation
        pose[:3, 3] = np.asarray(self.centre) - rotation @ np.asarray(self.centre)
        return pose

    def to_dict(self) -> dict:
        return dict(name=self.name, centre=[round(float(c), 4) for c in self.centre],
                    axis=[round(float(a), 6) for a in self.axis], moves=list(self.moves),
                    range_deg=list(self.range_deg))


@dataclass(frozen=True)
class Articulation:
    """The joints of a set of bones (proximal first), the anatomical front (unit vector) from
    which the standard view looks (dorsal for a finger or a hand: a PA radiograph) and, where the
    preset knows it better than the bones' principal axis, the limb's long axis (the image's
    vertical in the standard view)."""

    joints: Tuple[Joint, ...]
    front: Tuple[float, float, float]
    axis: Optional[Tuple[float, float, float]] = None

    def to_dict(self) -> dict:
        out = dict(joints=[joint.to_dict() for joint in self.joints], front=[round(float(f), 6) for f in self.front])
        if self.axis is not None:
            out["axis"] = [round(float(a), 6) for a in self.axis]
        return out


def pose_bones(bones: Sequence[Bone], joints: Sequence[Joint], angles_deg: Mapping[str, float]) -> List[Bone]:
    """The bones with every joint turned by its angle (joints listed proximal first)."""
    names = {bone.name for bone in bones}
    poses = {name: np.eye(4) for name in names}
    for joint in reversed(list(joints)):
        unknown = set(joint.moves) - names
        if unknown:
            raise InputError(f"Joint '{joint.name}' moves bones that are not there: {', '.join(sorted(unknown))}.")
        angle = float(angles_deg.get(joint.name, 0.0))
        low, high = joint.range_deg
        if not low - 1e-9 <= angle <= high + 1e-9:
            raise InputError(f"Joint '{joint.name}': {angle:.1f} deg is outside its range {low:g}..{high:g} deg.")
        step = joint.transform(angle)
        for name in joint.moves:
            poses[name] = step @ poses[name]
    return [bone.moved(poses[bone.name]) for bone in bones]


def sample_pose(joints: Sequence[Joint], rng: np.random.Generator) -> Dict[str, float]:
    """An angle per joint, uniform over its range."""
    return {joint.name: float(rng.uniform(*joint.range_deg)) for joint in joints}


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    length = np.linalg.norm(vector)
    if length < 1e-9:
        raise InputError("Cannot define a joint axis: the bones are degenerate or coincide.")
    return vector / length


def palmar_direction(phalanx: Bone, long_axis: np.ndarray, voxel_mm: float = 0.2) -> np.ndarray:
    """Unit vector toward the flat (palmar) side of a phalanx's D-shaped shaft."""
    from .mesh_io import surface_mask

    axis = _unit(long_axis)
    helper = np.eye(3)[int(np.argmin(np.abs(axis)))]
    first = _unit(np.cross(axis, helper))
    second = np.cross(axis, first)
    frame = np.stack([first, second, axis])  # rows: the bone in a frame with z along the shaft
    local = (phalanx.points - phalanx.points.mean(axis=0)) @ frame.T
    mask, low = surface_mask(local, phalanx.triangles, voxel_mm)
    offsets = []
    for fraction in (0.35, 0.5, 0.65):  # the shaft, away from base and head
        section = mask[int(round(fraction * (mask.shape[0] - 1)))]
        rows, cols = np.nonzero(section)
        if len(rows) < 20:
            raise InputError(f"'{phalanx.name}' is too thin to find its palmar side.")
        xy = np.stack([cols, rows], axis=1) * voxel_mm + low[:2]
        centred = xy - xy.mean(axis=0)
        # The section's thin direction is its dorsal-palmar depth; its centroid lies toward the flat side.
        depth_axis = np.linalg.svd(centred, full_matrices=False)[2][1]
        along = xy @ depth_axis
        offsets.append((along.mean() - (along.min() + along.max()) / 2) * depth_axis)
    shift = np.mean(offsets, axis=0)
    return _unit(shift[0] * first + shift[1] * second)


def finger_joints(bones: Sequence[Bone]) -> Articulation:
    """PIP and DIP joints of a finger given as its proximal, middle and distal phalanges; front = dorsal."""
    if len(bones) != 3:
        raise InputError("A finger needs its proximal, middle and distal phalanges, in that order.")
    proximal, middle, distal = bones
    lengths = [float(np.ptp(bone.points, axis=0).max()) for bone in bones]
    if not lengths[0] > lengths[1] > lengths[2]:
        raise InputError("The finger's phalanges must be given proximal first (each longer than the next).")
    axis = _unit(distal.points.mean(axis=0) - proximal.points.mean(axis=0))
    palmar = palmar_direction(proximal, axis)
    palmar = _unit(palmar - (palmar @ axis) * axis)
    hinge = np.cross(axis, palmar)  # a positive turn about it brings the distal end palmar: flexion
    joints = []
    for name, near, moved, limits in (("PIP", proximal, (middle, distal), (-5.0, 90.0)),
                                      ("DIP", middle, (distal,), (-5.0, 70.0))):
        along = near.points @ axis
        head = near.points[along > along.max() - 4.0]  # the last 4 mm: the head
        depth = float(np.ptp(head @ palmar))
        middle_of_head = head.mean(axis=0)
        centre = middle_of_head + (along.max() - depth / 2 - middle_of_head @ axis) * axis
        joints.append(Joint(name, tuple(centre), tuple(hinge), tuple(b.name for b in moved), limits))
    return Articulation(tuple(joints), tuple(-palmar))


def finger_from_file(path) -> List[Bone]:
    """The three phalanges of a finger stored as one surface of three pieces (OpenHands), proximal
    first (the longest piece is the proximal phalanx, the shortest the distal), named
    ``proximal_phalanx``, ``middle_phalanx``, ``distal_phalanx`` (the same bone ids in every finger)."""
    from pathlib import Path

    from .mesh_io import read_surface, surface_pieces

    path = Path(path)
    pieces = surface_pieces(read_surface(path))
    if len(pieces) != 3:
        raise InputError(f"{path.name} holds {len(pieces)} closed pieces; a finger has 3 phalanges.")
    pieces.sort(key=lambda piece: -float(np.ptp(piece[0], axis=0).max()))
    return [Bone(f"{part}_phalanx", *piece) for part, piece in zip(("proximal", "middle", "distal"), pieces)]


def wrist_joints(bones: Sequence[Bone], forearm: Sequence[str] = ("radius", "ulna"),
                 capitate: str = "capitate", side: Optional[str] = None) -> Articulation:
    """Flexion and deviation of the carpus (every bone but the forearm's) about the capitate's head.
    front = the dorsal side when ``side`` ("right" or "left" hand) is given (a PA radiograph; the
    bones alone do not tell a right hand's dorsal side from a left hand's palmar side); without it,
    the dorsal side if the hand is a right one."""
    if side not in (None, "right", "left"):
        raise InputError(f"A wrist's side is 'right' or 'left', not '{side}'.")
    by_name = {bone.name.lower(): bone for bone in bones}
    found = {part: next((b for n, b in by_name.items() if part in n), None) for part in (*forearm, capitate)}
    missing = [part for part, bone in found.items() if bone is None]
    if missing:
        raise InputError(f"A wrist needs bones named {', '.join(missing)} (their names must contain it).")
    radius, ulna, head = (found[part] for part in (*forearm, capitate))
    carpus = [b.name for b in bones if b is not radius and b is not ulna]
    forearm_points = np.concatenate([radius.points, ulna.points])
    toward_hand = _unit(head.points.mean(axis=0) - forearm_points.mean(axis=0))
    centred = forearm_points - forearm_points.mean(axis=0)
    spread, directions = np.linalg.svd(centred, full_matrices=False)[1:]
    long_axis = directions[0]
    if spread[0] < 2.0 * spread[1] or abs(long_axis @ toward_hand) < 0.5:
        # Short distal segments (a wrist scan): their widest extent runs across the wrist, not along
        # the forearm; the direction from the forearm toward the capitate, square to the radius-ulna
        # line, is the long axis then.
        between = _unit(radius.points.mean(axis=0) - ulna.points.mean(axis=0))
        long_axis = _unit(toward_hand - (toward_hand @ between) * between)
    if long_axis @ toward_hand < 0:
        long_axis = -long_axis  # toward the hand
    across = radius.points.mean(axis=0) - ulna.points.mean(axis=0)
    across = _unit(across - (across @ long_axis) * long_axis)  # ulna -> radius
    dorsal_palmar = np.cross(across, long_axis)  # a positive turn takes the hand toward the ulna
    along = head.points @ long_axis
    centre = head.points[along < along.min() + 0.25 * np.ptp(along)].mean(axis=0)  # the capitate's head
    joints = (Joint("wrist flexion", tuple(centre), tuple(across), tuple(carpus), (-40.0, 40.0)),
              Joint("wrist deviation", tuple(centre), tuple(dorsal_palmar), tuple(carpus), (-15.0, 25.0)))
    # ulna -> radius points lateral: distal x lateral is dorsal for a right hand, palmar for a left one
    # (in anatomical position, RAS: right hand lateral +x, distal -z: (-z) x (+x) = -y, posterior).
    front = np.cross(long_axis, across) * (-1.0 if side == "left" else 1.0)
    return Articulation(joints, tuple(front), tuple(long_axis))
