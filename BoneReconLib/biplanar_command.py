"""``bonerecon biplanar``: AP + lateral radiograph files and their geometry -> a folder of results.

Writes, all or nothing (``StagedOutput``): ``scene.mrb`` (radiographs on their detector planes,
one model per level, 3D landmarks, the measurement table), ``L1.vtk`` .. ``L5.vtk`` (world mm,
RAS, like the geometry), ``landmarks.mrk.json``, ``measurements.csv``, ``report.md`` (levels,
residuals, messages, measurements, timings) and ``screenshot.png`` (3D, front and left).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .app_context import MRMLContext, get_context
from .biplanar_pipeline import VIEW_NAMES, BiplanarResult, reconstruct_biplanar
from .errors import InputError
from .geometry import View, load_geometry
from .biplanar_result_nodes import MEASUREMENT_COLUMNS
from .mesh_io import write_surface
from .mrml_io import check_input_file, save_markups_json, save_scene_mrb
from .progress import ProgressCallback, as_progress
from .scene_transaction import rollback_on_error
from .spine_alignment import LEVELS
from .spine_measurements import measurement_rows
from .staged_output import StagedOutput

SCENE_FILE, LANDMARKS_FILE, MEASUREMENTS_FILE = "scene.mrb", "landmarks.mrk.json", "measurements.csv"
REPORT_FILE, SCREENSHOT_FILE = "report.md", "screenshot.png"
_ROLE_NAMES = {"AP": ("ap", "pa", "frontal", "coronal"), "LAT": ("lat", "lateral", "sagittal")}


@dataclass
class BiplanarRun:
    out_dir: Path
    files: List[str]
    result: BiplanarResult


def pick_views(views: Sequence[View]) -> List[View]:
    """[AP view, lateral view] of a geometry: by name (AP/PA/frontal, LAT/lateral), else the order of two views."""
    chosen = []
    for role in VIEW_NAMES:
        named = [v for v in views if v.name.strip().lower() in _ROLE_NAMES[role]]
        if len(named) > 1:
            raise InputError(f"The geometry has {len(named)} views named like '{role}'; keep one.")
        chosen.append(named[0] if named else None)
    if all(chosen):
        return chosen
    if len(views) == 2 and not any(chosen):
        return list(views)
    raise InputError("The geometry must hold the AP and the lateral view: name them 'AP' and 'LAT', or give "
                     f"exactly two views, AP first (found: {', '.join(v.name for v in views) or 'none'}).")


def pick_role_view(views: Sequence[View], role: str) -> View:
    """The view of ``role`` ('AP' or 'LAT') for one-view work: by name, else the geometry's only view,
    else the AP-first order of two unnamed views."""
    named = [v for v in views if v.name.strip().lower() in _ROLE_NAMES[role]]
    if len(named) == 1:
        return named[0]
    if len(views) == 1 and not named:
        return views[0]
    if len(views) == 2 and not any(v.name.strip().lower() in sum(_ROLE_NAMES.values(), ()) for v in views):
        return views[VIEW_NAMES.index(role)]
    raise InputError(f"Cannot tell which view of the geometry is the {role} one: give a geometry with that one view, "
                     f"or name it '{role}' (found: {', '.join(v.name for v in views) or 'none'}).")


def run_biplanar(out_dir, ap_path, lat_path, geometry_path, weights=None, preset: str = "balanced",
                 levels: Sequence[str] = LEVELS, screenshot: bool = True, check_roles: bool = True,
                 progress: Optional[ProgressCallback] = None, context: Optional[MRMLContext] = None) -> BiplanarRun:
    from .biplanar_network import load_network
    from .biplanar_result_nodes import add_result_nodes
    from .radiograph_file import read_radiograph
    from .radiograph_node import create_radiograph_node
    from .shape_model_library import load_models

    report = as_progress(progress)
    start = time.perf_counter()
    views = pick_views(load_geometry(check_input_file(geometry_path, "geometry")))
    files = [read_radiograph(path, view.pixel_spacing) for path, view in zip((ap_path, lat_path), views)]
    network = load_network(weights)
    models = load_models(levels=list(LEVELS))
    context = context or get_context()
    scene = context.scene
    written = []
    with StagedOutput(out_dir) as out, rollback_on_error(scene):
        result = reconstruct_biplanar(network, models, [f.pixels for f in files], views, levels=levels,
                                      preset=preset, check_roles=check_roles, progress=lambda f, m: report(0.9 * f, m))
        report(0.9, "Writing the results")
        for role, file, view in zip(VIEW_NAMES, files, views):
            create_radiograph_node(scene, file.pixels, view, f"{role} radiograph")
        nodes = add_result_nodes(scene, result, models)
        for level, points in result.reconstruction.points.items():
            write_surface(points, models[level].triangles, out.path(f"{level}.vtk"))
            written.append(f"{level}.vtk")
        save_markups_json(scene, nodes["landmarks"], out.path(LANDMARKS_FILE))
        written.append(LANDMARKS_FILE)
        rows = measurement_rows(result.measurements) if result.measurements is not None else []
        write_measurements_csv(rows, out.path(MEASUREMENTS_FILE))
        written.append(MEASUREMENTS_FILE)
        save_scene_mrb(scene, out.path(SCENE_FILE))
        written.append(SCENE_FILE)
        picture = None
        if screenshot:
            report(0.95, "Rendering the 3D picture")
            from .screenshot import render_views, write_png

            picture = write_png(render_views(context), out.path(SCREENSHOT_FILE)).name
            written.append(SCREENSHOT_FILE)
        seconds = dict(result.seconds, total=time.perf_counter() - start)
        out.path(REPORT_FILE).write_text(report_markdown(result, [str(ap_path), str(lat_path)], preset, seconds,
                                                         rows, picture))
        written.append(REPORT_FILE)
        report(1.0, "Done")
    return BiplanarRun(Path(out_dir), written, result)


def write_measurements_csv(rows, path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(MEASUREMENT_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)


def report_markdown(result: BiplanarResult, inputs: Sequence[str], preset: str, seconds: Dict[str, float], rows,
                    picture: Optional[str]) -> str:
    """The run in a page: inputs, per-level fit, messages, measurements, timings."""
    lines = ["# BiplanarRecon reconstruction", ""]
    for role, path, view in zip(VIEW_NAMES, inputs, result.views):
        lines.append(f"- {role}: `{path}` (view '{view.name}', {view.size[0]}x{view.size[1]} pixels of "
                     f"{view.pixel_spacing[0]:.3f} mm)")
    lines += [f"- preset: {preset}", ""]
    if picture:
        lines += [f"![L1-L5 reconstructed, from the front and the left]({picture})", ""]
    lines += ["## Levels", "", "| level | found AP | found LAT | expected error AP mm | expected error LAT mm | NCC AP "
              "| NCC LAT | landmark residual mm | status |", "|---|---|---|---|---|---|---|---|---|"]
    for level in LEVELS:
        ap, lat = (result.detections[role].vertebra_confidence.get(level, float("nan")) for role in VIEW_NAMES)
        expected_ap, expected_lat = (result.detections[role].expected_error_mm(level) for role in VIEW_NAMES)
        cells = f"| {level} | {ap:.2f} | {lat:.2f} | {expected_ap:.1f} | {expected_lat:.1f} |"
        fit = result.reconstruction.results.get(level)
        if fit is None:
            lines.append(f"{cells} | | | not reconstructed |")
            continue
        lines.append(f"{cells} {fit.ncc[0]:.2f} | {fit.ncc[-1]:.2f} | "
                     f"{fit.landmark_rms_mm:.2f} | {'converged' if fit.converged else '**did not converge**'} |")
    lines += ["", "(found: median landmark confidence of the network; expected error: median of the level's "
              "landmarks' expected errors, one s.d. per axis, read from the spread of their heatmaps; NCC: "
              "agreement of the fitted model's projection with the network's image of that vertebra)", ""]
    overlaps = result.reconstruction.overlap_mm
    if overlaps:
        lines += ["Neighbours (deepest point of one inside the other, mm; real ones do not overlap): "
                  + ", ".join(f"{segment} {depth:.1f}" for segment, depth in overlaps.items()), ""]
    if result.messages:
        lines += ["## Messages", ""] + [f"- {m}" for m in result.messages] + [""]
    lines += ["## Measurements", ""]
    if rows:
        lines += ["| measure | where | value | unit |", "|---|---|---|---|"]
        lines += [f"| {r['measure']} | {r['where']} | {r['value']} | {r['unit']} |" for r in rows]
    else:
        lines.append("None (see the messages).")
    lines += ["", "## Time", "", "| stage | s |", "|---|---|"]
    lines += [f"| {stage} | {value:.2f} |" for stage, value in seconds.items()]
    return "\n".join(lines) + "\n"
