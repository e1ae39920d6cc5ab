"""DepthRecon logic: MRML nodes in, MRML nodes out; never imports Qt.

Today it turns any bone label map (hand, wrist, knee, ...) into one surface model per label:
the ground truth a user needs before making depth-map training data from their own CTs. The
single-radiograph reconstruction lands in a later issue.

Console use::

    from DepthReconLib import DepthReconLogic
    segmentation, models = DepthReconLogic().createBoneModels(labelMapNode)
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

from BoneReconLib.errors import InputError
from BoneReconLib.label_models import export_models, present_label_values, segmentation_from_labels
from BoneReconLib.module_logic import ModuleLogic
from BoneReconLib.progress import ProgressCallback
from BoneReconLib.scene_transaction import rollback_on_error

MODELS_FOLDER = "Bone models"


class DepthReconLogic(ModuleLogic):
    moduleName = "DepthRecon"

    @staticmethod
    def labelNames(labelMapNode) -> Dict[int, str]:
        """{value: name} for each label present, named by the label map's colour table if it has names."""
        colors = None
        display = labelMapNode.GetDisplayNode()
        if display is not None:
            colors = display.GetColorNode()
        names = {}
        for value in present_label_values(labelMapNode):
            name = colors.GetColorName(value) if colors is not None and value < colors.GetNumberOfColors() else ""
            names[value] = name if name and name.lower() not in ("invalid", "(none)") else f"Label {value}"
        if len(set(names.values())) != len(names):  # colour tables may repeat names
            names = {value: f"{name} ({value})" for value, name in names.items()}
        return names

    def createBoneModels(
        self,
        labelMapNode,
        labelNames: Optional[Mapping[int, str]] = None,
        smoothing: float = 0.5,
        progress: Optional[ProgressCallback] = None,
    ) -> Tuple[object, Dict[str, object]]:
        """Segmentation + {name: model node}, one per label (or per entry of ``labelNames``)."""
        if labelMapNode is None:
            raise ValueError("Select a bone label map.")
        names = dict(labelNames) if labelNames else self.labelNames(labelMapNode)
        if not names:
            raise InputError("The label map is empty: it has no non-zero labels.")
        with rollback_on_error(labelMapNode.GetScene()):
            segmentation = segmentation_from_labels(
                labelMapNode, names, name=f"{labelMapNode.GetName()} bones", smoothing=smoothing, progress=progress
            )
            models = export_models(segmentation, MODELS_FOLDER)
            segmentation.GetDisplayNode().SetVisibility3D(False)
        return segmentation, models
