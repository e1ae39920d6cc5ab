"""The shape-model builder end to end on a family of box vertebrae whose sizes vary."""

import numpy as np
import pytest
from BoneReconLib.errors import InputError
from BoneReconLib.label_surface import label_surface
from BoneReconLib.mesh_io import polydata_from_arrays, prepare_surface
from BoneReconLib.ssm_builder import Donor, Surface, build_level_model
from test_vertebra_landmarks import BOXES

VOXEL = 1.0


def box_vertebra(body_scale=1.0, process_scale=1.0, shift=(0.0, 0.0, 0.0)):
    """The test phantom with its body and its processes' lengths scaled (1 mm voxels), as a smoothed surface."""
    boxes = [list(map(list, box)) for box in BOXES]
    boxes[0] = [[c * body_scale for c in boxes[0][0]], [5, 5 + 30 * body_scale], [c * body_scale for c in boxes[0][2]]]
    boxes[4][0] = [15, 15 + 25 * process_scale]  # transverse processes: longer or shorter
    boxes[5][0] = [-15 - 25 * process_scale, -15]
    boxes[6][1] = [-20 - 25 * process_scale, -20]  # spinous process length
    lower = np.array([-48.0, -56.0, -26.0])
    shape = np.round((np.array([48.0, 44.0, 26.0]) - lower) / VOXEL).astype(int) + 1
    centres = [lower[a] + VOXEL * np.arange(shape[a]) for a in range(3)]
    labels = np.zeros(shape[::-1], np.int16)
    for (x0, x1), (y0, y1), (z0, z1) in boxes:
        inside = [(c >= lo) & (c < hi) for c, (lo, hi) in zip(centres, ((x0, x1), (y0, y1), (z0, z1)))]
        labels[np.ix_(inside[2], inside[1], inside[0])] = 1
    matrix = np.diag([VOXEL, VOXEL, VOXEL, 1.0])
    matrix[:3, 3] = lower + np.asarray(shift)
    points, triangles = label_surface(labels, matrix, 1)
    return prepare_surface(polydata_from_arrays(points, triangles), smoothing_iterations=10)


@pytest.fixture(scope="module")
def built():
    family = [(1.0, 1.0), (1.1, 0.9), (0.9, 1.15), (1.05, 1.05), (0.95, 0.85)]
    surfaces = [Surface(f"v{n}", *box_vertebra(b, p, shift=(n * 3.0, -n * 2.0, 100.0 + n)))
                for n, (b, p) in enumerate(family)]
    return build_level_model("L3", surfaces, template_triangles=2500), surfaces


def test_builder_model_and_report(built):
    (model, report), surfaces = built
    assert model.name == "L3" and model.n_modes == len(surfaces) - 1
    assert max(report.fit_distance) < 0.3
    assert report.compactness[-1] == pytest.approx(1.0) and report.compactness[0] > 0.5  # sizes co-vary
    assert len(report.generalisation) == len(surfaces) - 2 and all(np.isfinite(report.generalisation))
    assert report.generalisation[-1] < report.generalisation[0] and report.specificity > 0
    assert model.info["sources"] == [s.name for s in surfaces] and report.template in model.info["sources"]
    lines = "\n".join(report.lines())
    assert "leave-one-out" in lines and "L3: 5 shapes" in lines


def test_model_lives_in_the_anatomical_frame_with_its_landmarks(built):
    (model, _), _ = built
    positions = {lm.name: lm.position(model.mean) for lm in model.landmarks}
    assert len(positions) == 19
    assert abs(positions["spinous process tip"][0]) < 3.5 and positions["spinous process tip"][1] < -30
    assert positions["right transverse process tip"][0] > 30 and positions["left transverse process tip"][0] < -30
    assert positions["superior endplate centre"][2] > positions["inferior endplate centre"][2] + 15
    assert positions["body anterior superior"][1] > positions["body posterior superior"][1] + 20
    # Mode 1 is mostly the body's and processes' size: its instances keep the landmarks on the mesh.
    for b in (-2.0, 2.0):
        points = model.instances(np.array([[b]])).numpy()[0]
        assert np.ptp(points[:, 0]) > 40


def test_synthetic_variation_borrows_from_a_donor_without_the_left_out_person(built):
    (donor_model, donor_report), surfaces = built
    donor = Donor(donor_model, donor_report.fits, [s.person for s in surfaces])
    whole = donor.lender("somebody else")  # nobody left out: the donor's own model
    assert np.allclose(whole.mean, donor_model.mean, atol=1e-6)
    assert np.allclose(whole.variances, donor_model.variances) and whole.info["n_shapes"] == 5
    assert np.allclose(np.abs((whole.modes * donor_model.modes).sum(axis=(1, 2))), 1.0, atol=1e-6)
    lender = donor.lender("v2")
    assert lender.info["n_shapes"] == 4 and lender.n_modes == 3 and lender.landmark_names == donor_model.landmark_names
    assert np.linalg.norm(lender.mean - donor_model.mean, axis=1).mean() < 1.0  # same vertices, same frame
    # Another level of the same four persons (moved), built with synthetic variation borrowed from the donor.
    others = [Surface(f"{s.name} L4", s.points + [0.0, 5.0, -40.0], s.triangles, subject=s.name) for s in surfaces[:4]]
    model, report = build_level_model("L4", others, template_triangles=1500, synthetic=True, donor=donor)
    synthetic = model.info["synthetic_variation"]
    assert synthetic["transferred"]["donor"] == "L3" and synthetic["transferred"]["donor_shapes"] == 5
    assert synthetic["real_covariance_weight"] == pytest.approx(3 / 7)  # pooled: (4 - 1) / (4 + 5 - 2)
    assert model.n_modes == 3 + 9 + 4  # real, regional, transferred
    assert len(report.real_generalisation) == 2 and len(report.generalisation) == model.n_modes
    # More (plausible) variation: new shapes are represented better, random instances stray further.
    assert report.generalisation[-1] < report.real_generalisation[-1]
    assert report.specificity > report.real_specificity
    assert 0 < report.free_form_generalisation < report.real_generalisation[-1]
    lines = "\n".join(report.lines())
    assert "4 modes of L3 (5 shapes) transferred" in lines and "real shapes only" in lines


def test_builder_refuses_too_few_surfaces():
    points, triangles = box_vertebra()
    with pytest.raises(InputError, match="at least 3 surfaces"):
        build_level_model("L1", [Surface("a", points, triangles), Surface("b", points, triangles)])
