"""Free-form refinement term: the Gaussian-process basis has the kernel's covariance, and it reaches
shapes a shape model cannot."""

import numpy as np
import pytest
import torch
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import rotation_about
from BoneReconLib.shape_refinement import SmoothDeformation, farthest_points, map_fit
from BoneReconLib.shape_statistics import build_shape_model
from meshes import ellipsoid


@pytest.fixture(scope="module")
def surface():
    return ellipsoid(40, 30, radii=(30.0, 20.0, 15.0))


def kernel(a, b, sigma, amplitude):
    return amplitude ** 2 * np.exp(-np.sum((a - b) ** 2) / (2 * sigma ** 2))


def test_basis_has_the_kernels_covariance(surface):
    points, _ = surface
    sigma, amplitude = 8.0, 1.5
    deformation = SmoothDeformation.on_points(points, sigma, amplitude, variance_kept=0.999, max_functions=1000)
    assert deformation.variance_kept() > 0.998
    scaled = deformation.functions * np.sqrt(deformation.variances)[:, None]  # (R, P)
    covariance = scaled.T @ scaled  # per coordinate, between vertices
    # Each vertex moves with the prior's variance; pairs correlate as the Gaussian kernel says.
    assert np.allclose(np.diag(covariance), amplitude ** 2, atol=0.05 * amplitude ** 2)
    rng = np.random.default_rng(0)
    for p, q in rng.integers(0, len(points), size=(50, 2)):
        assert covariance[p, q] == pytest.approx(kernel(points[p], points[q], sigma, amplitude), abs=0.03)
    assert np.allclose(deformation.functions @ deformation.functions.T, np.eye(deformation.n_functions), atol=1e-9)


def test_wider_kernels_need_fewer_functions(surface):
    points, _ = surface
    counts = [SmoothDeformation.on_points(points, sigma).n_functions for sigma in (5.0, 10.0, 20.0)]
    assert counts[0] > counts[1] > counts[2] >= 1


def test_weights_round_trip_and_instances_take_the_field(surface):
    points, triangles = surface
    deformation = SmoothDeformation.on_points(points, 10.0, 2.0)
    rng = np.random.default_rng(1)
    weights = rng.standard_normal((3, deformation.n_functions, 3))
    fields = deformation.displacements(weights)
    assert fields.shape == (3, len(points), 3)
    assert np.allclose(deformation.weights_of(fields[1].numpy()), weights[1], atol=1e-9)
    flat = deformation.displacements(weights.reshape(3, -1))
    assert torch.allclose(flat, fields)
    assert torch.allclose(SmoothDeformation.energy(weights), torch.as_tensor(0.5 * (weights ** 2).sum(axis=(1, 2))))
    # In a shape model instance the field is added in the model's frame, before the pose.
    shapes = [points * s for s in (0.9, 1.0, 1.1, 1.05)]
    model = build_shape_model("e", shapes, triangles)
    pose = np.eye(4)
    pose[:3, :3] = rotation_about([1.0, 2.0, 0.5], 0.7)
    pose[:3, 3] = [5.0, -3.0, 12.0]
    instance = model.instances(poses=pose, displacements=fields[:1]).numpy()[0]
    assert np.allclose(instance, (model.mean + fields[0].numpy()) @ pose[:3, :3].T + pose[:3, 3], atol=1e-9)


def test_free_form_term_reaches_beyond_the_models_span(surface):
    points, triangles = surface
    model = build_shape_model("e", [points * s for s in (0.9, 1.0, 1.1, 1.05)], triangles)
    # A new shape: a larger ellipsoid with a smooth dent no model instance has.
    centre = points[np.argmax(points[:, 0])]
    dent = -3.0 * np.exp(-np.sum((points - centre) ** 2, axis=1) / (2 * 8.0 ** 2))[:, None] * points / np.linalg.norm(
        points, axis=1, keepdims=True)
    target = model.mean * 1.08 + dent
    _, _, ssm_only = map_fit(model, target, noise_mm=0.1)
    deformation = SmoothDeformation.on_points(model.mean, 8.0, 1.5)
    coefficients, weights, refined = map_fit(model, target, deformation, noise_mm=0.1)
    error_ssm = np.linalg.norm(ssm_only - target, axis=1)
    error_refined = np.linalg.norm(refined - target, axis=1)
    assert error_ssm.max() > 2.0  # the dent is out of the model's reach
    assert error_refined.max() < 0.35 * error_ssm.max() and error_refined.mean() < 0.1
    assert weights.shape == (deformation.n_functions, 3)
    # Most of the size change is taken by the model's mode (it costs less there), the dent by the field.
    size_only = map_fit(model, model.mean * 1.08, noise_mm=0.1)[0][0]
    assert 0.75 * size_only < coefficients[0] <= 1.05 * size_only
    # A strong prior (large noise) keeps the field small.
    _, weak, _ = map_fit(model, target, deformation, noise_mm=10.0)
    assert np.abs(weak).sum() < 0.5 * np.abs(weights).sum()


def test_farthest_points_spread_and_bad_input(surface):
    points, _ = surface
    chosen = farthest_points(points, 50)
    assert len(set(chosen.tolist())) == 50
    gaps = np.linalg.norm(points[:, None] - points[chosen][None], axis=-1).min(axis=1)
    assert gaps.max() < 9.0  # every vertex lies near a chosen one
    with pytest.raises(InputError, match="sigma"):
        SmoothDeformation.on_points(points, sigma=0.0)
    with pytest.raises(InputError, match="points"):
        SmoothDeformation.on_points(points[:2])
    deformation = SmoothDeformation.on_points(points, 10.0)
    with pytest.raises(InputError, match="functions"):
        deformation.displacements(np.zeros((1, deformation.n_functions + 1, 3)))
    with pytest.raises(InputError, match="threes"):
        deformation.displacements(np.zeros((1, 4)))
