import numpy as np
import pytest
from BoneReconLib.errors import InputError
from BoneReconLib.geometry import View, biplanar_rig
from BoneReconLib.radiograph_node import create_radiograph_node, get_view, image_of, set_view


def _view():
    return View("OBL", source=[30.0, 700.0, 15.0], detector_center=[-40.0, -350.0, 60.0],
                detector_u=[0.8, 0.6, 0.0], detector_v=[0.0, 0.0, 1.0], pixel_spacing=[0.7, 1.3], size=[30, 20])


def test_node_sits_on_the_detector_plane(context):
    import slicer.util
    import vtk

    view = _view()
    image = np.arange(600, dtype=np.float32).reshape(20, 30)
    node = create_radiograph_node(context.scene, image, view)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    m = slicer.util.arrayFromVTKMatrix(matrix)
    for i, j in [(0, 0), (29, 0), (0, 19), (17, 11)]:
        assert np.allclose((m @ [i, j, 0, 1])[:3], view.pixel_to_world(i, j))
    assert np.array_equal(image_of(node), image)
    assert image_of(node)[11, 17] == 11 * 30 + 17  # [j, i] indexing


def test_view_survives_mrb_round_trip(context, tmp_path):
    from BoneReconLib.app_context import new_headless_context
    from BoneReconLib.mrml_io import load_scene_mrb, save_scene_mrb

    views = biplanar_rig(size=(40, 30))
    for view in views:
        create_radiograph_node(context.scene, np.full(view.shape, 7, np.int16), view)
    path = save_scene_mrb(context.scene, tmp_path / "xr.mrb")
    fresh = new_headless_context()
    try:
        load_scene_mrb(fresh.scene, path)
        for view in views:
            node = fresh.scene.GetFirstNodeByName(view.name)
            loaded = get_view(node)
            assert loaded.to_dict() == view.to_dict()
            assert np.all(image_of(node) == 7)
    finally:
        fresh.close()


def test_mismatched_image_and_missing_geometry(context):
    view = _view()
    with pytest.raises(InputError, match="has shape"):
        create_radiograph_node(context.scene, np.zeros((30, 20)), view)
    node = context.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "plain")
    with pytest.raises(InputError, match="carries no imaging geometry"):
        get_view(node)
    import slicer.util

    slicer.util.updateVolumeFromArray(node, np.zeros((1, 5, 5)))
    with pytest.raises(InputError, match="expects a single 30 x 20 slice"):
        set_view(node, view)
