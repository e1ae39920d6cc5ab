"""Joint posing: forward kinematics on a known chain, the palmar side of D-shaped phalanges, finger
and wrist presets on phantoms (and the real OpenHands fingers), posed single-view cases."""

import numpy as np
import pytest
from meshes import ellipsoid

from BoneReconLib.errors import InputError
from BoneReconLib.label_surface import label_surface
from BoneReconLib.limb_posing import (
    Joint,
    finger_from_file,
    finger_joints,
    palmar_direction,
    pose_bones,
    sample_pose,
    wrist_joints,
)
from BoneReconLib.limb_radiograph import Bone


def d_shaped(name, z0, z1, radius=4.0, flat=(0.0, -1.0), voxel=0.25):
    """A closed phalanx-like rod along z whose cross-section is a disc cut flat on the ``flat`` side
    (at 0.4 r from the centre), from marching cubes of a voxel mask."""
    margin = 2.0
    xs = np.arange(-radius - margin, radius + margin, voxel)
    zs = np.arange(z0 - margin, z1 + margin, voxel)
    z, y, x = np.meshgrid(zs, xs, xs, indexing="ij")
    inside = (x ** 2 + y ** 2 <= radius ** 2) & (x * flat[0] + y * flat[1] <= 0.4 * radius) & (z >= z0) & (z <= z1)
    matrix = np.diag([voxel, voxel, voxel, 1.0])
    matrix[:3, 3] = (xs[0], xs[0], zs[0])
    points, triangles = label_surface(inside.astype(np.uint8), matrix, 1)
    return Bone(name, points, triangles)


def test_forward_kinematics_of_a_two_joint_chain():
    bones = [Bone(n, *ellipsoid(radii=(2, 2, 4), centre=(0, 0, z))) for n, z in (("a", 0), ("b", 10), ("c", 20))]
    joints = [Joint("first", (0, 0, 5), (1, 0, 0), ("b", "c"), (-90, 90)),
              Joint("second", (0, 0, 15), (1, 0, 0), ("c",), (-90, 90))]
    posed = {b.name: b for b in pose_bones(bones, joints, {"first": 90.0, "second": 90.0})}
    assert posed["a"].points == pytest.approx(bones[0].points)
    # About +x by 90 deg, +z turns to -y: b's centre (0,0,10) -> (0,-5,5); c's centre goes first to
    # (0,-5,15) about the second joint, then about the first to (0,-10,0).
    assert posed["b"].points.mean(axis=0) == pytest.approx([0, -5, 5], abs=1e-9)
    assert posed["c"].points.mean(axis=0) == pytest.approx([0, -10, 0], abs=1e-9)
    with pytest.raises(InputError, match="outside its range"):
        pose_bones(bones, joints, {"first": 120.0})
    with pytest.raises(InputError, match="not there"):
        pose_bones(bones[:2], joints, {})
    angles = [sample_pose(joints, np.random.default_rng(k))["first"] for k in range(200)]
    assert min(angles) >= -90 and max(angles) <= 90 and np.std(angles) > 40


@pytest.mark.parametrize("flat", [(0.0, -1.0), (1.0, 0.0), (-0.6, 0.8)])
def test_palmar_side_is_the_flat_side_of_the_shaft(flat):
    bone = d_shaped("p", 0.0, 30.0, flat=flat)
    direction = palmar_direction(bone, np.array([0.0, 0.0, 1.0]))
    assert direction == pytest.approx([flat[0], flat[1], 0.0], abs=0.1)


def test_finger_preset_flexes_toward_the_palm():
    finger = [d_shaped("proximal", 0, 30), d_shaped("middle", 32, 50, radius=3.5),
              d_shaped("distal", 52, 64, radius=3.0)]
    articulation = finger_joints(finger)
    pip, dip = articulation.joints
    assert np.asarray(articulation.front) == pytest.approx([0, 1, 0], abs=0.1)  # dorsal = away from the flat side
    assert pip.centre[2] == pytest.approx(30 - 2.8, abs=0.3)  # the head's end less half its depth (5.6 mm)
    assert dip.moves == ("distal",) and pip.moves == ("middle", "distal")
    tip = finger[2].points.mean(axis=0)
    flexed = pose_bones(finger, articulation.joints, {"PIP": 90.0, "DIP": 0.0})[2].points.mean(axis=0)
    assert flexed[1] < tip[1] - 15.0  # toward the palm (-y)
    assert flexed[2] < tip[2] - 20.0
    with pytest.raises(InputError, match="proximal first"):
        finger_joints(finger[::-1])


def test_wrist_preset_deviates_the_carpus_toward_the_ulna_and_keeps_the_forearm():
    bones = [Bone("radius", *ellipsoid(radii=(6, 6, 30), centre=(10, 0, -35))),
             Bone("ulna", *ellipsoid(radii=(4, 4, 30), centre=(-10, 0, -35))),
             Bone("capitate", *ellipsoid(radii=(5, 6, 10), centre=(0, 0, 12))),
             Bone("lunate", *ellipsoid(radii=(5, 5, 5), centre=(-3, 0, 0)))]
    articulation = wrist_joints(bones)
    posed = {b.name: b for b in pose_bones(bones, articulation.joints, {"wrist deviation": 20.0})}
    assert posed["radius"].points == pytest.approx(bones[0].points)
    shift = posed["capitate"].points.mean(axis=0) - bones[2].points.mean(axis=0)
    assert shift[0] < -1.0  # toward the ulna (-x here)
    assert abs(shift[1]) < 1e-6  # deviation stays in the radius-ulna plane
    flexed = {b.name: b for b in pose_bones(bones, articulation.joints, {"wrist flexion": 30.0})}
    assert abs(flexed["capitate"].points.mean(axis=0)[1]) > 2.0  # flexion leaves that plane
    assert abs(np.asarray(articulation.front)[1]) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(InputError, match="radius"):
        wrist_joints(bones[1:])


def test_wrist_preset_finds_the_long_axis_of_short_distal_segments():
    """A wrist scan keeps only the distal ends of radius and ulna, wider across the wrist than long:
    their principal axis runs radius-ulna. The long axis (toward the capitate), the front and the
    view the dataset draws must still be those of a PA wrist radiograph."""
    import math

    from BoneReconLib.limb_dataset import sample_view

    bones = [Bone("radius", *ellipsoid(radii=(14, 13, 12), centre=(14, 0, 0))),
             Bone("ulna", *ellipsoid(radii=(9, 9, 10), centre=(-14, 0, 0))),
             Bone("capitate", *ellipsoid(radii=(8, 7, 11), centre=(2, 0, 30))),
             Bone("lunate", *ellipsoid(radii=(8, 7, 7), centre=(-4, 0, 18)))]
    articulation = wrist_joints(bones)
    assert np.asarray(articulation.axis) == pytest.approx([0.0, 0.0, 1.0], abs=0.05)
    assert abs(np.asarray(articulation.front)[1]) == pytest.approx(1.0, abs=0.01)  # dorsal-palmar
    assert "axis" in articulation.to_dict()
    flexion = next(j for j in articulation.joints if j.name == "wrist flexion")
    assert abs(np.asarray(flexion.axis)[0]) == pytest.approx(1.0, abs=0.01)  # about the radius-ulna axis
    view = sample_view(bones, np.random.default_rng(0), rotation_deg=0.0, tilt_deg=0.0,
                       front=articulation.front, axis=articulation.axis)
    assert abs(view.normal[1]) == pytest.approx(1.0, abs=1e-6)  # the beam runs dorsal-palmar
    assert view.detector_v == pytest.approx([0.0, 0.0, -1.0], abs=1e-6)  # the hand up the image
    assert math.isclose(abs(view.detector_u[0]), 1.0, abs_tol=1e-6)  # radius and ulna side by side


def test_wrist_side_puts_the_source_on_the_back_of_either_hand():
    """Right hand in anatomical position (RAS: radius lateral = +x, hand down = -z, palm anterior):
    dorsal = posterior (-y). Its mirror image is a left hand, whose dorsal side is also -y."""
    right = [Bone("radius", *ellipsoid(radii=(14, 13, 12), centre=(14, 0, 0))),
             Bone("ulna", *ellipsoid(radii=(9, 9, 10), centre=(-14, 0, 0))),
             Bone("capitate", *ellipsoid(radii=(8, 7, 11), centre=(2, 0, -30)))]
    left = [Bone(b.name, b.points * [-1.0, 1.0, 1.0], b.triangles[:, ::-1]) for b in right]
    assert np.asarray(wrist_joints(right, side="right").front) == pytest.approx([0, -1, 0], abs=0.01)
    assert np.asarray(wrist_joints(left, side="left").front) == pytest.approx([0, -1, 0], abs=0.01)
    assert np.asarray(wrist_joints(left).front) == pytest.approx([0, 1, 0], abs=0.01)  # unresolved: as if right
    with pytest.raises(InputError, match="right' or 'left"):
        wrist_joints(right, side="up")


def test_real_fingers_all_flex_toward_the_same_side(shared_data):
    fingers = sorted((shared_data / "meshes" / "openhands_fingers").glob("*.stl"))
    assert len(fingers) == 12
    fronts = []
    for path in fingers:
        bones = finger_from_file(path)
        assert [b.name for b in bones] == ["proximal_phalanx", "middle_phalanx", "distal_phalanx"]
        lengths = [np.ptp(b.points, axis=0).max() for b in bones]
        assert lengths[0] > lengths[1] > lengths[2]
        fronts.append(finger_joints(bones).front)
    # Same model frame for all fingers, so the same dorsal side; fingers are not mirrored.
    assert np.min(np.asarray(fronts) @ np.asarray(fronts[0])) > 0.9


def test_posed_subjects_get_a_new_pose_and_a_dorsal_view_per_case(tmp_path):
    from BoneReconLib.dataset_store import CaseDataset
    from BoneReconLib.geometry import View
    from BoneReconLib.limb_dataset import generate_limb_dataset

    finger = [d_shaped("proximal", 0, 30), d_shaped("middle", 32, 50, radius=3.5),
              d_shaped("distal", 52, 64, radius=3.0)]
    articulation = finger_joints(finger)
    manifest = generate_limb_dataset(tmp_path / "f", {"f": finger}, 3, size=(32, 32), envelope_mm=3.0,
                                     articulations={"f": articulation}, rotation_deg=10.0)
    assert manifest["description"]["articulations"]["f"]["joints"][0]["name"] == "PIP"
    poses = []
    for item in CaseDataset(tmp_path / "f", split=None):
        pose = item["meta"]["pose_deg"]
        assert -5.0 <= pose["PIP"] <= 90.0 and -5.0 <= pose["DIP"] <= 70.0
        poses.append(pose["PIP"])
        view = View.from_dict(item["meta"]["geometry"]["views"][0])
        # PA: the source on the dorsal side, beam toward the palm, within the 10 + 5 deg drawn.
        assert view.normal @ np.asarray(articulation.front) < -np.cos(np.radians(16.0))
        assert bool(item["mask"].any())
    assert len(set(poses)) == 3
    with pytest.raises(InputError, match="unknown subjects"):
        generate_limb_dataset(tmp_path / "g", {"f": finger}, 1, articulations={"x": articulation})


def test_dataset_limb_command_poses_fingers_and_refuses_incomplete_joints(tmp_path):
    from test_cli import run_cli

    from BoneReconLib.dataset_store import read_manifest
    from BoneReconLib.mesh_io import write_surface

    finger = [d_shaped("a", 0, 30), d_shaped("b", 32, 50, radius=3.5), d_shaped("c", 52, 64, radius=3.0)]
    offsets = np.cumsum([0] + [len(b.points) for b in finger[:-1]])
    triangles = np.concatenate([b.triangles + o for b, o in zip(finger, offsets)])
    one_file = write_surface(np.concatenate([b.points for b in finger]), triangles, tmp_path / "finger.stl")
    out = tmp_path / "fingers"
    result = run_cli("-q", "dataset", "limb", "--out", out, "--subject", "f1", one_file, "--pose", "finger",
                     "--cases", "2", "--size", "32", "--envelope-mm", "3", "--rotation-deg", "80")
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(out)
    assert manifest["description"]["subjects"]["f1"] == ["proximal_phalanx", "middle_phalanx", "distal_phalanx"]
    assert manifest["description"]["rotation_deg"] == 80.0
    two = [write_surface(b.points, b.triangles, tmp_path / f"{b.name}.stl") for b in finger[:2]]
    result = run_cli("dataset", "limb", "--out", tmp_path / "bad", "--subject", "f", *two, "--pose", "finger")
    assert result.returncode == 2 and "needs one file of three phalanges" in result.stderr
    result = run_cli("dataset", "limb", "--out", tmp_path / "bad", "--subject", "w", *two, "--pose", "wrist")
    assert result.returncode == 2 and "A wrist needs bones named" in result.stderr
    assert not (tmp_path / "bad").exists()
