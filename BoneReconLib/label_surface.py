"""Label map -> closed triangle surface of one label (marching cubes), in world coordinates.

The surface is the 0.5 level set of the label's indicator, the same surface that
:mod:`.label_depth` ray-casts: vertices lie half way between inside and outside voxel centres.
No smoothing, so it keeps the label map's own geometry (for smoothed display models use
:mod:`.label_models`). Core module (numpy + vtk), no MRML.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .errors import InputError


def iso_surface(values_kji: np.ndarray, level: float, outside: float):
    """vtkPolyData of the ``level`` iso-surface of a (K, J, I) array, in voxel (i, j, k) coordinates
    (marching cubes); the array is padded by one voxel of ``outside`` so the surface closes at its border."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    padded = np.pad(np.asarray(values_kji, dtype=np.float32), 1, constant_values=outside)
    image = vtk.vtkImageData()
    image.SetDimensions(padded.shape[2], padded.shape[1], padded.shape[0])
    image.SetOrigin(-1.0, -1.0, -1.0)
    image.GetPointData().SetScalars(numpy_to_vtk(padded.ravel(), deep=True))
    contour = vtk.vtkFlyingEdges3D()
    contour.SetInputData(image)
    contour.SetValue(0, float(level))
    contour.ComputeNormalsOff()
    contour.ComputeGradientsOff()
    contour.Update()
    return contour.GetOutput()


def label_surface(labels_kji, ijk_to_ras, value: int) -> Tuple[np.ndarray, np.ndarray]:
    """(points (P, 3) RAS mm, triangles (T, 3)) of label ``value``, closed and oriented outward."""
    from .mesh_depth import mesh_from_polydata

    labels = np.asarray(labels_kji)
    inside = labels == int(value)
    if not inside.any():
        raise InputError(f"Label {value} is absent from the label map.")
    points_ijk, triangles = mesh_from_polydata(iso_surface(inside.astype(np.float32), 0.5, outside=0.0))
    matrix = np.asarray(ijk_to_ras, dtype=np.float64)
    return points_ijk @ matrix[:3, :3].T + matrix[:3, 3], triangles
