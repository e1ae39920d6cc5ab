"""DepthRecon training cases from a user's own CTs with bone label maps (the data engine as a feature).

Each case is one CT seen in one view: the DRR of the CT (its line integrals through the random
realism chain of :mod:`.radiograph_realism`) and, for every labelled bone, the exact front/back
depth maps of its label's boundary (:mod:`.label_depth`: the surface marching cubes would give),
with the bone mask and the nearest bone's id. The cases have the layout of the mesh-made limb
cases (:mod:`.limb_dataset`), so ``bonerecon train depth`` and the benchmark use them unchanged.

Where the CT sits in the view (``placement``):

- ``"standard"``: the patient's anterior toward the source and superior up the image (an AP or
  PA view of the labelled bones), the bones' centre on the central ray at the view's object
  plane (``source_to_object``, else 80 % of the source-to-detector distance);
- ``"as-is"``: where the CT's own coordinates put it, moved by its ``pose`` when it has one
  (the whole-CT pose of ``bonerecon register``'s ``registration.json``: where the CT was when a
  real radiograph of this very system was taken; paired data).

About either, every case turns the CT about the image's vertical axis (the limb's rotation,
+-``rotation_deg``), tilts it (+-``tilt_deg``) about the bones' centre and shifts it across the
beam (+-``shift_mm``). The view written with each case records the bones' mid-plane as its
``source_to_object`` (:mod:`.depth_reference`). Reproducible per case from the seed (a cancelled
run resumes). Core module (numpy/torch/SimpleITK), no MRML.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from .dataset_store import DatasetWriter
from .drr import Volume, hu_to_mu, render_attenuation
from .errors import InputError
from .geometry import View, rotation_about
from .label_depth import label_depth
from .limb_radiograph import LimbImages
from .progress import ProgressCallback, as_progress
from .radiograph_realism import realistic_radiograph, sample_realism

KIND = "single-view-limb"  # the same case layout as the mesh-made limb cases
PLACEMENTS = ("standard", "as-is")
DEFAULT_OBJECT_FRACTION = 0.8  # of the source-to-detector distance, when the view gives no object plane


@dataclass
class LabelledCT:
    """A CT (HU, [k, j, i]) with its bone label map on the same grid and {value: bone name};
    ``pose`` (4x4, world -> world): where it was for the radiographs (placement "as-is")."""

    name: str
    hu: np.ndarray
    labels: np.ndarray
    ijk_to_ras: np.ndarray
    bones: Dict[int, str]
    pose: Optional[np.ndarray] = None

    @classmethod
    def from_arrays(cls, name: str, hu: np.ndarray, matrix: np.ndarray, labels: np.ndarray, label_matrix: np.ndarray,
                    bones: Optional[Mapping[int, str]] = None, present_only: bool = False,
                    what: str = "The label map") -> "LabelledCT":
        """A CT and its label map as arrays ([k, j, i] with their IJK-to-RAS); ``bones`` ({value: name})
        picks and names the bones (default: every label present, named ``label<value>``);
        ``present_only``: drop those the map lacks (a table of a whole set's bones) instead of
        refusing, as long as one remains."""
        if labels.shape != hu.shape or not np.allclose(label_matrix, matrix, atol=1e-3):
            raise InputError(f"{what} is not on the CT's voxel grid (shape {labels.shape} vs {hu.shape}).")
        present = [int(v) for v in np.unique(labels) if v != 0]
        if bones is None:
            bones = {value: f"label{value}" for value in present}
        elif present_only and any(value in present for value in bones):
            bones = {value: name for value, name in bones.items() if value in present}
        missing = [f"{bone} ({value})" for value, bone in bones.items() if value not in present]
        if missing:
            raise InputError(f"{what} has no voxels of {', '.join(missing)}.")
        if not bones:
            raise InputError(f"{what} is empty: no bone to render.")
        return cls(name, np.asarray(hu, dtype=np.float32), np.asarray(labels).astype(np.int64), np.asarray(matrix),
                   {int(v): str(n) for v, n in bones.items()})

    @classmethod
    def from_files(cls, ct_path, labels_path, bones: Optional[Mapping[int, str]] = None,
                   name: Optional[str] = None, present_only: bool = False) -> "LabelledCT":
        """Read a CT and its label map (see :meth:`from_arrays`); named by the CT's file by default."""
        from .image_io import read_label_map, read_volume_array

        hu, matrix = read_volume_array(ct_path, "CT")
        labels, label_matrix = read_label_map(labels_path)
        return cls.from_arrays(name or Path(ct_path).name.split(".")[0], hu, matrix, labels, label_matrix, bones,
                               present_only, f"The label map {Path(labels_path).name}")

    def bone_points(self) -> np.ndarray:
        """World positions (N, 3) of every voxel of the chosen bones."""
        ijk = np.argwhere(np.isin(self.labels, list(self.bones)))[:, ::-1]
        return (np.c_[ijk, np.ones(len(ijk))] @ self.ijk_to_ras.T)[:, :3]


def standard_rotation(view: View) -> np.ndarray:
    """The rotation that turns the patient's anterior (+A) toward the source and superior (+S) up
    the image (-v): an AP view of a CT in its own RAS frame."""
    toward_source = -view.normal
    up = -view.detector_v
    right = np.cross(toward_source, up)  # R = A x S in a right-handed RAS frame
    return np.stack([right, toward_source, up], axis=1)


def sample_pose(ct_centre: np.ndarray, view: View, rng: np.random.Generator, placement: str = "standard",
                rotation_deg: float = 30.0, tilt_deg: float = 5.0, shift_mm: float = 10.0,
                registered: Optional[np.ndarray] = None) -> np.ndarray:
    """A 4x4 pose (world -> world) of the CT for one case (see the module notes); ``registered``:
    the CT's own pose for "as-is"."""
    if placement not in PLACEMENTS:
        raise InputError(f"Unknown placement '{placement}' (use {' or '.join(PLACEMENTS)}).")
    centre = np.asarray(ct_centre, dtype=np.float64)
    if placement == "standard":
        base = standard_rotation(view)
        distance = float(view.extra.get("source_to_object")
                         or DEFAULT_OBJECT_FRACTION * view.source_to_detector_distance)
        target = view.source + distance * view.normal
    else:
        registered = np.eye(4) if registered is None else np.asarray(registered, dtype=np.float64)
        base, target = registered[:3, :3], registered[:3, :3] @ centre + registered[:3, 3]
    turn = rotation_about(-view.detector_v, math.radians(rng.uniform(-rotation_deg, rotation_deg)))
    tilt = rotation_about(view.detector_u, math.radians(rng.uniform(-tilt_deg, tilt_deg)))
    rotation = tilt @ turn @ base
    shift = rng.uniform(-shift_mm, shift_mm, 2) @ np.stack([view.detector_u, view.detector_v])
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = target + shift - rotation @ centre
    return pose


def registered_pose(path) -> np.ndarray:
    """The whole CT's pose from ``bonerecon register``'s ``registration.json``."""
    import json

    from .mrml_io import check_input_file

    try:
        record = json.loads(check_input_file(path, "registration").read_text(encoding="utf-8"))
        pose = np.asarray(record["poses"]["volume"]["pose"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a 'bonerecon register' result with the whole CT's pose ({exc}).") from None
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)) or abs(np.linalg.det(pose[:3, :3]) - 1.0) > 1e-3:
        raise InputError(f"The CT pose in {path} is not a rigid 4x4 transform.")
    return pose


def render_ct_case(ct: LabelledCT, volume: Volume, view: View, pose: np.ndarray, bone_centre: np.ndarray):
    """(line integrals (1, nv, nu), depth maps (B, 1, nv, nu), the view with the bones' mid-plane (the
    plane of their centre, ``bone_centre`` before the pose) as its source_to_object) of the posed CT."""
    centre = pose[:3, :3] @ bone_centre + pose[:3, 3]
    distance = float((centre - view.source) @ view.normal)
    attenuation = render_attenuation(volume, [view], pose[None])[0]
    depth = label_depth(ct.labels, ct.ijk_to_ras, list(ct.bones), [view], pose[None])[:, 0]  # (B, V, nv, nu)
    placed = View(name=view.name, source=view.source, detector_center=view.detector_center,
                  detector_u=view.detector_u, detector_v=view.detector_v, pixel_spacing=view.pixel_spacing,
                  size=view.size, extra=dict(view.extra, source_to_object=distance))
    return attenuation, depth, placed


def generate_ct_depth_dataset(out_dir, cts: Sequence[LabelledCT], view: View, cases_per_ct: int, seed: int = 0,
                              placement: str = "standard", rotation_deg: float = 30.0, tilt_deg: float = 5.0,
                              shift_mm: float = 10.0, energy_kev: float = 60.0, fractions=(0.8, 0.1, 0.1),
                              splits: Optional[Mapping[str, str]] = None, store_meshes: bool = False,
                              progress: Optional[ProgressCallback] = None) -> dict:
    """Write ``cases_per_ct`` cases of every CT seen in ``view``; returns the manifest. The split is
    by CT (a CT is a subject); ``splits`` fixes some CTs' splits. ``store_meshes`` keeps each bone's
    posed label surface (``vertices_K``/``triangles_K``): the truth for the benchmark."""
    from .label_surface import label_surface

    report = as_progress(progress)
    if not cts or cases_per_ct < 1:
        raise InputError("Give at least one CT and one case per CT.")
    names = [ct.name for ct in cts]
    if len(set(names)) != len(names):
        raise InputError(f"Every CT needs its own name (got {', '.join(names)}).")
    if placement not in PLACEMENTS:
        raise InputError(f"Unknown placement '{placement}' (use {' or '.join(PLACEMENTS)}).")
    description = dict(seed=seed, size=list(view.size), source="ct", view=view.to_dict(), placement=placement,
                       rotation_deg=rotation_deg, tilt_deg=tilt_deg, shift_mm=shift_mm, energy_kev=energy_kev,
                       cases_per_subject=cases_per_ct, meshes=store_meshes,
                       subjects={ct.name: list(ct.bones.values()) for ct in cts},
                       registered={ct.name: np.round(ct.pose, 6).tolist() for ct in cts if ct.pose is not None})
    writer = DatasetWriter(out_dir, KIND, description)
    total, done, start = len(cts) * cases_per_ct, 0, time.perf_counter()
    for s, ct in enumerate(cts):
        volume, surfaces = None, None
        centre = ct.bone_points().mean(axis=0)
        for n in range(cases_per_ct):
            case_id = f"{ct.name}-{n:04d}"
            rng = np.random.default_rng([seed, s, n])
            if not writer.has(case_id):
                if volume is None:
                    volume = Volume.from_numpy(hu_to_mu(ct.hu, energy_kev), ct.ijk_to_ras).crop_to_content()
                pose = sample_pose(centre, view, rng, placement, rotation_deg, tilt_deg, shift_mm, ct.pose)
                attenuation, depth, placed = render_ct_case(ct, volume, view, pose, centre)
                if not bool(depth.hit.any()):
                    raise InputError(f"CT '{ct.name}': the bones fall outside view '{view.name}' (case {n}); "
                                     "check the geometry and the placement.")
                realism = sample_realism(rng)
                generator = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
                image = realistic_radiograph(attenuation.double(), realism, view.pixel_spacing, generator)
                arrays = dict(LimbImages.of(attenuation, depth, list(ct.bones.values())).arrays(),
                              image=image.float().numpy())
                if store_meshes:
                    surfaces = surfaces or [label_surface(ct.labels, ct.ijk_to_ras, value) for value in ct.bones]
                    for k, (points, triangles) in enumerate(surfaces):
                        arrays[f"vertices_{k}"] = (points @ pose[:3, :3].T + pose[:3, 3]).astype(np.float32)
                        arrays[f"triangles_{k}"] = np.asarray(triangles, dtype=np.int32)
                writer.add(case_id, ct.name, arrays, dict(geometry={"views": [placed.to_dict()]},
                                                          realism=realism.to_dict(), bones=list(ct.bones.values()),
                                                          pose=pose.round(6).tolist()))
            done += 1
            report(done / total, f"{ct.name}: case {n + 1} of {cases_per_ct}")
    manifest = writer.finish(fractions, seed, splits)
    manifest["cases_per_minute"] = 60.0 * total / max(time.perf_counter() - start, 1e-9)
    return manifest
