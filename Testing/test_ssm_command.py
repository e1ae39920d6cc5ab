"""`bonerecon ssm build` from label maps (subprocess, like a user) and its answers to bad input."""

import json

import numpy as np
import pytest
from BoneReconLib.errors import InputError
from test_cli import run_cli
from test_ssm_builder import box_vertebra


def write_label_map(path, scale, value=20):
    """A box vertebra (VerSe label 20 = L1) rasterised into a NIfTI label map at 1 mm."""
    import SimpleITK as sitk
    from BoneReconLib.label_surface import label_surface  # noqa: F401 (same phantom family as the builder tests)
    from test_ssm_builder import BOXES

    lower = np.array([-48.0, -56.0, -26.0])
    shape = np.round((np.array([48.0, 44.0, 26.0]) - lower)).astype(int) + 1
    centres = [lower[a] + np.arange(shape[a]) for a in range(3)]
    labels = np.zeros(shape[::-1], np.int16)
    for (x0, x1), (y0, y1), (z0, z1) in BOXES:
        box = [(x0 * scale, x1 * scale), (y0 * scale, y1 * scale), (z0 * scale, z1 * scale)]
        inside = [(c >= lo) & (c < hi) for c, (lo, hi) in zip(centres, box)]
        labels[np.ix_(inside[2], inside[1], inside[0])] = value
    image = sitk.GetImageFromArray(labels)
    image.SetOrigin((-lower[0], -lower[1], lower[2]))  # RAS lower corner -> LPS origin
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # RAS-aligned axes
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture(scope="module")
def label_maps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labels")
    return [write_label_map(folder / f"v{n}.nii.gz", s) for n, s in enumerate((1.0, 1.08, 0.93))]


def test_ssm_build_from_label_maps(label_maps, tmp_path):
    import slicer
    from BoneReconLib.app_context import get_context
    from BoneReconLib.shape_model import load_shape_model

    out = tmp_path / "ssm"
    result = run_cli("-q", "ssm", "build", "--out", out, "--labels", *label_maps, "--template-triangles", "1500",
                     "--no-evaluation")
    assert result.returncode == 0, result.stderr
    # 3 shapes < 10: the 2 real modes + the 9 regional fields (no level with more shapes to lend its modes).
    assert "L1: 3 shapes, 11 modes (with synthetic variation)" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["L1.ssm.npz", "L1_landmarks.json", "L1_landmarks.mrk.json",
                                                     "L1_mean.vtk", "manifest.json", "report.txt"]
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["models"]["L1"]
    model = load_shape_model(out / entry["file"], sha256=entry["sha256"])
    assert model.n_modes == 11 and entry["sources"] == [f"v{n}.nii.gz:L1" for n in range(3)]
    assert sorted(entry["synthetic_variation"]) == ["real_covariance_weight", "regional"]
    assert model.info["synthetic_variation"]["regional"]["pedicle length"] == {"unit": "mm", "sd": 1.5}
    assert max(entry["fit_distance_mm"]) < 0.5
    landmarks = json.loads((out / "L1_landmarks.json").read_text())
    assert len(landmarks) == 19 and {lm["region"] for lm in landmarks} >= {"body", "pedicle", "spinous process"}
    report = (out / "report.txt").read_text()
    assert "L1: 3 shapes" in report and "pedicle length 1.5 mm" in report
    # The Slicer markups file holds the same landmarks (names, regions in the descriptions, positions).
    scene = get_context().scene
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    storage = scene.AddNode(slicer.vtkMRMLMarkupsJsonStorageNode())
    storage.SetFileName(str(out / "L1_landmarks.mrk.json"))
    assert storage.ReadData(points)
    assert points.GetNumberOfControlPoints() == 19
    for n, landmark in enumerate(landmarks):
        assert points.GetNthControlPointLabel(n) == landmark["name"]
        assert points.GetNthControlPointDescription(n) == landmark["region"]
        assert np.allclose(points.GetNthControlPointPosition(n), landmark["position"], atol=1e-3)
    scene.RemoveNode(points)
    scene.RemoveNode(storage)

    # Built into a folder that holds other models: those stay in its manifest (one whose file is gone does not).
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "L2.ssm.npz").write_bytes((out / "L1.ssm.npz").read_bytes())
    earlier = dict(L1=dict(entry, sha256="0" * 64), L2=dict(entry, file="L2.ssm.npz"), L3=dict(entry, file="L3.ssm.npz"))
    (plain / "manifest.json").write_text(json.dumps(dict(format=manifest["format"], models=earlier)))
    result = run_cli("-q", "ssm", "build", "--out", plain, "--labels", *label_maps, "--template-triangles", "1500",
                     "--no-evaluation", "--synthetic-below", "0")
    assert result.returncode == 0, result.stderr
    assert "L1: 3 shapes, 2 modes ->" in result.stdout
    models = json.loads((plain / "manifest.json").read_text())["models"]
    assert sorted(models) == ["L1", "L2"] and models["L1"]["synthetic_variation"] is None
    assert models["L2"]["sha256"] == entry["sha256"] and "from before: L2" in (plain / "report.txt").read_text()


def test_ssm_build_refuses_bad_input(label_maps, tmp_path):
    from BoneReconLib.mesh_io import write_surface

    points, triangles = box_vertebra()
    metres = write_surface(points / 1000.0, triangles, tmp_path / "metres.stl")
    holed = write_surface(points, triangles[:-3], tmp_path / "holed.stl")
    cases = [
        (["--labels", *label_maps[:2]], "at least 3 surfaces per level; got 2 for L1"),
        (["--labels", *label_maps, "--synthetic-below", "-1"], "--synthetic-below must be"),
        (["--labels", *label_maps, "--levels", "L9"], "no level(s) L9"),
        (["--labels", *label_maps, "--levels", "L2"], "No label map holds level(s) L2"),
        (["--labels", *label_maps, "--label-table", "totalsegmentator"], "holds a level of the label table"),
        (["--meshes", metres, metres, metres], "needs --level"),
        (["--meshes", metres, metres, metres, "--level", "L1"], "looks like metres"),
        (["--meshes", holed, holed, holed, "--level", "L1"], "not a closed"),
        (["--meshes", holed, "--labels", *label_maps], "either --meshes"),
    ]
    for extra, message in cases:
        out = tmp_path / "out"
        result = run_cli("ssm", "build", "--out", out, *extra)
        assert result.returncode == 2, (extra, result.stderr)
        assert message in result.stderr, (extra, result.stderr)
        assert not out.exists()


def test_label_map_reader_checks_its_input(tmp_path):
    from BoneReconLib.image_io import read_label_map

    with pytest.raises(InputError, match="does not exist"):
        read_label_map(tmp_path / "missing.nii.gz")
    (tmp_path / "bad.nii.gz").write_bytes(b"nonsense")
    with pytest.raises(InputError, match="Could not read"):
        read_label_map(tmp_path / "bad.nii.gz")
