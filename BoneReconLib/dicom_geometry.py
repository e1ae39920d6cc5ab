"""Imaging geometry from DICOM DX/CR headers, where the tags exist.

Tags used (read with SimpleITK, pixel data not loaded):

| tag | name | use |
|---|---|---|
| (0018,1164) | ImagerPixelSpacing | row spacing \\ column spacing at the detector: sv, su (required) |
| (0018,1110) | DistanceSourceToDetector | source-detector distance (required) |
| (0018,1111) | DistanceSourceToPatient | source-isocentre distance (required unless given by the caller) |
| (0018,5101) | ViewPosition | AP, PA, LL, RL (or LATERAL with the patient's left to the detector): beam direction |
| (0018,1510) | PositionerPrimaryAngle | AP/PA only: beam turn about the long axis (deg), + toward patient's left |
| (0020,0020) | PatientOrientation | anatomical direction of image rows (+i) and columns (+j), e.g. ``L\\F``: u and v |
| (0028,0011), (0028,0010) | Columns, Rows | size |

Check the angle convention of your device. The isocentre is the world origin, the principal
point the image centre (DICOM has no tag for an offset). Missing required tags are listed in one InputError.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import InputError
from .geometry import View, rotation_about

_DIRECTIONS = {  # RAS unit vectors of DICOM patient-orientation letters
    "R": (1.0, 0.0, 0.0), "L": (-1.0, 0.0, 0.0), "A": (0.0, 1.0, 0.0), "P": (0.0, -1.0, 0.0),
    "H": (0.0, 0.0, 1.0), "F": (0.0, 0.0, -1.0),
}
_BEAM = {"AP": (0.0, -1.0, 0.0), "PA": (0.0, 1.0, 0.0), "LL": (-1.0, 0.0, 0.0), "LATERAL": (-1.0, 0.0, 0.0),
         "RL": (1.0, 0.0, 0.0)}


def _orientation_vector(code: str, what: str) -> np.ndarray:
    code = code.strip().upper()
    if not code or any(c not in _DIRECTIONS for c in code):
        raise InputError(f"PatientOrientation {what} direction '{code}' is not made of R/L/A/P/H/F.")
    vector = np.sum([_DIRECTIONS[c] for c in code], axis=0)
    return vector / np.linalg.norm(vector)


def _numbers(text: str, count: int, tag: str):
    try:
        values = [float(v) for v in text.replace(" ", "").split("\\") if v != ""]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"DICOM tag {tag} has an unusable value '{text.strip()}'.")
    return values


def view_from_dicom(path, name: Optional[str] = None, source_to_patient: Optional[float] = None) -> View:
    """Build a View from a DX/CR file's header; InputError lists the tags that are missing."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise InputError(f"The DICOM file {path} does not exist.")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"Could not read {path} as a DICOM image.") from None
    tags = {key: reader.GetMetaData(key) for key in reader.GetMetaDataKeys()}
    required = {"0018|1164": "ImagerPixelSpacing", "0018|1110": "DistanceSourceToDetector",
                "0018|5101": "ViewPosition", "0020|0020": "PatientOrientation"}
    if source_to_patient is None:
        required["0018|1111"] = "DistanceSourceToPatient"
    missing = [f"{label} ({tag.replace('|', ',')})" for tag, label in required.items()
               if not tags.get(tag, "").strip()]
    if missing:
        raise InputError(f"{path.name} lacks the geometry tag(s) {', '.join(missing)}; "
                         "give the geometry as a JSON file instead.")

    row_spacing, column_spacing = _numbers(tags["0018|1164"], 2, "ImagerPixelSpacing (0018,1164)")
    (sdd,) = _numbers(tags["0018|1110"], 1, "DistanceSourceToDetector (0018,1110)")
    sod = float(source_to_patient) if source_to_patient is not None else _numbers(
        tags["0018|1111"], 1, "DistanceSourceToPatient (0018,1111)")[0]
    if not 0 < sod < sdd:
        raise InputError(f"{path.name}: the patient must lie between source and detector "
                         f"(source-patient {sod} mm, source-detector {sdd} mm).")
    position = tags["0018|5101"].strip().upper()
    if position not in _BEAM:
        raise InputError(f"{path.name}: ViewPosition '{position}' is not one of {', '.join(_BEAM)}.")
    angle = math.radians(float(tags.get("0018|1510", "0").strip() or 0.0))
    beam = np.array(_BEAM[position])
    if position in ("AP", "PA"):  # a positive angle turns the beam toward the patient's left
        beam = rotation_about((0.0, 0.0, 1.0), -angle) @ beam
    parts = tags["0020|0020"].strip().split("\\")
    if len(parts) != 2:
        raise InputError(f"{path.name}: PatientOrientation '{tags['0020|0020'].strip()}' needs two directions.")
    u = _orientation_vector(parts[0], "row")
    v = _orientation_vector(parts[1], "column")
    # Orientation letters are approximate: keep them, but make u and v exact and perpendicular to the beam.
    u = u - (u @ beam) * beam
    v = v - (v @ beam) * beam - (v @ u) * u / max(u @ u, 1e-12)
    if np.linalg.norm(u) < 0.5 or np.linalg.norm(v) < 0.5:
        raise InputError(f"{path.name}: PatientOrientation '{tags['0020|0020'].strip()}' runs along the beam "
                         f"of a {position} view.")
    size = (int(reader.GetSize()[0]), int(reader.GetSize()[1]))
    return View(
        name=name or position,
        source=-sod * beam,
        detector_center=(sdd - sod) * beam,
        detector_u=u / np.linalg.norm(u),
        detector_v=v / np.linalg.norm(v),
        pixel_spacing=(column_spacing, row_spacing),
        size=size,
        extra={"dicom_file": path.name, "source_to_object": float(sod)},
    )


def view_for_image(image_path, geometry_path=None, view_name: Optional[str] = None) -> View:
    """The view of one radiograph file: from its geometry JSON when one is given (its only view, or
    ``view_name``), else from the image's own DICOM header; one clear error when neither has it."""
    from .geometry import load_view
    from .mrml_io import check_input_file

    if geometry_path is not None:
        return load_view(geometry_path, view_name)
    try:
        return view_from_dicom(check_input_file(image_path, "radiograph"), name=view_name)
    except InputError as exc:
        raise InputError(f"No imaging geometry for {Path(image_path).name}: give its views JSON (--geometry). "
                         f"From the image itself: {exc}") from None
