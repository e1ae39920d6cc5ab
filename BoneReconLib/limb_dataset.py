"""Generate single-view DepthRecon training cases from subjects' bone meshes into a dataset folder.

Each case: one subject's bones in their soft-tissue envelope, posed at random when the subject
has an articulation (:mod:`.limb_posing`: finger flexion, wrist flexion and deviation), seen by a
view drawn at random around the limb: the beam turned about the limb's long axis (the leg's or hand's rotation
relative to the beam, +-``rotation_deg`` from the front), tilted a little (+-``tilt_deg``), the
limb shifted in the field and the magnification varied. The line integrals go through a random
``sample_realism`` chain. Stored per case (:mod:`.dataset_store`): ``image`` (the radiograph,
float32 [0, 1]), ``attenuation``, ``mask``, ``bone_id``, per-bone ``front``/``back``/``thickness``
(mm from the source), plus the view (geometry JSON), realism settings and bone names in the
metadata. Reproducible from the seed; the split is by subject. Core module, no MRML.
"""

from __future__ import annotations

import math
import time
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from .bone_density import sample_density
from .dataset_store import DatasetWriter
from .errors import InputError
from .geometry import View, rotation_about
from .limb_posing import Articulation, pose_bones, sample_pose
from .limb_radiograph import Bone, render_limb, soft_tissue_envelope
from .limb_variation import LimbVariation, vary_limb
from .progress import ProgressCallback, as_progress
from .radiograph_realism import realistic_radiograph, sample_realism

KIND = "single-view-limb"


def long_axis(points: np.ndarray) -> np.ndarray:
    """Unit direction of largest extent (principal axis) of a point set."""
    centred = points - points.mean(axis=0)
    return np.linalg.svd(centred, full_matrices=False)[2][0]


def sample_view(bones: Sequence[Bone], rng: np.random.Generator, size=(256, 256), rotation_deg: float = 30.0,
                tilt_deg: float = 5.0, source_to_detector: float = 1100.0, front=(0.0, 1.0, 0.0),
                axis=None) -> View:
    """A view of the limb: beam perpendicular to its long axis (``axis``, default the bones'
    principal axis), turned about that axis from the ``front`` (default the patient's anterior, +y)
    by up to ``rotation_deg``, tilted by up to ``tilt_deg``; the field fits the limb. The view
    records ``source_to_object``: the plane of the bones' centre (:mod:`.depth_reference`)."""
    points = np.concatenate([b.points for b in bones])
    axis = long_axis(points) if axis is None else np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    front = np.asarray(front, dtype=np.float64)
    front = front / np.linalg.norm(front)
    if abs(axis @ front) > 0.9:
        raise InputError("The limb's long axis runs front to back; no frontal view is defined.")
    front = front - (axis @ front) * axis  # the front, across the limb
    front /= np.linalg.norm(front)
    turn = rotation_about(axis, math.radians(rng.uniform(-rotation_deg, rotation_deg)))
    across = np.cross(axis, front)
    tilt = rotation_about(across, math.radians(rng.uniform(-tilt_deg, tilt_deg)))
    beam = -(tilt @ turn @ front)  # from the source (in front) to the detector (behind)
    u = tilt @ turn @ across
    v = -(tilt @ axis)
    extent = np.ptp(points @ np.stack([u, v]).T, axis=0)  # limb size across the detector
    source_to_object = rng.uniform(0.7, 0.9) * source_to_detector
    magnification = source_to_detector / source_to_object
    spacing = 1.15 * magnification * max(extent[0] / size[0], extent[1] / size[1])
    centre = points.mean(axis=0) + rng.uniform(-0.05, 0.05, 2) @ np.stack([u * extent[0], v * extent[1]])
    source = centre - source_to_object * beam
    return View(name="XR", source=source, detector_center=source + source_to_detector * beam, detector_u=u,
                detector_v=v, pixel_spacing=(spacing, spacing), size=tuple(size),
                extra={"source_to_object": float(source_to_object)})  # the bones' mid-plane (depth_reference)


def generate_limb_dataset(out_dir, subjects: Dict[str, Sequence[Bone]], cases_per_subject: int, seed: int = 0,
                          size=(256, 256), envelope_mm: float = 8.0, fractions=(0.8, 0.1, 0.1),
                          articulations: Optional[Mapping[str, Articulation]] = None, rotation_deg: float = 30.0,
                          variation: Optional[LimbVariation] = None, splits: Optional[Mapping[str, str]] = None,
                          store_meshes: bool = False, progress: Optional[ProgressCallback] = None) -> dict:
    """Write ``cases_per_subject`` cases of every subject; returns the manifest (with the rate).

    A subject with an articulation is posed anew for every case (each joint uniform over its
    range; the envelope is grown around the posed bones) and viewed from its anatomical front.
    With a ``variation`` every case's (posed) bones get a new size, proportions and bends
    (:mod:`.limb_variation`). ``splits`` fixes some subjects' splits (e.g. a real subject kept
    for the test); the others are split by ``fractions``. ``store_meshes`` keeps each case's bone
    surfaces as posed (``vertices_K`` float32 RAS mm, ``triangles_K``, K the bone's index in the
    case's ``bones``): the truth for evaluating reconstructed surfaces."""
    report = as_progress(progress)
    if not subjects or cases_per_subject < 1:
        raise InputError("Give at least one subject and one case per subject.")
    articulations = dict(articulations or {})
    unknown = set(articulations) - set(subjects)
    if unknown:
        raise InputError(f"Articulations for unknown subjects: {', '.join(sorted(unknown))}.")
    description = dict(seed=seed, size=list(size), envelope_mm=envelope_mm, cases_per_subject=cases_per_subject,
                       rotation_deg=rotation_deg, subjects={name: [b.name for b in bones]
                                                            for name, bones in subjects.items()},
                       articulations={name: a.to_dict() for name, a in articulations.items()},
                       variation=None if variation is None else variation.to_dict(), meshes=store_meshes)
    writer = DatasetWriter(out_dir, KIND, description)
    total, done, start = len(subjects) * cases_per_subject, 0, time.perf_counter()
    for s, (subject, bones) in enumerate(sorted(subjects.items())):
        articulation = articulations.get(subject)
        unposed_axis = (articulation.axis if articulation is not None and articulation.axis is not None
                        else long_axis(np.concatenate([b.points for b in bones])))  # posed views keep the rest axis
        fixed = articulation is None and variation is None
        envelope = soft_tissue_envelope(bones, thickness_mm=envelope_mm) if fixed else None
        for n in range(cases_per_subject):
            case_id = f"{subject}-{n:04d}"
            rng = np.random.default_rng([seed, s, n])  # each case reproducible on its own (resume)
            if not writer.has(case_id):
                meta = {}
                posed, skin = bones, envelope
                if articulation is not None:
                    angles = sample_pose(articulation.joints, rng)
                    posed = pose_bones(bones, articulation.joints, angles)
                    meta["pose_deg"] = {name: round(angle, 4) for name, angle in angles.items()}
                if variation is not None:
                    posed = vary_limb(posed, variation, rng)
                if not fixed:
                    skin = soft_tissue_envelope(posed, thickness_mm=envelope_mm)
                front = articulation.front if articulation is not None else (0.0, 1.0, 0.0)
                view = sample_view(posed, rng, size, rotation_deg=rotation_deg, front=front, axis=unposed_axis)
                density = sample_density(rng)
                images = render_limb(posed, skin, [view], density=density)
                meta["density"] = density.to_dict()
                realism = sample_realism(rng)
                generator = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
                image = realistic_radiograph(images.attenuation.double(), realism, view.pixel_spacing, generator)
                arrays = dict(images.arrays(), image=image.float().numpy())
                if store_meshes:
                    for k, bone in enumerate(posed):
                        arrays[f"vertices_{k}"] = bone.points.astype(np.float32)
                        arrays[f"triangles_{k}"] = bone.triangles.astype(np.int32)
                writer.add(case_id, subject, arrays, dict(meta, geometry={"views": [view.to_dict()]},
                                                          realism=realism.to_dict(), bones=images.bones))
            done += 1
            report(done / total, f"{subject}: case {n + 1} of {cases_per_subject}")
    manifest = writer.finish(fractions, seed, splits)
    manifest["cases_per_minute"] = 60.0 * total / max(time.perf_counter() - start, 1e-9)
    return manifest
