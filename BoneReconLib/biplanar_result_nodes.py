"""A BiplanarRecon result in a Slicer scene: one model per level, the 3D landmarks, the measurement table.

Shared by the module's logic and ``bonerecon biplanar`` so both scenes look the same. Levels
whose registration did not converge keep their model (for inspection) but are named so, drawn
semi-transparent and carry their residuals in the node's description. MRML adapter layer.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from .biplanar_pipeline import BiplanarResult
from .mesh_io import polydata_from_arrays
from .spine_measurements import measurement_rows
from .vertebra_labels import LEVEL_COLORS

MEASUREMENT_COLUMNS = ("measure", "where", "value", "unit")
NOT_CONVERGED_OPACITY = 0.4


def add_result_nodes(scene, result: BiplanarResult, models, prefix: str = "") -> Dict[str, object]:
    """{"models": {level: model node}, "landmarks": markups node, "table": table node or None}."""
    model_nodes = {}
    for level, points in result.reconstruction.points.items():
        fit = result.reconstruction.results[level]
        name = f"{prefix}{level}" + ("" if fit.converged else " (not converged)")
        node = scene.AddNewNodeByClass("vtkMRMLModelNode", name)
        node.SetAndObservePolyData(polydata_from_arrays(points, models[level].triangles))
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        display.SetColor(*LEVEL_COLORS.get(level, (0.9, 0.9, 0.8)))
        if not fit.converged:
            display.SetOpacity(NOT_CONVERGED_OPACITY)
        node.SetDescription(f"image agreement (NCC per view) {', '.join(f'{c:.2f}' for c in fit.ncc)}; "
                            f"landmark residual {fit.landmark_rms_mm:.2f} mm; "
                            f"{'converged' if fit.converged else 'did not converge'}")
        model_nodes[level] = node

    landmarks = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{prefix}Landmarks 3D")
    landmarks.CreateDefaultDisplayNodes()
    for level, named in result.landmarks.items():
        for name, position in named.items():
            index = landmarks.AddControlPoint(*np.asarray(position, dtype=float).tolist(), f"{level} {name}")
            landmarks.SetNthControlPointLocked(index, True)
    landmarks.GetDisplayNode().SetPointLabelsVisibility(False)

    table = None
    if result.measurements is not None:
        table = add_measurement_table(scene, measurement_rows(result.measurements), f"{prefix}Spine measurements")
    return dict(models=model_nodes, landmarks=landmarks, table=table)


def add_measurement_table(scene, rows, name: str):
    """A table node with the columns measure, where, value, unit (values as text: grades are words)."""
    import vtk

    table = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    columns = []
    for title in MEASUREMENT_COLUMNS:
        column = vtk.vtkStringArray()
        column.SetName(title)
        columns.append(column)
    for row in rows:
        for title, column in zip(MEASUREMENT_COLUMNS, columns):
            column.InsertNextValue(str(row[title]))
    for column in columns:
        table.AddColumn(column)
    return table
