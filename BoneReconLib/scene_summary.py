"""A comparable fingerprint of a scene's data nodes (to check that save -> load keeps everything)."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

DATA_CLASSES = (
    "vtkMRMLScalarVolumeNode",  # includes label maps
    "vtkMRMLModelNode",
    "vtkMRMLSegmentationNode",
    "vtkMRMLMarkupsNode",
    "vtkMRMLTableNode",
    "vtkMRMLTransformNode",
    "vtkMRMLScriptedModuleNode",
)


def _node_fingerprint(node):
    import slicer.util

    names = [n for n in (node.GetAttributeNames() or ()) if n.startswith("BoneRecon")]
    attrs = tuple(sorted((n, node.GetAttribute(n)) for n in names))
    if node.IsA("vtkMRMLVolumeNode"):
        array = slicer.util.arrayFromVolume(node)
        matrix = slicer.util.arrayFromVTKMatrix(_ijk_to_ras(node))
        return ("volume", array.shape, float(np.asarray(array, np.float64).sum()),
                tuple(np.round(matrix, 4).ravel()), attrs)
    if node.IsA("vtkMRMLModelNode"):
        poly = node.GetPolyData()
        points = slicer.util.arrayFromModelPoints(node)
        return ("model", poly.GetNumberOfPoints(), poly.GetNumberOfCells(),
                tuple(np.round(points.mean(axis=0), 3)), attrs)
    if node.IsA("vtkMRMLSegmentationNode"):
        seg = node.GetSegmentation()
        segments = tuple(
            (seg.GetNthSegment(i).GetName(), tuple(np.round(seg.GetNthSegment(i).GetColor(), 3)))
            for i in range(seg.GetNumberOfSegments())
        )
        return ("segmentation", segments, attrs)
    if node.IsA("vtkMRMLMarkupsNode"):
        points = tuple(
            (node.GetNthControlPointLabel(i), tuple(np.round(node.GetNthControlPointPosition(i), 3)))
            for i in range(node.GetNumberOfControlPoints())
        )
        return ("markups", points, attrs)
    if node.IsA("vtkMRMLTableNode"):
        table = node.GetTable()
        cells = tuple(
            tuple(table.GetValue(r, c).ToString() for c in range(table.GetNumberOfColumns()))
            for r in range(table.GetNumberOfRows())
        )
        return ("table", tuple(node.GetColumnName(c) for c in range(table.GetNumberOfColumns())), cells, attrs)
    if node.IsA("vtkMRMLTransformNode"):
        import vtk

        matrix = vtk.vtkMatrix4x4()
        node.GetMatrixTransformToParent(matrix)
        return ("transform", tuple(np.round(slicer.util.arrayFromVTKMatrix(matrix), 5).ravel()), attrs)
    if node.IsA("vtkMRMLScriptedModuleNode"):
        return ("parameters", tuple(sorted((n, node.GetParameter(n)) for n in node.GetParameterNames())))
    return (node.GetClassName(), attrs)


def _ijk_to_ras(node):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix


def scene_summary(scene) -> Dict[Tuple[str, str], tuple]:
    """{(class name, node name): fingerprint} for every data node a user would see."""
    summary = {}
    for i in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(i)
        if node.GetHideFromEditors() and not node.IsA("vtkMRMLScriptedModuleNode"):
            continue
        if any(node.IsA(cls) for cls in DATA_CLASSES):
            summary[(node.GetClassName(), node.GetName())] = _node_fingerprint(node)
    return summary
