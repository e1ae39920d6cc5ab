"""Run the BiplanarRecon network on one radiograph: landmarks and per-vertebra images in the
radiograph's own pixels.

The image is resampled to the network's grid (1.5 mm detector pixels, centred), the landmarks
decoded there are mapped back through the same affine to the input's (column i, row j), and the
decomposition images are resampled back onto the input grid. Core module (torch), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch

from .biplanar_network import DECOMPOSITION_SCALE, VIEWS, BiplanarNet, decode_landmarks
from .biplanar_samples import from_network_pixels, network_transform, normalise, resample, resample_covered
from .errors import InputError
from .spine_alignment import LEVELS


@dataclass
class Detection:
    """Landmarks as dicts (vertebra, name, i, j, confidence) in input pixels; decomposition (5, rows,
    columns) line integrals on the input grid."""

    landmarks: List[dict]
    decomposition: np.ndarray


@torch.no_grad()
def detect(model: BiplanarNet, pixels: np.ndarray, spacing_mm: Sequence[float], view: str,
           landmark_names: Sequence[str]) -> Detection:
    """Landmarks and decomposition of one bone-bright image (rows, columns) in [0, 1]."""
    if view not in VIEWS:
        raise InputError(f"The view must be one of {', '.join(VIEWS)}, got '{view}'.")
    if len(landmark_names) * len(LEVELS) != model.levels * model.landmarks_per_level:
        raise InputError("The landmark names do not match the network's landmark count.")
    image = torch.as_tensor(np.asarray(pixels, dtype=np.float32))[None]
    transform = network_transform(image.shape, spacing_mm)
    picture, covered = resample_covered(image, transform)
    network_input = normalise(picture, covered)[None]
    output = model(network_input, torch.tensor([float(VIEWS.index(view))]))
    positions, confidence = decode_landmarks(output["heatmaps"][0], model.landmark_stride)
    found = from_network_pixels(positions.double().numpy(), transform)
    landmarks = []
    for k, ((i, j), c) in enumerate(zip(found, confidence.tolist())):
        level, name = LEVELS[k // len(landmark_names)], landmark_names[k % len(landmark_names)]
        landmarks.append(dict(vertebra=level, name=name, i=round(float(i), 3), j=round(float(j), 3),
                              confidence=round(float(c), 4)))
    back = np.linalg.inv(transform)  # input pixel -> network pixel
    decomposition = resample(output["decomposition"][0] / DECOMPOSITION_SCALE, back, image.shape[-2:])
    return Detection(landmarks, decomposition.clamp_min(0.0).numpy())


def write_detection(detection: Detection, path, record: dict, spacing_mm: Sequence[float],
                    decomposition_dir=None) -> Path:
    """The landmarks JSON (``record`` + image size + landmarks) and, optionally, L1..L5 NRRD images;
    the JSON is written last and atomically."""
    import json

    import SimpleITK as sitk

    path = Path(path)
    if decomposition_dir is not None:
        folder = Path(decomposition_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for level, image in zip(LEVELS, detection.decomposition):
            written = sitk.GetImageFromArray(image.astype(np.float32))
            written.SetSpacing(tuple(float(s) for s in spacing_mm))
            sitk.WriteImage(written, str(folder / f"{level}.nrrd"), True)
    rows, columns = detection.decomposition.shape[-2:]
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(dict(record, size=[columns, rows], landmarks=detection.landmarks), indent=1))
    partial.replace(path)
    return path
