"""Single-view limb cases: exact line integrals of bone in soft tissue, depth maps that agree with an
independent ray caster, the nearest bone's id, a skin envelope of the asked thickness."""

import numpy as np
import pytest
import torch
from BoneReconLib.drr import hu_to_mu
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import ap_view
from BoneReconLib.bone_density import SOFT_TISSUE_HU
from BoneReconLib.limb_radiograph import BONE_HU, Bone, render_limb, soft_tissue_envelope
from meshes import ellipsoid

MU_SOFT, MU_BONE = (float(hu_to_mu(np.float64(hu), 60.0)) for hu in (SOFT_TISSUE_HU, BONE_HU))


def box(low, high):
    """(points, triangles) of an axis-aligned box, outward-oriented."""
    (x0, y0, z0), (x1, y1, z1) = low, high
    points = np.array([[x, y, z] for z in (z0, z1) for y in (y0, y1) for x in (x0, x1)], dtype=float)
    quads = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)]
    triangles = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    return points, triangles


def test_line_integral_is_bone_replacing_soft_tissue():
    bone = Bone("cube", *box((-10, -10, -10), (10, 10, 10)))
    envelope = box((-30, -30, -30), (30, 30, 30))
    view = ap_view(source_to_detector=2000.0, source_to_isocenter=1800.0, size=(64, 64), pixel_spacing=(1.0, 1.0))
    images = render_limb([bone], envelope, [view])
    # The central rays run along y (0.5 mm off the axis at 2 m: 1e-7 relative) through 60 mm of limb,
    # 20 mm of it bone.
    centre = images.attenuation[0, 31:33, 31:33]
    assert torch.allclose(centre, torch.full_like(centre, MU_SOFT * 60 + (MU_BONE - MU_SOFT) * 20), rtol=1e-6)
    corner = images.attenuation[0, 2, 2]  # beside the bone: soft tissue only, along an oblique ray
    _, direction = view.rays(np.array([2]), np.array([2]))
    assert float(corner) == pytest.approx(MU_SOFT * 60 / abs(direction[0, 1]), rel=1e-9)
    assert not images.mask[0, 2, 2] and images.mask[0, 32, 32] and images.bone_id[0, 32, 32] == 1
    assert float(images.depth.thickness[0, 0, 32, 32]) == pytest.approx(20.0, rel=1e-6)


def test_depth_maps_agree_with_an_independent_ray_caster():
    import vtk
    from BoneReconLib.mesh_io import polydata_from_arrays
    from BoneReconLib.shape_model_library import load_models

    model = load_models()["L3"]  # a real vertebra shape, with processes and a canal
    bone = Bone("L3", model.mean, model.triangles)
    view = ap_view(size=(96, 96), pixel_spacing=(1.0, 1.0), rotation_deg=20.0)
    images = render_limb([bone], soft_tissue_envelope([bone], thickness_mm=5.0), [view])
    tree = vtk.vtkOBBTree()
    tree.SetDataSet(polydata_from_arrays(bone.points, bone.triangles))
    tree.BuildLocator()
    rng = np.random.default_rng(0)
    rows, cols = np.nonzero(images.mask[0].numpy())
    assert len(rows) > 1000
    for n in rng.choice(len(rows), 60, replace=False):
        j, i = rows[n], cols[n]
        source = view.source
        target = source + 3 * (view.pixel_to_world(i, j) - source)
        hits = vtk.vtkPoints()
        tree.IntersectWithLine(source, target, hits, None)
        distances = sorted(np.linalg.norm(np.array(hits.GetPoint(k)) - source) for k in range(hits.GetNumberOfPoints()))
        assert len(distances) >= 2
        assert float(images.depth.front[0, 0, j, i]) == pytest.approx(distances[0], abs=0.1)
        assert float(images.depth.back[0, 0, j, i]) == pytest.approx(distances[-1], abs=0.1)


def test_nearest_bone_gets_the_id_and_overlaps_are_kept():
    near = Bone("near", *ellipsoid(radii=(8, 8, 8), centre=(0, 20, 0)))  # the AP source is anterior (+y)
    far = Bone("far", *ellipsoid(radii=(8, 8, 8), centre=(4, -20, 0)))
    view = ap_view(size=(64, 64), pixel_spacing=(0.5, 0.5))
    images = render_limb([far, near], soft_tissue_envelope([far, near], thickness_mm=4.0), [view])
    both = images.depth.hit[0, 0] & images.depth.hit[1, 0]
    assert both.sum() > 50
    assert torch.all(images.bone_id[0][both] == 2)  # "near" is listed second
    only_far = images.depth.hit[0, 0] & ~images.depth.hit[1, 0]
    assert only_far.any() and torch.all(images.bone_id[0][only_far] == 1)
    assert torch.equal(images.mask[0], images.depth.hit[:, 0].any(dim=0))
    arrays = images.arrays()
    assert arrays["bone_id"].dtype == np.uint8 and arrays["front"].shape == (2, 1, 64, 64)


def test_envelope_wraps_the_bones_at_its_thickness():
    from BoneReconLib.shape_correspondence import point_to_surface

    bones = [Bone("a", *ellipsoid(radii=(6, 6, 25), centre=(0, 0, -28))),
             Bone("b", *ellipsoid(radii=(7, 7, 20), centre=(3, 0, 20)))]
    points, triangles = soft_tissue_envelope(bones, thickness_mm=8.0, voxel_mm=1.0)
    clearance = np.concatenate([point_to_surface(b.points, points, triangles) for b in bones])
    assert np.median(clearance) == pytest.approx(8.0, abs=1.0)
    assert clearance.min() > 5.0
    from BoneReconLib.mesh_io import surface_mask

    inside = surface_mask(points, triangles, 1.0, low=np.array([-0.5, -0.5, -60.5]), size=(2, 2, 122))[0]
    assert inside.any(axis=(1, 2)).sum() > 100  # one piece along the whole limb


def test_bad_input():
    points, triangles = ellipsoid()
    with pytest.raises(InputError, match="metres"):
        Bone("femur", points / 1000.0, triangles)
    with pytest.raises(InputError, match="at least one bone"):
        soft_tissue_envelope([])
    with pytest.raises(InputError, match="thicker"):
        soft_tissue_envelope([Bone("b", points, triangles)], thickness_mm=1.0, voxel_mm=2.0)
    with pytest.raises(InputError, match="No bones"):
        render_limb([], (points, triangles), [ap_view()])


def test_real_knee_and_hand_bones(shared_data):
    """Real femur + tibia (mm) and a hand model's bones (metres, must be declared) make cases."""
    from BoneReconLib.mesh_io import read_surface

    leg = shared_data / "meshes" / "leg_staple"
    knee = [Bone.from_file(leg / "LHDL_CT__femur_r.stl"), Bone.from_file(leg / "LHDL_CT__tibia_r.stl")]
    centre = np.mean([b.points.mean(axis=0) for b in knee], axis=0)
    view = ap_view(size=(128, 256), pixel_spacing=(2.0, 2.0), isocenter=centre)
    images = render_limb(knee, soft_tissue_envelope(knee, thickness_mm=25.0, voxel_mm=3.0), [view])
    assert set(np.unique(images.bone_id.numpy())) == {0, 1, 2}
    assert float(images.depth.thickness.max()) > 20.0  # through a femoral condyle or shaft
    hand = shared_data / "meshes" / "myosim"
    with pytest.raises(InputError, match="metres"):
        read_surface(hand / "capitate.stl")
    capitate = Bone.from_file(hand / "capitate.stl", units="m")
    assert 10.0 < np.ptp(capitate.points, axis=0).max() < 40.0  # a carpal bone, in mm
