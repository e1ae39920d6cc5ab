"""DepthRecon from one radiograph: the network's masks and depth maps, turned into millimetres and surfaces.

The radiograph is resampled so that a network pixel has the width at the object plane that the
network was trained at (``object_pixel_mm`` in its configuration), ``size`` x ``size`` pixels
about the image centre (or ``centre_ij``). That grid is itself a view: the same source and
detector plane, coarser pixels (:func:`network_view`), so the network's relative depths are
decoded with it (:mod:`.depth_reference`) and back-projected through it
(:mod:`.depth_reconstruction`) without resampling the outputs. A bone whose mask covers fewer
than ``MIN_BONE_PIXELS`` network pixels is "not found"; when no bone is found the prediction
says so instead of meshing noise. Core module (numpy/torch/vtk), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .biplanar_samples import normalise, resample_covered
from .depth_network import DepthNet
from .depth_reference import decode_depth, object_distance, object_pixel_mm
from .errors import InputError
from .geometry import View

MIN_BONE_PIXELS = 30
SMOOTHING_ITERATIONS = 10  # light windowed-sinc smoothing of the back-projected surfaces


@dataclass
class DepthPrediction:
    """Per bone (network order) on ``view`` (the network grid): mask probability, front and back
    depth (mm from the source); ``found``: the bones with enough mask; ``assumed_object_plane``:
    the view had no source_to_object and the default was used."""

    view: View
    bones: List[str]
    probability: torch.Tensor
    front: torch.Tensor
    back: torch.Tensor
    source_to_object: float
    assumed_object_plane: bool
    found: List[str] = field(default_factory=list)

    def maps(self, bone: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = self.bones.index(bone)
        return self.front[k], self.back[k], self.probability[k]

    @property
    def message(self) -> Optional[str]:
        notes = []
        if not self.found:
            notes.append("No bone found in the radiograph (no mask reaches "
                         f"{MIN_BONE_PIXELS} pixels): nothing is reconstructed.")
        if self.assumed_object_plane:
            notes.append(f"The geometry gives no source_to_object: the bones' mid-plane was assumed "
                         f"{self.source_to_object:.0f} mm from the source.")
        return " ".join(notes) or None


def network_view(view: View, model: DepthNet, source_to_object: float,
                 centre_ij: Optional[Sequence[float]] = None) -> Tuple[View, np.ndarray]:
    """(the network grid as a view, 3x3 network pixel -> image pixel matrix)."""
    size = int(model.config["size"])
    ratio = model.config["object_pixel_mm"] / object_pixel_mm(view, source_to_object)  # image pixels per network pixel
    nu, nv = view.size
    ci, cj = ((nu - 1) / 2, (nv - 1) / 2) if centre_ij is None else (float(c) for c in centre_ij)
    half = (size - 1) / 2
    transform = np.array([[ratio, 0.0, ci - ratio * half], [0.0, ratio, cj - ratio * half], [0.0, 0.0, 1.0]])
    su, sv = view.pixel_spacing
    centre = view.pixel_to_world(ci, cj)
    grid = View(name=view.name, source=view.source, detector_center=centre, detector_u=view.detector_u,
                detector_v=view.detector_v, pixel_spacing=(su * ratio, sv * ratio), size=(size, size),
                extra=dict(view.extra, source_to_object=source_to_object))
    return grid, transform


@torch.no_grad()
def predict_depth(model: DepthNet, image: np.ndarray, view: View,
                  centre_ij: Optional[Sequence[float]] = None) -> DepthPrediction:
    """The network's bones in a radiograph ``image`` (nv, nu; bone bright) seen in ``view``."""
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim != 2 or pixels.shape != view.shape:
        raise InputError(f"The image is {pixels.shape} pixels; the geometry's view '{view.name}' is {view.shape} "
                         "(rows, columns).")
    if not np.isfinite(pixels).all():
        raise InputError("The image holds NaN or infinite values.")
    distance, assumed = object_distance(view)
    grid, transform = network_view(view, model, distance, centre_ij)
    low, high = np.percentile(pixels, [0.5, 99.5])
    scaled = torch.from_numpy((pixels - low) / max(high - low, 1e-6)).clamp(0, 1)[None]
    picture, valid = resample_covered(scaled, transform, int(model.config["size"]))
    if not bool(valid.any()):
        raise InputError("The network's field falls outside the image (check centre_ij).")
    device = next(model.parameters()).device
    output = model(normalise(picture, valid)[None].to(device))
    probability = torch.sigmoid(output["logits"][0]).cpu().double() * valid.double()
    front_z, extent = output["front"][0].cpu().double(), output["extent"][0].cpu().double()
    front = decode_depth(front_z, grid, distance)
    back = decode_depth(front_z + extent, grid, distance)
    found = [b for k, b in enumerate(model.bones) if int((probability[k] >= 0.5).sum()) >= MIN_BONE_PIXELS]
    return DepthPrediction(grid, list(model.bones), probability, front, back, distance, assumed, found)

