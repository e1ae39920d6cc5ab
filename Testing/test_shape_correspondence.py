"""Template fitting, ICP, exact surface distances and surface files."""

import math

import numpy as np
import pytest
import torch
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import rotation_about
from BoneReconLib.mesh_io import polydata_from_arrays, prepare_surface, read_surface, write_surface
from BoneReconLib.shape_correspondence import (fit_template, graph_laplacian, point_to_surface, similarity_icp,
                                               surface_distance)


def sphere(theta=40, phi=30, radii=(20.0, 15.0, 10.0), centre=(0.0, 0.0, 0.0)):
    from meshes import ellipsoid

    return ellipsoid(theta, phi, radii, centre)


def test_template_fits_a_differently_meshed_deformed_target():
    template, template_triangles = sphere()
    target, target_triangles = sphere(90, 70, radii=(24.0, 13.0, 11.0))
    target = target + np.stack([0 * target[:, 0], 3 * np.sin(target[:, 0] / 8), 2 * np.cos(target[:, 1] / 6)], 1)
    target = target @ rotation_about([1, 1, 0], 0.3).T + [5.0, -3.0, 2.0]
    fit = fit_template(template, template_triangles, target, target_triangles)
    assert fit.flipped_triangles == 0
    assert fit.mean_distance < 0.1  # a 1200-vertex template on a smooth 6000-vertex target
    distances = point_to_surface(fit.points, target, target_triangles)
    assert np.percentile(distances, 95) < 0.2 and distances.max() < 0.5
    assert surface_distance(template, template_triangles, target, target_triangles) > 2.0  # it did move


def test_untangle_removes_a_fold():
    from BoneReconLib.shape_correspondence import flipped, untangle

    rest, triangles = sphere(12, 10)
    folded = rest.copy()
    folded[40] = rest[40] - 1.8 * (rest[40] - rest.mean(axis=0))  # push a vertex through the surface
    assert flipped(rest, folded, triangles).any()
    repaired = untangle(rest, folded, triangles)
    assert not flipped(rest, repaired, triangles).any()
    assert np.abs(repaired - rest).max() < np.abs(folded - rest).max()


def test_similarity_icp_recovers_a_known_transform():
    def lumpy(unit):  # an ellipsoid with a bump: no symmetry for ICP to slide along
        bump = 6.0 * np.exp(-((unit - [0.6, 0.6, 0.5]) ** 2).sum(axis=1) / 0.1)
        return unit * (1.0 + bump / 20.0)[:, None] * [20.0, 26.0, 16.0]

    unit, triangles = sphere(30, 20, radii=(1.0, 1.0, 1.0))
    points = lumpy(unit)
    rotation = rotation_about([0.2, 1.0, 0.3], math.radians(15.0))
    target = 1.2 * points @ rotation.T + [10.0, -4.0, 7.0]
    dense_unit, dense_triangles = sphere(90, 60, radii=(1.0, 1.0, 1.0))  # the same shape meshed far more finely
    dense = 1.2 * lumpy(dense_unit) @ rotation.T + [10.0, -4.0, 7.0]
    moved = similarity_icp(points, triangles, dense, dense_triangles)
    assert np.abs(moved - target).max() < 0.5  # sampling noise only; no pull towards dense regions


def test_point_to_surface_is_exact_on_a_box():
    import vtk
    from BoneReconLib.mesh_depth import mesh_from_polydata

    cube = vtk.vtkCubeSource()
    cube.SetBounds(-1, 1, -2, 2, -3, 3)
    clean = vtk.vtkCleanPolyData()
    clean.SetInputConnection(cube.GetOutputPort())
    clean.Update()
    points, triangles = mesh_from_polydata(clean.GetOutput())
    queries = np.array([[0.0, 0, 0], [3.0, 0, 0], [2.0, 3.0, 0], [0.5, 0.5, 2.5]])
    np.testing.assert_allclose(point_to_surface(queries, points, triangles), [1.0, 2.0, math.sqrt(2.0), 0.5],
                               atol=1e-9)


def test_graph_laplacian_is_symmetric_with_zero_row_sums():
    points, triangles = sphere(8, 6)
    laplacian = graph_laplacian(len(points), triangles).to_dense()
    assert torch.allclose(laplacian, laplacian.T)
    assert torch.allclose(laplacian.sum(dim=1), torch.zeros(len(points), dtype=torch.float64))
    assert float(laplacian.diagonal().min()) >= 3  # every vertex of a closed mesh has >= 3 neighbours


def test_surface_files_units_orientation_and_cleaning(tmp_path):
    big, big_tris = sphere()
    small, small_tris = sphere(10, 8, radii=(2.0, 2.0, 2.0), centre=(60.0, 0.0, 0.0))
    both = np.concatenate([big, small]), np.concatenate([big_tris, small_tris + len(big)])
    path = write_surface(*both, tmp_path / "two.stl")
    points, triangles = prepare_surface(read_surface(path), smoothing_iterations=0)
    assert len(points) == len(big) and points[:, 0].max() < 21  # the loose fragment is gone
    lps = read_surface(path, lps=True)
    assert lps.GetBounds()[1] == pytest.approx(-big[:, 0].min(), abs=1e-3)  # x flipped
    metres = write_surface(big / 1000.0, big_tris, tmp_path / "metres.ply")
    with pytest.raises(InputError, match="looks like metres"):
        read_surface(metres)
    scaled = read_surface(metres, units="m")
    assert scaled.GetBounds()[1] == pytest.approx(big[:, 0].max(), abs=1e-3)
    holed = write_surface(big, big_tris[:-5], tmp_path / "holed.vtk")
    with pytest.raises(InputError, match="not a closed"):
        prepare_surface(read_surface(holed), smoothing_iterations=0)
    (tmp_path / "x.off").write_text("OFF")
    with pytest.raises(InputError, match="unsupported surface format"):
        read_surface(tmp_path / "x.off")
    with pytest.raises(InputError, match="does not exist"):
        read_surface(tmp_path / "missing.stl")
    smoothed, _ = prepare_surface(polydata_from_arrays(big, big_tris), smoothing_iterations=20, max_triangles=500)
    assert len(smoothed) < len(big)
