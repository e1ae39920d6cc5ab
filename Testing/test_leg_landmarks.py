"""Leg-bone feature points, frames and measurements on analytic phantoms (known answers) and,
where the shared data is present, on the real femurs and tibias of five people."""

import numpy as np
import pytest

from BoneReconLib.errors import InputError
from BoneReconLib.leg_landmarks import centre_landmark, femur_landmarks, fit_sphere, tibia_landmarks
from BoneReconLib.leg_measurements import femur_measurements, hip_knee_ankle, tibia_measurements
from leg_phantoms import femur_head_centre, femur_phantom, mirrored, tibia_phantom, turned


@pytest.fixture(scope="module")
def femur():
    return femur_phantom()


@pytest.fixture(scope="module")
def tibia():
    return tibia_phantom()


def _positions(landmarks, points):
    return {lm.name: lm.position(points) for lm in landmarks}


def test_fit_sphere_and_centre_landmark_known_answers():
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(200, 3))
    points = np.array([3.0, -2.0, 7.0]) + 11.0 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    centre, radius = fit_sphere(points[:60])
    assert np.allclose(centre, [3.0, -2.0, 7.0], atol=1e-9) and radius == pytest.approx(11.0)
    # An interior landmark equals the centre on this surface and follows an affine motion exactly.
    landmark = centre_landmark("c", "femoral head", points, range(40), centre)
    assert np.allclose(landmark.position(points), centre)
    moved = points @ np.diag([1.1, 0.9, 1.0]).T + [5.0, 0.0, -1.0]
    assert np.allclose(landmark.position(moved), centre @ np.diag([1.1, 0.9, 1.0]).T + [5.0, 0.0, -1.0])
    with pytest.raises(InputError):
        fit_sphere(points[:3])


@pytest.mark.parametrize("variant", ["right", "left", "right turned 170 deg"])
def test_femur_side_frame_and_measurements(femur, variant):
    points, triangles = femur
    head = femur_head_centre()
    if variant == "left":
        points, triangles = mirrored(points, triangles)
        head = head * [-1.0, 1.0, 1.0]
    elif variant.startswith("right turned"):
        points = turned(points, 170.0)
        head = turned(head[None], 170.0)[0]
    landmarks, frame = femur_landmarks(points, triangles)
    assert frame.side == variant.split()[0]
    positions = _positions(landmarks, points)
    assert np.linalg.norm(positions["femoral head centre"] - head) < 0.5
    # Anterior is +y of the phantom (turned with it), superior along the head - knee line.
    anterior = turned(np.array([[0.0, 1.0, 0.0]]), 170.0)[0] if "turned" in variant else np.array([0.0, 1.0, 0.0])
    assert frame.axes[1] @ anterior > 0.95
    assert np.allclose(frame.axes @ frame.axes.T, np.eye(3), atol=1e-9) and np.linalg.det(frame.axes) > 0
    radius = fit_sphere(points[frame.features[0]["vertices"]])[1]
    measured = femur_measurements(positions, radius)
    # Phantom: neck from (-4, 0, 390) to the head centre (-44.8, 10.3, 420) -> 125.5 deg to the shaft,
    # 14.2 deg forward of the condylar line (13.5 in the plane square to the tilted mechanical axis);
    # knee centre between the epicondyles (0, -10, 22).
    assert measured["neck-shaft angle (deg)"] == pytest.approx(125.5, abs=2.5)
    assert measured["femoral anteversion (deg)"] == pytest.approx(13.5, abs=2.0)
    assert measured["femoral mechanical length (mm)"] == pytest.approx(np.linalg.norm(femur_head_centre() - [0, -10, 22]), abs=1.5)
    assert measured["femoral head diameter (mm)"] == pytest.approx(46.0, abs=1.0)
    assert frame.features[0]["kind"] == "sphere" and len(frame.features) == 3


@pytest.mark.parametrize("anteversion", [0.0, 25.0])
def test_femur_anteversion_follows_the_neck(anteversion):
    points, triangles = femur_phantom(anteversion_deg=anteversion)
    landmarks, _ = femur_landmarks(points, triangles)
    # The neck runs from (-4, 0) to the head centre in the transverse plane.
    head = femur_head_centre(anteversion_deg=anteversion)
    expected = np.degrees(np.arctan2(head[1], -(head[0] + 4.0)))
    measured = femur_measurements(_positions(landmarks, points))["femoral anteversion (deg)"]
    assert measured == pytest.approx(expected, abs=3.0)


@pytest.mark.parametrize("side", ["right", "left"])
def test_tibia_side_and_points(tibia, side):
    points, triangles = tibia if side == "right" else mirrored(*tibia)
    landmarks, frame = tibia_landmarks(points, triangles)
    assert frame.side == side
    positions = _positions(landmarks, points)
    medial = -1.0 if side == "right" else 1.0
    assert np.linalg.norm(positions["medial malleolus tip"] - [medial * 14.0, 2.0, -358.0]) < 2.0
    assert positions["medial plateau centre"][0] * medial > 15.0 > positions["lateral plateau centre"][0] * medial
    assert positions["tibial tuberosity"][1] > 25.0  # in front
    assert frame.axes[1] @ [0.0, 1.0, 0.0] > 0.99
    assert tibia_measurements(positions)["tibial mechanical length (mm)"] == pytest.approx(338.5, abs=3.0)
    ring = frame.features[0]
    assert ring["kind"] == "ring" and len(ring["vertices"]) >= 30
    rim = points[ring["vertices"]]
    assert np.all(np.abs(rim[:, 2] + 15.0) < 12.0)  # around the plateau's widest level


def test_a_short_piece_of_bone_is_refused():
    from leg_phantoms import _capsule, _surface

    points, triangles = _surface(lambda p: _capsule(p, (0, 0, 0), (0, 0, 60), 10.0), (-15, -15, -15), (15, 15, 75))
    with pytest.raises(InputError, match="long"):
        femur_landmarks(points, triangles)


def test_hip_knee_ankle_known_answers():
    femur = {"femoral head centre": np.array([-40.0, 0.0, 400.0]), "femoral knee centre": np.zeros(3)}
    tibia = {"tibial knee centre": np.zeros(3), "tibial ankle centre": np.array([0.0, 0.0, -360.0])}
    straight = {"femoral head centre": np.array([0.0, 0.0, 400.0]), "femoral knee centre": np.zeros(3)}
    assert hip_knee_ankle(straight, tibia)["hip-knee-ankle angle (deg)"] == pytest.approx(180.0)
    bend = np.degrees(np.arctan2(40.0, 400.0))
    right, anterior = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    # Right leg, hip medial (-x) of the knee above a straight tibia: the knee sits lateral of the
    # hip-ankle line -> varus, below 180.
    found = hip_knee_ankle(femur, tibia, anterior=anterior, right=right, side="right")
    assert found["hip-knee-ankle angle (deg)"] == pytest.approx(180.0 - bend)
    assert found["coronal hip-knee-ankle angle (deg)"] == pytest.approx(180.0 - bend)
    # The same geometry on a left leg puts the knee medial of the line: valgus.
    assert hip_knee_ankle(femur, tibia, anterior, right, "left")["coronal hip-knee-ankle angle (deg)"] == \
        pytest.approx(180.0 + bend)
    with pytest.raises(InputError):
        hip_knee_ankle({}, tibia)


def test_real_femurs_and_tibias_get_their_sides(shared_data):
    """Every leg_staple file (RAS- and LPS-like, left and right, tibias exported with the fibula)."""
    from BoneReconLib.mesh_io import prepare_surface, read_surface

    files = sorted((shared_data / "meshes" / "leg_staple").glob("*.stl"))
    assert len(files) == 14
    for path in files:
        points, triangles = prepare_surface(read_surface(path), smoothing_iterations=0, max_triangles=40000)
        rules = femur_landmarks if "femur" in path.name else tibia_landmarks
        landmarks, frame = rules(points, triangles)
        assert frame.side == ("right" if path.stem.endswith("_r") else "left"), path.name
        if "femur" in path.name:
            measured = femur_measurements(_positions(landmarks, points))
            assert 400 < measured["femoral length (mm)"] < 500, path.name
            assert 105 < measured["neck-shaft angle (deg)"] < 140, path.name
