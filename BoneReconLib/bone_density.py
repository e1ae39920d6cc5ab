"""Bone as X-rays see it: a cortical shell brighter than the cancellous interior, rendered from meshes.

A bone's contribution along a ray comes from two exact path lengths (:mod:`.mesh_depth`), through
its outer surface and through its inner surface (the outer one moved inward along the vertex
normals by the cortical thickness):

    mu_cancellous x (inner path) + mu_cortical x (outer path - inner path)

in place of soft tissue, so endplates, cortices and joint surfaces stand out as in radiographs.
Where the inner surface of a thin part folds over itself, the inner path is clipped to
[0, outer path] (the part is solid cortex). Densities are Hounsfield units turned into
attenuation at the effective energy (:func:`.drr.hu_to_mu`). Core module (numpy/torch), no MRML.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence, Tuple

import numpy as np
import torch

from .depth import DepthMaps
from .errors import InputError
from .geometry import View

SOFT_TISSUE_HU = 40.0


@dataclass(frozen=True)
class BoneDensity:
    """Hounsfield units of cancellous and cortical bone and the cortical thickness (mm)."""

    cancellous_hu: float = 220.0
    cortical_hu: float = 1300.0
    cortical_mm: float = 0.8

    def __post_init__(self):
        if not SOFT_TISSUE_HU < self.cancellous_hu < self.cortical_hu:
            raise InputError("Bone density: soft tissue < cancellous < cortical bone is required.")
        if not 0.0 < self.cortical_mm < 5.0:
            raise InputError("Bone density: the cortical thickness must be between 0 and 5 mm.")

    def to_dict(self) -> dict:
        return asdict(self)


def sample_density(rng: np.random.Generator) -> BoneDensity:
    """Adult bone: cancellous 120-300 HU (osteoporotic to young), cortex 900-1600 HU, 0.5-1.2 mm thick."""
    return BoneDensity(float(rng.uniform(120.0, 300.0)), float(rng.uniform(900.0, 1600.0)),
                       float(rng.uniform(0.5, 1.2)))


def inner_surface(points: torch.Tensor, triangles: torch.Tensor, depth_mm: float) -> torch.Tensor:
    """The surface moved inward by ``depth_mm`` along the area-weighted vertex normals (..., P, 3)."""
    from .mesh_depth import vertex_normals

    a, b, c = (points[..., triangles[:, k], :] for k in range(3))
    volume = (a * torch.linalg.cross(b, c)).sum(dim=(-1, -2))  # > 0 when the normals point outward
    normals = vertex_normals(points, triangles)
    return points - depth_mm * torch.sign(volume)[..., None, None] * normals


def bone_line_integrals(points, triangles, views: Sequence[View], density: BoneDensity,
                        energy_kev: float = 60.0) -> Tuple[torch.Tensor, DepthMaps]:
    """One bone's own line integrals (V, nv, nu) (1/mm x mm: the bone alone, no soft tissue) and
    its outer surface's depth maps (V, nv, nu), for vertices (P, 3) in world mm."""
    from .drr import hu_to_mu
    from .mesh_depth import mesh_depth

    mu_cancellous, mu_cortical = (float(hu_to_mu(np.float64(hu), energy_kev))
                                  for hu in (density.cancellous_hu, density.cortical_hu))
    outer = torch.as_tensor(np.asarray(points, dtype=np.float64))
    tri = torch.as_tensor(np.asarray(triangles, dtype=np.int64))
    depth = mesh_depth(torch.stack([outer, inner_surface(outer, tri, density.cortical_mm)]), triangles, views)
    whole = depth.thickness[0]
    interior = torch.minimum(depth.thickness[1].clamp_min(0.0), whole)
    integral = mu_cancellous * interior + mu_cortical * (whole - interior)
    return integral, depth[0]
