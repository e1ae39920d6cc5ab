"""Signed-distance grids of placed neighbours: known depths inside a sphere (to the grid's
voxel), nothing outside the surface or the grid, and a whole population scored in one call."""

import numpy as np
import pytest

from BoneReconLib.neighbour_clearance import clearance_of
from meshes import ellipsoid


def test_depth_inside_a_sphere_is_its_radius_less_the_distance_from_its_centre():
    centre = np.array([5.0, -3.0, 2.0])
    points, triangles = ellipsoid(radii=(10.0, 10.0, 10.0), centre=centre)
    clearance = clearance_of(points, triangles, spacing=1.0)
    population = np.array([[centre, centre + [0, 0, 15.0]],  # the centre, 10 deep, and a point outside
                           [centre + [0, 7.0, 0], centre + [20.0, 0, 0]],  # 3 deep; outside
                           [centre + [0, 0, -9.5], centre + [60.0, 0, 0]],  # 0.5 deep; beyond the grid
                           [centre + [30.0, 0, 0], centre + [0, 0, 11.0]]])  # none inside
    depth = clearance.depth_inside(population).numpy()
    assert depth.shape == (4,)
    # Near the surface within half a voxel; deep inside up to a voxel short (the voxels' staircase).
    assert depth[0] == pytest.approx(10.0, abs=1.2)
    assert depth[1] == pytest.approx(3.0, abs=0.6) and depth[2] == pytest.approx(0.5, abs=0.6)
    assert depth[3] == 0.0
    finer = clearance_of(points, triangles, spacing=0.5).depth_inside(population).numpy()
    assert abs(finer[0] - 10.0) < abs(depth[0] - 10.0) and finer[1] == pytest.approx(3.0, abs=0.3)


def test_points_beyond_the_grid_count_as_outside():
    points, triangles = ellipsoid(radii=(10.0, 10.0, 10.0))
    clearance = clearance_of(points, triangles, margin=3.0)
    far = np.array([[[40.0, 40.0, 40.0], [0.0, 0.0, -13.5], [-100.0, 0.0, 0.0]]])
    assert clearance.depth_inside(far).numpy() == pytest.approx([0.0])
