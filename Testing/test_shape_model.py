"""Shape models: a synthetic family with known modes is recovered; instances, landmarks and files."""

import math

import numpy as np
import pytest
import torch
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import rotation_about
from BoneReconLib.shape_model import Landmark, ShapeModel, landmark_on_surface, load_shape_model
from BoneReconLib.shape_statistics import (build_shape_model, compactness, generalisation, generalised_procrustes,
                                           rigid_align, specificity)

SIGMAS = np.array([6.0, 3.0, 1.5])  # mm: the family's true standard deviations along its 3 modes
M = 20


def base_ellipsoid():
    from meshes import ellipsoid

    return ellipsoid(24, 16, radii=(40.0, 30.0, 20.0))


def true_modes(base):
    """Three orthonormal displacement fields (3, P, 3), orthogonal to every rigid motion of the base."""
    x, y, z = (base[:, k] for k in range(3))
    fields = [
        np.stack([x, 0 * x, 0 * x], 1),  # stretch along x
        np.exp(-((base - [40.0, 0, 0]) ** 2).sum(1) / 200.0)[:, None] * base / np.linalg.norm(base, axis=1)[:, None],
        np.stack([-y * z, x * z, 0 * z], 1) / 20.0,  # twist about z
    ]
    rigid = [np.tile(e, (len(base), 1)) for e in np.eye(3)] + [np.cross(e, base) for e in np.eye(3)]
    basis = []
    for vector in [r.reshape(-1) for r in rigid] + [f.reshape(-1) for f in fields]:
        for b in basis:
            vector = vector - (vector @ b) * b
        basis.append(vector / np.linalg.norm(vector))
    return np.stack(basis[6:]).reshape(3, -1, 3)


@pytest.fixture(scope="module")
def family():
    """M shapes = base + exact-variance combinations of the true modes, each at a random rigid pose."""
    base, triangles = base_ellipsoid()
    modes = true_modes(base)
    rng = np.random.default_rng(1)
    raw = rng.standard_normal((M, 3))
    raw -= raw.mean(axis=0)
    q, _ = np.linalg.qr(raw)  # orthonormal, zero-mean columns: sample covariance exactly diag(SIGMAS^2)
    coefficients = q * np.sqrt(M - 1) * SIGMAS
    shapes = base + np.tensordot(coefficients, modes, axes=1)
    posed = [shapes[0]]  # the first keeps the base's frame, which the model's mean inherits
    for shape in shapes[1:]:
        rotation = rotation_about(rng.standard_normal(3), rng.uniform(0, math.pi))
        posed.append(shape @ rotation.T + rng.uniform(-50, 50, 3))
    return np.stack(posed), triangles, modes, base


def test_builder_recovers_known_modes_and_variances(family):
    shapes, triangles, modes, _ = family
    model = build_shape_model("family", shapes, triangles)
    assert model.n_modes >= 3
    for k in range(3):
        assert abs(float((model.modes[k] * modes[k]).sum())) > 0.999
    np.testing.assert_allclose(model.variances[:3], SIGMAS ** 2, rtol=0.01)
    assert model.variances[3:].sum() < 1e-3 * model.variances.sum()  # only alignment's second-order residue
    ratios = compactness(model)
    assert np.all(np.diff(ratios) >= 0) and ratios[-1] == pytest.approx(1.0) and ratios[2] > 0.999


def test_generalisation_and_specificity(family):
    shapes, triangles, _, _ = family
    errors = generalisation(shapes, triangles, ks=(1, 2, 3))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05  # the left-out shape lies in the span
    model = build_shape_model("family", shapes, triangles)
    spread = np.mean([np.linalg.norm(a - b, axis=1).mean() for a in shapes[:5] for b in shapes[5:10]])
    assert 0.0 < specificity(model, shapes, k=3, samples=50) < 0.5 * spread


def test_procrustes_removes_pose_and_keeps_the_first_frame(family):
    shapes, _, _, _ = family
    aligned, mean = generalised_procrustes(shapes)
    assert np.allclose(mean.mean(axis=0), 0.0, atol=1e-9)
    rotation, _, _ = rigid_align(shapes[0], mean)
    moved = shapes[1] @ rotation_about([1, 2, 3], 0.7).T + 5.0
    again, _ = generalised_procrustes(np.concatenate([shapes[:1], moved[None], shapes[2:]]))
    assert np.allclose(again, aligned, atol=1e-6)  # a shape's pose does not matter
    r, t, s = rigid_align(shapes[0], 2.0 * shapes[0] @ rotation.T + 3.0, scaling=True)
    assert s == pytest.approx(2.0) and np.allclose(r, rotation)


def test_instances_landmarks_poses_and_gradients(family):
    shapes, triangles, _, _ = family
    model = build_shape_model("family", shapes, triangles,
                              landmark_targets={"tip": ("body", [60.0, 0.0, 0.0]), "top": ("lamina", [0, 0, 40.0])})
    coefficients = np.array([[1.0, 0.0, 0.0], [0.0, -2.0, 0.5]])
    points = model.instances(coefficients)
    expected = model.mean + np.sqrt(model.variances[0]) * model.modes[0]
    assert torch.allclose(points[0], torch.as_tensor(expected))
    assert torch.allclose(model.instances(coefficients[1])[0], points[1])  # batched == single
    pose = np.eye(4)
    pose[:3, :3] = rotation_about([0, 1, 1], 0.3)
    pose[:3, 3] = [1, 2, 3]
    posed = model.instances(coefficients, poses=np.stack([pose, pose]), scales=[1.0, 1.1])
    assert torch.allclose(posed[1], (1.1 * points[1]) @ torch.as_tensor(pose[:3, :3]).T + torch.as_tensor(pose[:3, 3]))
    # Landmarks are surface points of every instance: barycentric in their triangle.
    landmarks = model.landmark_positions(posed)
    tip = model.landmarks[0]
    assert len(tip.vertices) == 3 and tuple(sorted(tip.vertices)) in {tuple(sorted(t)) for t in model.triangles}
    for n in range(2):
        assert torch.allclose(landmarks[n, 0], torch.as_tensor(tip.position(posed[n].numpy())))
    middle = Landmark.mean_of("middle", "pedicle", model.landmarks)
    halfway = (tip.position(model.mean) + model.landmarks[1].position(model.mean)) / 2
    assert np.allclose(middle.position(model.mean), halfway)
    assert model.landmark_positions(model.instances())[0, 0, 0] > 35.0  # the mean's +x end
    assert model.landmark_names == ["tip", "top"] and model.landmarks[1].region == "lamina"
    b = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    model.landmark_positions(model.instances(b))[0, 0, 0].backward()
    assert b.grad.abs().sum() > 0


def test_landmark_on_surface_is_the_closest_point():
    points = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0]])
    triangles = np.array([[0, 1, 2]])
    inside = landmark_on_surface(points, triangles, [2.0, 3.0, 5.0], "a", "body")
    assert np.allclose(inside.weights, [0.5, 0.2, 0.3]) and inside.vertices == (0, 1, 2)
    assert np.allclose(inside.position(points), [2.0, 3.0, 0.0])
    edge = landmark_on_surface(points, triangles, [5.0, -4.0, 1.0], "b", "body")
    assert np.allclose(edge.weights, [0.5, 0.5, 0.0])
    corner = landmark_on_surface(points, triangles, [-3.0, -3.0, 0.0], "c", "body")
    assert np.allclose(corner.weights, [1.0, 0.0, 0.0])


def test_save_load_round_trip_and_hash_check(family, tmp_path):
    shapes, triangles, _, _ = family
    model = build_shape_model("L1", shapes, triangles, landmark_targets={"tip": ("body", [60.0, 0.0, 0.0])},
                              info={"source": "synthetic"})
    path = tmp_path / "L1.ssm.npz"
    digest = model.save(path)
    loaded = load_shape_model(path, sha256=digest)
    assert loaded.name == "L1" and loaded.info["source"] == "synthetic" and loaded.info["n_shapes"] == M
    np.testing.assert_array_equal(loaded.mean, model.mean)
    np.testing.assert_array_equal(loaded.triangles, model.triangles)
    np.testing.assert_allclose(loaded.modes, model.modes, atol=1e-6)
    flat = loaded.modes.reshape(loaded.n_modes, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(loaded.n_modes), atol=1e-12)
    assert loaded.landmarks == model.landmarks
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(InputError, match="does not match its manifest"):
        load_shape_model(path, sha256=digest)
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    with pytest.raises(InputError, match="Could not read"):
        load_shape_model(tmp_path / "junk.npz")


def test_bad_shape_sets_are_refused(family):
    shapes, triangles, _, _ = family
    with pytest.raises(InputError, match="at least 3 shapes"):
        build_shape_model("x", shapes[:2], triangles)
    with pytest.raises(InputError, match="no variation"):
        build_shape_model("x", np.stack([shapes[0]] * 4), triangles)
    with pytest.raises(InputError, match="unknown region"):
        Landmark("x", "tail", (0,), (1.0,))
    with pytest.raises(InputError, match="weights summing to 1"):
        Landmark("x", "body", (0, 1), (0.5, 0.4))
    model = build_shape_model("x", shapes, triangles)
    with pytest.raises(InputError, match="coefficients were given"):
        model.instances(np.zeros((1, model.n_modes + 1)))
    with pytest.raises(InputError, match="variances must be positive"):
        ShapeModel("x", model.mean, triangles, model.modes[:1], np.array([0.0]))
