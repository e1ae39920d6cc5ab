"""Label map -> named segments -> smoothed closed-surface models (MRML adapter).

Used to show a CT's own bones as surfaces (the demo, ground truth for registration and for the
training-data engine). Only the requested label values are imported; each becomes one segment
and one model with the given name and colour.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from .errors import InputError
from .progress import ProgressCallback, as_progress

Color = Tuple[float, float, float]
DEFAULT_COLOR: Color = (0.85, 0.85, 0.80)


def present_label_values(labelmap_node) -> List[int]:
    """Sorted non-zero values found in a label map volume node."""
    import slicer.util

    if labelmap_node is None or labelmap_node.GetImageData() is None:
        raise InputError("The label map volume has no image data.")
    values = np.unique(slicer.util.arrayFromVolume(labelmap_node))
    if not np.all(np.equal(np.mod(values, 1), 0)):
        raise InputError("The label map must hold integer labels, but it has fractional values.")
    return [int(v) for v in values if v != 0]


def segmentation_from_labels(
    labelmap_node,
    labels: Mapping[int, str],
    colors: Optional[Mapping[str, Color]] = None,
    name: Optional[str] = None,
    smoothing: float = 0.5,
    progress: Optional[ProgressCallback] = None,
):
    """A new segmentation node with one segment per entry of ``labels`` ({value: name}).

    The closed-surface representation is computed (``smoothing`` is MRML's smoothing factor,
    0 = none, 1 = strong). Raises InputError if a requested value is absent.
    """
    import slicer
    import slicer.util

    report = as_progress(progress)
    scene = labelmap_node.GetScene()
    source = slicer.util.arrayFromVolume(labelmap_node)
    missing = [v for v in labels if not np.any(source == v)]
    if missing:
        raise InputError(f"The label map has no voxels with label value(s) {missing}.")

    # Import from a temporary label map that holds only the wanted values, named by a colour table.
    colors = colors or {}
    table = slicer.vtkMRMLColorTableNode()
    table.SetTypeToUser()
    table.SetNumberOfColors(int(max(labels)) + 1)
    table.SetHideFromEditors(True)
    for value in range(table.GetNumberOfColors()):
        table.SetColor(value, "", 0.0, 0.0, 0.0, 0.0)
    for value, label_name in labels.items():
        r, g, b = colors.get(label_name, DEFAULT_COLOR)
        table.SetColor(int(value), label_name, r, g, b, 1.0)
    created = []  # temporary nodes, always removed
    segmentation = None
    try:
        scene.AddNode(table)
        created.append(table)
        temp = slicer.vtkMRMLLabelMapVolumeNode()
        temp.SetName("BoneRecon temporary labels")
        temp.SetHideFromEditors(True)
        scene.AddNode(temp)
        created.append(temp)
        temp.CopyOrientation(labelmap_node)
        kept = np.where(np.isin(source, list(labels)), source, 0).astype(np.int16)
        slicer.util.updateVolumeFromArray(temp, kept)
        temp.CreateDefaultDisplayNodes()
        temp.GetDisplayNode().SetAndObserveColorNodeID(table.GetID())
        report(0.1, "Importing labels")

        segmentation = scene.AddNewNodeByClass(
            "vtkMRMLSegmentationNode", name or f"{labelmap_node.GetName()} segmentation"
        )
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(labelmap_node)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(temp, segmentation):
            raise RuntimeError("MRML could not import the label map into a segmentation.")
        _name_segments(segmentation, labels, colors)
        report(0.4, "Building surfaces")
        segmentation.GetSegmentation().SetConversionParameter("Smoothing factor", str(float(smoothing)))
        if not segmentation.CreateClosedSurfaceRepresentation():
            raise RuntimeError("MRML could not build closed surfaces (is the segmentations logic attached?).")
        report(1.0, "Surfaces built")
        return segmentation
    except BaseException:
        if segmentation is not None:
            scene.RemoveNode(segmentation)
        raise
    finally:
        for node in created:
            scene.RemoveNode(node)


def _name_segments(segmentation_node, labels: Mapping[int, str], colors: Mapping[str, Color]) -> None:
    """Give the imported segments exactly the requested names/colours, in the order of ``labels``."""
    segmentation = segmentation_node.GetSegmentation()
    for order, (value, name) in enumerate(labels.items()):
        segment_id = segmentation.GetSegmentIdBySegmentName(name)
        if not segment_id:
            raise RuntimeError(f"Segment '{name}' is missing after the label map import.")
        segment = segmentation.GetSegment(segment_id)
        segment.SetColor(*colors.get(name, DEFAULT_COLOR))
        segment.SetTag("BoneRecon.LabelValue", str(value))
        segmentation.SetSegmentIndex(segment_id, order)
    if segmentation.GetNumberOfSegments() != len(labels):
        raise RuntimeError("The label map import produced unexpected extra segments.")


def export_models(segmentation_node, folder_name: str) -> Dict[str, object]:
    """One model node per segment (closed surface), in a subject-hierarchy folder; {name: model}."""
    import slicer

    scene = segmentation_node.GetScene()
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    folder = sh.CreateFolderItem(sh.GetSceneItemID(), folder_name)
    before = {scene.GetNthNodeByClass(i, "vtkMRMLModelNode").GetID()
              for i in range(scene.GetNumberOfNodesByClass("vtkMRMLModelNode"))}
    if not slicer.vtkSlicerSegmentationsModuleLogic.ExportAllSegmentsToModels(segmentation_node, folder):
        sh.RemoveItem(folder)
        raise RuntimeError("MRML could not export the segments to models.")
    models = {}
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLModelNode")):
        model = scene.GetNthNodeByClass(i, "vtkMRMLModelNode")
        if model.GetID() not in before:
            models[model.GetName()] = model
    return models
