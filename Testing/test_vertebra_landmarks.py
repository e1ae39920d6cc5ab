"""Vertebra landmarks on a phantom vertebra of boxes with known answers, in any orientation; real L1s."""

import json
import math

import numpy as np
import pytest
from BoneReconLib.geometry import rotation_about
from BoneReconLib.label_surface import label_surface
from BoneReconLib.vertebra_landmarks import LANDMARKS, vertebra_landmarks

VOXEL = 0.5
# (x range, y range, z range) in mm; +x right, +y anterior, +z superior.
BOXES = [
    ((-20, 20), (5, 35), (-12, 12)),  # body
    ((9, 15), (-12, 5), (-6, 8)), ((-15, -9), (-12, 5), (-6, 8)),  # pedicles
    ((-15, 15), (-20, -12), (-6, 8)),  # lamina (closes the canal x -9..9, y -12..5)
    ((15, 40), (-8, -2), (-2, 4)), ((-40, -15), (-8, -2), (-2, 4)),  # transverse processes
    ((-3, 3), (-45, -20), (-14, 2)),  # spinous process
    ((8, 14), (-14, -6), (8, 20)), ((-14, -8), (-14, -6), (8, 20)),  # superior articular processes
    ((6, 12), (-24, -16), (-20, -6)), ((-12, -6), (-24, -16), (-20, -6)),  # inferior articular processes
]
EXPECTED = {
    "body anterior superior": (0, 35, 12), "body anterior inferior": (0, 35, -12),
    "body posterior superior": (0, 5, 12), "body posterior inferior": (0, 5, -12),
    "body right superior": (20, 20, 12), "body right inferior": (20, 20, -12),
    "body left superior": (-20, 20, 12), "body left inferior": (-20, 20, -12),
    "superior endplate centre": (0, 20, 12), "inferior endplate centre": (0, 20, -12),
    "left pedicle centre": (-12, 0.75, 1), "right pedicle centre": (12, 0.75, 1),  # a quarter into the canal
    "spinous process tip": (None, -45, None),
    "left transverse process tip": (-40, None, None), "right transverse process tip": (40, None, None),
    "left superior articular process": (None, None, 20), "right superior articular process": (None, None, 20),
    "left inferior articular process": (None, None, -20), "right inferior articular process": (None, None, -20),
}


DISH = ((-14, 14), (9, 31), (9, 12))  # a concave superior endplate: a 3 mm deep dish inside the rim


def phantom(pose=np.eye(4), concave=False):
    """The box vertebra as a closed marching-cubes surface, moved by ``pose``."""
    lower = np.array([-42.0, -47.0, -22.0])
    shape = np.round((np.array([42.0, 37.0, 22.0]) - lower) / VOXEL).astype(int) + 1
    centres = [lower[a] + VOXEL * np.arange(shape[a]) for a in range(3)]
    labels = np.zeros(shape[::-1], np.int16)  # [z, y, x]
    for (x0, x1), (y0, y1), (z0, z1) in BOXES:
        inside = [(c >= lo) & (c < hi) for c, (lo, hi) in zip(centres, ((x0, x1), (y0, y1), (z0, z1)))]
        labels[np.ix_(inside[2], inside[1], inside[0])] = 1
    if concave:
        inside = [(c >= lo) & (c < hi) for c, (lo, hi) in zip(centres, DISH)]
        labels[np.ix_(inside[2], inside[1], inside[0])] = 0
    matrix = np.diag([VOXEL, VOXEL, VOXEL, 1.0])
    matrix[:3, 3] = lower
    points, triangles = label_surface(labels, pose @ matrix, 1)
    return points, triangles


@pytest.mark.parametrize("angles, concave", [((0.0, 0.0), False), ((15.0, 8.0), False), ((0.0, 0.0), True)],
                         ids=["upright", "tilted", "concave endplate"])
def test_phantom_landmarks_are_where_the_boxes_put_them(angles, concave):
    """The concave endplate's dish is a larger enclosed hole than the canal in the sections through it."""
    pose = np.eye(4)
    tilt, turn = (math.radians(a) for a in angles)
    pose[:3, :3] = rotation_about([0, 0, 1], turn) @ rotation_about([1, 0, 0], tilt)
    pose[:3, 3] = [12.0, -30.0, 250.0]
    points, triangles = phantom(pose, concave)
    landmarks, frame = vertebra_landmarks(points, triangles)
    expected = dict(EXPECTED, **({"superior endplate centre": (0, 20, 9)} if concave else {}))
    assert [lm.name for lm in landmarks] == list(LANDMARKS)
    assert all(lm.region == LANDMARKS[lm.name] for lm in landmarks)
    np.testing.assert_allclose(frame.axes, pose[:3, :3].T, atol=0.02)  # rows: right, anterior, superior
    inverse = np.linalg.inv(pose)
    for lm in landmarks:
        found = lm.position(points) @ inverse[:3, :3].T + inverse[:3, 3]  # back in the phantom's frame
        for axis, want in enumerate(expected[lm.name]):
            if want is not None:
                assert found[axis] == pytest.approx(want, abs=1.0), (lm.name, found)


def test_landmarks_of_real_l1_surfaces_match_their_manual_ones(shared_data):
    """VerSe L1 surfaces come with 10 manual landmarks (ids A-J, LPS); 7 of them are ours too."""
    from BoneReconLib.mesh_io import prepare_surface, read_surface

    folder = shared_data / "meshes" / "verse_L1_10subjects"
    pairs = {"A": "left transverse process tip", "D": "right transverse process tip", "G": "spinous process tip",
             "E": "left superior articular process", "F": "right superior articular process",
             "B": "left inferior articular process", "C": "right inferior articular process",
             "H": "body anterior superior"}
    errors = []
    for path in sorted(folder.glob("sub-*.ply")):
        points, triangles = prepare_surface(read_surface(path, lps=True))
        found = {lm.name: lm.position(points) for lm in vertebra_landmarks(points, triangles)[0]}
        manual = {m["id"]: np.array(m["coordinates"]) * [-1, -1, 1] for m in json.loads(path.with_suffix(".json")
                                                                                          .read_text())}
        errors += [np.linalg.norm(found[ours] - manual[theirs]) for theirs, ours in pairs.items()]
    # Rules and a human do not pick exactly the same point on a process tip: a few mm apart is agreement.
    assert np.median(errors) < 3.5 and np.percentile(errors, 75) < 6.5
