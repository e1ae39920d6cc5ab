"""Plain radiograph files (PNG, JPEG, NRRD, MHA, DICOM) -> a bone-bright image in [0, 1] with its pixel spacing.

Any bit depth; colour images are reduced to luminance. DICOM MONOCHROME1 (bright = low signal, the
way many CR/DX files store it) is inverted so that bone is bright as in MONOCHROME2. The display
range is set from the 0.5 and 99.5 percentiles. The pixel spacing (mm, detector plane) comes from
the caller, else from DICOM ImagerPixelSpacing (0018,1164), then PixelSpacing (0028,0030), else
from a NRRD/MHA/NIfTI header; PNG and JPEG carry none, so it must be given. Core module
(SimpleITK, numpy), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from .errors import InputError

_NO_SPACING = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@dataclass
class RadiographFile:
    """Pixels (rows, columns) in [0, 1], bone bright; spacing (column, row) mm; ``inverted``: the file
    is MONOCHROME1 (stored high = shown dark), so its stored values were turned round."""

    pixels: np.ndarray
    spacing_mm: Tuple[float, float]
    inverted: bool


def _tag_spacing(reader, tag: str) -> Optional[Tuple[float, float]]:
    if not reader.HasMetaDataKey(tag):
        return None
    try:
        row, column = (float(v) for v in reader.GetMetaData(tag).strip().split("\\")[:2])
    except ValueError:
        return None
    return (column, row) if row > 0 and column > 0 else None


def read_radiograph(path, pixel_spacing: Optional[Sequence[float]] = None) -> RadiographFile:
    """Read a 2D radiograph file; ``pixel_spacing`` (mm, one value or column, row) overrides the file's."""
    import SimpleITK as sitk

    from .mrml_io import check_input_file

    path = check_input_file(path, "radiograph")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        image = reader.Execute()
    except RuntimeError:
        raise InputError(f"Could not read {path.name} as an image (PNG, JPEG, NRRD, MHA or DICOM).") from None
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    if image.GetNumberOfComponentsPerPixel() > 1:  # colour: luminance (Rec. 601)
        weights = np.array([0.299, 0.587, 0.114, 0.0])[:array.shape[-1]]
        array = array[..., :3] @ weights[:3] if array.shape[-1] >= 3 else array[..., 0]
    array = np.squeeze(array)
    if array.ndim != 2 or min(array.shape) < 16:
        raise InputError(f"{path.name} is not a 2D image of at least 16 x 16 pixels (shape {array.shape}).")
    photometric = reader.GetMetaData("0028|0004").strip().upper() if reader.HasMetaDataKey("0028|0004") else ""
    inverted = photometric == "MONOCHROME1"
    # SimpleITK's DICOM reader (ITK 5.4, GDCM) already turns MONOCHROME1 (stored high = dark) into
    # MONOCHROME2, so the array is bone bright as read; inverting again would give a negative
    # (Testing/data/monochrome1.dcm checks this reader's behaviour).
    pixels = displayed(array, False, path.name)
    spacing = _spacing(path, reader, image, pixel_spacing)
    return RadiographFile(pixels, spacing, inverted)


def displayed(array: np.ndarray, inverted: bool = False, what: str = "The image") -> np.ndarray:
    """Pixels windowed to [0, 1] between their 0.5 and 99.5 percentiles (float32), inverted if asked."""
    array = np.asarray(array, dtype=np.float64)
    low, high = np.percentile(array, [0.5, 99.5])
    if not high > low:
        raise InputError(f"{what} is flat (no contrast): it holds no radiograph.")
    pixels = np.clip((array - low) / (high - low), 0.0, 1.0)
    return (1.0 - pixels if inverted else pixels).astype(np.float32)


def _spacing(path: Path, reader, image, given) -> Tuple[float, float]:
    if given is not None:
        values = [float(v) for v in np.atleast_1d(given)]
        if len(values) == 1:
            values *= 2
        if len(values) != 2 or not all(np.isfinite(values)) or min(values) <= 0:
            raise InputError("--pixel-spacing must be one or two positive numbers (mm).")
        return values[0], values[1]
    for tag in ("0018|1164", "0028|0030"):  # ImagerPixelSpacing, then PixelSpacing
        found = _tag_spacing(reader, tag)
        if found is not None:
            return found
    is_dicom = reader.HasMetaDataKey("0008|0016") or path.suffix.lower() in {".dcm", ".dicom"}
    if path.suffix.lower() in _NO_SPACING or is_dicom:
        raise InputError(f"{path.name} carries no pixel spacing; give it (--pixel-spacing MM, at the detector).")
    spacing = image.GetSpacing()[:2]
    return float(spacing[0]), float(spacing[1])
