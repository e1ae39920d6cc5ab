"""`bonerecon drr`: CT + geometry JSON -> DRR images (+ per-label DRRs and depth maps) in a folder.

Every image is a single-slice NRRD placed on its view's detector plane (it loads into Slicer
where the detector is), plus a PNG preview per view, the geometry actually used and, unless
disabled, a Slicer scene bundle with the CT, the label map and every image. All or nothing: the
folder only receives files once everything was rendered and written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .app_context import MRMLContext, get_context
from .drr_nodes import render_to_nodes
from .errors import InputError
from .geometry import load_geometry, save_geometry
from .mrml_io import check_input_file, load_volume, save_scene_mrb, save_volume
from .progress import ProgressCallback, as_progress
from .radiograph_node import image_of
from .scene_transaction import rollback_on_error
from .staged_output import StagedOutput
from .vertebra_labels import load_label_table

SCENE_FILE = "scene.mrb"
GEOMETRY_FILE = "geometry.json"


@dataclass
class DrrResult:
    out_dir: Path
    files: List[str]
    views: List[str]
    labels: List[str]


def file_stem(name: str) -> str:
    """A file-name-safe version of a view or label name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip()).strip("._")
    return stem or "image"


def choose_labels(table_spec: Optional[str], only: Optional[Sequence[str]]) -> Optional[Dict[int, str]]:
    """{value: name} to render: the table's entries (all values if no table), narrowed to ``only``."""
    table = load_label_table(table_spec) if table_spec else None
    if not only:
        return table
    chosen = {}
    for item in only:
        item = item.strip()
        if table is not None:
            matches = {v: n for v, n in table.items() if n == item or str(v) == item}
        elif item.lstrip("-").isdigit():
            matches = {int(item): f"label {item}"}
        else:
            raise InputError(f"'{item}' is not a label value; give a --label-table to select labels by name.")
        if not matches:
            raise InputError(f"'{item}' is not in the label table.")
        chosen.update(matches)
    return chosen


def run_drr(
    out_dir,
    ct_path,
    geometry_path,
    labels_path=None,
    label_table: Optional[str] = None,
    only: Optional[Sequence[str]] = None,
    energy_kev: float = 60.0,
    device: Optional[str] = None,
    scene_bundle: bool = True,
    progress: Optional[ProgressCallback] = None,
    context: Optional[MRMLContext] = None,
) -> DrrResult:
    report = as_progress(progress)
    views = load_geometry(check_input_file(geometry_path, "geometry"))
    check_input_file(ct_path, "CT")
    if labels_path is not None:
        check_input_file(labels_path, "label map")
    elif label_table or only:
        raise InputError("--label-table and --only need a label map (--labels).")
    labels = choose_labels(label_table, only)
    stems = [file_stem(v.name) for v in views]
    if len(set(stems)) != len(stems):
        raise InputError("The views' names must differ after making them file-name safe: " + ", ".join(stems))
    context = context or get_context()
    scene = context.scene

    with StagedOutput(out_dir) as out, rollback_on_error(scene):
        report(0.0, f"Loading {Path(ct_path).name}")
        ct = load_volume(scene, ct_path, name="CT", what="CT")
        label_node = None
        if labels_path is not None:
            label_node = load_volume(scene, labels_path, name="Labels", labelmap=True, what="label map")
        nodes = render_to_nodes(ct, views, label_node, labels, energy_kev=energy_kev, device=device,
                                progress=lambda f, m: report(0.05 + 0.8 * f, m))
        report(0.85, "Writing the images")
        files = []

        def write(node, name):
            save_volume(node, out.path(name))
            files.append(name)

        for view, stem in zip(views, stems):
            write(nodes.radiographs[view.name], f"{stem}.nrrd")
            write(nodes.attenuation[view.name], f"{stem}_attenuation.nrrd")
            _write_preview(image_of(nodes.radiographs[view.name]), out.path(f"{stem}.png"))
            files.append(f"{stem}.png")
        label_names = list(dict.fromkeys(name for name, _ in nodes.label_drrs))
        label_stems = {name: file_stem(name) for name in label_names}
        if len(set(label_stems.values())) != len(label_stems):
            raise InputError("The label names must differ after making them file-name safe.")
        for (name, view_name), node in nodes.label_drrs.items():
            write(node, f"{label_stems[name]}_{file_stem(view_name)}_drr.nrrd")
        for (name, view_name, kind), node in nodes.depth.items():
            write(node, f"{label_stems[name]}_{file_stem(view_name)}_{kind}.nrrd")
        save_geometry(views, out.path(GEOMETRY_FILE))
        files.append(GEOMETRY_FILE)
        if scene_bundle:
            report(0.9, "Saving the scene")
            save_scene_mrb(scene, out.path(SCENE_FILE))
            files.append(SCENE_FILE)
        report(1.0, "Done")
    return DrrResult(out_dir=Path(out_dir), files=files, views=[v.name for v in views], labels=label_names)


def _write_preview(image: np.ndarray, path) -> None:
    """8-bit grey PNG of a radiograph in [0, 1] (bone bright), stretched to its 0.5-99.5 percentiles."""
    from .screenshot import write_png

    lo, hi = np.percentile(image, [0.5, 99.5])
    grey = np.clip((image - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    write_png(np.repeat((grey * 255).round().astype(np.uint8)[..., None], 3, axis=2), path)
