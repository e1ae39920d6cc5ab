"""`bonerecon demo` end to end (subprocess, like a user) and its answers to bad input."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "BoneReconLib" / "Resources" / "SampleData"


def run_cli(*args, cwd=REPO):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "BoneReconLib", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )


def read_png(path):
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = vtk_to_numpy(image.GetPointData().GetScalars())
    return np.flipud(pixels.reshape(height, width, -1))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    result = run_cli("--verbose", "demo", "--out", out)
    return result, out


def test_demo_succeeds_and_writes_only_its_results(demo_run):
    result, out = demo_run
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["measurements.csv", "report.md", "scene.mrb", "screenshot.png"]
    assert "Vertebra models: L1" in result.stdout and "L5" in result.stdout


def test_demo_compares_the_reconstruction_with_the_labels(demo_run):
    """The printed comparison and the report's table hold the same figures; converged levels lie
    within 4 mm (mean, both directions) of their labelled surfaces (3 mm voxels; measured 2.6-3.5 mm)."""
    result, out = demo_run
    line = next(x for x in result.stdout.splitlines() if x.startswith("Reconstructed from two DRRs"))
    report = (out / "report.md").read_text()
    table = {row.split("|")[1].strip(): [row.split("|")[k] for k in (2, 4, 5, 6)]
             for row in report.split("## Compared with the CT labels")[1].splitlines() if row.startswith("| L")}
    assert sorted(table) == ["L1", "L2", "L3", "L4"]  # the sample's L5 runs off both DRRs: not reconstructed
    assert "L5: found in neither radiograph, so not reconstructed" in report
    for level, (mean, hd95, dice, converged) in table.items():
        assert f"{level} {mean.strip()}" in line
        assert float(hd95) >= float(mean) > 0 and 0 < float(dice) < 1
        if converged.strip() == "yes":
            assert float(mean) < 4.0, (level, mean)
    assert sum(c.strip() == "yes" for *_, c in table.values()) >= 2


def test_demo_emits_no_mrml_warnings_or_errors(demo_run):
    result, _ = demo_run
    vtk_lines = [line for line in result.stderr.splitlines() if "WARN|" in line or "ERR|" in line]
    assert vtk_lines == []


def test_demo_scene_reloads_headless_with_every_node(demo_run):
    from BoneReconLib.app_context import new_headless_context
    from BoneReconLib.mrml_io import load_scene_mrb
    from BoneReconLib.surface_metrics import open_edge_count

    _, out = demo_run
    context = new_headless_context()
    try:
        load_scene_mrb(context.scene, out / "scene.mrb")
        scene = context.scene
        ct = scene.GetFirstNodeByName("CT")
        labels = scene.GetFirstNodeByName("Vertebra labels")
        assert ct.IsA("vtkMRMLScalarVolumeNode") and ct.GetImageData().GetDimensions() == (122, 101, 112)
        assert labels.IsA("vtkMRMLLabelMapVolumeNode")
        assert ct.GetSpacing() == pytest.approx((3.0, 3.0, 3.0))
        segmentation = scene.GetFirstNodeByName("Vertebrae").GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        assert names == ["L1", "L2", "L3", "L4", "L5"]
        printed = dict(part.split(" (") for part in _models_line(demo_run).split(", "))
        for level in names:
            model = scene.GetFirstNodeByName(level)
            assert model.IsA("vtkMRMLModelNode")
            assert f"{model.GetPolyData().GetNumberOfPoints()} points)" == printed[level]
            assert open_edge_count(model.GetPolyData()) == 0
            assert model.GetDisplayNode() is not None and model.GetDisplayNode().GetVisibility()
    finally:
        context.close()


def _models_line(demo_run):
    line = next(x for x in demo_run[0].stdout.splitlines() if x.startswith("Vertebra models: "))
    return line[len("Vertebra models: "):]


def test_demo_picture_shows_the_spine(demo_run):
    _, out = demo_run
    image = read_png(out / "screenshot.png").astype(int)
    assert image.shape == (640, 960, 3)
    background = image[0, 0]
    foreground = np.abs(image - background).max(axis=-1) > 40
    assert 0.03 < foreground.mean() < 0.6
    for half in (image[:, :480], image[:, 480:]):  # AP and lateral views both show bone
        orange = (half[..., 0] > 170) & (half[..., 2] < 90) & (half[..., 1] < 160)  # L1's colour, lit
        assert orange.sum() > 200


def test_installed_console_script(tmp_path):
    """The installed package (not the working tree) carries the sample case and runs the demo."""
    exe = Path(sys.executable).with_name("bonerecon")
    if not exe.exists():
        exe = shutil.which("bonerecon")
    if exe is None:
        pytest.skip("the 'bonerecon' console script is not installed (pip install .[headless,test])")
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("bonerecon ")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(exe), "-q", "demo", "--no-screenshot", "--out", "out"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "scene.mrb").stat().st_size > 1_000_000


def _assert_clean_failure(result, out, phrase):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bonerecon: error: "), result.stderr
    assert phrase in lines[0]
    assert not out.exists() or not any(p.name.startswith(".bonerecon-partial") for p in out.iterdir())


def test_missing_input_file(tmp_path):
    out = tmp_path / "out"
    result = run_cli("-q", "demo", "--ct", tmp_path / "nope.nii.gz", "--out", out)
    _assert_clean_failure(result, out, "does not exist")
    assert not out.exists()


def test_unreadable_image(tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    out = tmp_path / "out"
    result = run_cli("-q", "demo", "--labels", broken, "--out", out)
    _assert_clean_failure(result, out, "Could not read the label map file")
    assert not out.exists()


def test_label_map_without_vertebra_labels(tmp_path):
    import SimpleITK as sitk

    image = sitk.ReadImage(str(SAMPLE / "spine_labels.nii.gz"))
    relabelled = sitk.Cast(image > 0, sitk.sitkUInt8) + sitk.Cast(image > 29, sitk.sitkUInt8)  # values 1, 2
    path = tmp_path / "not_vertebrae.nrrd"
    sitk.WriteImage(relabelled, str(path))
    out = tmp_path / "out"
    result = run_cli("-q", "demo", "--labels", path, "--out", out)
    _assert_clean_failure(result, out, "has no L1/L2/L3/L4/L5 vertebra labels")
    assert "values found: 1, 2" in result.stderr
    assert not out.exists()


def test_wrong_label_table(tmp_path):
    out = tmp_path / "out"
    result = run_cli("-q", "demo", "--label-table", "verse", "--out", out)
    _assert_clean_failure(result, out, "values found: 26, 27, 28")


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "out"
    result = run_cli("-q", "demo", "--out", out)
    _assert_clean_failure(result, out, "Cannot write to the output folder")


def test_failed_run_keeps_earlier_results(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "scene.mrb").write_bytes(b"earlier result")
    result = run_cli("-q", "demo", "--ct", tmp_path / "nope.nrrd", "--out", out)
    _assert_clean_failure(result, out, "does not exist")
    assert (out / "scene.mrb").read_bytes() == b"earlier result"
    assert sorted(p.name for p in out.iterdir()) == ["scene.mrb"]


def test_demo_on_a_verse_ct_with_verse_ids(shared_data, tmp_path):
    """A second real case with the other label convention (VerSe 012: T10..L3 -> L1, L2, L3)."""
    out = tmp_path / "out"
    case = shared_data / "ct" / "verse012"
    result = run_cli("-q", "demo", "--ct", case / "ct.nii.gz", "--labels", case / "vert_msk.nii.gz",
                     "--label-table", "verse", "--no-screenshot", "--out", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["scene.mrb"]
    assert "Vertebra models: L1" in result.stdout and "L3" in result.stdout and "L4" not in result.stdout
