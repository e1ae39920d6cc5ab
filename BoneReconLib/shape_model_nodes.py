"""Shape models in the scene: an instance as a model node, its landmarks as a markups point list.

``show_shape_model`` adds both for the mean shape; ``update_instance`` moves them to any
coefficients and pose (no sliders needed: the registration calls it to show its progress).
The landmarks' regions are stored in each control point's description. MRML adapter layer.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .errors import InputError
from .shape_model import ShapeModel

MODEL_ATTRIBUTE = "BoneRecon.shapeModel"  # the level a node shows


def show_shape_model(scene, model: ShapeModel, name: Optional[str] = None, color=(0.9, 0.85, 0.7)) -> Tuple:
    """(model node, markups point list) of the model's mean shape."""

    from .mesh_io import polydata_from_arrays

    name = name or model.name
    surface = scene.AddNewNodeByClass("vtkMRMLModelNode", f"{name} shape")
    surface.SetAndObservePolyData(polydata_from_arrays(model.mean, model.triangles))
    surface.CreateDefaultDisplayNodes()
    surface.GetDisplayNode().SetColor(*color)
    surface.SetAttribute(MODEL_ATTRIBUTE, model.name)
    return surface, add_landmark_node(scene, model, f"{name} landmarks")


def add_landmark_node(scene, model: ShapeModel, name: str):
    """A locked markups point list of the mean's landmarks, each region in its point's description."""
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    points.CreateDefaultDisplayNodes()
    for landmark in model.landmarks:
        index = points.AddControlPoint(*landmark.position(model.mean).tolist(), landmark.name)
        points.SetNthControlPointDescription(index, landmark.region)
        points.SetNthControlPointLocked(index, True)
    points.SetAttribute(MODEL_ATTRIBUTE, model.name)
    return points


def write_landmark_markups(model: ShapeModel, path) -> None:
    """The mean's landmarks as a Slicer markups file (``.mrk.json``: drag and drop into Slicer)."""
    from .app_context import get_context
    from .mrml_io import save_markups_json

    scene = get_context().scene
    points = add_landmark_node(scene, model, f"{model.name} landmarks")
    try:
        save_markups_json(scene, points, path)
    except RuntimeError:
        raise InputError(f"Could not write the landmarks to {path}.") from None
    finally:
        for node in (points.GetDisplayNode(), points):
            if node is not None:
                scene.RemoveNode(node)


def update_instance(model: ShapeModel, surface_node, landmark_node=None, coefficients=None,
                    pose=None, scale: float = 1.0, displacements=None) -> np.ndarray:
    """Show the instance (coefficients in s.d., 4x4 rigid pose, scale, free-form displacements (P, 3)
    in the model's frame) in the nodes; returns its vertices."""
    from vtk.util.numpy_support import numpy_to_vtk

    points = model.instances(None if coefficients is None else np.atleast_2d(coefficients),
                             poses=None if pose is None else np.asarray(pose, float)[None],
                             scales=[scale],
                             displacements=None if displacements is None else np.asarray(displacements)[None]
                             ).numpy()[0]
    polydata = surface_node.GetPolyData()
    if polydata is None or polydata.GetNumberOfPoints() != len(points):
        raise InputError(f"'{surface_node.GetName()}' does not show shape model {model.name}.")
    polydata.GetPoints().SetData(numpy_to_vtk(np.ascontiguousarray(points), deep=True))
    polydata.GetPoints().Modified()
    surface_node.Modified()
    if landmark_node is not None:
        if landmark_node.GetNumberOfControlPoints() != len(model.landmarks):
            raise InputError(f"'{landmark_node.GetName()}' does not hold the landmarks of shape model {model.name}.")
        for index, landmark in enumerate(model.landmarks):
            landmark_node.SetNthControlPointPosition(index, *landmark.position(points).tolist())
    return points
