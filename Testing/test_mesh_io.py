"""Surface preparation: an open end capped on request, a file of several bones split into pieces."""

import numpy as np
import pytest
from meshes import ellipsoid

from BoneReconLib.errors import InputError
from BoneReconLib.mesh_io import polydata_from_arrays, prepare_surface, surface_pieces


def volume(points, triangles):
    a, b, c = (points[triangles[:, k]] for k in range(3))
    return abs(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) / 6


def test_an_open_shaft_end_is_refused_unless_holes_are_filled():
    points, triangles = ellipsoid(theta=60, phi=60, radii=(5, 5, 20))
    centres = points[triangles].mean(axis=1)
    cut = triangles[centres[:, 2] < 15.0]  # the top cap removed: an open end
    with pytest.raises(InputError, match="not a closed"):
        prepare_surface(polydata_from_arrays(points, cut), smoothing_iterations=0)
    closed_points, closed = prepare_surface(polydata_from_arrays(points, cut), smoothing_iterations=0, fill_holes=True)
    full = volume(points, triangles)
    # The cap holds the tip above z ~ 15 (a few percent of the volume); the filled end is flat.
    assert 0.93 * full < volume(closed_points, closed) < full
    assert closed_points[:, 2].max() < 16.0


def test_pieces_of_one_file_come_out_separately_and_specks_are_dropped():
    a = ellipsoid(radii=(5, 5, 10))
    b = ellipsoid(radii=(3, 3, 6), centre=(0, 0, 30))
    speck = ellipsoid(theta=4, phi=4, radii=(0.2, 0.2, 0.2), centre=(20, 0, 0))
    parts = [a, b, speck]
    offsets = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
    points = np.concatenate([p[0] for p in parts])
    tris = np.concatenate([p[1] + o for p, o in zip(parts, offsets)])
    pieces = surface_pieces(polydata_from_arrays(points, tris))
    assert len(pieces) == 2
    volumes = sorted(volume(*piece) for piece in pieces)
    assert volumes == pytest.approx(sorted([volume(*a), volume(*b)]), rel=1e-9)
