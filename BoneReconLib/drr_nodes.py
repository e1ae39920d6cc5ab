"""CT (+ label map) volume nodes and views -> DRR, per-label DRR and depth-map nodes (logic, no Qt).

Every output is a single-slice volume placed on its view's detector plane, carrying the view
(see :mod:`.radiograph_node`), so it shows up in Slicer's 3D view next to the CT. Callable from
Slicer's Python console, from the module panels and from ``bonerecon drr``; on error or cancel
the scene is left as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from .drr import radiograph_from_attenuation, render_attenuation, render_labels
from .errors import InputError
from .geometry import View
from .label_depth import label_depth
from .progress import ProgressCallback, as_progress
from .radiograph_node import create_radiograph_node
from .scene_transaction import rollback_on_error
from .volume_node import attenuation_volume, volume_array

DEPTH_KINDS = ("front", "back", "thickness")
KIND_ATTRIBUTE = "BoneRecon.imageKind"  # radiograph, attenuation, label DRR, front/back depth, thickness


@dataclass
class RenderedNodes:
    """The nodes made by :func:`render_to_nodes`, keyed by view name (and label name, depth kind)."""

    radiographs: Dict[str, object] = field(default_factory=dict)
    attenuation: Dict[str, object] = field(default_factory=dict)
    label_drrs: Dict[Tuple[str, str], object] = field(default_factory=dict)
    depth: Dict[Tuple[str, str, str], object] = field(default_factory=dict)

    def all_nodes(self):
        for group in (self.radiographs, self.attenuation, self.label_drrs, self.depth):
            yield from group.values()


def pick_device(name: Optional[str] = None) -> torch.device:
    """'cpu', 'cuda' or None/'auto' (CUDA when present)."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was requested but no CUDA device is available.")
    if name not in ("cpu", "cuda"):
        raise InputError(f"Unknown device '{name}' (use cpu, cuda or auto).")
    return torch.device(name)


def render_to_nodes(
    ct_node,
    views: Sequence[View],
    label_node=None,
    labels: Optional[Mapping[int, str]] = None,
    energy_kev: float = 60.0,
    device: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
) -> RenderedNodes:
    """DRRs of ``ct_node`` in every view; with ``label_node``, each label's own DRR and depth maps.

    ``labels`` {value: name} selects and names the labels (default: every value present, named
    "label <value>"). The label map must share the CT's voxel grid.
    """
    report = as_progress(progress)
    views = list(views)
    if not views:
        raise InputError("The geometry has no views.")
    if len({v.name for v in views}) != len(views):
        raise InputError("Every view in the geometry needs its own name.")
    torch_device = pick_device(device)
    scene = ct_node.GetScene()
    result = RenderedNodes()
    with rollback_on_error(scene), torch.no_grad():
        report(0.0, "Preparing the CT")
        ct = attenuation_volume(ct_node, energy_kev, torch_device)
        volume = ct.crop_to_content()  # rays skip the air around the patient
        selected, label_array = _labels_on_ct_grid(ct, label_node, labels)
        steps = len(views) * (1 + 2 * len(selected))
        done = 0
        for view in views:
            report(done / steps, f"Rendering the DRR of view '{view.name}'")
            line_integral = render_attenuation(volume, [view])[0, 0]
            image = radiograph_from_attenuation(line_integral)
            result.attenuation[view.name] = _image_node(scene, line_integral, view, f"{view.name} attenuation",
                                                         "attenuation")
            result.radiographs[view.name] = _image_node(scene, image, view, f"{view.name} DRR", "radiograph")
            done += 1
        if selected:
            matrix = ct.ijk_to_ras
            for value, name in selected.items():
                for view in views:
                    report(done / steps, f"Rendering {name} in view '{view.name}'")
                    drr = render_labels(ct, label_array, [value], [view])[0, 0, 0]
                    result.label_drrs[name, view.name] = _image_node(scene, drr, view, f"{name} {view.name} DRR",
                                                                     "label DRR")
                    done += 1
                    report(done / steps, f"Depth maps of {name} in view '{view.name}'")
                    maps = label_depth(label_array, matrix, [value], [view])[0, 0, 0]
                    for kind in DEPTH_KINDS:
                        node_kind = "thickness" if kind == "thickness" else f"{kind} depth"
                        result.depth[name, view.name, kind] = _image_node(
                            scene, getattr(maps, kind), view, f"{name} {view.name} {node_kind}", node_kind)
                    done += 1
        report(1.0, "Rendered")
    return result


def _labels_on_ct_grid(ct, label_node, labels) -> Tuple[Dict[int, str], Optional[np.ndarray]]:
    if label_node is None:
        if labels:
            raise InputError("Labels were selected but no label map was given.")
        return {}, None
    label_array, label_matrix = volume_array(label_node)
    if label_array.shape != tuple(ct.data.shape) or not np.allclose(label_matrix, ct.ijk_to_ras, atol=1e-3):
        raise InputError(f"The label map '{label_node.GetName()}' is not on the CT's voxel grid "
                         "(same size, spacing, origin and axes); resample it onto the CT first.")
    if not np.all(np.equal(np.mod(label_array, 1), 0)):
        raise InputError("The label map must hold integer labels, but it has fractional values.")
    label_array = label_array.astype(np.int64)
    present = {int(v) for v in np.unique(label_array) if v != 0}
    if labels is None:
        selected = {v: f"label {v}" for v in sorted(present)}
    else:
        selected = {int(v): str(n) for v, n in labels.items() if int(v) in present}
        absent = [str(n) for v, n in labels.items() if int(v) not in present]
        if absent and selected:
            logging.getLogger("BoneRecon").warning("Not in the label map, skipped: %s", ", ".join(absent))
        if not selected:
            raise InputError(f"None of the selected labels ({', '.join(map(str, labels.values()))}) "
                             "is present in the label map.")
    if not selected:
        raise InputError(f"The label map '{label_node.GetName()}' holds no labels (all voxels are 0).")
    return selected, label_array


def _image_node(scene, image: torch.Tensor, view: View, name: str, kind: str):
    array = image.detach().to("cpu", torch.float32).numpy()
    if not np.all(np.isfinite(array)):
        raise RuntimeError(f"The rendered image '{name}' has non-finite values.")
    node = create_radiograph_node(scene, array, view, name)
    node.SetAttribute(KIND_ATTRIBUTE, kind)
    return node

