"""`bonerecon demo`: the sample case (or the user's CT + vertebra labels) -> reconstruction + comparison.

Loads the CT and its vertebra label map and builds a surface model of each lumbar vertebra (the
ground truth). When L1-L5 are all labelled, it then renders an AP and a lateral radiograph (DRR)
of the CT through a biplanar rig around the lumbar spine, reconstructs L1-L5 from those two
images alone (``biplanar_pipeline``) and compares each reconstructed level with its labelled
surface. Writes the Slicer scene bundle, an offscreen 3D picture (front and left), and with the
reconstruction ``report.md`` and ``measurements.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from . import sample_data
from .app_context import MRMLContext, get_context
from .errors import InputError
from .mrml_io import check_input_file, load_volume, save_scene_mrb
from .progress import ProgressCallback, as_progress
from .scene_transaction import rollback_on_error
from .staged_output import StagedOutput
from .biplanar_command import report_markdown, write_measurements_csv
from .spine_measurements import measurement_rows
from .vertebra_labels import LUMBAR_LEVELS, load_label_table
from .vertebra_models import create_vertebra_models

SCENE_FILE = "scene.mrb"
SCREENSHOT_FILE = "screenshot.png"
REPORT_FILE = "report.md"
MEASUREMENTS_FILE = "measurements.csv"
TRUTH_OPACITY = 0.3  # labelled surfaces behind the reconstruction


@dataclass
class DemoResult:
    scene_path: Path
    screenshot_path: Optional[Path]
    model_points: Dict[str, int]  # level -> number of surface points
    reconstruction: Optional[object] = None  # BiplanarResult, when L1-L5 were all labelled
    comparison: Dict[str, Dict[str, float]] = field(default_factory=dict)  # level -> mean_mm, hd95_mm
    skipped: Optional[str] = None  # why there is no reconstruction


def run_demo(
    out_dir="demo",
    ct_path=None,
    labels_path=None,
    label_table: str = sample_data.SAMPLE_LABEL_TABLE,
    smoothing: float = 0.5,
    screenshot: bool = True,
    reconstruct: bool = True,
    preset: str = "balanced",
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
        report(0.1, "Building vertebra models")
        _, models = create_vertebra_models(
            labels, table, smoothing=smoothing,
            progress=lambda f, m: report(0.1 + 0.2 * f, m),
        )
        result, comparison, skipped = None, {}, None
        if reconstruct:
            missing = [level for level in LUMBAR_LEVELS if level not in models]
            if missing:
                skipped = f"no reconstruction: it needs L1-L5 labelled ({', '.join(missing)} missing)"
            else:
                result, comparison = _reconstruct_and_compare(ct, ct_path, labels_path, label_table, models, preset,
                                                              lambda f, m: report(0.3 + 0.55 * f, m))
                rows = measurement_rows(result.measurements) if result.measurements is not None else []
                write_measurements_csv(rows, out.path(MEASUREMENTS_FILE))
        report(0.85, "Saving the scene")
        scene_path = save_scene_mrb(scene, out.path(SCENE_FILE))
        shot = None
        if screenshot:
            report(0.9, "Rendering the 3D picture")
            from .screenshot import render_views, write_png

            shot = write_png(render_views(context), out.path(SCREENSHOT_FILE))
        if result is not None:
            inputs = [f"DRR of {Path(ct_path).name} ({role})" for role in ("AP", "LAT")]
            text = report_markdown(result, inputs, preset, result.seconds, rows, shot.name if shot else None)
            out.path(REPORT_FILE).write_text(text + comparison_markdown(comparison))
        report(1.0, "Done")
    return DemoResult(
        scene_path=out.out_dir / scene_path.name,
        screenshot_path=(out.out_dir / shot.name) if shot else None,
        model_points={level: m.GetPolyData().GetNumberOfPoints() for level, m in models.items()},
        reconstruction=result, comparison=comparison, skipped=skipped,
    )


def _reconstruct_and_compare(ct, ct_path, labels_path, label_table, truth_models, preset, progress):
    """DRRs of the CT in a biplanar rig -> reconstruction nodes; per level ``compare_surfaces`` with
    the labelled surface (mean of both directions, RMS, HD95, Dice)."""
    import numpy as np

    from .biplanar_network import load_network
    from .biplanar_pipeline import reconstruct_biplanar
    from .biplanar_result_nodes import add_result_nodes
    from .drr_nodes import render_to_nodes
    from .lumbar_dataset import sample_biplanar_views
    from .lumbar_radiograph import SpineCT
    from .radiograph_file import displayed
    from .radiograph_node import image_of
    from .surface_evaluation import compare_surfaces
    from .shape_model_library import load_models
    from .surface_metrics import triangles as triangle_arrays

    progress(0.0, "Rendering AP and lateral radiographs of the CT")
    spine = SpineCT.from_files(ct_path, labels_path, label_table)
    length = float(np.linalg.norm(spine.centroids["L1"] - spine.centroids["L5"])) + 30.0
    views = sample_biplanar_views(np.random.default_rng(0), spine.spine_frame(), length)
    radiographs = render_to_nodes(ct, views).radiographs
    images = [displayed(image_of(radiographs[v.name])) for v in views]
    models = load_models(levels=list(LUMBAR_LEVELS))
    result = reconstruct_biplanar(load_network(), models, images, views, preset=preset,
                                  progress=lambda f, m: progress(0.1 + 0.9 * f, m))
    add_result_nodes(ct.GetScene(), result, models, prefix="Reconstructed ")
    comparison = {}
    for level, points in result.reconstruction.points.items():
        truth_points, truth_triangles = triangle_arrays(truth_models[level].GetPolyData())
        comparison[level] = dict(compare_surfaces(points, models[level].triangles, truth_points, truth_triangles),
                                 converged=bool(result.reconstruction.results[level].converged))
        display = truth_models[level].GetDisplayNode()
        display.SetColor(0.85, 0.85, 0.85)
        display.SetOpacity(TRUTH_OPACITY)
    return result, comparison


def comparison_markdown(comparison) -> str:
    lines = ["", "## Compared with the CT labels", "",
             "Surface distance between each reconstructed level and the surface of its label (mm; the labels "
             "are the ground truth at the CT's voxel size).", "",
             "| level | mean (both directions) | RMS | HD95 | Dice | converged |", "|---|---|---|---|---|---|"]
    for level, row in comparison.items():
        converged = "yes" if row["converged"] else "no"
        lines.append(f"| {level} | {row['mean_mm']:.2f} | {row['rms_mm']:.2f} | {row['hd95_mm']:.2f} | "
                     f"{row['dice']:.3f} | {converged} |")
    return "\n".join(lines) + "\n"


def _check_overlap(ct, labels) -> None:
    """The label map must cover part of the CT (same patient space), or the models mean nothing."""
    a, b = [0.0] * 6, [0.0] * 6
    ct.GetRASBounds(a)
    labels.GetRASBounds(b)
    if any(min(a[2 * k + 1], b[2 * k + 1]) <= max(a[2 * k], b[2 * k]) for k in range(3)):
        raise InputError("The label map does not overlap the CT in space; are they from the same scan?")
