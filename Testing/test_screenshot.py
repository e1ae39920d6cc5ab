"""Offscreen pictures follow Slicer's view conventions (known answers with coloured spheres)."""

import numpy as np


def _sphere_model(scene, name, centre, color):
    import vtk

    source = vtk.vtkSphereSource()
    source.SetCenter(*centre)
    source.SetRadius(12.0)
    source.SetThetaResolution(32)
    source.SetPhiResolution(32)
    source.Update()
    model = scene.AddNewNodeByClass("vtkMRMLModelNode", name)
    model.SetAndObservePolyData(source.GetOutput())
    model.CreateDefaultDisplayNodes()
    model.GetDisplayNode().SetColor(*color)
    return model


def _centre_of(mask):
    rows, cols = np.nonzero(mask)
    assert len(rows) > 100, "colour not visible"
    return rows.mean() / mask.shape[0], cols.mean() / mask.shape[1]  # fractions of height, width


def test_anterior_and_left_views(context, tmp_path):
    from BoneReconLib.screenshot import render_views, write_png

    _sphere_model(context.scene, "right", (60, 0, 0), (1, 0, 0))  # patient right (R+)
    _sphere_model(context.scene, "anterior", (0, 60, 0), (0, 1, 0))  # anterior (A+)
    _sphere_model(context.scene, "superior", (0, 0, 60), (0, 0, 1))  # superior (S+)
    nodes_before = context.scene.GetNumberOfNodes()
    image = render_views(context, ("Anterior", "Left"), size=(200, 160))
    assert image.shape == (160, 400, 3) and image.dtype == np.uint8
    assert context.scene.GetNumberOfNodes() == nodes_before  # scratch views/cameras removed
    img = image.astype(int)
    red = (img[..., 0] > 100) & (img[..., 1] < 60) & (img[..., 2] < 60)
    green = (img[..., 1] > 100) & (img[..., 0] < 60) & (img[..., 2] < 60)
    blue = (img[..., 2] > 100) & (img[..., 0] < 60) & (img[..., 1] < 60)
    ap, lateral = (slice(None), slice(0, 200)), (slice(None), slice(200, 400))
    # AP view: camera in front of the patient, so the patient's right is on the screen's left
    assert _centre_of(red[ap])[1] < 0.4
    assert _centre_of(blue[ap])[0] < 0.4  # superior is up
    # Left lateral view: camera at the patient's left, anterior on the screen's left
    assert _centre_of(green[lateral])[1] < 0.4
    assert _centre_of(blue[lateral])[0] < 0.4
    path = write_png(image, tmp_path / "views.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_direction_is_rejected(context):
    import pytest
    from BoneReconLib.screenshot import render_views

    with pytest.raises(ValueError, match="Unknown view direction"):
        render_views(context, ("Frontal",))
