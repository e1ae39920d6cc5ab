"""Single-view training cases for DepthRecon: bone meshes in a soft-tissue envelope, seen in one view.

Everything is computed from closed meshes, exactly, without voxelising the bones: each bone's
front depth, back depth and thickness along every detector ray come from the watertight mesh
rasteriser (:mod:`.mesh_depth`), and the line integral through the limb is

    mu_soft x (envelope thickness) + (mu_bone - mu_soft) x (sum of the bones' thicknesses),

i.e. the bones replace soft tissue inside a soft-tissue envelope. The envelope is the bones'
union grown by ``thickness_mm`` (voxelised at ``voxel_mm``, grown by a distance map, meshed and
smoothed), which gives hands, wrists and knees a plausible skin outline. Densities come from
Hounsfield units at the effective energy (:func:`.drr.hu_to_mu`): soft tissue 40 HU; bone either a
uniform 700 HU (a whole-bone average of cortex and marrow) or, given a :class:`.bone_density.BoneDensity`,
a cortical shell around a cancellous interior (the dataset draws one per case).

Per view the case holds the line integrals, the bone mask (any bone on the ray), the bone id of
the nearest bone on the ray (1-based, 0 = none; overlaps are kept in the per-bone maps) and each
bone's front/back depth and thickness maps (mm from the source, 0 where it misses). Core module
(numpy/torch/vtk), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .bone_density import SOFT_TISSUE_HU, BoneDensity, bone_line_integrals
from .depth import DepthMaps
from .errors import InputError
from .geometry import View

BONE_HU = 700.0


@dataclass
class Bone:
    """A closed bone surface in world mm (RAS)."""

    name: str
    points: np.ndarray
    triangles: np.ndarray

    def __post_init__(self):
        self.points = np.asarray(self.points, dtype=np.float64)
        self.triangles = np.asarray(self.triangles, dtype=np.int64)
        extent = float(np.ptp(self.points, axis=0).max()) if len(self.points) else 0.0
        if extent < 1.0:
            raise InputError(f"Bone '{self.name}' is only {extent:.3g} units across: it looks like metres; "
                             "give bones in millimetres.")

    @classmethod
    def from_file(cls, path, units=None, lps: bool = False, max_triangles: int = 20000, fill_holes: bool = False,
                  name: Optional[str] = None) -> "Bone":
        """A bone from a surface file (named ``name`` or by the file), reduced to ``max_triangles``,
        not smoothed; ``units`` as in :func:`.mesh_io.read_surface` (metres must be declared);
        ``fill_holes`` caps open ends (a shaft cut by the scan's field)."""
        from pathlib import Path

        from .mesh_io import prepare_surface, read_surface

        path = Path(path)
        return cls(name or path.stem, *prepare_surface(read_surface(path, units=units, lps=lps), smoothing_iterations=0,
                                                       max_triangles=max_triangles, what=f"surface {path.name}",
                                                       fill_holes=fill_holes))

    def moved(self, pose: np.ndarray) -> "Bone":
        pose = np.asarray(pose, dtype=np.float64)
        return Bone(self.name, self.points @ pose[:3, :3].T + pose[:3, 3], self.triangles)


def soft_tissue_envelope(bones: Sequence[Bone], thickness_mm: float = 8.0, voxel_mm: float = 1.5,
                         smoothing_iterations: int = 30) -> Tuple[np.ndarray, np.ndarray]:
    """(points, triangles) of a closed skin surface: the bones' union grown by ``thickness_mm``."""
    import SimpleITK as sitk

    from .label_surface import label_surface
    from .mesh_io import polydata_from_arrays, prepare_surface, surface_mask

    if not bones:
        raise InputError("A soft-tissue envelope needs at least one bone.")
    if not thickness_mm > voxel_mm > 0:
        raise InputError("The envelope must be thicker than its voxel size, and both positive.")
    everything = np.concatenate([b.points for b in bones])
    margin = thickness_mm + 3 * voxel_mm
    low = np.floor((everything.min(axis=0) - margin) / voxel_mm) * voxel_mm
    size = np.ceil((everything.max(axis=0) + margin - low) / voxel_mm).astype(int) + 1
    union = np.zeros(size[::-1], dtype=bool)
    for bone in bones:  # one stencil per bone: overlapping surfaces would cancel in a single one
        union |= surface_mask(bone.points, bone.triangles, voxel_mm, low=low, size=size)[0]
    image = sitk.GetImageFromArray(union.astype(np.uint8))
    image.SetSpacing((voxel_mm,) * 3)
    distance = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(image, insideIsPositive=False,
                                                                    squaredDistance=False, useImageSpacing=True))
    grown = (distance <= thickness_mm).astype(np.uint8)
    matrix = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    matrix[:3, 3] = low
    points, triangles = label_surface(grown, matrix, 1)
    return prepare_surface(polydata_from_arrays(points, triangles), smoothing_iterations=smoothing_iterations,
                           what="soft-tissue envelope")


@dataclass
class LimbImages:
    """One case in V views: line integrals (V, nv, nu), bone mask and id (V, nv, nu), per-bone depth
    maps (B, V, nv, nu) in ``bones`` order."""

    attenuation: torch.Tensor
    mask: torch.Tensor
    bone_id: torch.Tensor
    depth: DepthMaps
    bones: List[str]

    @classmethod
    def of(cls, attenuation: torch.Tensor, depth: DepthMaps, bones: Sequence[str]) -> "LimbImages":
        """With the mask (any bone on the ray) and the id (1-based) of the bone nearest the source."""
        mask = depth.hit.any(dim=0)
        nearest = torch.where(depth.hit, depth.front, torch.full_like(depth.front, float("inf"))).argmin(dim=0)
        bone_id = torch.where(mask, nearest + 1, torch.zeros_like(nearest))
        return cls(attenuation, mask, bone_id, depth, list(bones))

    def arrays(self) -> Dict[str, np.ndarray]:
        """Plain arrays for a dataset case (float32 images, uint8 ids)."""
        return dict(attenuation=self.attenuation.float().numpy(), mask=self.mask.numpy(),
                    bone_id=self.bone_id.to(torch.uint8).numpy(), front=self.depth.front.float().numpy(),
                    back=self.depth.back.float().numpy(), thickness=self.depth.thickness.float().numpy())


def render_limb(bones: Sequence[Bone], envelope: Tuple[np.ndarray, np.ndarray], views: Sequence[View],
                energy_kev: float = 60.0, density: Optional[BoneDensity] = None) -> LimbImages:
    """Line integrals, mask, ids and per-bone depth maps of bones inside the envelope, in every view;
    bone of uniform ``BONE_HU``, or cortical shell and interior when a ``density`` is given."""
    from .drr import hu_to_mu
    from .mesh_depth import mesh_depth

    if not bones:
        raise InputError("No bones to render.")
    if len(bones) > 255:
        raise InputError("At most 255 bones per case (ids are stored in 8 bits).")
    mu_soft, mu_bone = (float(hu_to_mu(np.float64(hu), energy_kev)) for hu in (SOFT_TISSUE_HU, BONE_HU))
    skin = mesh_depth(envelope[0], envelope[1], views)[0]
    if density is None:
        depth = DepthMaps.stack(mesh_depth(b.points, b.triangles, views)[0] for b in bones)  # (B, V, nv, nu)
        bone = mu_bone * depth.thickness.sum(dim=0)
    else:
        rendered = [bone_line_integrals(b.points, b.triangles, views, density, energy_kev) for b in bones]
        depth = DepthMaps.stack(maps for _, maps in rendered)
        bone = torch.stack([integral for integral, _ in rendered]).sum(dim=0)
    attenuation = mu_soft * skin.thickness + bone - mu_soft * depth.thickness.sum(dim=0)
    return LimbImages.of(attenuation, depth, [b.name for b in bones])
