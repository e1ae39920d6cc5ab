"""Exact measures of closed triangle surfaces (volume, volume centroid, open edges).

Core module (vtk polydata in, numbers out). Used by tests and by later accuracy benchmarks.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np


def triangles(polydata) -> Tuple[np.ndarray, np.ndarray]:
    """(points Nx3, triangles Mx3) of a polydata, triangulating polygons if needed."""
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    tri = vtk.vtkTriangleFilter()
    tri.SetInputData(polydata)
    tri.PassLinesOff()
    tri.PassVertsOff()
    tri.Update()
    out = tri.GetOutput()
    points = vtk_to_numpy(out.GetPoints().GetData()).astype(np.float64)
    cells = vtk_to_numpy(out.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    return points, cells


def volume_and_centroid(polydata) -> Tuple[float, np.ndarray]:
    """Enclosed volume (mm^3, orientation-independent) and volume centroid of a closed surface.

    Sum of signed tetrahedra (origin, a, b, c): exact for any closed, consistently oriented mesh.
    """
    points, cells = triangles(polydata)
    a, b, c = points[cells[:, 0]], points[cells[:, 1]], points[cells[:, 2]]
    signed = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    volume = signed.sum()
    centroid = (signed[:, None] * (a + b + c) / 4.0).sum(axis=0) / volume
    return abs(float(volume)), centroid


def open_edge_count(polydata) -> int:
    """Number of boundary plus non-manifold edges (0 for a watertight surface)."""
    _, cells = triangles(polydata)
    edges = np.sort(np.concatenate([cells[:, [0, 1]], cells[:, [1, 2]], cells[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return int(np.count_nonzero(counts != 2))
