"""`bonerecon ssm build`: vertebra surfaces or label maps -> one shape model per level, with a report.

Inputs: surface files of one level (``--meshes``, with ``--level``), or label maps holding one
label per vertebra (``--labels`` with a ``--label-table``; every level found in at least three
maps gets a model, or only ``--levels``). Label maps are turned into surfaces by marching cubes
and smoothed with the same windowed-sinc filter as the meshes (voxel stair-steps removed the
same way for every input).

Levels with fewer than ``synthetic_below`` surfaces get synthetic variation: regional fields and,
except for the lending level itself, the real-shape modes of the level with the most surfaces if
that one has at least ``DONOR_MIN_SHAPES`` (:mod:`.synthetic_variation`); a femur or tibia gets
its own twist and tilt fields (:mod:`.leg_variation`) and no donor. The manifest and report say
exactly what was added.

Output folder: ``<level>.ssm.npz`` (the model), ``<level>_mean.vtk``, ``<level>_landmarks.json``
and ``<level>_landmarks.mrk.json`` (Slicer markups), ``manifest.json`` (file hashes, sources,
synthetic variation, quality figures) and ``report.txt``. All or nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import InputError
from .progress import ProgressCallback, as_progress
from .shape_model_library import MANIFEST, MANIFEST_FORMAT
from .ssm_builder import FREE_FORM_NOISE_MM, Donor, Surface, build_level_model
from .staged_output import StagedOutput


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
    from .image_io import read_label_map
    from .label_surface import label_surface
    from .mesh_io import polydata_from_arrays, prepare_surface
    from .mrml_io import check_input_file

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
            found.setdefault(level, []).append(Surface(f"{Path(path).name}:{level}", *surface, subject=str(path)))
    if wanted is not None:
        missing = sorted(wanted - set(found))
        if missing:
            raise InputError(f"No label map holds level(s) {', '.join(missing)} under this label table.")
    if not found:
        raise InputError("None of the label maps holds a level of the label table.")
    return found


SYNTHETIC_BELOW = 10
DONOR_MIN_SHAPES = 10


def run_ssm_build(out_dir, surfaces_by_level: Dict[str, List[Surface]], template_triangles: int = 8000,
                  evaluate: bool = True, synthetic_below: int = SYNTHETIC_BELOW,
                  progress: Optional[ProgressCallback] = None, landmark_rules=None,
                  variation_rules=None) -> Dict[str, dict]:
    """Build and write every level's model; returns the manifest's per-level entries.

    ``landmark_rules``: {level: rule} for levels that are not vertebrae (the leg bones' rules of
    :mod:`.leg_landmarks`); ``variation_rules``: {level: fields} the synthetic variation of such a
    level (:func:`.leg_variation.leg_variation`; without one it gets none: the vertebrae's is made
    for vertebrae)."""
    from .mesh_io import write_surface
    from .shape_model_nodes import write_landmark_markups
    from .shape_refinement import DEFAULT_AMPLITUDE_MM, DEFAULT_SIGMA_MM

    report = as_progress(progress)
    too_few = {level: len(s) for level, s in surfaces_by_level.items() if len(s) < 3}
    if too_few:
        raise InputError("A shape model needs at least 3 surfaces per level; got "
                         + ", ".join(f"{n} for {level}" for level, n in too_few.items()) + ".")
    counts = {level: len(s) for level, s in surfaces_by_level.items()}
    donor_level = max(counts, key=counts.get)
    if counts[donor_level] < DONOR_MIN_SHAPES:
        donor_level = None
    # The donor first: the others borrow its modes.
    levels = sorted(surfaces_by_level, key=lambda level: level != donor_level)
    entries: Dict[str, dict] = {}
    reports: Dict[str, List[str]] = {}
    donor = None
    with StagedOutput(out_dir) as out:
        for n, level in enumerate(levels):
            def sub(fraction, message, n=n):
                report((n + fraction) / len(levels), message)

            rule = (landmark_rules or {}).get(level)
            own_variation = (variation_rules or {}).get(level)
            synthetic = 0 < counts[level] < synthetic_below and (rule is None or own_variation is not None)
            model, build = build_level_model(level, surfaces_by_level[level], template_triangles=template_triangles,
                                             evaluate=evaluate, synthetic=synthetic, **({"landmarks": rule} if rule else {}),
                                             **({"regional": own_variation} if own_variation else {}),
                                             donor=donor if synthetic and level != donor_level and rule is None else None,
                                             progress=sub)
            if level == donor_level:
                donor = Donor(model, build.fits, [s.person for s in surfaces_by_level[level]])
            file_name = f"{level}.ssm.npz"
            digest = model.save(out.path(file_name))
            write_surface(model.mean, model.triangles, out.path(f"{level}_mean.vtk"))
            landmarks = [dict(name=lm.name, region=lm.region, position=[round(float(c), 4) for c in
                                                                       lm.position(model.mean)])
                         for lm in model.landmarks]
            out.path(f"{level}_landmarks.json").write_text(json.dumps(landmarks, indent=1))
            write_landmark_markups(model, out.path(f"{level}_landmarks.mrk.json"))
            entries[level] = dict(
                file=file_name, sha256=digest, n_shapes=len(build.sources), sources=build.sources,
                template=build.template, modes=model.n_modes, vertices=len(model.mean),
                synthetic_variation=build.synthetic,
                fit_distance_mm=_rounded(build.fit_distance), compactness=_rounded(build.compactness),
                generalisation_mm=_rounded(build.generalisation), specificity_mm=_rounded(build.specificity),
                real_only_generalisation_mm=_rounded(build.real_generalisation) or None,
                real_only_specificity_mm=_rounded(build.real_specificity),
                free_form_generalisation_mm=_rounded(build.free_form_generalisation),
                free_form=dict(sigma_mm=DEFAULT_SIGMA_MM, amplitude_mm=DEFAULT_AMPLITUDE_MM,
                               noise_mm=FREE_FORM_NOISE_MM))
            reports[level] = build.lines()
        entries = {level: entries[level] for level in surfaces_by_level}  # the caller's order
        lines = [line for level in surfaces_by_level for line in reports[level]]
        kept = _earlier_models(out_dir, entries)
        if kept:
            lines.append(f"Kept in the folder's manifest from before: {', '.join(kept)}.")
        manifest = dict(format=MANIFEST_FORMAT, models={**kept, **entries})
        out.path(MANIFEST).write_text(json.dumps(manifest, indent=1))
        out.path("report.txt").write_text("\n".join(lines) + "\n")
        report(1.0, "Done")
    return entries


def _earlier_models(out_dir, built) -> Dict[str, dict]:
    """The manifest entries of models already in the output folder that this build does not
    replace (a femur built into the folder that holds the tibia; one vertebra rebuilt), for those
    whose files are still there: a folder's manifest lists every model in it."""
    from .shape_model_library import read_manifest

    folder = Path(out_dir)
    if not (folder / MANIFEST).is_file():
        return {}
    try:
        earlier = read_manifest(folder)["models"]
    except InputError:  # unreadable: this build's manifest replaces it
        return {}
    return {level: entry for level, entry in earlier.items() if level not in built and isinstance(entry, dict)
            and (folder / str(entry.get("file", ""))).is_file()}


def _rounded(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [round(float(v), 4) for v in value]
    return round(float(value), 4)
