"""``bonerecon depth``: one radiograph file and its geometry -> bone masks, depth maps, surfaces, a scene.

Writes, all or nothing (``StagedOutput``): ``scene.mrb`` (the radiograph on its detector plane,
the 2D mask segmentation, each bone's front/back depth maps, one model per bone, the 3D label
map), ``<bone>.vtk`` per found bone (world mm, RAS, like the geometry), ``<bone>_front_depth.nrrd`` /
``<bone>_back_depth.nrrd`` (mm from the source, on the detector plane), ``labels.nrrd`` and
``report.md`` (bones found, the object plane used and whether it was assumed, timings).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .app_context import MRMLContext, get_context
from .depth_inference import DepthPrediction
from .depth_training import DEFAULT_ANATOMY, bundled_depth_weights, load_depth_network
from .dicom_geometry import view_for_image
from .geometry import save_geometry
from .mrml_io import check_input_file, save_scene_mrb, save_volume
from .progress import ProgressCallback, as_progress
from .scene_transaction import rollback_on_error
from .staged_output import StagedOutput

SCENE_FILE, REPORT_FILE, LABELS_FILE, GEOMETRY_FILE = "scene.mrb", "report.md", "labels.nrrd", "geometry.json"


@dataclass
class DepthRun:
    out_dir: Path
    files: List[str]
    prediction: DepthPrediction
    seconds: Dict[str, float]


def run_depth(out_dir, image_path, geometry_path=None, weights=None, view_name: Optional[str] = None,
              centre_ij: Optional[Sequence[float]] = None, voxel_mm: Optional[float] = None,
              anatomy: str = DEFAULT_ANATOMY, progress: Optional[ProgressCallback] = None,
              context: Optional[MRMLContext] = None) -> DepthRun:
    """``geometry_path``: the views JSON; None = the image's own DICOM header. ``weights``: a network
    file; None = the bundled network for ``anatomy`` (e.g. "wrist")."""
    from .depth_pipeline import reconstruct_bones
    from .depth_result_nodes import add_depth_results
    from .mesh_io import write_surface
    from .radiograph_file import read_radiograph
    from .radiograph_node import create_radiograph_node

    report = as_progress(progress)
    start = time.perf_counter()
    view = view_for_image(image_path, geometry_path, view_name)
    radiograph = read_radiograph(check_input_file(image_path, "radiograph"), view.pixel_spacing)
    weights_path = (check_input_file(weights, "network weights") if weights is not None
                    else bundled_depth_weights(anatomy))
    model = load_depth_network(weights_path)
    result = reconstruct_bones(model, radiograph.pixels, view, centre_ij, voxel_mm, report, 0.05, 0.8)
    prediction = result.prediction
    context = context or get_context()
    scene = context.scene
    written = []
    with StagedOutput(out_dir) as out, rollback_on_error(scene):
        report(0.8, "Writing the results")
        create_radiograph_node(scene, radiograph.pixels, view, f"{view.name} radiograph")
        nodes = add_depth_results(scene, result)
        for key, node in nodes.depths.items():
            file = key.replace(" ", "_") + "_depth.nrrd"
            save_volume(node, out.path(file))
            written.append(file)
        for bone, (points, triangles) in result.surfaces.items():
            write_surface(points, triangles, out.path(f"{bone}.vtk"))
            written.append(f"{bone}.vtk")
        save_volume(nodes.labels, out.path(LABELS_FILE))
        written.append(LABELS_FILE)
        save_scene_mrb(scene, out.path(SCENE_FILE))
        written.append(SCENE_FILE)
        save_geometry([view], out.path(GEOMETRY_FILE))
        written.append(GEOMETRY_FILE)
        seconds = dict(result.seconds, total=time.perf_counter() - start)
        geometry_source = str(geometry_path) if geometry_path is not None else "the image's DICOM header"
        out.path(REPORT_FILE).write_text(report_markdown(prediction, str(image_path), weights_path, seconds,
                                                         geometry_source))
        written.append(REPORT_FILE)
        report(1.0, "Done")
    return DepthRun(Path(out_dir), written, prediction, seconds)


def report_markdown(prediction: DepthPrediction, image: str, weights, seconds: Dict[str, float],
                    geometry_source: str = "") -> str:
    view = prediction.view
    lines = ["# DepthRecon reconstruction", "", f"- radiograph: `{image}` (view '{view.name}')",
             f"- geometry: {geometry_source} (as used: `{GEOMETRY_FILE}`)",
             f"- network: `{weights}` (bones: {', '.join(prediction.bones)})",
             f"- object plane: {prediction.source_to_object:.1f} mm from the source"
             + (" (**assumed**: the geometry gives no source_to_object)" if prediction.assumed_object_plane else ""),
             f"- network grid: {view.size[0]} x {view.size[1]} pixels of {view.pixel_spacing[0]:.3f} mm "
             "at the detector",
             "", "## Bones", "", "| bone | found | mask pixels |", "|---|---|---|"]
    for k, bone in enumerate(prediction.bones):
        count = int((prediction.probability[k] >= 0.5).sum())
        lines.append(f"| {bone} | {'yes' if bone in prediction.found else 'no'} | {count} |")
    if prediction.message:
        lines += ["", "## Messages", "", f"- {prediction.message}"]
    lines += ["", "## Time", "", "| stage | s |", "|---|---|"]
    lines += [f"| {stage} | {value:.2f} |" for stage, value in seconds.items()]
    return "\n".join(lines) + "\n"
