"""The headless application context gives MRML everything it needs to work fully."""

import numpy as np
import pytest


def test_get_context_sets_slicer_mrmlscene():
    import slicer
    from BoneReconLib.app_context import get_context, in_slicer_application

    assert not in_slicer_application()
    context = get_context()
    try:
        assert slicer.mrmlScene is context.scene
        assert get_context() is context  # one process-wide context
    finally:
        context.close()
    assert slicer.mrmlScene is None


def test_default_colour_nodes(context):
    labels = context.scene.GetNodeByID("vtkMRMLColorTableNodeLabels")
    assert labels is not None and labels.GetNumberOfColors() > 100
    assert context.scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") > 10


def test_closed_surface_conversion_of_a_cube(context):
    """Binary labelmap -> closed surface needs the segmentations logic's converter rules."""
    import slicer
    import slicer.util
    import vtk
    from BoneReconLib.surface_metrics import open_edge_count, volume_and_centroid

    labels = np.zeros((30, 30, 30), dtype=np.uint8)
    labels[5:25, 10:20, 2:10] = 1  # k, j, i: 20 x 10 x 8 voxels
    volume = context.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    volume.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(
        np.array([[-1.0, 0, 0, 10], [0, -2.0, 0, 20], [0, 0, 1.5, -30], [0, 0, 0, 1]])))
    slicer.util.updateVolumeFromArray(volume, labels)
    segmentation = context.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(volume, segmentation)
    segmentation.GetSegmentation().SetConversionParameter("Smoothing factor", "0")
    assert segmentation.CreateClosedSurfaceRepresentation()
    poly = vtk.vtkPolyData()
    segmentation.GetClosedSurfaceRepresentation(segmentation.GetSegmentation().GetNthSegmentID(0), poly)
    assert open_edge_count(poly) == 0
    enclosed, centre = volume_and_centroid(poly)
    assert enclosed == pytest.approx(20 * 10 * 8 * (1.0 * 2.0 * 1.5), rel=0.03)
    # voxel-centre (i, j, k) = (5.5, 14.5, 14.5) through the matrix above
    assert np.allclose(centre, [4.5, -9.0, -8.25], atol=0.05)


def test_every_data_node_gets_a_subject_hierarchy_item_and_loses_it(context):
    import slicer
    import vtk

    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(context.scene)
    model = context.scene.AddNewNodeByClass("vtkMRMLModelNode", "m")
    item = sh.GetItemByDataNode(model)
    assert item and sh.GetItemParent(item) == sh.GetSceneItemID()
    context.scene.RemoveNode(model)
    assert sh.GetItemDataNode(item) is None and not sh.GetItemByDataNode(model)
    children = vtk.vtkIdList()
    sh.GetItemChildren(sh.GetSceneItemID(), children, True)
    assert children.GetNumberOfIds() == 0


def test_mrb_keeps_markups_tables_transforms_and_attributes(context, tmp_path):
    import slicer
    from BoneReconLib.app_context import new_headless_context
    from BoneReconLib.mrml_io import load_scene_mrb, save_scene_mrb
    from BoneReconLib.scene_summary import scene_summary

    scene = context.scene
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Landmarks")
    points.AddControlPoint(1.5, -2.0, 30.25, "L3 spinous tip")
    points.SetAttribute("BoneRecon.view", "AP")
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "Measurements")
    column = table.AddColumn()
    column.SetName("lordosis_deg")
    table.AddEmptyRow()
    table.SetCellText(0, 0, "42.5")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Pose")
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(
        np.array([[0, -1, 0, 10], [1, 0, 0, -5], [0, 0, 1, 2.5], [0, 0, 0, 1]], float)))
    before = scene_summary(scene)
    assert len(before) == 3
    path = save_scene_mrb(scene, tmp_path / "s.mrb")
    fresh = new_headless_context()
    try:
        load_scene_mrb(fresh.scene, path)
        assert scene_summary(fresh.scene) == before
    finally:
        fresh.close()


def test_save_scene_rejects_other_suffix(context, tmp_path):
    from BoneReconLib.errors import InputError
    from BoneReconLib.mrml_io import save_scene_mrb

    with pytest.raises(InputError, match=r"\.mrb"):
        save_scene_mrb(context.scene, tmp_path / "scene.zip")


def test_unreadable_image_is_input_error_and_adds_no_node(context, tmp_path):
    from BoneReconLib.errors import InputError
    from BoneReconLib.mrml_io import load_volume

    garbage = tmp_path / "broken.nii.gz"
    garbage.write_bytes(b"this is not an image" * 10)
    before = context.scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="Could not read the image file"):
        load_volume(context.scene, garbage)
    with pytest.raises(InputError, match="does not exist"):
        load_volume(context.scene, tmp_path / "missing.nrrd")
    assert context.scene.GetNumberOfNodes() == before
