"""Boxes and ellipses carried as their extreme points (leg_outlines): known ellipses come back from
their four extremes, a sphere's outline is found where it projects, and a mirrored image swaps
each outline's left and right points."""

import numpy as np
import pytest

from BoneReconLib.geometry import ap_view
from BoneReconLib.leg_outlines import (OUTLINES, box_from_extremes, ellipse_from_extremes, flipped_order,
                                       outline_names, outline_pixels)
from BoneReconLib.shape_model_library import LEG_MODELS, load_models


def _extremes(a, b, angle_deg, centre=(100.0, 50.0)):
    t = np.linspace(0.0, 2 * np.pi, 40000)
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    p = np.stack([a * np.cos(t), b * np.sin(t)], axis=1) @ np.array([[c, s], [-s, c]]) + centre
    return np.array([p[np.argmin(p[:, 0])], p[np.argmax(p[:, 0])], p[np.argmin(p[:, 1])], p[np.argmax(p[:, 1])]])


@pytest.mark.parametrize("a, b, angle", [(30.0, 10.0, 25.0), (15.0, 5.0, -60.0), (12.0, 8.0, 80.0)])
def test_an_ellipse_comes_back_from_its_four_extremes(a, b, angle):
    centre, axes, found = ellipse_from_extremes(_extremes(a, b, angle))
    assert np.allclose(centre, [100.0, 50.0], atol=0.01) and np.allclose(axes, [a, b], atol=0.02)
    assert found == pytest.approx(angle, abs=0.1)
    box = box_from_extremes(_extremes(a, b, angle))
    assert box[0] < 100.0 - b and box[2] > 100.0 + b and box[2] - box[0] == pytest.approx(2 * (box[2] - 100.0))


def test_outline_pixels_of_a_leg():
    """The femoral head's outline in an AP view: a circle of the head's radius (magnified) around
    the projected head centre; each box holds its bone's projected feature points."""
    models = load_models(LEG_MODELS, levels=["femur", "tibia"])
    legs = {"femur": models["femur"].mean, "tibia": models["tibia"].mean + [0.0, 0.0, -22.0]}
    view = ap_view(source_to_detector=1200.0, source_to_isocenter=1000.0, size=(200, 500), pixel_spacing=(2.0, 2.0),
                   isocenter=(0.0, 0.0, 0.0))
    found = outline_pixels(models, legs, view).reshape(len(OUTLINES), 4, 2)
    names = [name for _, name in OUTLINES]
    centre, axes, _ = ellipse_from_extremes(found[names.index("femoral head")])
    head = models["femur"].landmarks[models["femur"].landmark_names.index("femoral head centre")]
    expected = view.project(head.position(legs["femur"])[None])[0][0]
    assert np.linalg.norm(centre - expected) < 1.5
    # A sphere off the beam's axis projects to an ellipse stretched by 1 / cos(its angle off the axis).
    ray = head.position(legs["femur"]) - view.source
    off_axis = np.arccos(abs(ray @ view.normal) / np.linalg.norm(ray))
    assert axes[0] / axes[1] == pytest.approx(1.0 / np.cos(off_axis), abs=0.02)
    assert 40.0 < 2.0 * axes[1] * 2.0 / 1.2 < 55.0  # a head of 40-55 mm, magnified ~1.2
    for bone in ("femur", "tibia"):
        box = box_from_extremes(found[names.index(f"{bone} box")])
        marks = view.project(np.array([lm.position(legs[bone]) for lm in models[bone].landmarks]))[0]
        assert np.all((marks[:, 0] >= box[0] - 0.5) & (marks[:, 0] <= box[2] + 0.5))
        assert np.all((marks[:, 1] >= box[1] - 0.5) & (marks[:, 1] <= box[3] + 0.5))


def test_mirrored_order_swaps_left_and_right_only():
    names = ["femur: femoral head centre", "femur: femoral head top"] + outline_names()
    order = flipped_order(names)
    assert list(order[:2]) == [0, 1] and sorted(order) == list(range(len(names)))
    assert not set(names[:2]) & set(outline_names())  # no outline point shares a feature point's name
    for k, name in enumerate(names[2:], start=2):
        partner = names[order[k]]
        if name.endswith(" left"):
            assert partner == name[:-5] + " right"
        elif name.endswith(" top"):
            assert partner == name


def test_box_iou_of_known_boxes():
    """Same box 1; half overlapping 1/3; apart or empty 0."""
    from BoneReconLib.leg_outlines import box_iou

    assert box_iou([0, 0, 4, 2], [0, 0, 4, 2]) == 1.0
    assert abs(box_iou([0, 0, 4, 2], [2, 0, 6, 2]) - 1.0 / 3.0) < 1e-12
    assert box_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0 and box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0
