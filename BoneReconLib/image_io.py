"""Image files -> (voxel array [k, j, i], IJK-to-RAS) without MRML (SimpleITK, LPS converted to RAS).

For the core and the command line where no scene is needed (shape-model building, benchmarks).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .errors import InputError
from .mrml_io import check_input_file

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def read_volume_array(path, what: str = "image") -> Tuple[np.ndarray, np.ndarray]:
    """(voxels indexed [k, j, i], 4x4 IJK-to-RAS) of a NRRD/NIfTI/MHA file."""
    import SimpleITK as sitk

    path = check_input_file(path, what)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise InputError(f"Could not read the {what} file {path} as an image.") from None
    if image.GetDimension() != 3:
        raise InputError(f"The {what} {path.name} is not a 3D image.")
    spacing = np.array(image.GetSpacing())
    if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
        raise InputError(f"The {what} {path.name} has no valid voxel spacing ({spacing.tolist()}).")
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ np.reshape(image.GetDirection(), (3, 3)) @ np.diag(spacing)
    matrix[:3, 3] = LPS_TO_RAS @ np.array(image.GetOrigin())
    return sitk.GetArrayFromImage(image), matrix


def read_label_map(path) -> Tuple[np.ndarray, np.ndarray]:
    """A label map's integer labels [k, j, i] and its IJK-to-RAS."""
    labels, matrix = read_volume_array(path, "label map")
    if not np.all(np.equal(np.mod(labels, 1), 0)):
        raise InputError(f"The label map {path} has fractional values; it must hold integer labels.")
    return labels.astype(np.int64), matrix
