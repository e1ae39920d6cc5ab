"""`bonerecon demo`: the sample case (or the user's CT + vertebra labels) -> scene + picture.

For now the job is: load the CT and its vertebra label map, build a surface model of each lumbar
vertebra, save everything as a Slicer scene bundle and draw an offscreen 3D picture (AP and
lateral). Later issues turn this into the full reconstruction from radiographs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from . import sample_data
from .app_context import MRMLContext, get_context
from .errors import InputError
from .mrml_io import check_input_file, load_volume, save_scene_mrb
from .progress import ProgressCallback, as_progress
from .scene_transaction import rollback_on_error
from .staged_output import StagedOutput
from .vertebra_labels import load_label_table
from .vertebra_models import create_vertebra_models

SCENE_FILE = "scene.mrb"
SCREENSHOT_FILE = "screenshot.png"


@dataclass
class DemoResult:
    scene_path: Path
    screenshot_path: Optional[Path]
    model_points: Dict[str, int]  # level -> number of surface points


def run_demo(
    out_dir="demo",
    ct_path=None,
    labels_path=None,
    label_table: str = sample_data.SAMPLE_LABEL_TABLE,
    smoothing: float = 0.5,
    screenshot: bool = True,
    progress: Optional[ProgressCallback] = None,
    context: Optional[MRMLContext] = None,
) -> DemoResult:
    report = as_progress(progress)
    table = load_label_table(label_table)  # fail on a bad table before touching any output
    ct_path = Path(ct_path) if ct_path else sample_data.SAMPLE_CT
    labels_path = Path(labels_path) if labels_path else sample_data.SAMPLE_VERTEBRA_LABELS
    check_input_file(ct_path, "CT")
    check_input_file(labels_path, "label map")
    context = context or get_context()
    scene = context.scene

    with StagedOutput(out_dir) as out, rollback_on_error(scene):
        report(0.0, f"Loading {ct_path.name}")
        ct = load_volume(scene, ct_path, name="CT", what="CT")
        labels = load_volume(scene, labels_path, name="Vertebra labels", labelmap=True, what="label map")
        _check_overlap(ct, labels)
        report(0.2, "Building vertebra models")
        _, models = create_vertebra_models(
            labels, table, smoothing=smoothing,
            progress=lambda f, m: report(0.2 + 0.5 * f, m),
        )
        report(0.7, "Saving the scene")
        scene_path = save_scene_mrb(scene, out.path(SCENE_FILE))
        shot = None
        if screenshot:
            report(0.85, "Rendering the 3D picture")
            from .screenshot import render_views, write_png

            shot = write_png(render_views(context), out.path(SCREENSHOT_FILE))
        report(1.0, "Done")
    return DemoResult(
        scene_path=out.out_dir / scene_path.name,
        screenshot_path=(out.out_dir / shot.name) if shot else None,
        model_points={level: m.GetPolyData().GetNumberOfPoints() for level, m in models.items()},
    )


def _check_overlap(ct, labels) -> None:
    """The label map must cover part of the CT (same patient space), or the models mean nothing."""
    a, b = [0.0] * 6, [0.0] * 6
    ct.GetRASBounds(a)
    labels.GetRASBounds(b)
    if any(min(a[2 * k + 1], b[2 * k + 1]) <= max(a[2 * k], b[2 * k]) for k in range(3)):
        raise InputError("The label map does not overlap the CT in space; are they from the same scan?")
