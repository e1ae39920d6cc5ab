"""Run the BiplanarRecon network on one radiograph: landmarks and per-vertebra images in the
radiograph's own pixels.

The image is resampled to the network's grid (1.5 mm detector pixels, centred), the landmarks
decoded there are mapped back through the same affine to the input's (column i, row j), and the
decomposition images are resampled back onto the input grid. A vertebra counts as found when
the median confidence of its landmarks reaches ``FOUND_CONFIDENCE``, they lie in a vertebra's
layout, within ``FOUND_LAYOUT_MM`` (:mod:`.vertebra_layout`), and none lies within
``FOUND_EDGE_MM`` of the radiograph's edge (the network never saw a vertebra cut by the edge: in
the validation cases every landmark lies 31 mm or more inside, and near the edge the network
extrapolates: on the sample's lateral DRR, which ends just below L5, biplanar-1.4.0's L5 passes
both other cues 11 mm from the edge with half its body landmarks off its own image); when
none is found (another anatomy, a blank or badly scaled image) the detection says so in
``message`` instead of offering its guesses as results. Core module (torch), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .biplanar_network import (DECOMPOSITION_SCALE, INPUT_SIZE, INPUT_SPACING_MM, VIEWS, BiplanarNet,
                               landmark_positions, landmark_uncertainty)
from .biplanar_samples import from_network_pixels, network_transform, normalise, resample, resample_covered
from .errors import InputError
from .spine_alignment import LEVELS
from .vertebra_layout import bundled_layouts, layout_residual


# A found vertebra: both cues (chosen with benchmarks/biplanar_found_rule.py on the validation split,
# the real AP validation rows and leg, noise, dark and blob images; benchmarks/biplanar_network.py
# and biplanar_real_ap.py check them on other images)
FOUND_CONFIDENCE = 0.15  # median landmark confidence at least this ...
FOUND_LAYOUT_MM = 5.0  # ... and the landmarks within this RMS of a vertebra's layout (mm at the detector) ...
FOUND_EDGE_MM = 20.0  # ... and all of them at least this far inside the radiograph (mm at the detector)


def found_by_cues(confidence, layout_mm, edge_mm):
    """Whether vertebrae with these cues (numbers or arrays) count as found."""
    return (np.asarray(confidence) >= FOUND_CONFIDENCE) & (np.asarray(layout_mm) <= FOUND_LAYOUT_MM) & (
        np.asarray(edge_mm) >= FOUND_EDGE_MM)


@dataclass
class Detection:
    """Landmarks as dicts (vertebra, name, i, j, confidence, uncertainty_mm) in input pixels; decomposition (5, rows,
    columns) line integrals on the input grid; per vertebra the median landmark confidence, the
    RMS distance (mm at the detector) of its landmarks from a vertebra's layout and the least
    distance of one from the radiograph's edge (negative outside); the vertebrae found; a message
    for the user when something is missing."""

    landmarks: List[dict]
    decomposition: np.ndarray
    vertebra_confidence: Dict[str, float] = field(default_factory=dict)
    vertebra_layout_mm: Dict[str, float] = field(default_factory=dict)
    vertebra_edge_mm: Dict[str, float] = field(default_factory=dict)

    def expected_error_mm(self, level: str) -> float:
        """The median expected error (``uncertainty_mm``, mm per axis) of a level's landmarks; NaN
        when the network gave none."""
        values = [m["uncertainty_mm"] for m in self.landmarks if m["vertebra"] == level and "uncertainty_mm" in m]
        return float(np.median(values)) if values else float("nan")

    @property
    def found(self) -> List[str]:
        return [level for level, c in self.vertebra_confidence.items()
                if found_by_cues(c, self.vertebra_layout_mm.get(level, np.inf), self.vertebra_edge_mm.get(level, np.inf))]

    @property
    def message(self) -> Optional[str]:
        if not self.found:
            best = max(self.vertebra_confidence, key=self.vertebra_confidence.get, default=None)
            state = "" if best is None else (f"; most confident {best}: confidence {self.vertebra_confidence[best]:.2f}, "
                                             f"layout {self.vertebra_layout_mm.get(best, np.inf):.1f} mm, "
                                             f"{self.vertebra_edge_mm.get(best, np.inf):.0f} mm inside the image")
            return (f"No lumbar vertebra was found (none with landmark confidence >= {FOUND_CONFIDENCE}, in a vertebra's "
                    f"layout within {FOUND_LAYOUT_MM:g} mm and {FOUND_EDGE_MM:g} mm or more inside the image{state}): "
                    "is this a lumbar AP / lateral radiograph, of the view given, with the right pixel spacing? The "
                    "landmarks are guesses.")
        missing = [level for level in self.vertebra_confidence if level not in self.found]
        if missing:
            return f"Not found with confidence: {', '.join(missing)} (outside the image or at its edge, hidden or unclear)."
        return None


@torch.no_grad()
def detect(model: BiplanarNet, pixels: np.ndarray, spacing_mm: Sequence[float], view: str,
           landmark_names: Sequence[str], centre_ij: Optional[Sequence[float]] = None) -> Detection:
    """Landmarks and decomposition of one bone-bright image (rows, columns) in [0, 1]; the network's
    384 mm field is centred on the image centre or on the pixel ``centre_ij`` (column, row)."""
    if view not in VIEWS:
        raise InputError(f"The view must be one of {', '.join(VIEWS)}, got '{view}'.")
    if len(landmark_names) * len(LEVELS) != model.levels * model.landmarks_per_level:
        raise InputError("The landmark names do not match the network's landmark count.")
    image = torch.as_tensor(np.asarray(pixels, dtype=np.float32))[None]
    transform = network_transform(image.shape, spacing_mm, centre_ij=centre_ij)
    picture, covered = resample_covered(image, transform)
    network_input = normalise(picture, covered)[None]
    output = model(network_input, torch.tensor([float(VIEWS.index(view))]), covered[None])
    positions, confidence = (value[0] for value in landmark_positions(model, output))
    uncertainty = landmark_uncertainty(output)  # None from a network left in training mode
    found = from_network_pixels(positions.double().numpy(), transform)
    landmarks = []
    for k, ((i, j), c) in enumerate(zip(found, confidence.tolist())):
        level, name = LEVELS[k // len(landmark_names)], landmark_names[k % len(landmark_names)]
        landmarks.append(dict(vertebra=level, name=name, i=round(float(i), 3), j=round(float(j), 3),
                              confidence=round(float(c), 4)))
        if uncertainty is not None:
            landmarks[-1]["uncertainty_mm"] = round(float(uncertainty[0, k]), 3)
    back = np.linalg.inv(transform)  # input pixel -> network pixel
    decomposition = resample(output["decomposition"][0] / DECOMPOSITION_SCALE, back, image.shape[-2:])
    per_level = confidence.reshape(len(LEVELS), -1).median(dim=-1).values
    residual, margin = layout_and_edge(positions.double().numpy(), view, landmark_names, covered[0].numpy())
    return Detection(landmarks, decomposition.clamp_min(0.0).numpy(),
                     {level: round(float(c), 4) for level, c in zip(LEVELS, per_level)},
                     {level: round(float(r), 2) for level, r in zip(LEVELS, residual)},
                     {level: round(float(m), 1) for level, m in zip(LEVELS, margin)})


def layout_and_edge(positions: np.ndarray, view: str, landmark_names: Sequence[str],
                    covered: Optional[np.ndarray] = None):
    """The found rule's two geometric cues per level, (L,) layout residual and (L,) edge margin (mm
    at the detector), of decoded positions (L*K, 2) network pixels; ``covered`` (S, S): the network
    pixels on the radiograph (None: all of the field)."""
    points = np.asarray(positions, dtype=np.float64).reshape(len(LEVELS), -1, 2)
    layouts = bundled_layouts(view, tuple(LEVELS), tuple(landmark_names))
    on = np.ones((INPUT_SIZE, INPUT_SIZE), bool) if covered is None else np.asarray(covered, bool)
    return layout_residual(points * INPUT_SPACING_MM, layouts), edge_margin_mm(points, on)


def edge_margin_mm(points: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """(L,) the least distance (mm at the detector) of each level's landmarks (L, K, 2) network
    pixels from the edge of the radiograph in the network's field: ``covered`` (S, S) marks the
    network pixels on the radiograph (a rectangle, as ``detect`` resamples); negative outside."""
    rows, cols = np.nonzero(np.any(covered, axis=1))[0], np.nonzero(np.any(covered, axis=0))[0]
    if len(rows) == 0:
        return np.full(len(points), -np.inf)
    low = np.array([cols[0] - 0.5, rows[0] - 0.5])
    high = np.array([cols[-1] + 0.5, rows[-1] + 0.5])
    return np.minimum(points - low, high - points).min(axis=(-2, -1)) * INPUT_SPACING_MM


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
    summary = dict(found=detection.found, vertebra_confidence=detection.vertebra_confidence,
                   vertebra_layout_mm=detection.vertebra_layout_mm, vertebra_edge_mm=detection.vertebra_edge_mm,
                   message=detection.message)
    partial.write_text(json.dumps(dict(record, size=[columns, rows], **summary, landmarks=detection.landmarks),
                                  indent=1))
    partial.replace(path)
    return path
