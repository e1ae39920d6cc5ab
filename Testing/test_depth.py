"""Front/back depth and thickness maps from meshes and label maps against exact answers."""

import math

import numpy as np
import pytest
import torch
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import ap_view, biplanar_rig, rotation_about
from BoneReconLib.label_depth import label_depth
from BoneReconLib.label_surface import label_surface
from BoneReconLib.mesh_depth import mesh_depth, mesh_from_polydata

VIEWS = biplanar_rig(size=(96, 80), pixel_spacing=(1.5, 1.5))
QUADS = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]  # outward


def box_mesh(lower, upper, matrix=np.eye(4)):
    """12-triangle box (corner index = 4 x + 2 y + z), outward normals, moved by ``matrix``."""
    corners = np.array([[x, y, z] for x in (lower[0], upper[0]) for y in (lower[1], upper[1])
                        for z in (lower[2], upper[2])], dtype=float)
    triangles = [t for a, b, c, d in QUADS for t in ((a, b, c), (a, c, d))]
    return corners @ matrix[:3, :3].T + matrix[:3, 3], np.array(triangles)


def oblique(angle_deg=25.0, shift=(3.0, -4.0, 5.0)):
    m = np.eye(4)
    m[:3, :3] = rotation_about([1.0, -2.0, 0.5], math.radians(angle_deg))
    m[:3, 3] = shift
    return m


def slab(view, lower, upper, matrix=np.eye(4)):
    """Exact (front, back, hit) of every pixel ray through the box lower..upper placed by ``matrix``."""
    inverse = np.linalg.inv(matrix)
    origins, directions = view.rays()
    o = origins @ inverse[:3, :3].T + inverse[:3, 3]
    d = directions @ inverse[:3, :3].T
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (np.asarray(lower) - o) / d, (np.asarray(upper) - o) / d
    front, back = np.nanmax(np.minimum(t1, t2), axis=-1), np.nanmin(np.maximum(t1, t2), axis=-1)
    return front, back, back > front


# --- meshes -------------------------------------------------------------------------------------


def test_mesh_box_depths_are_exact():
    lower, upper, matrix = (-20.0, -15.0, -30.0), (25.0, 18.0, 35.0), oblique()
    points, triangles = box_mesh(lower, upper, matrix)
    maps = mesh_depth(points, triangles, VIEWS)
    assert maps.front.shape == (1, 2, 80, 96)
    for v, view in enumerate(VIEWS):
        front, back, hit = slab(view, lower, upper, matrix)
        assert np.array_equal(maps.hit[0, v].numpy(), hit)
        np.testing.assert_allclose(maps.front[0, v].numpy()[hit], front[hit], atol=1e-9)
        np.testing.assert_allclose(maps.back[0, v].numpy()[hit], back[hit], atol=1e-9)
        np.testing.assert_allclose(maps.thickness[0, v].numpy()[hit], (back - front)[hit], atol=1e-9)
        assert not maps.front[0, v].numpy()[~hit].any() and not maps.thickness[0, v].numpy()[~hit].any()


def subdivided_box(lower, upper, n):
    """A box whose faces are n x n grids of quads (many shared edges and vertices)."""
    import vtk

    cube = vtk.vtkCubeSource()
    cube.SetBounds(lower[0], upper[0], lower[1], upper[1], lower[2], upper[2])
    clean = vtk.vtkCleanPolyData()  # merge the cube's per-face duplicate corners
    clean.SetInputConnection(cube.GetOutputPort())
    tri = vtk.vtkTriangleFilter()
    tri.SetInputConnection(clean.GetOutputPort())
    sub = vtk.vtkLinearSubdivisionFilter()
    sub.SetInputConnection(tri.GetOutputPort())
    sub.SetNumberOfSubdivisions(n)
    sub.Update()
    return mesh_from_polydata(sub.GetOutput())


def test_rays_through_shared_edges_and_vertices_cross_once():
    # AP source at y=800, detector at y=-200, 1 mm pixels with centres at x = 127.5 - i. The front
    # face y=300 is magnified exactly 2x, so its grid vertices (x, z = -10.25 + 2.5 m) and the
    # edges between them project exactly onto pixel centres: a fill rule that counts an edge
    # twice or not at all changes the thickness there.
    view = ap_view(size=(64, 64), pixel_spacing=(1.0, 1.0))
    lower, upper = (-10.25, 260.0, -10.25), (9.75, 300.0, 9.75)
    points, triangles = subdivided_box(lower, upper, 3)
    ij, _ = view.project(points[np.isclose(points[:, 1], 300.0)])
    assert np.allclose(ij, np.round(ij))  # the premise: front-face vertices land on pixel centres
    maps = mesh_depth(points, triangles, [view])[0, 0]
    front, back, _ = slab(view, lower, upper)
    hit = back - front > 1e-6  # rays exactly on the silhouette touch the box with zero length
    covered = maps.hit.numpy()
    assert covered[hit].all()
    np.testing.assert_allclose(maps.thickness.numpy()[hit], (back - front)[hit], atol=1e-9)
    np.testing.assert_allclose(maps.front.numpy()[hit], front[hit], atol=1e-9)
    # Pixels on the silhouette itself may be touched, with zero thickness.
    assert np.allclose(maps.thickness.numpy()[covered & ~hit], 0.0, atol=1e-9)


def test_non_convex_mesh_and_flipped_orientation():
    near_box, near_tri = box_mesh((-10, 100, -10), (10, 140, 10))
    far_box, far_tri = box_mesh((-10, -60, -10), (10, -20, 10))
    points = np.concatenate([near_box, far_box])
    triangles = np.concatenate([near_tri, far_tri + len(near_box)])
    view = VIEWS[0]  # AP: source at +800 on the A axis, looking towards -A
    maps = mesh_depth(points, triangles, [view])[0, 0]
    j, i = np.array(view.shape) // 2
    centre_ray = view.rays(np.array([i]), np.array([j]))[1][0]
    to_near, to_far = slab(view, (-10, 100, -10), (10, 140, 10)), slab(view, (-10, -60, -10), (10, -20, 10))
    assert maps.front[j, i] == pytest.approx(to_near[0][j, i], abs=1e-9)
    assert maps.back[j, i] == pytest.approx(to_far[1][j, i], abs=1e-9)
    expected = (to_near[1] - to_near[0] + to_far[1] - to_far[0])[j, i]
    assert maps.thickness[j, i] == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(80.0 / abs(centre_ray[1]), rel=1e-9)
    flipped = mesh_depth(points, triangles[:, ::-1], [view])[0, 0]
    assert torch.equal(flipped.thickness, maps.thickness) and torch.equal(flipped.hit, maps.hit)


def test_mesh_ellipsoid_within_a_tenth_of_a_millimetre():
    from meshes import ellipsoid

    radii, centre = np.array([18.0, 12.0, 25.0]), np.array([4.0, -6.0, 3.0])
    unit, triangles = ellipsoid(240, 240, radii=(1.0, 1.0, 1.0))
    rotation = rotation_about([0.3, 1.0, -0.4], math.radians(35.0))
    points = (unit * radii) @ rotation.T + centre
    maps = mesh_depth(points, triangles, VIEWS)[0]
    for v, view in enumerate(VIEWS):
        origins, directions = view.rays()
        o = (origins - centre) @ rotation / radii  # into the unit sphere's frame
        d = directions @ rotation / radii
        a, b, c = (d * d).sum(-1), 2 * (o * d).sum(-1), (o * o).sum(-1) - 1
        disc = b * b - 4 * a * c
        root = np.sqrt(np.clip(disc, 0, None))
        front, back = (-b - root) / (2 * a), (-b + root) / (2 * a)
        chord = np.where(disc > 0, back - front, 0.0)
        solid = chord > 0.3 * chord.max()  # away from grazing rays, where a facet's tilt dominates
        assert solid.sum() > 200
        assert maps.hit[v].numpy()[solid].all()
        assert np.abs(maps.front[v].numpy() - front)[solid].max() < 0.1
        assert np.abs(maps.back[v].numpy() - back)[solid].max() < 0.1


def test_mesh_batches_poses_and_instances_like_single_calls():
    points, triangles = box_mesh((-20, -15, -30), (25, 18, 35))
    poses = np.stack([oblique(a, (a / 5, 0, -a / 7)) for a in (0.0, 10.0, 40.0)])
    batched = mesh_depth(points, triangles, VIEWS, poses)
    instances = np.stack([points @ p[:3, :3].T + p[:3, 3] for p in poses])
    per_instance = mesh_depth(instances, triangles, VIEWS)
    for n, pose in enumerate(poses):
        single = mesh_depth(points, triangles, VIEWS, pose)[0]
        assert torch.allclose(batched.thickness[n], single.thickness, atol=1e-9)
        assert torch.allclose(per_instance.front[n], single.front, atol=1e-9)


def test_mesh_rendered_in_chunks_equals_one_pass():
    # Large triangles at fine pixels give more pixel/triangle pairs than one chunk holds (big meshes
    # at high resolution do); every chunk must rasterise its own pairs, not restart the first's.
    points, triangles = box_mesh((-20, -15, -30), (25, 18, 35), oblique())
    poses = np.stack([oblique(a, (a / 5, 0, -a / 7)) for a in (0.0, 10.0)])
    whole = mesh_depth(points, triangles, VIEWS, poses)
    chunked = mesh_depth(points, triangles, VIEWS, poses, max_pairs=500)
    assert int(whole.hit.sum()) > 5000
    for key in ("front", "back", "thickness", "hit"):
        assert torch.equal(getattr(chunked, key), getattr(whole, key)), key


def test_thickness_alone_equals_the_depth_maps_thickness_with_its_gradient():
    from BoneReconLib.mesh_depth import mesh_thickness
    from meshes import ellipsoid

    unit, triangles = ellipsoid(40, 40, radii=(18.0, 12.0, 25.0))
    poses = np.stack([oblique(a, (a / 5, 0, -a / 7)) for a in (0.0, 30.0)])
    points = [torch.tensor(unit, requires_grad=True) for _ in range(2)]
    depth, alone = mesh_depth(points[0], triangles, VIEWS, poses), mesh_thickness(points[1], triangles, VIEWS, poses)
    assert alone.shape == depth.thickness.shape == (2, 2, 80, 96) and int(depth.hit.sum()) > 2000
    assert torch.equal(alone, depth.thickness)
    weights = torch.linspace(0.5, 2.0, alone.numel(), dtype=torch.float64).reshape(alone.shape)
    (depth.thickness * weights).sum().backward()
    (alone * weights).sum().backward()
    assert points[0].grad.abs().max() > 0.1
    assert torch.allclose(points[0].grad, points[1].grad, rtol=0, atol=1e-12)


def test_mesh_distances_have_vertex_gradients():
    points, triangles = box_mesh((-20, -15, -30), (25, 18, 35), oblique())
    scale = torch.tensor(1.1, dtype=torch.float64, requires_grad=True)
    centre = torch.as_tensor(points.mean(axis=0))
    scaled = (torch.as_tensor(points) - centre) * scale + centre
    total = mesh_depth(scaled, triangles, VIEWS[:1]).thickness.sum()
    total.backward()
    eps = 1e-9  # far below the 1/4096-pixel snapping of coverage: only the distances move
    plus = mesh_depth((points - points.mean(0)) * (1.1 + eps) + points.mean(0), triangles, VIEWS[:1])
    minus = mesh_depth((points - points.mean(0)) * (1.1 - eps) + points.mean(0), triangles, VIEWS[:1])
    numeric = (plus.thickness.sum() - minus.thickness.sum()) / (2 * eps)
    assert float(scale.grad) == pytest.approx(float(numeric), rel=1e-5)


def test_bad_meshes_are_refused():
    """Also after the good box's triangulation was checked once (and remembered as closed): a
    changed triangulation of the same size, or fewer points, is checked again."""
    points, triangles = box_mesh((-20, -15, -30), (25, 18, 35))
    mesh_depth(points, triangles, VIEWS)
    with pytest.raises(InputError, match="do not exist"):
        mesh_depth(points[:4], triangles, VIEWS)
    with pytest.raises(InputError, match="empty"):
        mesh_depth(points, np.zeros((0, 3), int), VIEWS)
    with pytest.raises(InputError, match="closed"):
        mesh_depth(points, triangles[:-1], VIEWS)
    with pytest.raises(InputError, match="closed"):
        mesh_depth(points, np.concatenate([triangles[:6], triangles[6:, ::-1]]), VIEWS)
    with pytest.raises(InputError, match="source plane of view 'AP'"):
        mesh_depth(points + [0.0, 900.0, 0.0], triangles, VIEWS)
    with pytest.raises(InputError, match="non-finite"):
        mesh_depth(np.where(points == points.max(), np.nan, points), triangles, VIEWS)
    with pytest.raises(InputError, match="empty"):
        mesh_from_polydata(__import__("vtk").vtkPolyData())


# --- label maps ---------------------------------------------------------------------------------


def label_box_volume():
    """A voxel box (i 10..40, j 8..29, k 5..24) in an oblique, anisotropic volume; box in IJK with half-voxel faces."""
    labels = np.zeros((30, 40, 50), np.int16)
    labels[5:25, 8:30, 10:41] = 3
    labels[0:2, 0:2, 0:2] = 7  # another label, ignored
    matrix = np.eye(4)
    matrix[:3, :3] = rotation_about([1.0, 2.0, 3.0], 0.4) @ np.diag([0.8, 1.1, 1.7])
    matrix[:3, 3] = [-20.0, -25.0, -30.0]
    return labels, matrix, (9.5, 7.5, 4.5), (40.5, 29.5, 24.5)


def test_label_box_depths_within_a_tenth_of_a_millimetre():
    labels, matrix, lower, upper = label_box_volume()
    maps = label_depth(labels, matrix, [3], VIEWS)[0, 0]
    for v, view in enumerate(VIEWS):
        front, back, hit = slab(view, lower, upper, matrix)
        # The interpolated indicator rounds the box's edges; on its faces (one voxel away from an
        # edge) the 0.5 level is exactly the half-voxel plane.
        inverse = np.linalg.inv(matrix)
        origins, directions = view.rays()
        o, d = origins @ inverse[:3, :3].T + inverse[:3, 3], directions @ inverse[:3, :3].T

        def on_face(t):
            p = o + t[..., None] * d
            return ((p > np.add(lower, 1)) & (p < np.subtract(upper, 1))).sum(axis=-1) >= 2

        faces = hit & on_face(front) & on_face(back)
        assert faces.sum() > 400
        assert maps.hit[v].numpy()[faces].all()
        for got, want in ((maps.front, front), (maps.back, back), (maps.thickness, back - front)):
            assert np.abs(got[v].numpy() - want)[faces].max() < 1e-6  # well within the 0.1 mm target
        assert not maps.hit[v].numpy()[~slab(view, np.subtract(lower, 1), np.add(upper, 1), matrix)[2]].any()


def test_label_pose_equals_moved_matrix():
    labels, matrix, _, _ = label_box_volume()
    pose = oblique(15.0)
    posed = label_depth(labels, matrix, [3], VIEWS, poses=pose[None])[0, 0]
    moved = label_depth(labels, pose @ matrix, [3], VIEWS)[0, 0]
    assert torch.equal(posed.hit, moved.hit)
    assert torch.allclose(posed.front, moved.front, atol=1e-6)
    assert torch.allclose(posed.thickness, moved.thickness, atol=1e-6)


def test_label_thickness_sums_separate_pieces():
    labels = np.zeros((20, 60, 20), np.int16)
    labels[5:15, 10:20, 5:15] = 1  # two blocks along j, which the AP ray crosses one after the other
    labels[5:15, 35:50, 5:15] = 1
    matrix = np.diag([1.0, -1.0, 1.0, 1.0])  # +j runs towards -A, away from the AP source at +A
    matrix[:3, 3] = [-9.5, 30.0, -9.5]
    view = ap_view(size=(40, 40), pixel_spacing=(0.5, 0.5))
    maps = label_depth(labels, matrix, [1], [view])[0, 0, 0]
    j, i = 20, 20  # central rays run close to the A axis
    direction = view.rays(np.array([i]), np.array([j]))[1][0]
    assert maps.thickness[j, i] == pytest.approx(25.0 / abs(direction[1]), abs=1e-6)
    assert float(maps.back[j, i] - maps.front[j, i]) == pytest.approx(40.0 / abs(direction[1]), abs=1e-6)


def test_mesh_and_label_depths_of_the_same_vertebra_agree(sample_labels):
    labels, matrix = sample_labels
    voxel = float(np.linalg.norm(matrix[:3, :3], axis=0).min())
    points, triangles = label_surface(labels, matrix, 31)  # L1
    centre = points.mean(axis=0)
    views = biplanar_rig(size=(128, 128), pixel_spacing=(1.0, 1.0), isocenter=centre)
    from_labels = label_depth(labels, matrix, [31], views)[0, 0]
    from_mesh = mesh_depth(points, triangles, views)[0]
    for v in range(2):
        both = from_labels.hit[v] & from_mesh.hit[v]
        assert float(both.sum()) / float((from_labels.hit[v] | from_mesh.hit[v]).sum()) > 0.97
        for key in ("front", "back", "thickness"):
            error = (getattr(from_labels, key)[v] - getattr(from_mesh, key)[v]).abs()[both]
            assert float(error.median()) < 0.1 * voxel
            # The rest are rays grazing one-voxel-thin parts, where marching cubes' facets and the
            # interpolated level set connect diagonal voxels differently.
            assert float((error < voxel).double().mean()) > 0.98


def test_bad_label_input_is_refused():
    labels, matrix, _, _ = label_box_volume()
    with pytest.raises(InputError, match="Label 5 is absent"):
        label_depth(labels, matrix, [5], VIEWS)
    with pytest.raises(InputError, match="spacing"):
        label_depth(labels, np.diag([1.0, 0.0, 1.0, 1.0]), [3], VIEWS)
    with pytest.raises(InputError, match="source plane"):
        shifted = matrix.copy()
        shifted[:3, 3] += [0.0, 790.0, 0.0]
        label_depth(labels, shifted, [3], VIEWS)
    with pytest.raises(InputError, match="step"):
        label_depth(labels, matrix, [3], VIEWS, step=2.0)
    with pytest.raises(InputError, match="absent"):
        label_surface(labels, matrix, 5)


@pytest.fixture
def sample_labels():
    """The bundled sample's vertebra label map and its IJK-to-RAS (read without MRML)."""
    from BoneReconLib.image_io import read_label_map
    from BoneReconLib.sample_data import SAMPLE_VERTEBRA_LABELS

    return read_label_map(SAMPLE_VERTEBRA_LABELS)
