"""Radiographs and DRRs as MRML nodes: a single-slice scalar volume placed at its detector plane.

The volume's IJK-to-RAS maps pixel (i, j) to its world position on the detector (k steps 1 mm
along the beam), so the image shows up in Slicer's 3D view where the detector is, next to the CT.
The full view (source included) is stored as JSON in the node attribute ``BoneRecon.view``, which
is saved in the scene and so survives ``.mrb`` save/load.
"""

from __future__ import annotations

import json

import numpy as np

from .errors import InputError
from .geometry import View, views_from_json_text

VIEW_ATTRIBUTE = "BoneRecon.view"


def ijk_to_ras_of(view: View) -> np.ndarray:
    """4x4 IJK-to-RAS matrix of a view's detector grid."""
    matrix = np.eye(4)
    matrix[:3, 0] = view.detector_u * view.pixel_spacing[0]
    matrix[:3, 1] = view.detector_v * view.pixel_spacing[1]
    matrix[:3, 2] = view.normal
    matrix[:3, 3] = view.pixel_origin()
    return matrix


def set_view(node, view: View) -> None:
    """Attach a view to a volume node (attribute) and place the node on the detector plane."""
    import slicer.util

    image = node.GetImageData()
    if image is not None:
        dims = image.GetDimensions()
        if (dims[0], dims[1]) != tuple(view.size) or dims[2] != 1:
            raise InputError(f"The image is {dims[0]} x {dims[1]} x {dims[2]} pixels but view '{view.name}' "
                             f"expects a single {view.size[0]} x {view.size[1]} slice.")
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras_of(view)))
    node.SetAttribute(VIEW_ATTRIBUTE, json.dumps(view.to_dict()))


def get_view(node) -> View:
    """The view stored on a radiograph node; InputError if it has none."""
    text = node.GetAttribute(VIEW_ATTRIBUTE) if node is not None else None
    if not text:
        name = node.GetName() if node is not None else "None"
        raise InputError(f"The image '{name}' carries no imaging geometry (attribute {VIEW_ATTRIBUTE}).")
    (view,) = views_from_json_text(text, where=f"geometry of '{node.GetName()}'")
    return view


def create_radiograph_node(scene, image: np.ndarray, view: View, name: str | None = None):
    """A new scalar volume node holding ``image`` (indexed [j, i]) at the view's detector plane."""
    import slicer.util

    image = np.asarray(image)
    if image.shape != view.shape:
        raise InputError(f"The image has shape {image.shape} but view '{view.name}' is "
                         f"{view.shape[0]} rows x {view.shape[1]} columns.")
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name or view.name)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(image[np.newaxis]))
    set_view(node, view)
    node.CreateDefaultDisplayNodes()
    return node


def image_of(node) -> np.ndarray:
    """The radiograph as a 2D array indexed [j, i] (a copy)."""
    import slicer.util

    array = slicer.util.arrayFromVolume(node)
    if array.ndim != 3 or array.shape[0] != 1:
        raise InputError(f"'{node.GetName()}' is not a single-slice image (shape {array.shape}).")
    return np.array(array[0])
