"""How deep a candidate bone runs into an already placed neighbour: a signed-distance grid.

Neighbouring vertebrae never run into each other. When the levels are registered one after
another, each later level is kept out of the neighbours already placed by a cost on its deepest
vertex inside them. The neighbour's signed distance (negative inside) is computed once on a grid
over its box (voxelised, then a distance transform: tens of milliseconds where exact
point-to-mesh queries took seconds), so a whole CMA-ES population is scored by trilinear
lookups. Points outside the grid count as outside the neighbour. Core module (numpy/torch,
vtk and SimpleITK), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Clearance:
    """Signed distance (mm, negative inside) of one placed surface on a regular grid:
    ``values`` (nz, ny, nx) at ``origin + spacing * (x, y, z)`` index."""

    origin: np.ndarray
    spacing: float
    values: torch.Tensor

    def depth_inside(self, points) -> torch.Tensor:
        """Points (..., P, 3) world mm -> (...) the deepest of them inside the surface (mm, 0 = none inside)."""
        points = (points.to(torch.float64) if isinstance(points, torch.Tensor)  # keeps a gradient for refinement
                  else torch.as_tensor(np.asarray(points), dtype=torch.float64))
        shape = points.shape[:-2]
        flat = points.reshape(-1, points.shape[-2], 3)
        size = torch.tensor(self.values.shape[::-1], dtype=torch.float64)  # (nx, ny, nz)
        index = (flat - torch.as_tensor(self.origin, dtype=torch.float64)) / self.spacing
        grid = (2 * index / (size - 1) - 1).to(self.values.dtype)  # align_corners: -1 .. 1 over the grid's nodes
        sampled = F.grid_sample(self.values[None, None], grid.reshape(1, -1, 1, 1, 3), mode="bilinear",
                                padding_mode="border", align_corners=True)  # (1, 1, B * P, 1, 1)
        distance = sampled.reshape(flat.shape[:2])
        inside_grid = ((index >= 0) & (index <= size - 1)).all(dim=-1)
        depth = torch.where(inside_grid, (-distance).clamp_min(0.0), torch.zeros_like(distance))
        return depth.amax(dim=-1).reshape(shape).to(torch.float64)


def clearance_of(points, triangles, spacing: float = 1.0, margin: float = 3.0) -> Clearance:
    """The signed distance of the closed surface (points (P, 3), triangles (T, 3)) every ``spacing``
    mm over its box plus ``margin`` (beyond it nothing is inside): the surface voxelised
    (``mesh_io.surface_mask``) and its signed Maurer distance map (SimpleITK): within half a voxel
    near the surface, up to one voxel short deep inside (the voxels' staircase)."""
    import SimpleITK as sitk

    from .mesh_io import surface_mask

    mask, low = surface_mask(points, triangles, spacing, margin=margin)
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing([float(spacing)] * 3)
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    # Maurer measures to the centres of the object's outermost voxels, half a voxel inside the surface.
    values = sitk.GetArrayFromImage(distance) - 0.5 * spacing
    return Clearance(low, spacing, torch.as_tensor(values, dtype=torch.float32))
