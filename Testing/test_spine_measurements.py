"""Spine measurements on stacks of box vertebrae with known disc wedges, slips and rotations."""

import math

import numpy as np
import pytest

from BoneReconLib.geometry import rotation_about
from BoneReconLib.spine_alignment import disc_transform
from BoneReconLib.spine_measurements import measure_spine, measurement_rows, meyerding_grade

LEVELS = ["L1", "L2", "L3", "L4", "L5"]
W, D, H = 44.0, 32.0, 26.0  # body width, depth, height (mm)


def _box(centre_frame):
    """Named body landmarks of a box vertebra whose centre frame (x right, y anterior, z up) is given."""
    local = {"body anterior superior": (0, D / 2, H / 2), "body anterior inferior": (0, D / 2, -H / 2),
             "body posterior superior": (0, -D / 2, H / 2), "body posterior inferior": (0, -D / 2, -H / 2),
             "body left superior": (-W / 2, 0, H / 2), "body left inferior": (-W / 2, 0, -H / 2),
             "body right superior": (W / 2, 0, H / 2), "body right inferior": (W / 2, 0, -H / 2),
             "superior endplate centre": (0, 0, H / 2), "inferior endplate centre": (0, 0, -H / 2)}
    return {name: centre_frame[:3, :3] @ np.asarray(p, float) + centre_frame[:3, 3] for name, p in local.items()}


def _stack(discs, turns=None, base=np.eye(4)):
    """L5 at ``base``; each disc (lordosis, coronal, height, slip) from L4-L5 up; ``turns``: axial turn per level."""
    half = np.eye(4)
    half[2, 3] = H / 2
    frames = {"L5": base}
    for (upper, lower), (lordosis, coronal, height, slip) in zip(zip(LEVELS[-2::-1], LEVELS[::-1]), discs):
        superior = frames[lower] @ half
        frames[upper] = superior @ disc_transform(lordosis, coronal, 0.0, height, slip) @ half
    out = {}
    for level, frame in frames.items():
        turn = np.eye(4)
        turn[:3, :3] = rotation_about((0, 0, 1), math.radians((turns or {}).get(level, 0.0)))
        out[level] = _box(frame @ turn)
    return out


def test_sagittal_wedges_and_slip_are_measured_back():
    discs = [(10.0, 0.0, 9.0, 6.0), (7.0, 0.0, 10.0, 0.0), (5.0, 0.0, 9.5, 0.0), (3.0, 0.0, 8.0, -2.0)]  # L4-L5 up
    tilt = np.eye(4)
    tilt[:3, :3] = rotation_about((1, 0, 0), 0.3) @ rotation_about((0, 0, 1), 0.4)  # the patient stands turned
    tilt[:3, 3] = (20, -30, 50)
    measured = measure_spine(_stack(discs, base=tilt))
    assert measured["lordosis_deg"] == pytest.approx(25.0, abs=1e-6)
    for (lordosis, _, height, slip), name in zip(discs, ["L4-L5", "L3-L4", "L2-L3", "L1-L2"]):
        segment = measured["segments"][name]
        assert segment["disc_angle_deg"] == pytest.approx(lordosis, abs=1e-6)
        assert segment["segmental_angle_deg"] == pytest.approx(lordosis, abs=1e-6)  # box bodies add nothing
        if slip == 0:  # turning about the disc's centre opens the front and closes the back
            t = math.radians(lordosis)
            for key, y in (("disc_height_anterior_mm", D / 2), ("disc_height_posterior_mm", -D / 2)):
                gap = np.hypot(y * math.cos(t) - y - height / 2 * math.sin(t),
                               height / 2 * (1 + math.cos(t)) + y * math.sin(t))
                assert segment[key] == pytest.approx(gap, abs=1e-6)
    l4 = measured["segments"]["L4-L5"]
    assert l4["slip_mm"] == pytest.approx(6.0, abs=0.6)  # slip along the endplate, read at the posterior corner
    assert l4["slip_percent"] == pytest.approx(100 * l4["slip_mm"] / D) and l4["meyerding"] == "I"
    assert measured["segments"]["L1-L2"]["slip_mm"] < -1.5 and measured["segments"]["L1-L2"]["meyerding"] == "0"
    assert measured["cobb_deg"] == pytest.approx(0.0, abs=1e-6)
    for values in measured["vertebrae"].values():
        assert values["body_width_mm"] == pytest.approx(W) and values["body_depth_mm"] == pytest.approx(D)
        assert values["body_height_anterior_mm"] == pytest.approx(H)
        assert values["axial_rotation_deg"] == pytest.approx(0.0, abs=1e-6)


def test_coronal_curve_and_axial_rotation():
    discs = [(0.0, 6.0, 9.0, 0.0), (0.0, 8.0, 9.0, 0.0), (0.0, -5.0, 9.0, 0.0), (0.0, 4.0, 9.0, 0.0)]
    measured = measure_spine(_stack(discs))
    # L4-L5, L3-L4 bend one way (14 deg together), L2-L3 back, L1-L2 again: the largest angle is 14 deg.
    assert measured["cobb_deg"] == pytest.approx(14.0, abs=1e-6)
    assert measured["cobb_levels"] == ["L3", "L5"]
    assert measured["lordosis_deg"] == pytest.approx(0.0, abs=1e-6)
    straight = measure_spine(_stack([(0.0, 0.0, 9.0, 0.0)] * 4, turns={"L3": 12.0, "L2": -12.0}))
    assert straight["vertebrae"]["L3"]["axial_rotation_deg"] == pytest.approx(12.0, abs=1e-6)
    assert straight["vertebrae"]["L2"]["axial_rotation_deg"] == pytest.approx(-12.0, abs=1e-6)
    assert straight["vertebrae"]["L1"]["axial_rotation_deg"] == pytest.approx(0.0, abs=1e-6)
    rows = measurement_rows(straight)
    assert rows[0] == dict(measure="lordosis", where="L1-L5", value=0.0, unit="deg")
    assert rows[1]["measure"] == "coronal Cobb angle" and rows[1]["value"] == 0.0
    assert dict(measure="axial rotation", where="L3", value=12.0, unit="deg") in rows
    assert dict(measure="meyerding", where="L4-L5", value="0", unit="") in rows


def test_meyerding_grades():
    assert [meyerding_grade(p) for p in (-3, 0, 10, 25, 30, 60, 80, 120)] == ["0", "0", "I", "I", "II", "III", "IV",
                                                                              "V"]


def test_bundled_shapes_placed_with_known_disc_wedges(bundled_models):
    from BoneReconLib.spine_alignment import SEGMENTS, SpineAlignment, landmarks_of, place_spine

    wedges = dict(zip(SEGMENTS, (4.0, 6.0, 8.0, 11.0)))
    alignment = SpineAlignment(lordosis_deg=wedges, coronal_deg={s: 0.0 for s in SEGMENTS},
                               disc_height_mm={s: 9.0 for s in SEGMENTS}, slip_mm={s: 0.0 for s in SEGMENTS},
                               axial_deg={s: 0.0 for s in SEGMENTS})
    placed = place_spine(bundled_models, {level: m.mean for level, m in bundled_models.items()}, alignment)
    landmarks = {level: landmarks_of(bundled_models[level], placed.world(level)) for level in LEVELS}
    measured = measure_spine(landmarks)
    for segment, wedge in placed.alignment.lordosis_deg.items():
        assert measured["segments"][segment]["disc_angle_deg"] == pytest.approx(wedge, abs=1e-3)
    assert measured["cobb_deg"] < 5.0  # the mean shapes' own asymmetry only
    assert abs(measured["segments"]["L4-L5"]["slip_mm"]) < 3.0
