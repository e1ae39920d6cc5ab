"""A DepthRecon result in a Slicer scene: the 2D bone masks (a segmentation on the detector plane,
one segment per bone, overlaps kept), each bone's front and back depth maps (volume nodes on the
detector plane, mm from the source), one model per bone and the 3D label map.

Shared by the module's logic and ``bonerecon depth`` so both scenes look the same. The depth
maps and masks lie on the network's grid (:func:`.depth_inference.network_view`: the radiograph's
detector plane at the network's pixels) and carry that view. MRML adapter layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Tuple

import numpy as np

from .depth_inference import DepthPrediction
from .mesh_io import polydata_from_arrays
from .radiograph_node import create_radiograph_node, ijk_to_ras_of

KIND_ATTRIBUTE = "BoneRecon.kind"
BONE_COLORS = [(0.89, 0.85, 0.72), (0.55, 0.75, 0.90), (0.95, 0.60, 0.45), (0.60, 0.85, 0.55), (0.85, 0.60, 0.85),
               (0.95, 0.85, 0.40), (0.50, 0.80, 0.80), (0.80, 0.70, 0.55)]


def bone_color(index: int) -> Tuple[float, float, float]:
    return BONE_COLORS[index % len(BONE_COLORS)]


def add_mask_segmentation(scene, prediction: DepthPrediction, name: str):
    """A segmentation node with one 2D segment per found bone (mask probability >= 1/2) on the
    network grid's detector plane."""
    import slicer
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    size = prediction.view.size
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(ijk_to_ras_of(prediction.view)[r, c]))
    for bone in prediction.found:
        k = prediction.bones.index(bone)
        mask = (prediction.probability[k] >= 0.5).numpy().astype(np.uint8)
        image = slicer.vtkOrientedImageData()
        image.SetDimensions(size[0], size[1], 1)
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        image.GetPointData().GetScalars().DeepCopy(numpy_to_vtk(mask.ravel(), deep=True))
        image.SetImageToWorldMatrix(matrix)
        node.AddSegmentFromBinaryLabelmapRepresentation(image, bone, list(bone_color(k)))
    return node


def add_depth_volumes(scene, prediction: DepthPrediction, prefix: str = "") -> Dict[str, object]:
    """{"<bone> front" / "<bone> back": volume node} of every found bone (mm from the source, 0 off the bone)."""
    nodes = {}
    for bone in prediction.found:
        front, back, probability = prediction.maps(bone)
        on = (probability >= 0.5).numpy()
        for side, values in (("front", front), ("back", back)):
            array = np.where(on, values.numpy(), 0.0).astype(np.float32)
            node = create_radiograph_node(scene, array, prediction.view, f"{prefix}{bone} {side} depth")
            node.SetAttribute(KIND_ATTRIBUTE, f"depth-{side}")
            nodes[f"{bone} {side}"] = node
    return nodes


def add_bone_models(scene, surfaces: Mapping[str, tuple], bones, prefix: str = "") -> Dict[str, object]:
    """{bone: model node} coloured per bone (``bones``: the network's order, for stable colours)."""
    nodes = {}
    for bone, (points, triangles) in surfaces.items():
        node = scene.AddNewNodeByClass("vtkMRMLModelNode", f"{prefix}{bone}")
        node.SetAndObservePolyData(polydata_from_arrays(points, triangles))
        node.CreateDefaultDisplayNodes()
        node.GetDisplayNode().SetColor(*bone_color(list(bones).index(bone)))
        nodes[bone] = node
    return nodes


def add_label_map(scene, labels: np.ndarray, ijk_to_ras: np.ndarray, names, bones, name: str):
    """A label map volume node (1..n = ``names`` in order) with a colour table of the bones
    (coloured as their models: by their place in ``bones``, the network's order)."""
    import slicer
    import slicer.util

    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(labels))
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras))
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", f"{name} colours")
    table.SetTypeToUser()
    table.SetNumberOfColors(len(names) + 1)
    table.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
    for n, bone in enumerate(names, start=1):
        table.SetColor(n, bone, *bone_color(list(bones).index(bone)), 1.0)
    node.CreateDefaultDisplayNodes()
    node.GetDisplayNode().SetAndObserveColorNodeID(table.GetID())
    return node


@dataclass
class DepthResultNodes:
    """The nodes one reconstruction added: the 2D mask segmentation, {"<bone> front"/"<bone> back":
    depth volume}, {bone: model}, the label map, and the folder (subject hierarchy) holding them."""

    masks: object
    depths: Dict[str, object]
    models: Dict[str, object]
    labels: object
    folder_id: int


def add_depth_results(scene, reconstruction, name: str = "DepthRecon") -> DepthResultNodes:
    """Every node of a :class:`.depth_pipeline.DepthReconstruction`, named ``<name> <what>`` and
    gathered in one subject-hierarchy folder ``name`` (the user finds a run's results together)."""
    import slicer

    prediction = reconstruction.prediction
    prefix = f"{name} "
    masks = add_mask_segmentation(scene, prediction, f"{prefix}bone masks")
    depths = add_depth_volumes(scene, prediction, prefix)
    models = add_bone_models(scene, reconstruction.surfaces, prediction.bones, prefix)
    labels = add_label_map(scene, reconstruction.labels, reconstruction.ijk_to_ras, reconstruction.label_names,
                           prediction.bones, f"{prefix}bone labels")
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    folder = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), scene.GenerateUniqueName(name))
    for node in (masks, *depths.values(), *models.values(), labels):
        hierarchy.SetItemParent(hierarchy.GetItemByDataNode(node), folder)
    return DepthResultNodes(masks, depths, models, labels, folder)
