"""MRML nodes -> renderer inputs: volume and label map nodes as arrays with their world placement,
model nodes as triangle meshes.

A node under a linear transform is placed where Slicer shows it (the transform is applied); a
non-linear (warping) transform is refused rather than silently ignored. MRML adapter layer.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .drr import Volume, hu_to_mu
from .errors import InputError


def _to_world(node) -> np.ndarray:
    """4x4 matrix from the node's own coordinates to world (identity if it is not transformed)."""
    import slicer.util
    import vtk

    transform = node.GetParentTransformNode()
    if transform is None:
        return np.eye(4)
    if not transform.IsTransformToWorldLinear():
        raise InputError(f"'{node.GetName()}' is under a non-linear transform; harden or remove it first.")
    matrix = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def ijk_to_world(volume_node) -> np.ndarray:
    """The volume's 4x4 IJK-to-RAS in world coordinates; InputError for a volume without valid spacing."""
    import slicer.util
    import vtk

    if volume_node is None or volume_node.GetImageData() is None:
        raise InputError("The volume has no image data.")
    spacing = np.array(volume_node.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"The volume '{volume_node.GetName()}' has no valid voxel spacing "
                         f"(spacing {spacing.tolist()}).")
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return _to_world(volume_node) @ slicer.util.arrayFromVTKMatrix(matrix)


def volume_array(volume_node) -> Tuple[np.ndarray, np.ndarray]:
    """(voxels indexed [k, j, i] (a copy), IJK-to-world matrix) of a scalar or label map volume node."""
    import slicer.util

    matrix = ijk_to_world(volume_node)
    array = np.array(slicer.util.arrayFromVolume(volume_node))
    if array.ndim != 3:
        raise InputError(f"'{volume_node.GetName()}' is not a scalar volume (array shape {array.shape}).")
    return array, matrix


def attenuation_volume(ct_node, energy_kev: float = 60.0, device=None) -> Volume:
    """A CT volume node (HU) as linear attenuation (1/mm) for the DRR renderer."""
    import torch

    array, matrix = volume_array(ct_node)
    mu = hu_to_mu(torch.as_tensor(array, dtype=torch.float32, device=device), energy_kev)
    return Volume(mu.contiguous(), matrix)


def model_mesh(model_node) -> Tuple[np.ndarray, np.ndarray]:
    """(points in world mm, triangles) of a model node's closed surface (outward-oriented)."""
    from .mesh_depth import mesh_from_polydata

    if model_node is None or model_node.GetPolyData() is None:
        raise InputError("The model has no surface.")
    try:
        points, triangles = mesh_from_polydata(model_node.GetPolyData())
    except InputError as exc:
        raise InputError(f"Model '{model_node.GetName()}': {exc}") from None
    matrix = _to_world(model_node)
    return points @ matrix[:3, :3].T + matrix[:3, 3], triangles
