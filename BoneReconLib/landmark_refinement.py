"""Second look at each vertebra's landmarks: a small network on a crop centred on the vertebra.

The main network's landmark heatmaps are made at 6 mm pixels over the whole 384 mm field, where
95 landmarks share one decoder; its landmarks end about 5 mm from the truth. The refiner looks
again at each vertebra alone: a ``crop_size`` x ``crop_size`` window of the same network input
(1.5 mm pixels, 168 mm by default) centred on the vertebral body as the main network placed it
(the median of its body landmarks), and predicts that vertebra's landmarks as heatmaps at
1/``stride`` of the crop (3 mm pixels), decoded by the same soft-argmax. One refiner serves all
levels and both views (the view is a second input plane, as in the main network); it is trained
on crops around the true body centre moved at random (``CENTRE_JITTER_PX``) so that it tolerates
the main network's misplacement. Core module (torch), no MRML.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .biplanar_network import conv_block, decode_landmarks, encode, encoder, up

CENTRE_JITTER_PX = 5.0  # training: spread of the crop centre about the true body centre (network pixels)
CENTRE_JITTER_MAX_PX = 12.0
MIN_CROP_COVERAGE = 0.9  # a crop reaching further into the padding than this keeps the main network's positions


class LandmarkRefiner(nn.Module):
    """Crop (N, 1, C, C) + view (N,) -> heatmaps (N, landmarks, C / stride, C / stride) of one vertebra."""

    def __init__(self, landmarks_per_level: int = 19, centre_landmarks: Sequence[int] = tuple(range(10)),
                 crop_size: int = 112, stride: int = 2, widths: Sequence[int] = (16, 32, 64, 128)):
        super().__init__()
        depth = len(widths) - 1
        if crop_size % (2 ** depth) or stride not in (1, 2, 4) or 2 ** depth < stride:
            raise ValueError(f"crop_size must be a multiple of {2 ** depth} and stride 1, 2 or 4.")
        if not centre_landmarks or max(centre_landmarks) >= landmarks_per_level or min(centre_landmarks) < 0:
            raise ValueError("centre_landmarks must name landmarks of one level.")
        self.config = dict(landmarks_per_level=landmarks_per_level, centre_landmarks=[int(k) for k in centre_landmarks],
                           crop_size=crop_size, stride=stride, widths=list(widths))
        self.landmarks_per_level, self.crop_size, self.stride = landmarks_per_level, crop_size, stride
        self.down = encoder(2, widths)
        # Decode only up to the heatmap scale: stride 2 stops one level above full resolution.
        steps = depth - int(round(np.log2(stride)))
        self.up = nn.ModuleList(conv_block(widths[k + 1] + widths[k], widths[k]) for k in reversed(range(depth))
                                if k >= depth - steps)
        top = widths[depth - steps]
        self.out = nn.Sequential(conv_block(top, 2 * top), nn.Conv2d(2 * top, landmarks_per_level, 1))

    def forward(self, crops: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        plane = view.to(crops.dtype).reshape(-1, 1, 1, 1).expand_as(crops)
        x = torch.cat([crops, plane], dim=1)
        skips = encode(self.down, x)
        x = skips[-1]
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = up(block, x, skip)
        return self.out(x)


def crop_origin(centres: torch.Tensor, crop_size: int) -> torch.Tensor:
    """Network-pixel position of crop pixel (0, 0) for crops centred on ``centres`` (..., 2)."""
    return centres - (crop_size - 1) / 2


def crop(images: torch.Tensor, centres: torch.Tensor, crop_size: int) -> torch.Tensor:
    """Windows (B * L, C, S, S) of ``images`` (B, C, H, W) centred on ``centres`` (B, L, 2) (column,
    row network pixels, sub-pixel, bilinear; zero outside the image)."""
    b, channels, height, width = images.shape
    levels = centres.shape[1]
    offsets = torch.arange(crop_size, dtype=images.dtype, device=images.device)
    origin = crop_origin(centres.to(images.dtype), crop_size)  # (B, L, 2)
    x = origin[..., 0, None, None] + offsets[None, None, None, :]  # (B, L, 1, S)
    y = origin[..., 1, None, None] + offsets[None, None, :, None]  # (B, L, S, 1)
    x, y = torch.broadcast_tensors(x, y)
    grid = torch.stack([2 * x / max(width - 1, 1) - 1, 2 * y / max(height - 1, 1) - 1], dim=-1)
    grid = grid.reshape(b, levels * crop_size, crop_size, 2)
    sampled = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return sampled.reshape(b, channels, levels, crop_size, crop_size).transpose(1, 2).reshape(
        b * levels, channels, crop_size, crop_size)


def body_centres(positions: torch.Tensor, refiner: LandmarkRefiner, levels: int,
                 weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, levels, 2) vertebral-body centres from landmark positions (B, K, 2): the median of each
    level's body landmarks, or with ``weight`` (B, K) the weighted mean (training: true positions,
    only those inside the field)."""
    b = positions.shape[0]
    per_level = positions.reshape(b, levels, refiner.landmarks_per_level, 2)[:, :, refiner.config["centre_landmarks"]]
    if weight is None:
        return per_level.quantile(0.5, dim=2)  # torch.median would take the lower middle value
    w = weight.reshape(b, levels, refiner.landmarks_per_level)[:, :, refiner.config["centre_landmarks"]]
    return (per_level * w[..., None]).sum(dim=2) / w.sum(dim=2).clamp_min(1e-6)[..., None]


def refine(refiner: LandmarkRefiner, image: torch.Tensor, view: torch.Tensor, coarse: torch.Tensor,
           levels: int, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Refined positions (B, K, 2) in network pixels from the network input ``image`` (B, 1, H, W),
    ``view`` (B,) and the main network's positions ``coarse`` (B, K, 2). ``valid`` (B, 1, H, W):
    the input pixels that hold the radiograph (not padding); a level whose crop is less than
    ``MIN_CROP_COVERAGE`` valid keeps its coarse positions (the refiner was trained on crops inside
    the image, and on a small radiograph the crops of its end levels reach into the padding)."""
    b = image.shape[0]
    centres = body_centres(coarse, refiner, levels)
    heatmaps = refiner(crop(image, centres, refiner.crop_size), view.repeat_interleave(levels))
    found, _ = decode_landmarks(heatmaps, refiner.stride)  # (B * L, 19, 2) crop pixels
    origin = crop_origin(centres, refiner.crop_size).reshape(b * levels, 1, 2)
    refined = (found + origin).reshape(b, levels, refiner.landmarks_per_level, 2)
    if valid is not None:
        coverage = crop(valid.to(image.dtype), centres, refiner.crop_size).mean(dim=(1, 2, 3)).reshape(b, levels)
        keep = (coverage >= MIN_CROP_COVERAGE)[..., None, None]
        refined = torch.where(keep, refined, coarse.reshape(refined.shape).to(refined.dtype))
    return refined.reshape(b, levels * refiner.landmarks_per_level, 2)


def training_crops(refiner: LandmarkRefiner, batch: Dict[str, torch.Tensor], levels: int,
                   rng: np.random.Generator) -> Dict[str, torch.Tensor]:
    """Refiner training items from a batch of network samples: per sample and level whose body is
    in the field, a crop about the true body centre moved by a random offset, the view, and that
    level's landmarks in crop pixels with their weights (zero outside the crop)."""
    landmarks, weight = batch["landmarks"], batch["weight"]
    b = landmarks.shape[0]
    per = refiner.landmarks_per_level
    body_weight = weight.reshape(b, levels, per)[:, :, refiner.config["centre_landmarks"]]
    present = (body_weight.sum(dim=2) >= 2).reshape(-1)  # at least two body landmarks in the field
    centres = body_centres(landmarks, refiner, levels, weight)
    jitter = np.clip(rng.normal(0.0, CENTRE_JITTER_PX, size=(b, levels, 2)), -CENTRE_JITTER_MAX_PX,
                     CENTRE_JITTER_MAX_PX)
    centres = centres + torch.as_tensor(jitter, dtype=centres.dtype, device=centres.device)
    crops = crop(batch["image"], centres, refiner.crop_size)
    origin = crop_origin(centres, refiner.crop_size).reshape(b * levels, 1, 2)
    local = landmarks.reshape(b * levels, per, 2) - origin
    inside = ((local >= 0) & (local <= refiner.crop_size - 1)).all(dim=-1).to(weight.dtype)
    local_weight = weight.reshape(b * levels, per) * inside
    return dict(crops=crops[present], view=batch["view"].repeat_interleave(levels)[present],
                landmarks=local[present], weight=local_weight[present])
