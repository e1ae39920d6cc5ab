"""Test meshes shared by several suites."""

import numpy as np


def ellipsoid(theta=40, phi=30, radii=(20.0, 15.0, 10.0), centre=(0.0, 0.0, 0.0)):
    """(points, triangles) of a closed, outward-oriented UV-sphere mesh scaled to ``radii``."""
    import vtk
    from BoneReconLib.mesh_depth import mesh_from_polydata

    source = vtk.vtkSphereSource()
    source.SetThetaResolution(theta)
    source.SetPhiResolution(phi)
    source.SetRadius(1.0)
    source.Update()
    points, triangles = mesh_from_polydata(source.GetOutput())
    return points * np.asarray(radii) + np.asarray(centre), triangles
