"""Biplanar lumbar cases: shape-model vertebrae L1-L5 in a real CT's body, with exact per-vertebra images.

The background is a real CT whose own lumbar vertebrae (from its label map) are replaced by soft
tissue; the rest of its anatomy (ribs, T12 and above, sacrum, pelvis, organs) stays. The new
vertebrae are meshes (shape-model instances placed by :mod:`.spine_alignment`) rendered exactly,
without voxelising, with a cortical shell brighter than the cancellous interior
(:mod:`.bone_density`), in place of soft tissue. The edges are the exact continuous shape (no
partial-volume staircase) and get their spread from the detector blur of the realism chain.

The per-vertebra ("decomposition") image of a level is its own line integral alone,
``mu_cancellous x inner + mu_cortical x shell`` (no soft tissue, no neighbours), in 1/mm x mm.
Landmarks are projected with their depth; a landmark is *visible* in a view when it falls in the
exposed field and no other vertebra lies on its ray (in the AP view an inferior articular process
over the next level's lamina is occluded).

Core module (numpy/torch), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from .bone_density import SOFT_TISSUE_HU, BoneDensity, bone_line_integrals
from .drr import Volume, hu_to_mu, render_attenuation
from .errors import InputError
from .geometry import View
from .spine_alignment import LEVELS

@dataclass
class SpineCT:
    """A background CT (HU, [k, j, i] with IJK-to-RAS) whose lumbar vertebrae L1-L5 are labelled."""

    name: str
    hu: np.ndarray
    ijk_to_ras: np.ndarray
    lumbar: np.ndarray  # bool [k, j, i]: the voxels of L1-L5 (grown by one voxel)
    centroids: Dict[str, np.ndarray]  # RAS mm of each level's voxels
    _volumes: dict = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_files(cls, ct_path, labels_path, label_table: str = "totalsegmentator",
                   name: Optional[str] = None) -> "SpineCT":
        """Read a CT and its vertebra label map (same grid); every level L1-L5 must be labelled."""
        import SimpleITK as sitk

        from .image_io import read_label_map, read_volume_array
        from .vertebra_labels import load_label_table, select_levels

        hu, matrix = read_volume_array(ct_path, "CT")
        labels, label_matrix = read_label_map(labels_path)
        if labels.shape != hu.shape or not np.allclose(label_matrix, matrix, atol=1e-3):
            raise InputError(f"The label map {Path(labels_path).name} is not on the CT's voxel grid "
                             f"(shape {labels.shape} vs {hu.shape}).")
        chosen = select_levels(np.unique(labels), load_label_table(label_table))
        missing = [level for level in LEVELS if level not in chosen.values()]
        if missing:
            raise InputError(f"The label map lacks {', '.join(missing)} under the '{label_table}' label table "
                             f"(found {', '.join(chosen.values())}); a lumbar background needs all of L1-L5.")
        centroids = {}
        for value, level in chosen.items():
            ijk = np.argwhere(labels == value)[:, ::-1]
            centroids[level] = (np.c_[ijk, np.ones(len(ijk))] @ matrix.T)[:, :3].mean(axis=0)
        grown = sitk.BinaryDilate(sitk.GetImageFromArray(np.isin(labels, list(chosen)).astype(np.uint8)), [1, 1, 1])
        lumbar = sitk.GetArrayFromImage(grown).astype(bool)
        return cls(name or Path(ct_path).name.split(".")[0], hu.astype(np.float32), matrix, lumbar, centroids)

    def volume(self, energy_kev: float = 60.0) -> Volume:
        """The attenuation volume (1/mm) with the lumbar vertebrae turned into soft tissue, cached."""
        key = round(float(energy_kev), 3)
        if key not in self._volumes:
            hu = np.where(self.lumbar, np.float32(SOFT_TISSUE_HU), self.hu)
            self._volumes[key] = Volume.from_numpy(hu_to_mu(hu, energy_kev).astype(np.float32), self.ijk_to_ras)
        return self._volumes[key]

    def spine_frame(self) -> np.ndarray:
        """4x4 frame of the CT's own lumbar spine: origin midway between L1 and L5, z along L5 -> L1,
        y toward the patient's front."""
        return axis_frame(self.centroids["L5"], self.centroids["L1"], np.array([0.0, 1.0, 0.0]))


def axis_frame(low: np.ndarray, high: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Frame at the midpoint of low-high, z toward high, y as near ``forward`` as z allows."""
    z = (high - low) / np.linalg.norm(high - low)
    y = forward - (forward @ z) * z
    if np.linalg.norm(y) < 1e-6:
        raise InputError("The spine runs front to back; no frontal direction is defined.")
    y /= np.linalg.norm(y)
    frame = np.eye(4)
    frame[:3, :3] = np.stack([np.cross(y, z), y, z], axis=1)
    frame[:3, 3] = (low + high) / 2
    return frame


@dataclass
class LumbarImages:
    """One case in V views: line integrals (V, nv, nu), per-vertebra line integrals (5, V, nv, nu),
    landmarks per view (V, 5, L, 2) pixel (i, j), their depth from the source (V, 5, L) and
    whether another vertebra lies on their ray (V, 5, L)."""

    attenuation: torch.Tensor
    decomposition: torch.Tensor
    landmarks_ij: np.ndarray
    landmarks_depth: np.ndarray
    overlapped: np.ndarray
    levels: List[str]


def render_lumbar(background: Optional[Volume], vertebrae: Mapping[str, np.ndarray],
                  triangles: Mapping[str, np.ndarray], landmarks: Mapping[str, np.ndarray], views: Sequence[View],
                  density: BoneDensity = BoneDensity(), background_pose: Optional[np.ndarray] = None,
                  energy_kev: float = 60.0) -> LumbarImages:
    """Render the vertebrae (world vertices per level) in the background (None = in air) in every view.

    ``landmarks`` per level (L, 3) world mm; ``background_pose`` moves the background volume.
    """
    levels = [level for level in LEVELS if level in vertebrae]
    if not levels:
        raise InputError("No vertebrae to render.")
    views = list(views)
    mu_soft = float(hu_to_mu(np.float64(SOFT_TISSUE_HU), energy_kev))
    decomposition, bone_paths = [], []
    for level in levels:
        integral, depth = bone_line_integrals(vertebrae[level], triangles[level], views, density, energy_kev)
        decomposition.append(integral)
        bone_paths.append(depth.thickness)
    decomposition = torch.stack(decomposition)  # (5, V, nv, nu)
    attenuation = decomposition.sum(dim=0) - mu_soft * torch.stack(bone_paths).sum(dim=0)
    if background is not None:
        attenuation = attenuation + render_attenuation(background, views, background_pose)[0].to(attenuation.dtype)
    attenuation = attenuation.clamp_min(0.0)

    names_count = len(next(iter(landmarks.values())))
    ij = np.zeros((len(views), len(levels), names_count, 2))
    depth_from_source = np.zeros((len(views), len(levels), names_count))
    overlapped = np.zeros((len(views), len(levels), names_count), dtype=bool)
    covered = torch.stack(bone_paths) > 0  # (5, V, nv, nu)
    for v, view in enumerate(views):
        nu, nv = view.size
        for n, level in enumerate(levels):
            ij[v, n], depth_from_source[v, n] = view.project(np.asarray(landmarks[level]))
            pixel = np.clip(np.round(ij[v, n]).astype(int), 0, [nu - 1, nv - 1])
            others = torch.cat([covered[:n, v], covered[n + 1:, v]]).any(dim=0).numpy()
            overlapped[v, n] = others[pixel[:, 1], pixel[:, 0]]
    return LumbarImages(attenuation, decomposition, ij, depth_from_source, overlapped, levels)
