"""Second look at each vertebra's landmarks: a small network on a crop centred on the vertebra.

The main network's landmark heatmaps are made at 6 mm pixels over the whole 384 mm field, where
95 landmarks share one decoder; its landmarks end about 5 mm from the truth. The refiner looks
again at each vertebra alone: a ``crop_size`` x ``crop_size`` window of the same network input
(1.5 mm pixels, 168 mm by default) centred on the vertebra as the main network placed it (the
mean of its landmarks; refiners before biplanar-1.3.0: the median of its body landmarks, which
left lateral spinous tips outside the crop), and predicts that vertebra's landmarks as heatmaps at
1/``stride`` of the crop (3 mm pixels), decoded by the same soft-argmax. One refiner serves all
levels and both views (the view is a second input plane, as in the main network); it is trained
on crops around the true centre moved at random (``CENTRE_JITTER_PX``) so that it tolerates
the main network's misplacement.

With ``decomposition`` the refiner also draws the centred vertebra alone (its line integral, as
the main network's decomposition head, at the heatmaps' 3 mm pixels), pasted back onto the
network grid (``paste``) in place of the main network's image of that level. The crop settles
which vertebra is meant (the one in the middle), which the main network's whole-field head must
work out by counting: biplanar-1.0.0's L3-L5 images stayed empty. Core module (torch), no MRML.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .biplanar_network import conv_block, decode_landmarks, encode, encoder, heatmap_uncertainty, up

CENTRE_JITTER_PX = 5.0  # training: spread of the crop centre about the true centre (network pixels)
CENTRE_JITTER_MAX_PX = 12.0
CROP_MARGIN_PX = 6.0  # inference: how far inside the crop's edge a level's coarse landmarks are brought
REFINED_PEAK_WINDOW_MM = 18.0  # inference: soft-argmax about each crop heatmap's highest pixel
# A crop more than half padding keeps the main network's positions and image. Was 0.9 until
# 2026-12-04: that also discarded the refined L5 of a third of the synthetic test cases (their
# L5 crop reaches 10-14 % past the radiograph's lower edge), whose main-network image is empty.
MIN_CROP_COVERAGE = 0.5


class LandmarkRefiner(nn.Module):
    """Crop (N, 1, C, C) + view (N,) -> {"heatmaps": (N, landmarks, C / stride, C / stride)} of the
    vertebra in the middle, and with ``decomposition`` its image {"decomposition": (N, 1, C / stride, C / stride)}."""

    def __init__(self, landmarks_per_level: int = 19, centre_landmarks: Sequence[int] = tuple(range(10)),
                 crop_size: int = 112, stride: int = 2, widths: Sequence[int] = (16, 32, 64, 128),
                 decomposition: bool = False, centre: str = "body"):
        super().__init__()
        depth = len(widths) - 1
        if crop_size % (2 ** depth) or stride not in (1, 2, 4) or 2 ** depth < stride:
            raise ValueError(f"crop_size must be a multiple of {2 ** depth} and stride 1, 2 or 4.")
        if not centre_landmarks or max(centre_landmarks) >= landmarks_per_level or min(centre_landmarks) < 0:
            raise ValueError("centre_landmarks must name landmarks of one level.")
        self.config = dict(landmarks_per_level=landmarks_per_level, centre_landmarks=[int(k) for k in centre_landmarks],
                           crop_size=crop_size, stride=stride, widths=list(widths))
        if centre not in ("landmarks", "body"):
            raise ValueError('centre must be "landmarks" or "body".')
        if decomposition:  # absent from older refiners' configurations (biplanar-1.1.0)
            self.config["decomposition"] = True
        if centre != "body":  # absent from older refiners' configurations (biplanar-1.2.0 and before)
            self.config["centre"] = centre
        self.landmarks_per_level, self.crop_size, self.stride = landmarks_per_level, crop_size, stride
        self.down = encoder(2, widths)
        # Decode only up to the heatmap scale: stride 2 stops one level above full resolution.
        steps = depth - int(round(np.log2(stride)))
        self.up = nn.ModuleList(conv_block(widths[k + 1] + widths[k], widths[k]) for k in reversed(range(depth))
                                if k >= depth - steps)
        top = widths[depth - steps]
        self.out = nn.Sequential(conv_block(top, 2 * top), nn.Conv2d(2 * top, landmarks_per_level, 1))
        self.decomposition_out = None
        if decomposition:
            self.decomposition_out = nn.Sequential(conv_block(top, top), nn.Conv2d(top, 1, 1))
            # Starts drawing nothing: a head added to a trained refiner must not jolt its shared features.
            nn.init.zeros_(self.decomposition_out[-1].weight)
            nn.init.zeros_(self.decomposition_out[-1].bias)

    def forward(self, crops: torch.Tensor, view: torch.Tensor) -> Dict[str, torch.Tensor]:
        plane = view.to(crops.dtype).reshape(-1, 1, 1, 1).expand_as(crops)
        x = torch.cat([crops, plane], dim=1)
        skips = encode(self.down, x)
        x = skips[-1]
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = up(block, x, skip)
        output = dict(heatmaps=self.out(x))
        if self.decomposition_out is not None:
            output["decomposition"] = self.decomposition_out(x)
        return output


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


def paste(maps: torch.Tensor, centres: torch.Tensor, crop_size: int, stride: int, size) -> torch.Tensor:
    """The inverse of ``crop``: maps (B * L, 1, S / stride, S / stride) made on crops centred on
    ``centres`` (B, L, 2) -> images (B, L, H, W) on the network grid (``size`` = (H, W); bilinear,
    zero beyond each crop). Map pixel k covers crop pixels stride*k .. stride*k + stride - 1."""
    b, levels = centres.shape[:2]
    height, width = size
    h, w = maps.shape[-2:]
    origin = crop_origin(centres.to(maps.dtype), crop_size).reshape(b * levels, 1, 1, 2)
    rows, cols = torch.meshgrid(torch.arange(height, dtype=maps.dtype, device=maps.device),
                                torch.arange(width, dtype=maps.dtype, device=maps.device), indexing="ij")
    at = (torch.stack([cols, rows], dim=-1)[None] - origin - (stride - 1) / 2) / stride  # (B * L, H, W, 2) map px
    grid = torch.stack([2 * at[..., 0] / max(w - 1, 1) - 1, 2 * at[..., 1] / max(h - 1, 1) - 1], dim=-1)
    pasted = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return pasted.reshape(b, levels, height, width)


def level_centres(positions: torch.Tensor, refiner: LandmarkRefiner, levels: int,
                  weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, levels, 2) centres of each level's crop from landmark positions (B, K, 2): with the
    refiner's ``centre`` "landmarks" the mean of all the level's landmarks (a lateral spinous tip
    lies 90 mm behind the body centre, beyond the reach of a crop centred on the body), with
    "body" (refiners before biplanar-1.3.0) the median of its body landmarks. With ``weight``
    (B, K) a weighted mean (training: true positions, only those inside the field)."""
    b = positions.shape[0]
    per_level = positions.reshape(b, levels, refiner.landmarks_per_level, 2)
    by_body = refiner.config.get("centre", "body") == "body"
    if by_body:
        per_level = per_level[:, :, refiner.config["centre_landmarks"]]
    if weight is None:
        # torch.median would take the lower middle value
        return per_level.quantile(0.5, dim=2) if by_body else per_level.mean(dim=2)
    w = weight.reshape(b, levels, refiner.landmarks_per_level)
    if by_body:
        w = w[:, :, refiner.config["centre_landmarks"]]
    return (per_level * w[..., None]).sum(dim=2) / w.sum(dim=2).clamp_min(1e-6)[..., None]


def crop_centres(coarse: torch.Tensor, refiner: LandmarkRefiner, levels: int) -> torch.Tensor:
    """(B, levels, 2) crop centres for the main network's positions ``coarse`` (B, K, 2): each
    level's centre (``level_centres``) moved so that all its landmarks lie ``CROP_MARGIN_PX``
    inside the crop, by at most ``CENTRE_JITTER_MAX_PX`` per axis (the largest offset the refiner
    saw in training). Why: on a body-centred crop a lateral spinous tip (about 60 px behind the
    body centre) lies beyond the 56 px half-width of the default crop."""
    b = coarse.shape[0]
    centres = level_centres(coarse, refiner, levels)
    per_level = coarse.reshape(b, levels, refiner.landmarks_per_level, 2)
    half = (refiner.crop_size - 1) / 2 - CROP_MARGIN_PX
    over = (per_level.amax(dim=2) - (centres + half)).clamp_min(0)
    under = ((centres - half) - per_level.amin(dim=2)).clamp_min(0)
    return centres + (over - under).clamp(-CENTRE_JITTER_MAX_PX, CENTRE_JITTER_MAX_PX)


def refine(refiner: LandmarkRefiner, image: torch.Tensor, view: torch.Tensor, coarse: torch.Tensor,
           levels: int, valid: Optional[torch.Tensor] = None,
           decomposition: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """{"positions": refined (B, K, 2) network pixels, "uncertainty": their expected error (B, K) in mm
    (``heatmap_uncertainty``), "refined": (B, K) whether each was refined or kept} from the network input ``image`` (B, 1, H, W),
    ``view`` (B,) and the main network's positions ``coarse`` (B, K, 2), and for a decomposing
    refiner {"decomposition": (B, L, H, W)}, each level's pasted image in place of the main
    network's ``decomposition`` (B, L, H, W). ``valid`` (B, 1, H, W): the input pixels that hold the
    radiograph (not padding); a level whose crop is less than ``MIN_CROP_COVERAGE`` valid keeps its
    coarse positions and image (the refiner was trained on crops inside the image, and on a small
    radiograph the crops of its end levels reach into the padding)."""
    b = image.shape[0]
    centres = crop_centres(coarse, refiner, levels)
    output = refiner(crop(image, centres, refiner.crop_size), view.repeat_interleave(levels))
    found, _ = decode_landmarks(output["heatmaps"], refiner.stride,
                                window_mm=REFINED_PEAK_WINDOW_MM)  # (B * L, 19, 2) crop pixels
    origin = crop_origin(centres, refiner.crop_size).reshape(b * levels, 1, 2)
    refined = (found + origin).reshape(b, levels, refiner.landmarks_per_level, 2)
    keep = torch.ones(b, levels, dtype=torch.bool, device=image.device)
    if valid is not None:
        coverage = crop(valid.to(image.dtype), centres, refiner.crop_size).mean(dim=(1, 2, 3)).reshape(b, levels)
        keep = coverage >= MIN_CROP_COVERAGE
        refined = torch.where(keep[..., None, None], refined, coarse.reshape(refined.shape).to(refined.dtype))
    k = levels * refiner.landmarks_per_level
    uncertainty = heatmap_uncertainty(output["heatmaps"].detach(), found, refiner.stride)
    result = dict(positions=refined.reshape(b, k, 2), uncertainty=uncertainty.reshape(b, k),
                  refined=keep[..., None].expand(b, levels, refiner.landmarks_per_level).reshape(b, k))
    if "decomposition" in output and decomposition is not None:
        pasted = paste(output["decomposition"], centres, refiner.crop_size, refiner.stride, image.shape[-2:])
        result["decomposition"] = torch.where(keep[..., None, None], pasted, decomposition)
    return result


def training_crops(refiner: LandmarkRefiner, batch: Dict[str, torch.Tensor], levels: int,
                   rng: np.random.Generator) -> Dict[str, torch.Tensor]:
    """Refiner training items from a batch of network samples: per sample and level whose body is
    in the field, a crop about the level's true centre moved by a random offset, the view, and that
    level's landmarks in crop pixels with their weights (zero outside the crop); for a decomposing
    refiner also that level's true image on the crop, averaged to the refiner's output pixels
    ("decomposition"), and its weight (the sample's "decomposition_weight": 0 for real radiographs)."""
    landmarks, weight = batch["landmarks"], batch["weight"]
    b = landmarks.shape[0]
    per = refiner.landmarks_per_level
    body_weight = weight.reshape(b, levels, per)[:, :, refiner.config["centre_landmarks"]]
    present = (body_weight.sum(dim=2) >= 2).reshape(-1)  # at least two body landmarks in the field
    centres = level_centres(landmarks, refiner, levels, weight)
    jitter = np.clip(rng.normal(0.0, CENTRE_JITTER_PX, size=(b, levels, 2)), -CENTRE_JITTER_MAX_PX,
                     CENTRE_JITTER_MAX_PX)
    centres = centres + torch.as_tensor(jitter, dtype=centres.dtype, device=centres.device)
    crops = crop(batch["image"], centres, refiner.crop_size)
    origin = crop_origin(centres, refiner.crop_size).reshape(b * levels, 1, 2)
    local = landmarks.reshape(b * levels, per, 2) - origin
    inside = ((local >= 0) & (local <= refiner.crop_size - 1)).all(dim=-1).to(weight.dtype)
    local_weight = weight.reshape(b * levels, per) * inside
    items = dict(crops=crops[present], view=batch["view"].repeat_interleave(levels)[present],
                 landmarks=local[present], weight=local_weight[present])
    if refiner.decomposition_out is not None:
        # Each level's image (one channel of B * L) cropped about its own centre: (B * L, 1, S, S).
        own = crop(batch["decomposition"].reshape(b * levels, 1, *batch["decomposition"].shape[-2:]),
                   centres.reshape(b * levels, 1, 2), refiner.crop_size)
        items["decomposition"] = F.avg_pool2d(own, refiner.stride)[present] if refiner.stride > 1 else own[present]
        items["decomposition_weight"] = batch["decomposition_weight"].repeat_interleave(levels)[present]
    return items
