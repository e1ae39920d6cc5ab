"""``bonerecon register``: ground truth for your own radiographs, or one surface onto another.

2D/3D: a CT (+ optionally its vertebra label map) and radiographs with their geometry -> the CT's
rigid pose that makes its DRRs match the radiographs, then each labelled vertebra's own pose
(``rigid_registration``). Writes ``registration.json`` (4x4 poses in RAS, image agreement per view,
converged flags), one surface per label moved by its pose (``<name>.vtk``: ground-truth meshes in
the radiographs' frame, ready for ``bonerecon evaluate``) and ``report.md``.

3D/3D: a moving surface onto a fixed one (rigid ICP, vtk), -> ``registration.json`` and the moved
surface ``moved.vtk``, with the RMS surface distance before and after.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import InputError
from .progress import ProgressCallback, as_progress
from .staged_output import StagedOutput

RESULT_FILE, REPORT_FILE, MOVED_FILE = "registration.json", "report.md", "moved.vtk"


@dataclass
class RegisterRun:
    out_dir: Path
    files: List[str]
    record: dict


def _pose_record(result) -> dict:
    return dict(pose=np.round(result.pose, 6).tolist(), ncc=[round(float(c), 4) for c in result.ncc],
                converged=bool(result.converged))


def run_register_2d3d(out_dir, ct_path, geometry_path, image_paths: Sequence, labels_path=None,
                      label_table: str = "totalsegmentator", levels: Optional[Sequence[str]] = None,
                      whole: bool = True, generations: Sequence[int] = (50, 30),
                      progress: Optional[ProgressCallback] = None) -> RegisterRun:
    from .drr import Volume, hu_to_mu
    from .geometry import load_geometry
    from .image_io import read_label_map, read_volume_array
    from .label_surface import label_surface
    from .mesh_io import write_surface
    from .mrml_io import check_input_file
    from .radiograph_file import read_radiograph
    from .rigid_registration import register_ct
    from .vertebra_labels import load_label_table, select_levels

    report = as_progress(progress)
    views = load_geometry(check_input_file(geometry_path, "geometry"))
    if len(image_paths) != len(views):
        raise InputError(f"The geometry has {len(views)} views ({', '.join(v.name for v in views)}) but "
                         f"{len(image_paths)} radiographs were given; give one per view, in the same order.")
    images = [read_radiograph(path, view.pixel_spacing).pixels for path, view in zip(image_paths, views)]
    hu, matrix = read_volume_array(ct_path, "CT")
    mu = Volume.from_numpy(hu_to_mu(hu), matrix)
    names: Dict[int, str] = {}
    labels = label_matrix = None
    if labels_path is not None:
        labels, label_matrix = read_label_map(labels_path)
        table = load_label_table(label_table)
        present = np.unique(labels)
        names = select_levels(present, table, levels) if levels else select_levels(present, table)
    files, record = [], dict(ct=str(ct_path), images=[str(p) for p in image_paths], views=[v.name for v in views])
    with StagedOutput(out_dir) as out:
        results = register_ct(mu, views, images, labels, label_matrix, names, whole=whole, generations=generations,
                              progress=lambda f, m: report(0.9 * f, m))
        record["poses"] = {name: _pose_record(r) for name, r in results.items()}
        report(0.9, "Writing the registered surfaces")
        for value, name in names.items():
            if name not in results:
                continue
            points, triangles = label_surface(labels, matrix, value)
            pose = results[name].pose
            write_surface(points @ pose[:3, :3].T + pose[:3, 3], triangles, out.path(f"{name}.vtk"))
            files.append(f"{name}.vtk")
        out.path(RESULT_FILE).write_text(json.dumps(record, indent=1))
        lines = ["# 2D/3D registration", "", f"CT `{ct_path}`; radiographs " +
                 ", ".join(f"`{p}` ({v.name})" for p, v in zip(image_paths, views)), "",
                 "| part | image agreement (NCC per view) | converged |", "|---|---|---|"]
        for name, entry in record["poses"].items():
            lines.append(f"| {name} | {', '.join(f'{c:.3f}' for c in entry['ncc'])} | "
                         f"{'yes' if entry['converged'] else '**no**'} |")
        out.path(REPORT_FILE).write_text("\n".join(lines) + "\n")
        files += [RESULT_FILE, REPORT_FILE]
        report(1.0, "Done")
    return RegisterRun(Path(out_dir), files, record)


def rigid_icp(moving_points: np.ndarray, fixed_polydata, iterations: int = 200) -> np.ndarray:
    """4x4 rigid transform taking the moving points onto the fixed surface (vtk ICP, centroids first)."""
    import vtk

    source = vtk.vtkPolyData()
    points = vtk.vtkPoints()
    for p in moving_points:
        points.InsertNextPoint(*p)
    source.SetPoints(points)
    icp = vtk.vtkIterativeClosestPointTransform()
    icp.SetSource(source)
    icp.SetTarget(fixed_polydata)
    icp.GetLandmarkTransform().SetModeToRigidBody()
    icp.StartByMatchingCentroidsOn()
    icp.SetMaximumNumberOfIterations(iterations)
    icp.SetMaximumNumberOfLandmarks(max(len(moving_points), 1))
    icp.SetMaximumMeanDistance(1e-6)
    icp.CheckMeanDistanceOn()
    icp.Update()
    matrix = icp.GetMatrix()
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def run_register_3d3d(out_dir, moving_path, fixed_path, units: Optional[str] = None, lps: bool = False,
                      progress: Optional[ProgressCallback] = None) -> RegisterRun:
    from .mesh_io import read_surface, write_surface
    from .shape_correspondence import point_to_surface
    from .surface_metrics import triangles as triangle_arrays

    report = as_progress(progress)
    moving_points, moving_triangles = triangle_arrays(read_surface(moving_path, units=units, lps=lps))
    fixed = read_surface(fixed_path, units=units, lps=lps)
    fixed_points, fixed_triangles = triangle_arrays(fixed)
    report(0.1, "Rigid ICP")
    pose = rigid_icp(moving_points, fixed)
    moved = moving_points @ pose[:3, :3].T + pose[:3, 3]
    rms = lambda p: float(np.sqrt(np.mean(point_to_surface(p, fixed_points, fixed_triangles) ** 2)))  # noqa: E731
    record = dict(moving=str(moving_path), fixed=str(fixed_path), pose=np.round(pose, 6).tolist(),
                  rms_before_mm=round(rms(moving_points), 4), rms_after_mm=round(rms(moved), 4))
    with StagedOutput(out_dir) as out:
        write_surface(moved, moving_triangles, out.path(MOVED_FILE))
        out.path(RESULT_FILE).write_text(json.dumps(record, indent=1))
        report(1.0, "Done")
    return RegisterRun(Path(out_dir), [MOVED_FILE, RESULT_FILE], record)
