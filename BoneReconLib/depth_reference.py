"""Depth relative to the view's object plane, in object-plane pixels: what DepthRecon's network predicts.

One radiograph cannot tell how far the limb is from the source: moving it along the beam and
scaling it by the same factor leaves the image unchanged. So the network is not asked for depth
in mm from the source. It predicts, per pixel, ``z = (depth - reference) / object_pixel``: the
depth (distance from the source along the pixel's ray) less the distance along that ray to the
**object plane** (the plane parallel to the detector ``source_to_object`` mm from the source: the
DICOM DistanceSourceToPatient, the limb's mid-plane), in units of a pixel's width at that plane
(``pixel_spacing x source_to_object / source_to_detector``). Under that move-and-scale ``z`` is
unchanged, so a change of magnification does not break it; the geometry turns it back into mm.

A view carries its object plane as ``source_to_object`` (mm) in the geometry JSON; the limb
dataset writes it (the bones' centre plane) and DICOM views take DistanceSourceToPatient. Where it
is absent, :func:`object_distance` assumes the limb's mid-plane ``ASSUMED_OBJECT_TO_DETECTOR_MM``
in front of the detector (a hand or knee on the cassette) and says so.
Core module (numpy/torch), no MRML.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from .errors import InputError
from .geometry import View

ASSUMED_OBJECT_TO_DETECTOR_MM = 40.0


def object_distance(view: View) -> Tuple[float, bool]:
    """(source-to-object-plane distance in mm, whether it was assumed rather than given)."""
    sid = view.source_to_detector_distance
    given = view.extra.get("source_to_object")
    if given is None:
        return max(sid - ASSUMED_OBJECT_TO_DETECTOR_MM, 0.5 * sid), True
    try:
        distance = float(given)
    except (TypeError, ValueError):
        raise InputError(f"View '{view.name}': source_to_object must be a number of mm, got {given!r}.") from None
    if not 0 < distance < sid:
        raise InputError(f"View '{view.name}': the object plane ({distance:g} mm from the source) must lie "
                         f"between the source and the detector ({sid:g} mm).")
    return distance, False


def object_pixel_mm(view: View, source_to_object: float) -> float:
    """Width (mm) of one detector pixel at the object plane (mean of the two spacings)."""
    return float(np.mean(view.pixel_spacing)) * source_to_object / view.source_to_detector_distance


def reference_depth(view: View, source_to_object: float) -> torch.Tensor:
    """(nv, nu) distance (mm) from the source along each pixel's ray to the object plane."""
    _, directions = view.rays()
    cosine = directions @ view.normal
    return torch.from_numpy(source_to_object / cosine)


def encode_depth(depth_mm: torch.Tensor, view: View, source_to_object: float) -> torch.Tensor:
    """Depth from the source (mm, (..., nv, nu)) -> object-plane pixels relative to the object plane."""
    reference = reference_depth(view, source_to_object).to(depth_mm)
    return (depth_mm - reference) / object_pixel_mm(view, source_to_object)


def decode_depth(z: torch.Tensor, view: View, source_to_object: float) -> torch.Tensor:
    """Inverse of :func:`encode_depth`: object-plane pixels -> depth from the source (mm)."""
    reference = reference_depth(view, source_to_object).to(z)
    return reference + z * object_pixel_mm(view, source_to_object)
