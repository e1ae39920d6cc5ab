"""DepthRecon's geometry: depth relative to the object plane (round trip, magnification-free) and the
back-projection of exact depth maps into surfaces and label maps (ellipsoids of known shape)."""

import numpy as np
import pytest
import torch
from BoneReconLib.depth_reconstruction import depth_field, depth_label_map, depth_surface
from BoneReconLib.depth_reference import (ASSUMED_OBJECT_TO_DETECTOR_MM, decode_depth, encode_depth,
                                          object_distance, object_pixel_mm)
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import View
from BoneReconLib.mesh_depth import mesh_depth
from meshes import ellipsoid


def view(source_to_object=None, source_y=-900.0, spacing=0.6, size=(96, 80), turn=0.0):
    c, s = np.cos(turn), np.sin(turn)
    u = np.array([c, s, 0.0])
    extra = {} if source_to_object is None else {"source_to_object": source_to_object}
    return View(name="XR", source=np.array([0.0, source_y, 0.0]), detector_center=np.array([0.0, 200.0, 0.0]),
                detector_u=u, detector_v=np.array([0.0, 0.0, -1.0]), pixel_spacing=(spacing, spacing), size=size,
                extra=extra)


def radial_error(points, radii, centre):
    """|implicit ellipsoid radius - 1| scaled to mm (first order): how far points lie off the ellipsoid."""
    q = (points - np.asarray(centre)) / np.asarray(radii)
    return np.abs(np.linalg.norm(q, axis=1) - 1.0) * min(radii)


def test_relative_depth_round_trips_and_ignores_a_move_and_scale_along_the_beam():
    v = view(source_to_object=850.0)
    depth = torch.full(v.shape, 870.0, dtype=torch.float64)
    z = encode_depth(depth, v, 850.0)
    assert torch.allclose(decode_depth(z, v, 850.0), depth)
    # The central pixels' rays meet the object plane at 850 mm: 20 mm further is 20 / (object pixel) pixels.
    centre = z[40, 48]
    assert abs(float(centre) - 20.0 / object_pixel_mm(v, 850.0)) < 0.2
    # An ellipsoid at the object plane, and the same ellipsoid twice as large twice as far: the same z.
    near = view(source_to_object=450.0, source_y=-450.0)  # source 450 mm from the centre, detector 650 mm
    far = View(name="XR", source=np.array([0.0, -900.0, 0.0]), detector_center=np.array([0.0, 400.0, 0.0]),
               detector_u=near.detector_u, detector_v=near.detector_v, pixel_spacing=(1.2, 1.2), size=near.size,
               extra={"source_to_object": 900.0})
    small, large = ellipsoid(radii=(12, 8, 10)), ellipsoid(radii=(24, 16, 20))
    maps_near, maps_far = mesh_depth(*small, [near])[0][0], mesh_depth(*large, [far])[0][0]
    assert torch.equal(maps_near.hit, maps_far.hit)
    on = maps_near.hit
    z_near = encode_depth(maps_near.front, near, 450.0)[on]
    z_far = encode_depth(maps_far.front, far, 900.0)[on]
    assert torch.allclose(z_near, z_far, atol=1e-6)


def test_object_distance_given_assumed_and_refused():
    assert object_distance(view(source_to_object=800.0)) == (800.0, False)
    distance, assumed = object_distance(view())
    assert assumed and distance == pytest.approx(1100.0 - ASSUMED_OBJECT_TO_DETECTOR_MM)
    for bad in (1200.0, -5.0, "far"):
        with pytest.raises(InputError, match="source_to_object|object plane"):
            object_distance(view(source_to_object=bad))


@pytest.mark.parametrize("turn", [0.0, 0.4])
def test_exact_depth_maps_back_project_onto_the_ellipsoid(turn):
    radii, centre = (12.0, 9.0, 7.0), (3.0, -2.0, 1.0)
    points, triangles = ellipsoid(theta=120, phi=90, radii=radii, centre=centre)
    v = view(turn=turn)
    maps = mesh_depth(points, triangles, [v])[0][0]
    surface, faces = depth_surface(v, maps.front, maps.back, maps.hit)
    error = radial_error(surface, radii, centre)
    pixel = 0.6 * 900.0 / 1100.0  # a pixel at the ellipsoid
    assert error.mean() < 0.1 * pixel and error.max() < 0.8 * pixel
    # The volume inside matches the ellipsoid's (4/3 pi abc) within 2 %.
    field = depth_field(v, maps.front, maps.back, maps.hit)
    volume = (field.values > 0).sum() * field.voxel_mm ** 3
    assert volume == pytest.approx(4 / 3 * np.pi * np.prod(radii), rel=0.02)
    # A bone 5 mm further from the source: its surface moves 5 mm along the rays.
    moved = depth_surface(v, maps.front + 5.0, maps.back + 5.0, maps.hit)[0]
    shift = np.median(np.linalg.norm(moved - v.source, axis=1)) - np.median(np.linalg.norm(surface - v.source, axis=1))
    assert shift == pytest.approx(5.0, abs=0.3)


def test_the_separable_sampling_of_a_square_detector_agrees_with_the_point_by_point_one():
    """u, v and the beam orthonormal (every real detector): the fast path (separable projection,
    grid_sample) gives the general path's field; a skewed u (turn 0.4 above) takes the general one."""
    from BoneReconLib import depth_reconstruction as dr

    points, triangles = ellipsoid(theta=60, phi=45, radii=(12.0, 9.0, 7.0), centre=(3.0, -2.0, 1.0))
    v = view()
    maps = mesh_depth(points, triangles, [v])[0][0]
    field = depth_field(v, maps.front, maps.back, maps.hit)
    hit = maps.hit.double()
    stacked = torch.stack([hit, hit * maps.front.double(), hit * maps.back.double()])
    low = dr._view_frame(v).T @ (field.ijk_to_ras[:3, 3] - v.source)  # the grid's corner in (u, v, beam)
    size = np.array(field.values.shape[::-1])
    general = dr._sample_field(v, stacked, dr._view_frame(v), low, size, field.voxel_mm, 1 << 18)
    assert np.abs(general - field.values).max() < 1e-3


def test_a_soft_mask_sets_the_silhouette_where_it_is_one_half():
    radii, centre = (12.0, 9.0, 7.0), (0.0, 0.0, 0.0)
    v = view()
    maps = mesh_depth(*ellipsoid(theta=120, phi=90, radii=radii, centre=centre), [v])[0][0]
    # Probabilities above one half on the bone keep the bone; lowering every one below one half
    # removes it.
    soft = torch.where(maps.hit, 0.8, 0.1)
    surface = depth_surface(v, maps.front, maps.back, soft)[0]
    assert radial_error(surface, radii, centre).mean() < 0.15
    with pytest.raises(InputError, match="No bone pixel"):
        depth_field(v, maps.front, maps.back, soft * 0.5)


def test_label_map_of_two_bones_keeps_them_apart_and_refuses_bad_maps():
    v = view()
    a = mesh_depth(*ellipsoid(radii=(8, 6, 5), centre=(-12.0, 0.0, 0.0)), [v])[0][0]
    b = mesh_depth(*ellipsoid(radii=(6, 6, 6), centre=(12.0, 10.0, 3.0)), [v])[0][0]
    labels, ijk_to_ras, names = depth_label_map(v, {"a": (a.front, a.back, a.hit), "b": (b.front, b.back, b.hit)},
                                                voxel_mm=0.5)
    assert names == ["a", "b"]
    k, j, i = np.nonzero(labels)
    world = np.stack([i, j, k, np.ones_like(i)], axis=1) @ ijk_to_ras.T
    for n, (centre, radii) in enumerate([((-12.0, 0.0, 0.0), (8, 6, 5)), ((12.0, 10.0, 3.0), (6, 6, 6))], start=1):
        mine = world[labels[k, j, i] == n, :3]
        assert np.allclose(mine.mean(axis=0), centre, atol=0.3)
        assert len(mine) * 0.125 == pytest.approx(4 / 3 * np.pi * np.prod(radii), rel=0.05)
    with pytest.raises(InputError, match="pixels"):
        depth_field(v, a.front[:10], a.back, a.hit)
    with pytest.raises(InputError, match="before the front"):
        depth_field(v, a.back, a.front, a.hit)
