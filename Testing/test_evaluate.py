"""Surface evaluation on known answers (concentric spheres), landmark files in LPS, and `bonerecon evaluate`."""

import json

import numpy as np
import pytest

from BoneReconLib.cli import main
from BoneReconLib.evaluate_command import evaluate_folders, read_markups_points
from BoneReconLib.mesh_io import write_surface
from BoneReconLib.surface_evaluation import compare_surfaces, posterior_vertices


def sphere(radius, centre=(0.0, 0.0, 0.0), resolution=120):
    import vtk

    from BoneReconLib.surface_metrics import triangles

    source = vtk.vtkSphereSource()
    source.SetRadius(radius)
    source.SetCenter(*centre)
    source.SetThetaResolution(resolution)
    source.SetPhiResolution(resolution)
    source.Update()
    return triangles(source.GetOutput())


def test_concentric_spheres_give_the_radius_gap_and_the_volume_dice():
    small, large = sphere(10.0), sphere(11.0)
    errors = compare_surfaces(*small, *large)
    assert errors["mean_mm"] == pytest.approx(1.0, abs=0.01)
    assert errors["rms_mm"] == pytest.approx(1.0, abs=0.01) and errors["hd95_mm"] == pytest.approx(1.0, abs=0.01)
    assert errors["dice"] == pytest.approx(2 * 10 ** 3 / (10 ** 3 + 11 ** 3), abs=0.01)
    same = compare_surfaces(*small, *small)
    assert same["mean_mm"] == pytest.approx(0.0, abs=1e-9) and same["dice"] == pytest.approx(1.0)


def test_posterior_arch_is_behind_the_posterior_wall():
    marks = {"body anterior superior": [0, 20, 10], "body anterior inferior": [0, 20, -10],
             "body posterior superior": [0, 0, 10], "body posterior inferior": [0, 0, -10]}
    points = np.array([[0, 10, 0], [0, -1, 0], [0, -3, 0], [5, -30, 4]], dtype=float)
    assert posterior_vertices(points, marks).tolist() == [False, False, True, True]
    # Only the arch counts: a sphere whose back half is 1 mm too far out.
    truth = sphere(10.0)
    found_points = truth[0].copy()
    found_points[found_points[:, 1] < 0] *= 1.1
    wall = {k: np.array(v, float) for k, v in marks.items()}
    errors = compare_surfaces(found_points, truth[1], *truth, landmarks=wall)
    assert errors["posterior_mm"] > 0.5 and errors["posterior_mm"] > errors["mean_mm"]


def _markups(path, points, lps=True):
    flip = np.array([-1.0, -1.0, 1.0]) if lps else np.ones(3)
    control = [dict(label=label, position=(np.asarray(p, float) * flip).tolist()) for label, p in points.items()]
    path.write_text(json.dumps(dict(markups=[dict(type="Fiducial", coordinateSystem="LPS" if lps else "RAS",
                                                  controlPoints=control)])))


def _stack(offset_l1=(0.0, 0.0, 0.0)):
    """The bundled L1 and L2 mean landmarks, L1 35 mm above L2 (RAS)."""
    from BoneReconLib.shape_model_library import load_models

    models = load_models(levels=["L1", "L2"])
    marks = {}
    for level, lift in (("L1", 35.0), ("L2", 0.0)):
        model = models[level]
        for landmark in model.landmarks:
            shift = np.array([0.0, 0.0, lift]) + (offset_l1 if level == "L1" else 0.0)
            marks[f"{level} {landmark.name}"] = landmark.position(model.mean) + shift
    return marks


def test_evaluate_folders_reads_any_surface_format_and_lps_landmarks(tmp_path):
    found, truth = tmp_path / "found", tmp_path / "truth"
    found.mkdir()
    truth.mkdir()
    write_surface(*sphere(10.0), found / "L1.vtk")
    write_surface(*sphere(11.0), truth / "L1.stl")
    write_surface(*sphere(10.0, (0, 0, 40)), truth / "L2.ply")  # no found L2: reported missing
    true_marks = _stack()
    _markups(truth / "marks.mrk.json", true_marks)
    _markups(found / "landmarks.mrk.json", _stack(offset_l1=(0.0, 2.0, 0.0)), lps=False)
    assert read_markups_points(truth / "marks.mrk.json")["L1"]["body anterior superior"] == pytest.approx(
        true_marks["L1 body anterior superior"])
    result = evaluate_folders(found, truth, truth_landmarks=truth / "marks.mrk.json")
    assert [r["level"] for r in result.rows] == ["L1"] and result.missing == ["L2"]
    assert result.rows[0]["mean_mm"] == pytest.approx(1.0, abs=0.02)
    assert result.rows[0]["landmark_mm"] == pytest.approx(2.0, abs=1e-6)
    slip = next(m for m in result.measurement_errors if m["measure"] == "slip" and m["unit"] == "mm")
    assert abs(slip["error"]) == pytest.approx(2.0, abs=0.3)  # L1 moved 2 mm forward (or back) on L2
    lordosis = next(m for m in result.measurement_errors if m["measure"] == "lordosis")
    assert lordosis["error"] == pytest.approx(0.0, abs=1e-6)  # a shift turns nothing


def test_evaluate_command_writes_csv_and_refuses_empty_folders(tmp_path, capsys):
    found, truth = tmp_path / "found", tmp_path / "truth"
    found.mkdir()
    truth.mkdir()
    write_surface(*sphere(10.0), found / "L3.vtk")
    write_surface(*sphere(10.5), truth / "L3.vtk")
    assert main(["evaluate", "--found", str(found), "--truth", str(truth), "--out", str(tmp_path / "m.csv")]) == 0
    printed = capsys.readouterr().out
    assert "L3" in printed and "0.50" in printed
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines[0] == "level,mean_mm,rms_mm,hd95_mm,dice,posterior_mm,landmark_mm"
    level, mean, *_ = lines[1].split(",")
    assert level == "L3" and float(mean) == pytest.approx(0.5, abs=0.01)
    (truth / "L3.vtk").unlink()
    assert main(["evaluate", "--found", str(found), "--truth", str(truth)]) == 2
    assert "No level has a surface in both" in capsys.readouterr().err
