"""Rigid 2D/3D registration of a CT (or one labelled bone of it) to radiographs of known geometry.

How a user builds ground truth for their own X-rays: the CT is moved until its DRRs match the
radiographs. CMA-ES searches a rotation about ``centre`` and a translation applied on top of the
initial pose; every generation's population is rendered in one call (``drr.render_attenuation``)
and scored by 1 - the mean over views of the normalised cross-correlation with the radiograph,
restricted to a footprint mask per view when given. Coarse images first (block means of
``levels`` pixels), each level restarting from the last one's best. ``register_labels`` chains a
whole-volume registration and one per label (e.g. per vertebra, which move between a supine CT
and standing radiographs): the label's own attenuation (dilated) moves, the rest of the CT stays
at the whole-volume pose and is added as a fixed background DRR (line integrals add), so each
candidate is a complete DRR; it is scored only where the label projects.
Core module (numpy/torch), no MRML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .cma_search import coarse_to_fine
from .drr import Volume, render_attenuation
from .errors import InputError
from .geometry import View, rotation_about
from .progress import ProgressCallback, as_progress
from .vertebra_registration import block_pool, coarser

MIN_NCC = 0.6  # below this in a view: not converged


@dataclass
class RigidResult:
    pose: np.ndarray  # 4x4, moves the volume in world space (x_world = pose @ x)
    ncc: np.ndarray  # per view, at full resolution
    converged: bool
    history: list = field(default_factory=list)


def pose_of(x: np.ndarray, initial: np.ndarray, centre: np.ndarray, rotation_unit_deg: float,
            translation_unit_mm: float) -> np.ndarray:
    """The pose of one parameter vector: turn about ``centre`` (where the initial pose put it) and shift."""
    turn = np.asarray(x[:3], dtype=np.float64) * math.radians(rotation_unit_deg)
    angle = float(np.linalg.norm(turn))
    delta = np.eye(4)
    if angle > 1e-12:
        delta[:3, :3] = rotation_about(turn / angle, angle)
    delta[:3, 3] = centre - delta[:3, :3] @ centre + np.asarray(x[3:6], dtype=np.float64) * translation_unit_mm
    return delta @ initial


def _masked_ncc(rendered: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """NCC over the mask's pixels of (N, nv, nu) renders with one target -> (N,)."""
    a = rendered[:, mask]
    b = target[mask][None]
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean()
    return (a * b).sum(dim=1) / ((a * a).sum(dim=1) * (b * b).sum()).sqrt().clamp_min(1e-12)


def register_volume(volume: Volume, views: Sequence[View], images: Sequence[np.ndarray], initial=None, centre=None,
                    footprints: Optional[Sequence[np.ndarray]] = None, background=None,
                    levels: Sequence[int] = (4, 2),
                    generations: Sequence[int] = (50, 30), rotation_unit_deg: float = 2.0,
                    translation_unit_mm: float = 2.0, seed: int = 0,
                    progress: Optional[ProgressCallback] = None) -> RigidResult:
    """Rigid pose of ``volume`` (attenuation) whose DRRs best match ``images`` (one per view, any
    monotone display of the line integrals, e.g. a bone-bright radiograph). ``background``: per view
    line integrals (same pixels as the images) added to every render, e.g. the rest of the CT."""
    views = list(views)
    if len(images) != len(views) or not views:
        raise InputError("Give one radiograph per view.")
    for view, image in zip(views, images):
        if tuple(np.asarray(image).shape) != view.shape:
            raise InputError(f"The radiograph of view '{view.name}' is {np.asarray(image).shape[::-1]} pixels, its "
                             f"geometry says {view.size}.")
    initial = np.eye(4) if initial is None else np.asarray(initial, dtype=np.float64)
    if centre is None:
        corners = volume.corners_ras()
        centre = corners.mean(axis=0) @ initial[:3, :3].T + initial[:3, 3]
    centre = np.asarray(centre, dtype=np.float64)
    targets = [torch.as_tensor(np.asarray(image, dtype=np.float64)) for image in images]
    masks = [torch.as_tensor(np.asarray(f, dtype=bool)) if f is not None else torch.ones(view.shape, dtype=torch.bool)
             for f, view in zip(footprints or [None] * len(views), views)]
    bounds = np.array([[-15.0, 15.0]] * 6)

    def score(population, factor):
        level_views = [coarser(v, factor) if factor > 1 else v for v in views]
        poses = np.stack([pose_of(x, initial, centre, rotation_unit_deg, translation_unit_mm) for x in population])
        with torch.no_grad():
            rendered = render_attenuation(volume, level_views, torch.as_tensor(poses, dtype=volume.data.dtype))
        ncc = []
        for v in range(len(views)):
            if background is not None:
                rendered[:, v] += block_pool(background[v], factor).to(rendered.dtype)
            target = block_pool(targets[v], factor)
            mask = block_pool(masks[v].double(), factor, "max") > 0
            ncc.append(_masked_ncc(rendered[:, v].double(), target, mask))
        ncc = torch.stack(ncc, dim=1).numpy()
        return 1.0 - ncc.mean(axis=1), ncc

    best_x, history = coarse_to_fine(lambda factor: (lambda candidates: score(candidates, factor)[0]), 6, levels,
                                     generations, bounds, seed=seed, progress=progress,
                                     describe=lambda cost: f"Registering: image agreement {1 - cost:.3f}")
    _, ncc = score(best_x[None], 1)
    pose = pose_of(best_x, initial, centre, rotation_unit_deg, translation_unit_mm)
    return RigidResult(pose, ncc[0], bool(ncc[0].min() >= MIN_NCC), history)


def split_label(mu: Volume, labels_kji: np.ndarray, value: int, dilate_voxels: int = 1, margin_voxels: int = 3):
    """(the attenuation of one label alone (its voxels, dilated), cropped to it; the rest of the
    volume), or None if the label is absent."""
    inside = torch.as_tensor(np.asarray(labels_kji) == value)
    if not bool(inside.any()):
        return None
    if dilate_voxels > 0:
        size = 2 * dilate_voxels + 1
        inside = F.max_pool3d(inside[None, None].float(), size, stride=1, padding=dilate_voxels)[0, 0] > 0
    index = torch.nonzero(inside)
    lower = (index.min(dim=0).values - margin_voxels).clamp_min(0).tolist()
    upper = [min(int(u) + 1 + margin_voxels, s) for u, s in zip(index.max(dim=0).values.tolist(), inside.shape)]
    weight = inside.to(mu.data.dtype)
    part = Volume(mu.data * weight, mu.ijk_to_ras).crop(lower[::-1], upper[::-1])
    return part, Volume(mu.data * (1 - weight), mu.ijk_to_ras).crop_to_content(threshold=0.0)


def footprint(volume: Volume, views: Sequence[View], pose: np.ndarray, dilate_pixels: int = 3,
              threshold: float = 0.05) -> list:
    """Per view the pixels where ``volume`` at ``pose`` projects (above ``threshold`` x its peak), dilated."""
    with torch.no_grad():
        rendered = render_attenuation(volume, views, torch.as_tensor(pose[None], dtype=volume.data.dtype))[0]
    masks = []
    for image in rendered:
        mask = (image > threshold * image.max()).float()[None, None]
        size = 2 * dilate_pixels + 1
        masks.append((F.max_pool2d(mask, size, stride=1, padding=dilate_pixels)[0, 0] > 0).numpy())
    return masks


def register_labels(mu: Volume, labels_kji: np.ndarray, names: Mapping[int, str], views: Sequence[View],
                    images: Sequence[np.ndarray], initial=None, whole: bool = True, levels=(4, 2),
                    generations=(50, 30), seed: int = 0,
                    progress: Optional[ProgressCallback] = None) -> Dict[str, RigidResult]:
    """{"volume": whole-CT result (if ``whole``), name: per-label result}: each label (e.g. a vertebra)
    registered on its own from the whole-volume pose, scored only where it projects."""
    report = as_progress(progress)
    present = [(value, name) for value, name in names.items() if bool((np.asarray(labels_kji) == value).any())]
    if not present:
        raise InputError("None of the named labels is in the label map.")
    steps = len(present) + (1 if whole else 0)
    results: Dict[str, RigidResult] = {}
    pose = np.eye(4) if initial is None else np.asarray(initial, dtype=np.float64)
    if whole:
        results["volume"] = register_volume(mu.crop_to_content(threshold=0.0), views, images, pose, levels=levels,
                                            generations=generations, seed=seed,
                                            progress=lambda f, m: report(f / steps, f"Whole CT: {m}"))
        pose = results["volume"].pose
    for n, (value, name) in enumerate(present):
        part, rest = split_label(mu, labels_kji, value)
        prints = footprint(part, views, pose)
        with torch.no_grad():
            background = render_attenuation(rest, views, torch.as_tensor(pose[None], dtype=rest.data.dtype))[0]
        results[name] = register_volume(part, views, images, pose, footprints=prints, background=background.numpy(),
                                        levels=levels[-1:],
                                        generations=generations[-1:], rotation_unit_deg=1.0, translation_unit_mm=1.0,
                                        seed=seed, progress=lambda f, m, n=n, name=name: report(
                                            (n + (1 if whole else 0) + f) / steps, f"{name}: {m}"))
    return results


def register_ct(mu: Volume, views: Sequence[View], images: Sequence[np.ndarray], labels_kji=None, label_matrix=None,
                names: Optional[Mapping[int, str]] = None, initial=None, whole: bool = True,
                generations: Sequence[int] = (50, 30),
                progress: Optional[ProgressCallback] = None) -> Dict[str, RigidResult]:
    """The CT alone ({"volume": ...}), or with a label map on its voxel grid (``label_matrix`` its
    IJK-to-RAS) the CT and then each of ``names`` (``register_labels``)."""
    if labels_kji is None:
        return {"volume": register_volume(mu.crop_to_content(threshold=0.0), views, images, initial,
                                          generations=generations, progress=progress)}
    labels_kji = np.asarray(labels_kji)
    if labels_kji.shape != tuple(mu.data.shape) or not np.allclose(label_matrix, mu.ijk_to_ras, atol=1e-3):
        raise InputError("The label map is not on the CT's voxel grid.")
    return register_labels(mu, labels_kji.astype(np.int64), names, views, images, initial=initial, whole=whole,
                           generations=generations, progress=progress)
