"""Vertebra label map -> one named, coloured surface model per lumbar level (L1-L5)."""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Tuple, Union

from .label_models import export_models, present_label_values, segmentation_from_labels
from .progress import ProgressCallback
from .vertebra_labels import LEVEL_COLORS, LUMBAR_LEVELS, load_label_table, select_levels

MODELS_FOLDER = "Vertebra models"


def create_vertebra_models(
    labelmap_node,
    label_table: Union[str, Mapping[int, str]] = "totalsegmentator",
    levels: Iterable[str] = LUMBAR_LEVELS,
    smoothing: float = 0.5,
    progress: Optional[ProgressCallback] = None,
) -> Tuple[object, Dict[str, object]]:
    """Segmentation node (segments named L1..L5) + {level: model node}, for the levels present.

    ``label_table`` is a built-in name (``totalsegmentator``, ``verse``), a CSV/JSON path, or a
    {value: name} mapping. Raises InputError when the label map holds none of ``levels``.
    """
    table = label_table if isinstance(label_table, Mapping) else load_label_table(label_table)
    chosen = select_levels(present_label_values(labelmap_node), table, levels)
    segmentation = segmentation_from_labels(
        labelmap_node, chosen, LEVEL_COLORS, name="Vertebrae", smoothing=smoothing, progress=progress
    )
    models = export_models(segmentation, MODELS_FOLDER)
    segmentation.GetDisplayNode().SetVisibility3D(False)  # the models are the result shown in 3D
    return segmentation, models
