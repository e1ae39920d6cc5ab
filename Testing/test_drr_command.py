"""`bonerecon drr` and the MRML adapters under it: files equal the core renderers' answers, images sit
on their detector planes, bad input is refused with nothing written."""

import json

import numpy as np
import pytest
import torch
from BoneReconLib.drr import Volume, hu_to_mu, render_attenuation
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import biplanar_rig, save_geometry
from BoneReconLib.label_depth import label_depth
from BoneReconLib.radiograph_node import ijk_to_ras_of
from BoneReconLib.sample_data import SAMPLE_CT, SAMPLE_VERTEBRA_LABELS
from test_cli import run_cli

def read_image(path):
    """(array [k, j, i], IJK-to-RAS) of an image file, read with SimpleITK (not MRML)."""
    from BoneReconLib.image_io import read_volume_array

    return read_volume_array(path)


@pytest.fixture(scope="module")
def views():
    _, matrix = read_image(SAMPLE_CT)
    centre = matrix[:3, :3] @ np.array([60.0, 50.0, 55.0]) + matrix[:3, 3]
    return biplanar_rig(size=(72, 64), pixel_spacing=(4.0, 4.0), isocenter=centre)


@pytest.fixture(scope="module")
def drr_run(tmp_path_factory, views):
    folder = tmp_path_factory.mktemp("drr")
    geometry = save_geometry(views, folder / "views.json")
    out = folder / "out"
    result = run_cli("drr", "--ct", SAMPLE_CT, "--geometry", geometry, "--out", out, "--labels",
                     SAMPLE_VERTEBRA_LABELS, "--label-table", "totalsegmentator", "--only", "L1,L3")
    return result, out


def test_drr_writes_every_image(drr_run):
    result, out = drr_run
    assert result.returncode == 0, result.stderr
    expected = {"geometry.json", "scene.mrb"}
    for view in ("AP", "LAT"):
        expected |= {f"{view}.nrrd", f"{view}_attenuation.nrrd", f"{view}.png"}
        for level in ("L1", "L3"):
            expected |= {f"{level}_{view}_{kind}.nrrd" for kind in ("drr", "front", "back", "thickness")}
    assert {p.name for p in out.iterdir()} == expected
    assert "labels: L1, L3" in result.stdout


def test_drr_files_equal_the_core_renderers_and_sit_on_the_detector(drr_run, views):
    _, out = drr_run
    hu, ct_matrix = read_image(SAMPLE_CT)
    volume = Volume.from_numpy(hu_to_mu(hu.astype(np.float32)), ct_matrix)
    labels, label_matrix = read_image(SAMPLE_VERTEBRA_LABELS)
    for v, view in enumerate(views):
        attenuation, matrix = read_image(out / f"{view.name}_attenuation.nrrd")
        np.testing.assert_allclose(matrix, ijk_to_ras_of(view), atol=1e-3)  # on the detector plane
        expected = render_attenuation(volume, [view])[0, 0].numpy()
        np.testing.assert_allclose(attenuation[0], expected, rtol=1e-4, atol=1e-4)
        assert attenuation[0].max() > 1.0  # the CT really was crossed
        radiograph, _ = read_image(out / f"{view.name}.nrrd")
        assert radiograph.max() == pytest.approx(1.0) and radiograph.min() >= 0.0
        depth = label_depth(labels, label_matrix, [29], [view])[0, 0, 0]  # L3 = 29
        front, _ = read_image(out / f"L3_{view.name}_front.nrrd")
        thickness, _ = read_image(out / f"L3_{view.name}_thickness.nrrd")
        assert depth.hit.sum() > 20
        np.testing.assert_allclose(front[0], depth.front.numpy(), atol=1e-3)
        np.testing.assert_allclose(thickness[0], depth.thickness.numpy(), atol=1e-3)
        alone, _ = read_image(out / f"L3_{view.name}_drr.nrrd")
        assert np.all(alone[0] <= attenuation[0] + 1e-4) and (alone[0][depth.hit.numpy()] > 0).all()


def test_drr_scene_holds_images_with_their_views(drr_run, context, views):
    from BoneReconLib.mrml_io import load_scene_mrb
    from BoneReconLib.radiograph_node import get_view

    _, out = drr_run
    load_scene_mrb(context.scene, out / "scene.mrb")
    nodes = {n.GetName(): n for n in context.scene.GetNodesByClass("vtkMRMLScalarVolumeNode")}
    assert {"CT", "AP DRR", "LAT attenuation", "L1 AP front depth", "L3 LAT thickness"} <= set(nodes)
    assert get_view(nodes["LAT DRR"]).to_dict() == views[1].to_dict()
    assert nodes["L1 AP front depth"].GetAttribute("BoneRecon.imageKind") == "front depth"
    saved = json.loads((out / "geometry.json").read_text())
    assert [v["name"] for v in saved["views"]] == ["AP", "LAT"]


def test_drr_refuses_bad_input_and_writes_nothing(tmp_path, views):
    good = save_geometry(views, tmp_path / "views.json")
    bad_view = json.loads(good.read_text())
    bad_view["views"][1]["pixel_spacing"] = [0.0, 1.0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bad_view))
    import SimpleITK as sitk

    shifted = sitk.ReadImage(str(SAMPLE_VERTEBRA_LABELS))
    shifted.SetOrigin([c + 3.0 for c in shifted.GetOrigin()])
    off_grid = tmp_path / "shifted_labels.nii.gz"
    sitk.WriteImage(shifted, str(off_grid))
    cases = [
        (["--geometry", good, "--labels", off_grid], "is not on the CT's voxel grid"),
        (["--geometry", bad], "View 'LAT': pixel_spacing must be positive"),
        (["--geometry", tmp_path / "missing.json"], "does not exist"),
        (["--geometry", good, "--labels", SAMPLE_VERTEBRA_LABELS, "--label-table", "totalsegmentator",
          "--only", "L9"], "'L9' is not in the label table"),
        (["--geometry", good, "--labels", SAMPLE_VERTEBRA_LABELS, "--only", "5"], "None of the selected labels"),
        (["--geometry", good, "--only", "L1"], "need a label map"),
        (["--geometry", good, "--labels", SAMPLE_CT.parent / "README.md"], "Could not read the label map"),
    ]
    for extra, message in cases:
        out = tmp_path / "out"
        result = run_cli("drr", "--ct", SAMPLE_CT, "--out", out, *extra)
        assert result.returncode == 2, (extra, result.stderr)
        assert message in result.stderr, (extra, result.stderr)
        assert not out.exists()


# --- MRML adapters ------------------------------------------------------------------------------


def test_volume_node_placement_includes_linear_transforms(context):
    import slicer
    import slicer.util
    from BoneReconLib.mrml_io import load_volume
    from BoneReconLib.volume_node import attenuation_volume, ijk_to_world

    scene = context.scene
    ct = load_volume(scene, SAMPLE_CT, name="CT")
    _, file_matrix = read_image(SAMPLE_CT)
    np.testing.assert_allclose(ijk_to_world(ct), file_matrix, atol=1e-4)
    move = np.eye(4)
    move[:3, :3] = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    move[:3, 3] = [5.0, -7.0, 11.0]
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(move))
    ct.SetAndObserveTransformNodeID(transform.GetID())
    np.testing.assert_allclose(ijk_to_world(ct), move @ file_matrix, atol=1e-4)
    volume = attenuation_volume(ct)
    assert volume.data.dtype == torch.float32 and float(volume.data.max()) > 0.05

    grid = scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    ct.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(InputError, match="non-linear transform"):
        ijk_to_world(ct)
    ct.SetAndObserveTransformNodeID(None)
    ct.SetSpacing(1.0, 0.0, 1.0)
    with pytest.raises(InputError, match="no valid voxel spacing"):
        ijk_to_world(ct)


def test_model_node_mesh_is_in_world_coordinates(context):
    import slicer.util
    import vtk
    from BoneReconLib.mesh_depth import mesh_depth
    from BoneReconLib.volume_node import model_mesh

    cube = vtk.vtkCubeSource()
    cube.SetBounds(-10, 10, -20, 20, -5, 5)
    clean = vtk.vtkCleanPolyData()
    clean.SetInputConnection(cube.GetOutputPort())
    clean.Update()
    model = context.scene.AddNewNodeByClass("vtkMRMLModelNode", "box")
    model.SetAndObservePolyData(clean.GetOutput())
    transform = context.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    move = np.eye(4)
    move[:3, 3] = [0.0, 100.0, 0.0]  # 100 mm towards the AP source
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(move))
    model.SetAndObserveTransformNodeID(transform.GetID())
    points, triangles = model_mesh(model)
    assert points[:, 1].min() == pytest.approx(80.0) and points[:, 1].max() == pytest.approx(120.0)
    view = biplanar_rig(size=(32, 32))[0]  # AP source at A = 800
    maps = mesh_depth(points, triangles, [view])[0, 0]
    assert float(maps.front.max()) == pytest.approx(680.0, abs=0.5)
    empty = context.scene.AddNewNodeByClass("vtkMRMLModelNode", "empty")
    with pytest.raises(InputError, match="surface"):
        model_mesh(empty)


def test_render_to_nodes_cancel_leaves_the_scene_unchanged(context, views):
    from BoneReconLib.drr_nodes import render_to_nodes
    from BoneReconLib.mrml_io import load_volume
    from BoneReconLib.progress import Cancelled, Progress

    ct = load_volume(context.scene, SAMPLE_CT, name="CT")
    before = context.scene.GetNumberOfNodes()
    progress = Progress(lambda fraction, message: progress.cancel() if "LAT" in message else None)
    with pytest.raises(Cancelled):
        render_to_nodes(ct, views, progress=progress)
    assert context.scene.GetNumberOfNodes() == before
    nodes = render_to_nodes(ct, views, device="cpu")
    assert set(nodes.radiographs) == {"AP", "LAT"} and context.scene.GetNumberOfNodes() > before
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            render_to_nodes(ct, views, device="cuda")
