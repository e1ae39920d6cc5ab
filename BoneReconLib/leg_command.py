"""``bonerecon biplanar --anatomy leg``: AP + lateral radiographs of a leg (or one of them) and their geometry -> femur and tibia.

With one radiograph (one-view mode: ``--ap`` or ``--lat`` alone, a geometry holding that view)
the bones' depth along the beam rests on the geometry's ``source_to_object`` (else an assumed
object plane; the report says which, :mod:`.single_view_pose`).

Feature points come from the leg feature detector (:mod:`.leg_detector`, the bundled network
unless ``--detector``) or from a JSON file (``--points``: ``{"AP": [{"bone": "femur", "name":
"femoral head centre", "i": column, "j": row, "confidence": 1.0}, ...], "LAT": [...]}`` in each
image's own pixels, names as in the models' ``*_landmarks.json``; e.g. placed by hand in Slicer);
``points.json`` in the output holds the ones used; with the detector, ``features.json`` its boxes
(per bone) and ellipses (femoral head, posterior condyles, tibial plateau) per view, in each
image's pixels (:func:`.leg_detector.features_json`). Writes, all or nothing: ``femur.vtk`` / ``tibia.vtk`` (world
mm, RAS, like the geometry), ``landmarks.json`` (3D feature points), ``measurements.csv``,
``scene.mrb`` (radiographs on their detector planes and the models) and ``report.md``.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .app_context import MRMLContext, get_context
from .biplanar_command import pick_role_view, pick_views
from .errors import InputError
from .geometry import load_geometry
from .leg_measurements import hip_knee_ankle
from .leg_pipeline import BONES, SURFACES, LegReconstruction, reconstruct_leg
from .mesh_io import write_surface
from .mrml_io import check_input_file, save_scene_mrb
from .progress import ProgressCallback, as_progress
from .scene_transaction import rollback_on_error
from .staged_output import StagedOutput

REPORT_FILE, MEASUREMENTS_FILE, LANDMARKS_FILE, SCENE_FILE = "report.md", "measurements.csv", "landmarks.json", "scene.mrb"
POINTS_FILE, FEATURES_FILE = "points.json", "features.json"
DETECTOR = "leg-detector"  # the bundled network's manifest name


@dataclass
class LegRun:
    out_dir: Path
    files: List[str]
    result: LegReconstruction


def read_points(path, view_names: Sequence[str], roles: Sequence[str] = ("AP", "LAT")) -> List[list]:
    """The feature points of each view (by the geometry's view names, or their ``roles`` 'AP' / 'LAT')."""
    path = check_input_file(path, "feature points")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path.name} is not a JSON file of feature points: {exc}.") from None
    if not isinstance(data, dict):
        raise InputError(f"{path.name}: expected {{\"AP\": [points], \"LAT\": [points]}}.")
    found = []
    for name, role in zip(view_names, roles):
        points = data.get(name, data.get(role))
        if not isinstance(points, list):
            raise InputError(f"{path.name} has no list of points for view '{name}'.")
        for point in points:
            if not isinstance(point, dict) or not {"bone", "name", "i", "j"} <= set(point):
                raise InputError(f"{path.name}: every point needs bone, name, i and j (got {point}).")
        found.append(points)
    return found


def find_points(images: Sequence, views: Sequence, roles: Sequence[str], detector=None):
    """(feature points per view, {view name: boxes and ellipses}) found by the leg detector
    (``detector``: weights; default bundled) in images (bone bright) of the given roles (AP / LAT)."""
    from .leg_detector import load_leg_detector, points_and_features
    from .network_library import bundled_weights

    network = load_leg_detector(detector or bundled_weights(DETECTOR))
    return points_and_features(network, images, views, lateral=[role == "LAT" for role in roles])


def measurement_rows(measurements: Dict[str, float]) -> List[dict]:
    """Table rows (measure, where, value, unit) of :func:`leg_measurements`' values."""
    rows = []
    for name, value in measurements.items():
        label, unit = name.rsplit(" (", 1)
        where = "leg" if "hip-knee-ankle" in label else "tibia" if "tibia" in label else "femur"
        rows.append(dict(measure=label, where=where, value=f"{value:.2f}", unit=unit.rstrip(")")))
    return rows


def leg_measurements(result: LegReconstruction, right=(1.0, 0.0, 0.0), anterior=(0.0, 1.0, 0.0)) -> Dict[str, float]:
    values = {}
    for bone in result.bones.values():
        values.update(bone.measurements)
    if {"femur", "tibia"} <= set(result.bones):
        values.update(hip_knee_ankle(result.bones["femur"].landmarks, result.bones["tibia"].landmarks,
                                     anterior=anterior, right=right, side=result.side))
    return values


def run_leg(out_dir, ap_path, lat_path, geometry_path, points_path=None, side: str = "right",
            bones: Sequence[str] = BONES, models_folder=None, detector=None, progress: Optional[ProgressCallback] = None,
            context: Optional[MRMLContext] = None) -> LegRun:
    """``points_path`` None: the feature points from the detector (``detector``: weights; default bundled)."""
    from .depth_result_nodes import add_bone_models
    from .radiograph_file import read_radiograph
    from .radiograph_node import create_radiograph_node
    from .shape_model_library import load_leg_models

    report = as_progress(progress)
    start = time.perf_counter()
    paths = {role: path for role, path in (("AP", ap_path), ("LAT", lat_path)) if path is not None}
    if not paths:
        raise InputError("Give the leg's AP radiograph, its lateral one, or both.")
    geometry = load_geometry(check_input_file(geometry_path, "geometry"))
    views = pick_views(geometry) if len(paths) == 2 else [pick_role_view(geometry, next(iter(paths)))]
    files = [read_radiograph(path, view.pixel_spacing) for path, view in zip(paths.values(), views)]
    features = {}
    if points_path is not None:
        points = read_points(points_path, [v.name for v in views], list(paths))
    else:
        report(0.0, "Finding the feature points")
        points, features = find_points([f.pixels for f in files], views, list(paths), detector)
    models = load_leg_models(models_folder, bones)
    context = context or get_context()
    scene = context.scene
    written = []
    with StagedOutput(out_dir) as out, rollback_on_error(scene):
        result = reconstruct_leg(models, views, [f.pixels for f in files], points, side=side, bones=bones,
                                 progress=lambda f, m: report(0.9 * f, m))
        report(0.9, "Writing the results")
        for role, file, view in zip(paths, files, views):
            create_radiograph_node(scene, file.pixels, view, f"{role} radiograph")
        surfaces = result.surfaces()
        add_bone_models(scene, surfaces, SURFACES)
        for bone, (points_mm, triangles) in surfaces.items():
            write_surface(points_mm, triangles, out.path(f"{bone}.vtk"))
            written.append(f"{bone}.vtk")
        landmarks = {bone: {name: [round(float(c), 3) for c in p] for name, p in found.landmarks.items()}
                     for bone, found in result.bones.items()}
        out.path(LANDMARKS_FILE).write_text(json.dumps(landmarks, indent=1))
        out.path(POINTS_FILE).write_text(json.dumps({v.name: p for v, p in zip(views, points)}, indent=1))
        if any(f["boxes"] or f["ellipses"] for f in features.values()):
            out.path(FEATURES_FILE).write_text(json.dumps(features, indent=1))
            written.append(FEATURES_FILE)
        measurements = leg_measurements(result)
        with open(out.path(MEASUREMENTS_FILE), "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["measure", "value", "unit"])
            for row in measurement_rows(measurements):
                writer.writerow([row["measure"], row["value"], row["unit"]])
        save_scene_mrb(scene, out.path(SCENE_FILE))
        written += [LANDMARKS_FILE, POINTS_FILE, MEASUREMENTS_FILE, SCENE_FILE]
        out.path(REPORT_FILE).write_text(report_markdown(result, {r: str(p) for r, p in paths.items()}, measurements,
                                                         time.perf_counter() - start))
        written.append(REPORT_FILE)
        report(1.0, "Done")
    return LegRun(Path(out_dir), written, result)


def report_markdown(result: LegReconstruction, inputs: Dict[str, str], measurements: Dict[str, float],
                    seconds: float) -> str:
    lines = ["# Leg reconstruction (femur, tibia)", ""] + [f"- {role}: `{path}`" for role, path in inputs.items()]
    lines += [f"- side: {result.side}", "", "| bone | " + " | ".join(f"NCC {r}" for r in inputs)
              + " | feature points RMS mm | status |", "|---|" + "---|" * len(inputs) + "---|---|"]
    for bone, found in result.bones.items():
        fit = found.registration
        lines.append(f"| {bone} | " + " | ".join(f"{v:.2f}" for v in fit.ncc) + f" | {fit.landmark_rms_mm:.2f} | "
                     f"{'converged' if fit.converged else '**did not converge**'} |")
    if result.messages:
        lines += ["", "## Messages", ""] + [f"- {m}" for m in result.messages]
    lines += ["", "## Measurements", "", "| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value:.1f} |" for name, value in measurements.items()]
    lines += ["", f"Time: {seconds:.1f} s", ""]
    return "\n".join(lines)
