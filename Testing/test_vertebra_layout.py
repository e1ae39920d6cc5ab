"""The layout cue of the found rule: a vertebra's landmarks fit their layout at any pose in reach,
other point sets do not."""

import numpy as np
import pytest

from BoneReconLib.biplanar_inference import FOUND_LAYOUT_MM
from BoneReconLib.geometry import biplanar_rig, rotation_about
from BoneReconLib.spine_alignment import LEVELS
from BoneReconLib.vertebra_layout import bundled_layouts, layout_residual, view_layouts


@pytest.fixture(scope="module")
def mean_landmarks(bundled_models):
    names = bundled_models["L1"].landmark_names
    points = np.stack([np.stack([lm.position(bundled_models[level].mean) for lm in bundled_models[level].landmarks])
                       for level in LEVELS])
    return names, points  # (5, 19, 3) mm, RAS


def _seen(points, view, rotation, turn_deg=0.0, scale=1.0, shift=(0.0, 0.0)):
    """Detector (column, row) mm of RAS points turned by ``rotation``, seen orthographically, then
    turned in the image plane, scaled and shifted."""
    moved = points @ rotation.T
    uv = np.stack([moved @ view.detector_u, moved @ view.detector_v], axis=-1)
    a = np.radians(turn_deg)
    in_plane = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return scale * uv @ in_plane.T + shift


@pytest.mark.parametrize("view_index", [0, 1])
def test_a_vertebra_fits_its_layout_at_any_pose_in_reach(mean_landmarks, view_index):
    names, points = mean_landmarks
    view = biplanar_rig()[view_index]
    layouts = bundled_layouts(view.name, tuple(LEVELS), tuple(names))
    assert layouts.shape[1:] == (5, 19, 2)
    # On a grid rotation (tilted 10 deg toward the source, turned -5 deg in depth), turned 30 deg in
    # the image, magnified 1.2 and shifted: an exact fit.
    column, row = view.detector_u, view.detector_v
    pose = rotation_about(column, np.radians(10.0)) @ rotation_about(row, np.radians(-5.0))
    seen = _seen(points, view, pose, turn_deg=30.0, scale=1.2, shift=(120.0, -40.0))
    assert layout_residual(seen, layouts) == pytest.approx(np.zeros(5), abs=1e-6)
    # Between grid points (12.5 deg, 2.5 deg off), and with landmarks 1 mm off at random: within the cue.
    pose = rotation_about(column, np.radians(12.5)) @ rotation_about(row, np.radians(7.5))
    seen = _seen(points, view, pose, turn_deg=-8.0, scale=0.9)
    residual = layout_residual(seen, layouts)
    assert np.all(residual < 1.5)
    noisy = seen + np.random.default_rng(0).normal(0, 1.0 / np.sqrt(2), seen.shape)
    assert np.all(layout_residual(noisy, layouts) < 2.5)
    # The cue is RMS in the points' own units: the same picture in other units scales it.
    assert layout_residual(2.5 * noisy, layouts) == pytest.approx(2.5 * layout_residual(noisy, layouts), rel=1e-9)


def test_other_point_sets_do_not_fit(mean_landmarks):
    names, points = mean_landmarks
    ap, lat = biplanar_rig()
    rng = np.random.default_rng(1)
    for view in (ap, lat):
        layouts = bundled_layouts(view.name, tuple(LEVELS), tuple(names))
        seen = _seen(points, view, np.eye(3))
        spread = seen - seen.mean(axis=1, keepdims=True)
        shuffled = np.stack([level[rng.permutation(19)] for level in seen])  # the right places, the wrong names
        scattered = seen.mean(axis=1, keepdims=True) + rng.normal(0, spread.std(), seen.shape)
        for wrong in (shuffled, scattered):
            assert np.all(layout_residual(wrong, layouts) > FOUND_LAYOUT_MM), view.name
    # A lateral vertebra seen in a mirror (facing the other way) is no lateral vertebra of this rig.
    seen = _seen(points, lat, np.eye(3))
    assert np.all(layout_residual(seen * [-1, 1], bundled_layouts("LAT", tuple(LEVELS), tuple(names)))
                  > FOUND_LAYOUT_MM)


def test_layouts_need_the_models_landmarks(mean_landmarks):
    from BoneReconLib.errors import InputError

    names, _ = mean_landmarks
    with pytest.raises(InputError, match="no landmark n0"):
        bundled_layouts("AP", tuple(LEVELS), ("n0",) + tuple(names[1:]))
    with pytest.raises(InputError, match="view"):
        bundled_layouts("PA", tuple(LEVELS), tuple(names))
    flat = view_layouts(np.zeros((1, 3, 3)), (1, 0, 0), (0, 0, -1))
    assert np.all(np.isfinite(layout_residual(np.zeros((1, 3, 2)), flat)))  # degenerate, not a crash
