"""`bonerecon ssm build`: vertebra surfaces or label maps -> one shape model per level, with a report.

Inputs: surface files of one level (``--meshes``, with ``--level``), or label maps holding one
label per vertebra (``--labels`` with a ``--label-table``; every level found in at least three
maps gets a model, or only ``--levels``). Label maps are turned into surfaces by marching cubes
and smoothed with the same windowed-sinc filter as the meshes (voxel stair-steps removed the
same way for every input).

Output folder: ``<level>.ssm.npz`` (the model), ``<level>_mean.vtk`` and
``<level>_landmarks.json`` (to look at), ``manifest.json`` (file hashes, sources, quality
figures) and ``report.txt``. All or nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import InputError
from .progress import ProgressCallback, as_progress
from .ssm_builder import Surface, build_level_model
from .staged_output import StagedOutput

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "bonerecon-ssm-manifest/1"


def surfaces_from_meshes(paths: Sequence, units: Optional[str] = None, lps: bool = False) -> List[Surface]:
    from .mesh_io import prepare_surface, read_surface

    surfaces = []
    for path in paths:
        points, triangles = prepare_surface(read_surface(path, units=units, lps=lps), what=f"surface {Path(path).name}")
        surfaces.append(Surface(Path(path).name, points, triangles))
    return surfaces


def surfaces_from_label_maps(paths: Sequence, table: Dict[int, str],
                             levels: Optional[Sequence[str]] = None) -> Dict[str, List[Surface]]:
    """{level: surfaces} from label maps (read with their orientation, RAS)."""
    from .label_surface import label_surface
    from .mesh_io import polydata_from_arrays, prepare_surface
    from .mrml_io import check_input_file
    from .image_io import read_label_map

    wanted = set(levels) if levels else None
    if wanted is not None:
        unknown = sorted(wanted - set(table.values()))
        if unknown:
            raise InputError(f"The label table has no level(s) {', '.join(unknown)}.")
    found: Dict[str, List[Surface]] = {}
    for path in paths:
        labels, matrix = read_label_map(check_input_file(path, "label map"))
        present = {int(v) for v in np.unique(labels) if v != 0}
        for value, level in table.items():
            if value not in present or (wanted is not None and level not in wanted):
                continue
            points, triangles = label_surface(labels, matrix, value)
            surface = prepare_surface(polydata_from_arrays(points, triangles), what=f"{level} of {Path(path).name}")
            found.setdefault(level, []).append(Surface(f"{Path(path).name}:{level}", *surface))
    if wanted is not None:
        missing = sorted(wanted - set(found))
        if missing:
            raise InputError(f"No label map holds level(s) {', '.join(missing)} under this label table.")
    if not found:
        raise InputError("None of the label maps holds a level of the label table.")
    return found


def run_ssm_build(out_dir, surfaces_by_level: Dict[str, List[Surface]], template_triangles: int = 8000,
                  evaluate: bool = True, progress: Optional[ProgressCallback] = None) -> Dict[str, dict]:
    """Build and write every level's model; returns the manifest's per-level entries."""
    from .mesh_io import write_surface

    report = as_progress(progress)
    too_few = {level: len(s) for level, s in surfaces_by_level.items() if len(s) < 3}
    if too_few:
        raise InputError("A shape model needs at least 3 surfaces per level; got "
                         + ", ".join(f"{n} for {level}" for level, n in too_few.items()) + ".")
    entries: Dict[str, dict] = {}
    lines: List[str] = []
    with StagedOutput(out_dir) as out:
        levels = list(surfaces_by_level)
        for n, level in enumerate(levels):
            def sub(fraction, message, n=n):
                report((n + fraction) / len(levels), message)

            model, build = build_level_model(level, surfaces_by_level[level], template_triangles=template_triangles,
                                             evaluate=evaluate, progress=sub)
            file_name = f"{level}.ssm.npz"
            digest = model.save(out.path(file_name))
            write_surface(model.mean, model.triangles, out.path(f"{level}_mean.vtk"))
            landmarks = [dict(name=lm.name, region=lm.region, position=[round(float(c), 4) for c in
                                                                       lm.position(model.mean)])
                         for lm in model.landmarks]
            out.path(f"{level}_landmarks.json").write_text(json.dumps(landmarks, indent=1))
            entries[level] = dict(file=file_name, sha256=digest, n_shapes=len(build.sources), sources=build.sources,
                                  template=build.template, modes=model.n_modes, vertices=len(model.mean),
                                  fit_distance_mm=[round(d, 4) for d in build.fit_distance],
                                  compactness=[round(c, 4) for c in build.compactness],
                                  generalisation_mm=[round(g, 4) for g in build.generalisation],
                                  specificity_mm=None if build.specificity is None else round(build.specificity, 4))
            lines += build.lines()
        manifest = dict(format=MANIFEST_FORMAT, models=entries)
        out.path(MANIFEST).write_text(json.dumps(manifest, indent=1))
        out.path("report.txt").write_text("\n".join(lines) + "\n")
        report(1.0, "Done")
    return entries
