"""Offscreen pictures of a scene's 3D content, drawn by MRML's own displayable managers.

What the picture shows is what Slicer's 3D view shows for the same nodes (models, segmentations,
markups with their display settings). Headless, VTK needs an offscreen OpenGL: EGL
(``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow``, set here when there is no X display) or
OSMesa.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np

DIRECTIONS = ("Anterior", "Posterior", "Left", "Right", "Superior", "Inferior")
_MANAGERS = (
    "vtkMRMLCameraDisplayableManager",
    "vtkMRMLViewDisplayableManager",
    "vtkMRMLModelDisplayableManager",
    "vtkMRMLSegmentationsDisplayableManager3D",
    "vtkMRMLMarkupsDisplayableManager",
)


def _prefer_offscreen_window() -> None:
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def render_views(
    context,
    directions: Sequence[str] = ("Anterior", "Left"),
    size: Tuple[int, int] = (480, 640),
    zoom: float = 1.15,
) -> np.ndarray:
    """Render the scene once per camera direction; returns an RGB uint8 image, views side by side.

    Each view is (width, height) = ``size``; ``zoom`` > 1 fills more of the view than Slicer's
    reset-camera framing.
    """
    _prefer_offscreen_window()
    import slicer
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    for direction in directions:
        if direction not in DIRECTIONS:
            raise ValueError(f"Unknown view direction '{direction}'; use one of {DIRECTIONS}.")
    factory = slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance()
    factory.SetMRMLApplicationLogic(context.application_logic)
    for manager in _MANAGERS:
        if not factory.IsDisplayableManagerRegistered(manager):
            factory.RegisterDisplayableManager(manager)

    panels = []
    for index, direction in enumerate(directions):
        window = vtk.vtkRenderWindow()
        window.SetOffScreenRendering(True)
        window.SetMultiSamples(8)
        window.SetSize(*size)
        renderer = vtk.vtkRenderer()
        window.AddRenderer(renderer)
        interactor = vtk.vtkRenderWindowInteractor()  # displayable managers expect one
        interactor.SetRenderWindow(window)
        group = slicer.vtkMRMLDisplayableManagerGroup()
        group.Initialize(factory, renderer)
        view_logic = slicer.vtkMRMLViewLogic()
        view_logic.SetMRMLApplicationLogic(context.application_logic)
        view_logic.SetMRMLScene(context.scene)
        view_node = view_logic.AddViewNode(f"BoneReconOffscreen{index}")
        view_node.SetBoxVisible(False)
        view_node.SetAxisLabelsVisible(False)
        group.SetMRMLDisplayableNode(view_node)
        camera = None
        try:
            camera = group.GetDisplayableManagerByClassName("vtkMRMLCameraDisplayableManager").GetCameraNode()
            renderer.ResetCamera()
            camera.RotateTo(getattr(slicer.vtkMRMLCameraNode, direction))
            renderer.ResetCamera()
            camera.GetCamera().Zoom(zoom)
            renderer.ResetCameraClippingRange()
            window.Render()
            grab = vtk.vtkWindowToImageFilter()
            grab.SetInput(window)
            grab.SetInputBufferTypeToRGB()
            grab.ReadFrontBufferOff()
            grab.Update()
            image = grab.GetOutput()
            width, height, _ = image.GetDimensions()
            pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, 3)
            panels.append(np.flipud(pixels).copy())  # VTK rows run bottom-up
        finally:
            group.SetMRMLDisplayableNode(None)
            if camera is not None:
                context.scene.RemoveNode(camera)
            context.scene.RemoveNode(view_node)
            window.Finalize()
    return np.concatenate(panels, axis=1)


def write_png(rgb: np.ndarray, path) -> Path:
    """Write an RGB uint8 array (rows top-down) as PNG."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    path = Path(path)
    height, width, _ = rgb.shape
    image = vtk.vtkImageData()
    image.SetDimensions(width, height, 1)
    scalars = numpy_to_vtk(np.ascontiguousarray(np.flipud(rgb)).reshape(-1, 3), deep=True)
    image.GetPointData().SetScalars(scalars)
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()
    if writer.GetErrorCode() or not path.is_file():
        raise OSError(f"Could not write {path}.")
    return path
