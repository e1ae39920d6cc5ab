"""Training samples for the BiplanarRecon network from lumbar dataset cases, and image resampling.

Every radiograph reaches the network at the same pixel spacing (:data:`.biplanar_network.INPUT_SPACING_MM`
on the detector) and size: ``network_transform`` gives the affine map from network pixels to the
image's own pixels (centred, scaled by the spacing ratio, and for training turned, zoomed and
shifted at random), and ``resample`` applies it to images with bilinear interpolation (zero
outside). Landmarks go the other way through the inverse map, so a landmark stays on its
vertebra's resampled image. Each (case, view) is one sample; intensity augmentation (contrast,
gamma, noise) comes after resampling. Core module (numpy/torch), no MRML.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .biplanar_network import DECOMPOSITION_SCALE, INPUT_SIZE, INPUT_SPACING_MM, VIEWS
from .dataset_store import CaseDataset
from .errors import InputError


def network_transform(image_shape: Sequence[int], pixel_spacing_mm: Sequence[float], size: int = INPUT_SIZE,
                      spacing_mm: float = INPUT_SPACING_MM, turn_deg: float = 0.0, zoom: float = 1.0,
                      shift_px: Sequence[float] = (0.0, 0.0),
                      centre_ij: Optional[Sequence[float]] = None) -> np.ndarray:
    """3x3 matrix: network pixel (i, j, 1) -> image pixel (i, j, 1). The image centre (or the image
    point ``centre_ij``) maps to the network centre (plus ``shift_px`` network pixels); ``zoom`` > 1
    enlarges the anatomy."""
    rows, cols = image_shape[-2:]
    su, sv = (float(s) for s in pixel_spacing_mm)
    if not (su > 0 and sv > 0):
        raise InputError("The image's pixel spacing must be positive.")
    c, s = math.cos(math.radians(turn_deg)), math.sin(math.radians(turn_deg))
    to_mm = np.diag([spacing_mm / zoom, spacing_mm / zoom, 1.0])  # network pixels -> mm about the centre
    centre_net = np.array([[1, 0, -(size - 1) / 2 - shift_px[0]], [0, 1, -(size - 1) / 2 - shift_px[1]], [0, 0, 1]])
    turn = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    ci, cj = ((cols - 1) / 2, (rows - 1) / 2) if centre_ij is None else (float(c) for c in centre_ij)
    to_image = np.array([[1 / su, 0, ci], [0, 1 / sv, cj], [0, 0, 1]])
    return to_image @ turn @ to_mm @ centre_net


def resample(images: torch.Tensor, transform: np.ndarray, size=INPUT_SIZE) -> torch.Tensor:
    """Images (C, H, W) sampled at ``transform`` (output pixel -> input pixel) onto (C, size, size),
    or (C, rows, columns) for ``size`` = (rows, columns)."""
    channels, rows, cols = images.shape
    out_rows, out_cols = (size, size) if np.isscalar(size) else size
    j, i = torch.meshgrid(torch.arange(out_rows, dtype=torch.float64), torch.arange(out_cols, dtype=torch.float64),
                          indexing="ij")
    m = torch.as_tensor(transform, dtype=torch.float64)
    x = m[0, 0] * i + m[0, 1] * j + m[0, 2]
    y = m[1, 0] * i + m[1, 1] * j + m[1, 2]
    grid = torch.stack([2 * x / max(cols - 1, 1) - 1, 2 * y / max(rows - 1, 1) - 1], dim=-1)  # align_corners=True
    return F.grid_sample(images[None].float(), grid[None].float(), mode="bilinear", padding_mode="zeros",
                         align_corners=True)[0]


def resample_covered(images: torch.Tensor, transform: np.ndarray, size=INPUT_SIZE):
    """``resample`` plus a mask (1, ...) of the output pixels that fall fully inside the input
    (elsewhere the zero padding was sampled): (resampled images, mask)."""
    ones = torch.ones_like(images[:1], dtype=torch.float32)
    sampled = resample(torch.cat([images.float(), ones]), transform, size)
    return sampled[:-1], sampled[-1:] > 0.999


def to_network_pixels(points_ij: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Image pixel coordinates (..., 2) -> network pixel coordinates."""
    inverse = np.linalg.inv(transform)
    return points_ij @ inverse[:2, :2].T + inverse[:2, 2]


def from_network_pixels(points_ij, transform: np.ndarray) -> np.ndarray:
    """Network pixel coordinates (..., 2) -> image pixel coordinates."""
    return np.asarray(points_ij) @ transform[:2, :2].T + transform[:2, 2]


def normalise(image: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Zero mean, unit spread over the valid (resampled, not padded) pixels."""
    values = image[valid] if valid is not None and bool(valid.any()) else image.reshape(-1)
    mean, spread = values.mean(), values.std().clamp_min(1e-6)
    out = (image - mean) / spread
    return out if valid is None else torch.where(valid, out, torch.zeros_like(out))


def draw_geometry(rng) -> tuple:
    """Random (turn deg, zoom, shift px) of a training sample: +-10 deg, 0.9-1.1, +-16 px."""
    return rng.uniform(-10, 10), rng.uniform(0.9, 1.1), rng.uniform(-16, 16, 2)


def augment_intensity(picture: torch.Tensor, rng) -> torch.Tensor:
    """Random gamma, contrast, brightness and noise of a resampled picture in [0, 1]."""
    picture = picture.clamp(0, 1) ** float(np.exp(rng.normal(0, 0.25)))
    picture = picture * float(rng.uniform(0.8, 1.2)) + float(rng.normal(0, 0.05))
    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    return picture + float(rng.uniform(0, 0.03)) * torch.randn(picture.shape, generator=generator)


class BiplanarSamples(torch.utils.data.Dataset):
    """(case, view) samples of a lumbar dataset folder, resampled to the network's grid.

    ``augment`` turns (+-10 deg), zooms (0.9-1.1), shifts (+-16 px) and varies contrast, gamma and
    noise, all drawn from ``numpy.random.default_rng([seed, epoch, index])`` so a run is
    reproducible and resumable. Items: ``image`` (1, S, S) normalised, ``view`` 0/1,
    ``decomposition`` (5, S, S) scaled line integrals, ``landmarks`` (K, 2) network pixels,
    ``weight`` (K,) 1 for landmarks inside the network's field, else 0, ``visible`` (K,),
    ``spacing_mm``.
    """

    def __init__(self, folder, split: Optional[str] = "train", augment: bool = False, seed: int = 0,
                 size: int = INPUT_SIZE):
        self.cases = CaseDataset(folder, split, keys=["image", "decomposition", "landmarks_ij", "visible"])
        if len(self.cases) == 0:
            raise InputError(f"The dataset {folder} has no '{split}' cases.")
        self.augment, self.seed, self.size, self.epoch = augment, seed, size, 0

    def __len__(self) -> int:
        return 2 * len(self.cases)

    def __getitem__(self, index: int) -> dict:
        case = self.cases[index // 2]
        v = index % 2
        view = case["meta"]["geometry"]["views"][v]
        if view.get("name") != VIEWS[v]:
            raise InputError(f"Case {case['meta']['case']}: view {v} is '{view.get('name')}', expected {VIEWS[v]}.")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        turn, zoom, shift = 0.0, 1.0, (0.0, 0.0)
        if self.augment:
            turn, zoom, shift = draw_geometry(rng)
        image = case["image"][v]
        transform = network_transform(image.shape, view["pixel_spacing"], self.size, turn_deg=turn, zoom=zoom,
                                      shift_px=shift)
        sampled, valid = resample_covered(torch.cat([image[None].float(), case["decomposition"][:, v].float()]),
                                          transform, self.size)
        picture, decomposition = sampled[:1], sampled[1:]
        if self.augment:
            picture = augment_intensity(picture, rng)
        landmarks = to_network_pixels(case["landmarks_ij"][v].reshape(-1, 2).double().numpy(), transform)
        inside = np.all((landmarks >= 0) & (landmarks <= self.size - 1), axis=1)
        return dict(image=normalise(picture, valid), view=torch.tensor(float(v)),
                    decomposition=decomposition * DECOMPOSITION_SCALE, decomposition_weight=torch.tensor(1.0),
                    landmarks=torch.as_tensor(landmarks, dtype=torch.float32),
                    weight=torch.as_tensor(inside, dtype=torch.float32),
                    visible=case["visible"][v].reshape(-1).float(),
                    spacing_mm=torch.tensor(INPUT_SPACING_MM / zoom), valid=valid)
