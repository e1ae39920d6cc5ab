"""Synthetic shape variation: each regional field changes its own measure by one standard deviation
and leaves the rest; augmenting adds exactly the fields' covariance; transferred modes are the donor's."""

import math

import numpy as np
import pytest
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import rotation_about
from BoneReconLib.shape_correspondence import flipped
from BoneReconLib.shape_model import ShapeModel
from BoneReconLib.shape_model_library import load_models
from BoneReconLib.synthetic_variation import (REGIONAL_SD, SyntheticVariation, Transfer, pooled_weights,
                                              regional_variation)


@pytest.fixture(scope="module")
def l3():
    """The bundled L3 model: in its anatomical frame (x right, y anterior, z superior), with landmarks."""
    return load_models()["L3"]


def at(model, points):
    return {lm.name: lm.position(points) for lm in model.landmarks}


def sagittal_angle(a, b):
    """Angle (degrees) of the line a -> b in the sagittal (y, z) plane."""
    return math.degrees(math.atan2(b[2] - a[2], b[1] - a[1]))


def test_each_regional_field_changes_its_own_measure(l3):
    variation = regional_variation(l3)
    assert variation.names == list(REGIONAL_SD)
    before = at(l3, l3.mean)
    moved = {name: at(l3, l3.mean + field) for name, field in zip(variation.names, variation.fields)}

    def change(name, measure):
        return measure(moved[name]) - measure(before)

    height = lambda p: p["superior endplate centre"][2] - p["inferior endplate centre"][2]  # noqa: E731
    width = lambda p: p["body right superior"][0] - p["body left superior"][0]  # noqa: E731
    depth = lambda p: p["body anterior superior"][1] - p["body posterior superior"][1]  # noqa: E731
    assert change("body height", height) == pytest.approx(0.05 * height(before), rel=0.05)
    assert change("body width", width) == pytest.approx(0.05 * width(before), rel=0.05)
    assert change("body depth", depth) == pytest.approx(0.05 * depth(before), rel=0.1)

    def wedge(p):  # angle between the superior and inferior endplates in the mid-sagittal plane
        return (sagittal_angle(p["body posterior superior"], p["body anterior superior"])
                - sagittal_angle(p["body posterior inferior"], p["body anterior inferior"]))
    assert change("endplate wedging", wedge) == pytest.approx(2.0, abs=0.3)

    tip = "spinous process tip"
    assert change("pedicle length", lambda p: p[tip][1]) == pytest.approx(-1.5, abs=0.01)
    assert change("right transverse process length", lambda p: p["right transverse process tip"][0]) == \
        pytest.approx(3.0, abs=0.05)
    assert change("left transverse process length", lambda p: p["left transverse process tip"][0]) == \
        pytest.approx(-3.0, abs=0.05)
    assert np.linalg.norm(moved["spinous process length"][tip] - before[tip]) == pytest.approx(3.0, abs=0.1)
    # Fields stay in their regions: the body's corners do not move with the posterior elements and vice versa.
    for name in ("pedicle length", "left transverse process length", "right transverse process length",
                 "spinous process length", "spinous process inclination"):
        assert np.linalg.norm(moved[name]["body anterior superior"] - before["body anterior superior"]) < 0.01
    for name in ("body height", "body width", "body depth", "endplate wedging", "left transverse process length"):
        assert np.linalg.norm(moved[name][tip] - before[tip]) < 0.05
        assert np.linalg.norm(moved[name]["right transverse process tip"]
                              - before["right transverse process tip"]) < 0.05
    # Smooth enough that no triangle turns over at three standard deviations either way.
    for field in variation.fields:
        for sign in (-3.0, 3.0):
            assert flipped(l3.mean, l3.mean + sign * field, l3.triangles).sum() == 0


def test_spinous_inclination_turns_the_process(l3):
    variation = regional_variation(l3, {"spinous process inclination": ("degrees", 5.0)})
    assert variation.names == ["spinous process inclination"]
    before = at(l3, l3.mean)["spinous process tip"]
    after = at(l3, l3.mean + variation.fields[0])["spinous process tip"]
    assert abs(after[0] - before[0]) < 1e-9  # in the sagittal plane
    articular_y = np.mean([p[1] for n, p in at(l3, l3.mean).items() if "articular" in n])
    arm = np.hypot(before[1] - articular_y, 0.0)
    assert np.linalg.norm(after - before) == pytest.approx(arm * math.radians(5.0), rel=0.05)
    with pytest.raises(InputError, match="Unknown"):
        regional_variation(l3, {"tail length": ("mm", 1.0)})


def test_augment_adds_exactly_the_fields_covariance(l3):
    rng = np.random.default_rng(0)
    fields = rng.standard_normal((4, *l3.mean.shape)) * 0.3
    turn = rotation_about([0.2, 1.0, 0.3], 0.4)
    # The variation was made on a turned copy of the mean: augment turns its fields back.
    variation = SyntheticVariation(l3.mean @ turn.T + 7.0, ["a", "b", "c", "d"], fields @ turn.T, {"test": 1})
    augmented = variation.augment(l3, real_weight=0.25)
    assert augmented.info["synthetic_variation"]["real_covariance_weight"] == 0.25

    def covariance_along(model: ShapeModel, v):
        projections = model.modes.reshape(model.n_modes, -1) @ v
        return float((model.variances * projections ** 2).sum())

    for _ in range(3):
        v = rng.standard_normal(l3.mean.size)
        expected = 0.25 * covariance_along(l3, v) + float(((fields.reshape(4, -1) @ v) ** 2).sum())
        assert covariance_along(augmented, v) == pytest.approx(expected, rel=1e-9)
    assert np.allclose(augmented.mean, l3.mean) and augmented.landmark_names == l3.landmark_names
    with pytest.raises(InputError, match="vertices"):
        SyntheticVariation(l3.mean[:10], ["a"], fields[:1, :10], {}).augment(l3)


def test_transferred_modes_are_the_donors_modes():
    donor = load_models()["L1"]
    # The target: the donor's own mean, turned a little and 10 % larger; modes must come back turned and scaled.
    turn = rotation_about([1.0, 0.0, 0.2], 0.1)
    target = ShapeModel("T", 1.1 * donor.mean @ turn.T, donor.triangles, donor.modes[:1], donor.variances[:1])
    variation = Transfer.between(donor, target).variation(donor, target, weight=0.5)
    expected = 1.1 * np.sqrt(0.5 * donor.variances)[:, None, None] * donor.modes @ turn.T
    assert variation.fields.shape == expected.shape
    for got, want in zip(variation.fields, expected):
        assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.97
        assert np.linalg.norm(got) == pytest.approx(np.linalg.norm(want), rel=0.05)
    assert pooled_weights(5, 16) == pytest.approx((4 / 19, 15 / 19))
