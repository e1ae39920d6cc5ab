"""Real AP radiographs with annotated vertebral-body corners (AASCE-2019 format) as network samples.

The format: ``images/`` (JPEG), ``filenames.csv`` (one image per row) and ``landmarks.csv`` (per
row 68 x then 68 y values normalised by the image's width and height: the 4 body corners of T1..L5,
per vertebra top-left, top-right, bottom-left, bottom-right). An AP radiograph shows the patient's
right on the image's left, so image top-left is our "body right superior", top-right "body left
superior", bottom-left "body right inferior", bottom-right "body left inferior".

The images carry no pixel spacing. Each is scaled so that its annotated L1-L5 endplate width
(mean corner-to-corner distance) matches ``reference_width_mm``, the mean of the same width in the
synthetic AP views at the detector (``body_width_mm``), and the network's field is centred on the
annotated L1-L5 (a stand-in for a user's region of interest; training shifts it at random).
Errors in "mm" therefore mean mm at that reference scale; ``width`` keeps the scale-free measure.

Rows are split once and for all by their order in ``filenames.csv``: every 4th row (0, 4, 8, ...)
is kept for the report only, every 12th from row 2 (2, 14, 26, ...) validates fine-tuning, the
rest fine-tunes. Core module (numpy/torch), no MRML.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch

from .biplanar_network import INPUT_SIZE, INPUT_SPACING_MM
from .biplanar_samples import (
    augment_intensity,
    draw_geometry,
    network_transform,
    normalise,
    resample_covered,
    to_network_pixels,
)
from .errors import InputError
from .spine_alignment import LEVELS

VERTEBRAE = [f"T{k}" for k in range(1, 13)] + list(LEVELS)
CORNER_NAMES = ("body right superior", "body left superior", "body right inferior", "body left inferior")
SPLITS = ("report", "validation", "train")


def split_of(row: int) -> str:
    if row % 4 == 0:
        return "report"
    return "validation" if row % 12 == 2 else "train"


@dataclass
class AnnotatedAP:
    """One radiograph: its file and the L1-L5 corners (5, 4, 2) as (column, row) pixels, in
    ``CORNER_NAMES`` order; ``spine`` the same for all annotated vertebrae (17, 4, 2), T1..L5."""

    path: Path
    corners: np.ndarray
    row: int
    spine: Optional[np.ndarray] = None

    def width_px(self) -> float:
        """Mean L1-L5 endplate width (superior and inferior corner pairs) in pixels."""
        c = self.corners
        return float(np.mean([np.linalg.norm(c[:, 0] - c[:, 1], axis=-1), np.linalg.norm(c[:, 2] - c[:, 3], axis=-1)]))


def read_annotated_ap(folder, split: Optional[str] = None) -> List[AnnotatedAP]:
    """The annotated radiographs of an AASCE-format folder (all, or one of ``SPLITS``)."""
    import SimpleITK as sitk

    folder = Path(folder)
    try:
        names = [row[0] for row in csv.reader(open(folder / "filenames.csv", newline="")) if row]
        values = np.array([[float(v) for v in row] for row in csv.reader(open(folder / "landmarks.csv", newline=""))
                           if row])
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder} is not an annotated AP folder (filenames.csv, landmarks.csv): {exc}.") from exc
    if values.ndim != 2 or values.shape[1] != 2 * 4 * len(VERTEBRAE) or len(values) != len(names):
        raise InputError(f"{folder}/landmarks.csv must hold {2 * 4 * len(VERTEBRAE)} values per image, one row per "
                         f"line of filenames.csv ({len(names)}).")
    found = []
    reader = sitk.ImageFileReader()
    for row, (name, numbers) in enumerate(zip(names, values)):
        if split is not None and split_of(row) != split:
            continue
        path = folder / "images" / name
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        width, height = reader.GetSize()[:2]
        xy = np.stack([numbers[:len(numbers) // 2] * width, numbers[len(numbers) // 2:] * height], axis=-1)
        xy = xy.reshape(len(VERTEBRAE), 4, 2) - 0.5  # normalised edges -> pixel centres
        found.append(AnnotatedAP(path, xy[-len(LEVELS):], row, xy))
    return found


def corner_indices(landmark_names: Sequence[str]) -> np.ndarray:
    """(5, 4) indices into the network's 95 landmarks of the L1-L5 corners in ``CORNER_NAMES`` order."""
    per = len(landmark_names)
    return np.array([[level * per + list(landmark_names).index(name) for name in CORNER_NAMES]
                     for level in range(len(LEVELS))])


def body_width_mm(cases, landmark_names: Sequence[str]) -> float:
    """Mean L1-L5 endplate width at the detector in the AP views of synthetic lumbar ``cases``."""
    index = corner_indices(landmark_names) % len(landmark_names)
    widths = []
    for case in cases:
        ij = np.asarray(case["landmarks_ij"][0], dtype=np.float64)  # (5, 19, 2), AP view
        spacing = float(case["meta"]["geometry"]["views"][0]["pixel_spacing"][0])
        c = np.stack([ij[level, index[level]] for level in range(len(LEVELS))])
        widths.append(spacing * np.mean([np.linalg.norm(c[:, 0] - c[:, 1], axis=-1),
                                         np.linalg.norm(c[:, 2] - c[:, 3], axis=-1)]))
    if not widths:
        raise InputError("No synthetic cases to measure the reference body width on.")
    return float(np.mean(widths))


def read_pixels(path) -> np.ndarray:
    from .radiograph_file import read_radiograph

    return read_radiograph(path, [1.0]).pixels


class RealAPSamples(torch.utils.data.Dataset):
    """Annotated real AP radiographs as network samples (same keys as ``BiplanarSamples``): only the
    20 L1-L5 corner landmarks carry weight, and no decomposition (``decomposition_weight`` 0).
    ``augment``: turn +-10 deg, zoom 0.9-1.1, shift +-16 px, contrast, gamma, noise."""

    def __init__(self, folder, split: str, landmark_names: Sequence[str], reference_width_mm: float,
                 augment: bool = False, seed: int = 0, size: int = INPUT_SIZE, levels: int = len(LEVELS)):
        self.items = read_annotated_ap(folder, split)
        if not self.items:
            raise InputError(f"{folder} has no '{split}' radiographs.")
        self.index = corner_indices(landmark_names)
        self.count = levels * len(landmark_names)
        self.reference_width_mm, self.augment, self.seed, self.size, self.epoch = (
            reference_width_mm, augment, seed, size, 0)
        self._pixels = {}

    def __len__(self) -> int:
        return len(self.items)

    def spacing_mm(self, item: AnnotatedAP) -> float:
        return self.reference_width_mm / item.width_px()

    def transform(self, item: AnnotatedAP, shape, turn=0.0, zoom=1.0, shift=(0.0, 0.0)) -> np.ndarray:
        """Network pixel -> image pixel, centred on the annotated L1-L5."""
        spacing = self.spacing_mm(item)
        return network_transform(shape, (spacing, spacing), self.size, turn_deg=turn, zoom=zoom, shift_px=shift,
                                 centre_ij=item.corners.reshape(-1, 2).mean(axis=0))

    def pixels(self, index: int) -> torch.Tensor:
        """Image ``index`` as bone-bright pixels in [0, 1] (read once, then kept)."""
        if index not in self._pixels:
            self._pixels[index] = torch.as_tensor(read_pixels(self.items[index].path), dtype=torch.float32)
        return self._pixels[index]

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        image = self.pixels(index)[None]
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        turn, zoom, shift = 0.0, 1.0, (0.0, 0.0)
        if self.augment:
            turn, zoom, shift = draw_geometry(rng)
        transform = self.transform(item, image.shape, turn, zoom, shift)
        picture, valid = resample_covered(image, transform, self.size)
        if self.augment:
            picture = augment_intensity(picture, rng)
        landmarks = np.zeros((self.count, 2))
        weight = np.zeros(self.count)
        corners = to_network_pixels(item.corners.reshape(-1, 2), transform)
        landmarks[self.index.reshape(-1)] = corners
        weight[self.index.reshape(-1)] = np.all((corners >= 0) & (corners <= self.size - 1), axis=1)
        return dict(image=normalise(picture, valid), view=torch.tensor(0.0),
                    decomposition=torch.zeros(len(LEVELS), self.size, self.size),
                    decomposition_weight=torch.tensor(0.0),
                    landmarks=torch.as_tensor(landmarks, dtype=torch.float32),
                    weight=torch.as_tensor(weight, dtype=torch.float32),
                    visible=torch.as_tensor(weight, dtype=torch.float32),
                    spacing_mm=torch.tensor(INPUT_SPACING_MM / zoom), valid=valid)
