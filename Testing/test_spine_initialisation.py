"""Initial vertebra poses: weighted Umeyama, robust similarity with outliers, triangulation of projected
landmarks, and shape-model means placed back where known similarities put them."""

import numpy as np
import pytest

from BoneReconLib.geometry import biplanar_rig, rotation_about
from BoneReconLib.shape_statistics import rigid_align
from BoneReconLib.spine_initialisation import initial_poses, robust_similarity, triangulate_landmarks


def _similarity(seed):
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    rotation = rotation_about(axis / np.linalg.norm(axis), rng.uniform(0.2, 0.6))
    return rotation, rng.uniform(-40, 40, 3), rng.uniform(0.85, 1.15)


def test_weighted_umeyama_ignores_zero_weight_points():
    rng = np.random.default_rng(0)
    source = rng.normal(scale=20, size=(12, 3))
    rotation, translation, scale = _similarity(1)
    target = scale * source @ rotation.T + translation
    target[:3] += 50.0  # wrong points with no weight
    weights = np.r_[np.zeros(3), np.ones(9)]
    r, t, s = rigid_align(source, target, scaling=True, weights=weights)
    assert r == pytest.approx(rotation, abs=1e-9) and t == pytest.approx(translation, abs=1e-7)
    assert s == pytest.approx(scale, rel=1e-9)


def test_robust_similarity_recovers_the_pose_despite_outliers():
    rng = np.random.default_rng(2)
    source = rng.normal(scale=15, size=(19, 3))
    rotation, translation, scale = _similarity(3)
    target = scale * source @ rotation.T + translation + rng.normal(scale=0.3, size=(19, 3))
    wrong = [2, 7, 11, 16]
    target[wrong] += rng.normal(scale=30, size=(4, 3))
    fit = robust_similarity(source, target)
    assert fit.rotation == pytest.approx(rotation, abs=0.02)
    assert fit.scale == pytest.approx(scale, abs=0.02)
    clean = np.setdiff1d(np.arange(19), wrong)
    truth = scale * source[clean] @ rotation.T + translation
    assert np.linalg.norm(fit.apply(source[clean]) - truth, axis=1).max() < 1.0
    assert not fit.inliers[wrong].any() and fit.inliers[clean].all()
    plain = rigid_align(source, target, scaling=True)  # the least-squares fit is dragged away
    assert np.abs(plain[0] - rotation).max() > 3 * np.abs(fit.rotation - rotation).max()


def test_triangulated_landmarks_place_each_mean_where_its_similarity_put_it():
    views = biplanar_rig(size=(300, 300), pixel_spacing=(1.0, 1.0))
    rng = np.random.default_rng(5)
    levels = ["L1", "L2"]
    means = {level: rng.normal(scale=15, size=(19, 3)) for level in levels}
    truths = {level: _similarity(10 + n) for n, level in enumerate(levels)}
    world = np.concatenate([s * means[level] @ r.T + t for level, (r, t, s) in truths.items()])
    pixels = [view.project(world)[0] for view in views]
    confidences = [np.ones(38), np.ones(38)]
    confidences[1][:16] = 0.1  # L1: only 3 landmarks confident in the lateral view
    pixels[0][30] += [0.0, 25.0]  # one L2 landmark detected far too low in the AP view (the views disagree)
    found = triangulate_landmarks(views, pixels, confidences)
    assert found.used.sum() == 38 - 16 - 1 and not found.used[30]
    good = found.used
    assert found.points[good] == pytest.approx(world[good], abs=1e-6)
    poses = initial_poses(means, found, levels)
    assert poses["L1"] is None  # too few landmarks
    rotation, translation, scale = truths["L2"]
    assert poses["L2"].rotation == pytest.approx(rotation, abs=1e-6)
    assert poses["L2"].translation == pytest.approx(translation, abs=1e-4)
    assert poses["L2"].matrix()[:3, :3] == pytest.approx(scale * rotation, abs=1e-6)
    with pytest.raises(ValueError, match="at least two views"):
        triangulate_landmarks(views[:1], pixels[:1], confidences[:1])


def test_exact_detections_of_a_synthetic_case_place_the_means_on_the_true_vertebrae(tiny_lumbar, bundled_models):
    import torch

    from BoneReconLib.dataset_store import CaseDataset
    from BoneReconLib.geometry import View
    from BoneReconLib.spine_alignment import LEVELS
    from BoneReconLib.spine_initialisation import initialise_spine, mean_landmarks

    case = CaseDataset(tiny_lumbar, None, keys=["landmarks_ij", "landmarks"])[0]
    views = [View.from_dict(v) for v in case["meta"]["geometry"]["views"]]
    names = case["meta"]["landmark_names"]
    detections = [[dict(vertebra=level, name=name, i=float(i), j=float(j), confidence=1.0)
                   for level, per in zip(LEVELS, case["landmarks_ij"][v].numpy())
                   for name, (i, j) in zip(names, per)] for v in range(2)]
    means = mean_landmarks(bundled_models, LEVELS)
    for level, model in bundled_models.items():  # the same as the batched landmark positions of the mean
        batched = model.landmark_positions(torch.as_tensor(model.mean)[None])[0].numpy()
        assert means[level] == pytest.approx(batched, abs=1e-9)
    result = initialise_spine(views, detections, means, LEVELS)
    assert result.messages == [] and result.triangulated.used.all()
    truth = case["landmarks"].numpy()  # (5, 19, 3)
    assert result.triangulated.points.reshape(5, 19, 3) == pytest.approx(truth, abs=1e-3)
    for n, level in enumerate(LEVELS):
        placed = result.poses[level].apply(means[level])
        # The mean is not this case's shape: the fit is within the shape variation, centred on the truth.
        assert np.sqrt(np.mean(np.sum((placed - truth[n]) ** 2, axis=1))) < 4.0, level
        assert np.linalg.norm(placed.mean(axis=0) - truth[n].mean(axis=0)) < 1.5, level
