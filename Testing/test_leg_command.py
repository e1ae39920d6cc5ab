"""`bonerecon biplanar --anatomy leg` end to end on simulated long-leg radiographs of the bundled
models' instances (femur, tibia and the mean fibula beside it in soft tissue, feature points
projected exactly), and its
answers to bad input (points from a file here; the detector's own tests are in test_leg_detector)."""

import csv
import json

import numpy as np
import pytest

from BoneReconLib.geometry import biplanar_rig, save_geometry
from BoneReconLib.shape_model_library import load_leg_models
from test_cli import run_cli

FEMUR_COEFFICIENTS = [1.0, -0.6, 0.4]
TIBIA_COEFFICIENTS = [-0.8, 0.5]
KNEE_GAP = np.array([0.0, 0.0, -22.0])  # the tibial plateau below the femoral epicondyles


@pytest.fixture(scope="module")
def models():
    return load_leg_models()


@pytest.fixture(scope="module")
def leg_case(tmp_path_factory, models):
    """A right leg: the two instances as placed, AP + lateral radiographs, geometry and points files."""
    import SimpleITK as sitk

    from BoneReconLib.limb_radiograph import Bone, render_limb, soft_tissue_envelope

    folder = tmp_path_factory.mktemp("leg")
    truth = {"femur": models["femur"].instances(np.array([FEMUR_COEFFICIENTS])).numpy()[0],
             "tibia": models["tibia"].instances(np.array([TIBIA_COEFFICIENTS])).numpy()[0] + KNEE_GAP}
    fibula = models["fibula"].mean + KNEE_GAP  # the model lies in the tibia's frame
    bones = [Bone(name, points, models[name].triangles) for name, points in [*truth.items(), ("fibula", fibula)]]
    views = biplanar_rig(source_to_detector=1200.0, source_to_isocenter=1000.0, size=(120, 400),
                         pixel_spacing=(2.5, 2.5), isocenter=(0.0, 0.0, 20.0))
    images = render_limb(bones, soft_tissue_envelope(bones, thickness_mm=30.0, voxel_mm=4.0), views).attenuation
    save_geometry(views, folder / "views.json")
    points = {}
    for view, image in zip(views, images.numpy()):
        sitk.WriteImage(sitk.GetImageFromArray(image.astype(np.float32)), str(folder / f"{view.name}.nrrd"))
        points[view.name] = [dict(bone=bone, name=lm.name, i=float(ij[0]), j=float(ij[1]), confidence=1.0)
                             for bone in truth for lm, ij in zip(models[bone].landmarks, view.project(
                                 np.array([lm.position(truth[bone]) for lm in models[bone].landmarks]))[0])]
    (folder / "points.json").write_text(json.dumps(points))
    return folder, dict(truth, fibula=fibula)


def _run(folder, out, *extra):
    return run_cli("biplanar", "--anatomy", "leg", "--ap", folder / "AP.nrrd", "--lat", folder / "LAT.nrrd",
                   "--geometry", folder / "views.json", "--out", out, *extra)


def test_leg_reconstruction_writes_both_bones_close_to_the_truth(leg_case, models):
    from BoneReconLib.mesh_io import read_surface
    from BoneReconLib.surface_evaluation import compare_surfaces
    from BoneReconLib.surface_metrics import triangles as triangle_arrays

    folder, truth = leg_case
    out = folder / "recon"
    done = _run(folder, out, "--points", folder / "points.json")
    assert done.returncode == 0, done.stderr
    assert {p.name for p in out.iterdir()} == {"femur.vtk", "tibia.vtk", "fibula.vtk", "landmarks.json",
                                              "points.json", "measurements.csv", "scene.mrb", "report.md"}
    for bone in ("femur", "tibia", "fibula"):
        points, triangles = triangle_arrays(read_surface(out / f"{bone}.vtk"))
        score = compare_surfaces(points, triangles, truth[bone], models[bone].triangles, with_dice=False)
        assert score["mean_mm"] < 1.2, (bone, score)
    rows = {row["measure"]: float(row["value"]) for row in csv.DictReader(open(out / "measurements.csv"))}
    true_length = np.linalg.norm(np.subtract(*[models["femur"].landmarks[models["femur"].landmark_names.index(n)]
                                               .position(truth["femur"]) for n in ("femoral head centre",
                                                                                   "femoral knee centre")]))
    assert rows["femoral mechanical length"] == pytest.approx(true_length, abs=2.0)
    assert 170.0 < rows["hip-knee-ankle angle"] <= 180.0
    landmarks = json.loads((out / "landmarks.json").read_text())
    assert set(landmarks) == {"femur", "tibia"} and "femoral head centre" in landmarks["femur"]
    report = (out / "report.md").read_text()
    assert "converged" in report and "fibula: fitted beside the tibia" in report


def test_leg_refuses_bad_points_and_bad_detector_weights(leg_case):
    folder, _ = leg_case
    (folder / "not_weights.pt").write_bytes(b"not a network")
    done = _run(folder, folder / "none", "--detector", folder / "not_weights.pt")
    assert done.returncode == 2 and "not_weights.pt" in done.stderr and not (folder / "none").exists()
    bad = folder / "bad_points.json"
    bad.write_text(json.dumps({"AP": [{"bone": "femur", "name": "knee cap", "i": 1, "j": 2}], "LAT": []}))
    done = _run(folder, folder / "bad", "--points", bad)
    assert done.returncode == 2 and "knee cap" in done.stderr and not (folder / "bad").exists()
    bad.write_text(json.dumps([1, 2]))
    done = _run(folder, folder / "bad", "--points", bad)
    assert done.returncode == 2 and not (folder / "bad").exists()


def test_a_bone_without_points_is_reported_not_guessed(leg_case, models):
    """Only the femur's points given: the femur is reconstructed, the tibia named as missing."""
    import SimpleITK as sitk

    from BoneReconLib.errors import InputError
    from BoneReconLib.geometry import load_geometry
    from BoneReconLib.leg_pipeline import reconstruct_leg

    folder, truth = leg_case
    views = load_geometry(folder / "views.json")
    images = [sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{v.name}.nrrd"))) for v in views]
    points = json.loads((folder / "points.json").read_text())
    femur_only = [[p for p in points[v.name] if p["bone"] == "femur"] for v in views]
    found = reconstruct_leg(models, views, images, femur_only, free_form=None)
    assert set(found.bones) == {"femur"} and any("tibia: not reconstructed" in m for m in found.messages)
    with pytest.raises(InputError, match="No bone"):
        reconstruct_leg(models, views, images, [[], []], free_form=None)
    with pytest.raises(InputError, match="side"):
        reconstruct_leg(models, views, images, femur_only, side="middle")


def test_leg_reconstruction_with_the_bundled_detector(leg_case, models):
    """No --points: the bundled detector finds them; both bones still come out close to the truth."""
    from BoneReconLib.mesh_io import read_surface
    from BoneReconLib.surface_evaluation import compare_surfaces
    from BoneReconLib.surface_metrics import triangles as triangle_arrays

    folder, truth = leg_case
    out = folder / "detected"
    done = _run(folder, out)
    assert done.returncode == 0, done.stderr
    used = json.loads((out / "points.json").read_text())
    assert len(used["AP"]) == len(used["LAT"]) == 23
    for bone in ("femur", "tibia"):
        points, triangles = triangle_arrays(read_surface(out / f"{bone}.vtk"))
        score = compare_surfaces(points, triangles, truth[bone], models[bone].triangles, with_dice=False)
        assert score["mean_mm"] < 2.5, (bone, score)


def test_one_view_mode_from_the_ap_radiograph_alone(leg_case, models):
    """--ap alone with a one-view geometry (its source_to_object placing the leg): both bones, the
    report says what the depth rests on; the spine still needs both views."""
    import dataclasses

    from BoneReconLib.geometry import load_geometry
    from BoneReconLib.mesh_io import read_surface
    from BoneReconLib.surface_evaluation import compare_surfaces
    from BoneReconLib.surface_metrics import triangles as triangle_arrays

    folder, truth = leg_case
    ap = load_geometry(folder / "views.json")[0]
    centre = np.concatenate(list(truth.values())).mean(axis=0)
    save_geometry([dataclasses.replace(ap, extra={"source_to_object": float((centre - ap.source) @ ap.normal)})],
                  folder / "ap_view.json")
    points = json.loads((folder / "points.json").read_text())
    (folder / "ap_points.json").write_text(json.dumps({"AP": points["AP"]}))
    out = folder / "one_view"
    done = run_cli("biplanar", "--anatomy", "leg", "--ap", folder / "AP.nrrd", "--geometry", folder / "ap_view.json",
                   "--points", folder / "ap_points.json", "--out", out)
    assert done.returncode == 0, done.stderr
    report = (out / "report.md").read_text()
    assert "One view (AP)" in report and "source_to_object" in report and "NCC LAT" not in report
    for bone in ("femur", "tibia"):
        points, triangles = triangle_arrays(read_surface(out / f"{bone}.vtk"))
        score = compare_surfaces(points, triangles, truth[bone], models[bone].triangles, with_dice=False)
        assert score["mean_mm"] < 2.5, (bone, score)
    done = run_cli("biplanar", "--ap", folder / "AP.nrrd", "--geometry", folder / "views.json", "--out", folder / "s")
    assert done.returncode == 2 and "--lat" in done.stderr


def test_module_logic_reconstructs_the_leg_into_the_scene(leg_case, models, context):
    """BiplanarReconLogic.reconstructLeg: radiograph nodes (with their views) in; femur and tibia
    models, the 3D feature points and the measurement table out; one node alone is one-view mode;
    a failure adds nothing."""
    import SimpleITK as sitk
    from BiplanarReconLib import BiplanarReconLogic

    from BoneReconLib.errors import InputError
    from BoneReconLib.geometry import load_geometry
    from BoneReconLib.radiograph_node import create_radiograph_node

    folder, truth = leg_case
    views = load_geometry(folder / "views.json")
    nodes = [create_radiograph_node(context.scene, sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{v.name}.nrrd"))),
                                    v, f"{v.name} leg") for v in views]
    points = json.loads((folder / "points.json").read_text())
    logic = BiplanarReconLogic(context.scene)
    done = logic.reconstructLeg(*nodes, points=points)
    assert set(done["models"]) == {"femur", "tibia", "fibula"} and done["models"]["femur"].GetName() == "Leg femur"
    assert done["landmarks"].GetNumberOfControlPoints() == 23
    table = done["table"]
    measures = [table.GetCellText(r, 0) for r in range(table.GetNumberOfRows())]
    assert "femoral mechanical length" in measures and "hip-knee-ankle angle" in measures
    where = table.GetCellText(measures.index("tibial mechanical length"), 1)
    assert where == "tibia"
    one = logic.reconstructLeg(nodes[0], None, points={"AP": points["AP"]}, bones=["femur"])
    assert set(one["models"]) == {"femur"} and any("One view (AP)" in m for m in one["result"].messages)
    before = context.scene.GetNumberOfNodes()
    with pytest.raises(InputError):
        logic.reconstructLeg(*nodes, points={"AP": [], "LAT": []})
    assert context.scene.GetNumberOfNodes() == before
