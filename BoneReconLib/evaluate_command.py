"""``bonerecon evaluate``: reconstructed vertebra surfaces against ground-truth surfaces, per level.

Reads ``<level>.vtk|.vtp|.stl|.ply|.obj`` from both folders (a ``bonerecon biplanar`` output folder
is a valid ``--found``), and landmarks from ``.mrk.json`` files labelled "<level> <landmark name>"
(the found folder's ``landmarks.mrk.json``, and ``--truth-landmarks`` if given). Per level:
``surface_evaluation.compare_surfaces`` (mean of both directions, RMS, HD95, Dice, and the
posterior-arch error where body landmarks say where the posterior wall is: the true ones if
given, else the found ones), the mean 3D landmark error when both sides have landmarks, and
with landmarks on both sides for neighbouring levels, the error of every spine measurement.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import InputError
from .mrml_io import check_input_file
from .spine_alignment import LEVELS

SURFACE_SUFFIXES = (".vtk", ".vtp", ".stl", ".ply", ".obj")
COLUMNS = ("level", "mean_mm", "rms_mm", "hd95_mm", "dice", "posterior_mm", "landmark_mm")


@dataclass
class Evaluation:
    rows: List[Dict[str, object]]  # one per level, COLUMNS
    measurement_errors: List[Dict[str, object]] = field(default_factory=list)  # measure, where, found, true, error
    missing: List[str] = field(default_factory=list)  # levels with a truth surface but no found one


def read_markups_points(path) -> Dict[str, Dict[str, np.ndarray]]:
    """{level: {landmark name: RAS (3,)}} from a Slicer markups file whose point labels are "<level> <name>"."""
    path = check_input_file(path, "landmarks")
    try:
        markups = json.loads(Path(path).read_text())["markups"]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{Path(path).name} is not a Slicer markups (.mrk.json) file.") from None
    found: Dict[str, Dict[str, np.ndarray]] = {}
    for markup in markups:
        flip = np.array([-1.0, -1.0, 1.0]) if markup.get("coordinateSystem", "LPS") == "LPS" else np.ones(3)
        for point in markup.get("controlPoints", []):
            level, _, name = str(point.get("label", "")).partition(" ")
            if name and "position" in point:
                found.setdefault(level, {})[name] = np.asarray(point["position"], dtype=np.float64) * flip
    return found


def _surface_file(folder: Path, level: str) -> Optional[Path]:
    for suffix in SURFACE_SUFFIXES:
        if (folder / f"{level}{suffix}").is_file():
            return folder / f"{level}{suffix}"
    return None


def evaluate_folders(found_dir, truth_dir, levels: Sequence[str] = LEVELS, truth_landmarks=None,
                     units: Optional[str] = None, lps: bool = False) -> Evaluation:
    """``units``/``lps`` describe the truth surfaces (the found ones are BoneRecon's: RAS mm)."""
    from .mesh_io import read_surface
    from .spine_measurements import consecutive_levels, measure_spine, measurement_rows
    from .surface_evaluation import compare_surfaces
    from .surface_metrics import triangles as triangle_arrays

    found_dir, truth_dir = Path(found_dir), Path(truth_dir)
    for folder, what in ((found_dir, "--found"), (truth_dir, "--truth")):
        if not folder.is_dir():
            raise InputError(f"{what} {folder} is not a folder.")
    found_marks = read_markups_points(found_dir / "landmarks.mrk.json") \
        if (found_dir / "landmarks.mrk.json").is_file() else {}
    true_marks = read_markups_points(truth_landmarks) if truth_landmarks else {}
    rows, missing = [], []
    for level in levels:
        truth_file, found_file = _surface_file(truth_dir, level), _surface_file(found_dir, level)
        if truth_file is None:
            continue
        if found_file is None:
            missing.append(level)
            continue
        found = triangle_arrays(read_surface(found_file))
        truth = triangle_arrays(read_surface(truth_file, units=units, lps=lps))
        wall = true_marks.get(level) or found_marks.get(level)
        if wall is not None and not all(f"body {s} {e}" in wall for s in ("anterior", "posterior")
                                        for e in ("superior", "inferior")):
            wall = None
        errors = compare_surfaces(*found, *truth, landmarks=wall)
        common = sorted(set(found_marks.get(level, {})) & set(true_marks.get(level, {})))
        landmark = float(np.mean([np.linalg.norm(found_marks[level][n] - true_marks[level][n]) for n in common])) \
            if common else float("nan")
        rows.append(dict(dict(level=level, posterior_mm=float("nan")), **errors, landmark_mm=landmark))
    if not rows:
        raise InputError(f"No level has a surface in both {found_dir} and {truth_dir} (files named L1.vtk, "
                         f"L2.stl ..., one of {', '.join(SURFACE_SUFFIXES)}).")
    measured = []
    both = [level for level in levels if level in found_marks and level in true_marks]
    run = consecutive_levels(levels, both)
    if len(run) >= 2:
        try:
            truth_rows = measurement_rows(measure_spine(true_marks, run))
            found_rows = measurement_rows(measure_spine(found_marks, run))
        except KeyError:
            truth_rows = found_rows = []  # landmark files without the vertebral-body landmarks
        for a, b in zip(truth_rows, found_rows):
            if isinstance(a["value"], float):
                measured.append(dict(measure=a["measure"], where=a["where"], unit=a["unit"], found=b["value"],
                                     true=a["value"], error=round(b["value"] - a["value"], 2)))
    return Evaluation(rows, measured, missing)


def write_evaluation_csv(evaluation: Evaluation, path) -> Path:
    """The per-level rows as CSV, written atomically (a failed write leaves no file)."""
    path = Path(path)
    handle, staged = tempfile.mkstemp(prefix=".bonerecon-partial-", suffix=".csv", dir=path.parent or ".")
    try:
        with os.fdopen(handle, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(COLUMNS))
            writer.writeheader()
            for row in evaluation.rows:
                writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                                 if k in COLUMNS})
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
    return path
