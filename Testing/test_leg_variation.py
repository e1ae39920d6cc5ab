"""The leg models' synthetic variation: each field changes its angle by its standard deviation, and nothing else much.

Measured on the bundled femur and tibia means with the same rules and measurements the product
uses (:mod:`.leg_landmarks`, :mod:`.leg_measurements`): +1 s.d. of the anteversion field must add
8 deg of anteversion, the neck-shaft field 5 deg of neck-shaft angle, the torsion field must turn
the medial malleolus forwards by 7 deg about the shaft, the slope field tilt the plateau back by 3 deg.
"""

import numpy as np
import pytest

from BoneReconLib.errors import InputError
from BoneReconLib.leg_reconstruction import measure
from BoneReconLib.leg_variation import LEG_SD_DEG, leg_variation
from BoneReconLib.shape_model import ShapeModel
from BoneReconLib.shape_model_library import LEG_MODELS, load_models
from BoneReconLib.shape_statistics import projection


@pytest.fixture(scope="module")
def models():
    return load_models(LEG_MODELS, levels=["femur", "tibia"])


def _field(variation, name):
    return variation.fields[variation.names.index(name)]


def _changes(model, field):
    before = measure("femur", model.landmarks, model.info["features"], model.mean)
    after = measure("femur", model.landmarks, model.info["features"], model.mean + field)
    return {name.split(" (")[0]: after[name] - before[name] for name in before}


def test_femur_fields_change_their_own_angle(models):
    femur = models["femur"]
    variation = leg_variation(femur)
    assert variation.names == list(LEG_SD_DEG["femur"])
    twist = _changes(femur, _field(variation, "femoral anteversion"))
    assert twist["femoral anteversion"] == pytest.approx(8.0, abs=0.8)
    assert abs(twist["neck-shaft angle"]) < 0.8 and abs(twist["femoral mechanical length"]) < 1.0
    bend = _changes(femur, _field(variation, "neck-shaft angle"))
    assert bend["neck-shaft angle"] == pytest.approx(5.0, abs=0.6)
    assert abs(bend["femoral anteversion"]) < 1.0
    # The knee does not move with the neck or the twist (the condyles lie below the distal shaft centre).
    knee = [lm for lm in femur.landmarks if lm.name == "femoral knee centre"][0]
    for name in variation.names:
        assert np.linalg.norm(knee.position(femur.mean + _field(variation, name)) - knee.position(femur.mean)) < 0.05


def _angle_about(vector, axis):
    """Direction of ``vector`` in the plane normal to ``axis`` (deg, about ``axis``)."""
    u = np.cross(axis, [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    return np.degrees(np.arctan2(np.dot(np.cross(u, vector), axis), np.dot(u, vector)))


def test_tibia_fields_turn_the_ankle_and_tilt_the_plateau(models):
    tibia = models["tibia"]
    variation = leg_variation(tibia)
    at = {lm.name: lm for lm in tibia.landmarks}
    ring = next(f for f in tibia.info["features"] if f["name"] == "tibial plateau")["vertices"]

    def ankle_turn(points):
        axis = at["tibial shaft proximal centre"].position(points) - at["tibial shaft distal centre"].position(points)
        axis /= np.linalg.norm(axis)
        vector = at["medial malleolus tip"].position(points) - at["tibial ankle centre"].position(points)
        return _angle_about(vector, axis)

    def slope(points):
        rim = points[ring] - points[ring].mean(axis=0)
        normal = np.linalg.svd(rim)[2][2]
        normal *= np.sign(normal[2])
        return np.degrees(np.arctan2(-normal[1], normal[2]))  # tilted back: the normal leans backwards

    torsion, tilt = _field(variation, "tibial torsion"), _field(variation, "posterior tibial slope")
    turned = abs(ankle_turn(tibia.mean + torsion) - ankle_turn(tibia.mean))
    assert turned == pytest.approx(7.0, abs=0.7)
    medial_tip = at["medial malleolus tip"]
    assert (medial_tip.position(tibia.mean + torsion) - medial_tip.position(tibia.mean))[1] > 0  # forwards
    assert slope(tibia.mean + tilt) - slope(tibia.mean) == pytest.approx(3.0, abs=0.4)
    assert abs(slope(tibia.mean + torsion) - slope(tibia.mean)) < 0.2
    assert abs(ankle_turn(tibia.mean + tilt) - ankle_turn(tibia.mean)) < 0.2


def test_augmented_model_spans_the_fields(models):
    """A model with the field added reconstructs its mean plus 2 s.d. of a twist; one without it cannot
    (a one-mode model of size only, independent of how the bundled model was built)."""
    femur = models["femur"]
    variation = leg_variation(femur, {"femoral anteversion": 8.0})
    size = femur.mean - femur.mean.mean(axis=0)
    size /= np.linalg.norm(size)
    bare = ShapeModel(femur.name, femur.mean, femur.triangles, size[None], np.array([25.0]),
                      list(femur.landmarks), dict(femur.info))
    target = femur.mean + 2.0 * variation.fields[0]
    augmented = variation.augment(bare)
    assert augmented.n_modes == 2
    assert np.abs(projection(augmented, target, augmented.n_modes) - target).max() < 0.5
    assert np.abs(projection(bare, target, bare.n_modes) - target).max() > 5.0


def test_bad_requests_are_refused(models):
    with pytest.raises(InputError, match="Unknown femur variation"):
        leg_variation(models["femur"], {"tibial torsion": 7.0})
    vertebra = load_models(levels=["L3"])["L3"]
    with pytest.raises(InputError, match="femur or tibia"):
        leg_variation(vertebra)
