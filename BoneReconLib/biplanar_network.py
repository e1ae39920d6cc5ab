"""The BiplanarRecon network: one multi-task model for lumbar decomposition and landmark heatmaps.

Input: a radiograph resampled to ``INPUT_SIZE`` x ``INPUT_SIZE`` pixels of ``INPUT_SPACING_MM``
on the detector (384 mm: a lumbar spine with its surroundings at clinical magnification),
normalised to zero mean and unit spread, plus which view it is (AP = 0, lateral = 1), given to
the network as a second input channel. A shared U-Net-style encoder/decoder feeds two heads:

- decomposition: one image per vertebra L1-L5 (that vertebra's own line integral, scaled by
  ``DECOMPOSITION_SCALE`` so that values are of order 1);
- landmarks: one heatmap per landmark of every vertebra (5 x 19) at 1/``landmark_stride`` of the
  input resolution, from the decoder's features at that scale (wide enough to tell 95 landmarks
  apart, which the 16 full-resolution channels are not), decoded to sub-pixel positions by a
  soft-argmax over the heatmap's softmax (``decode_landmarks``; at inference about each map's
  highest pixel, the levels read as one chain by ``landmark_chain``), with a confidence (the
  softmax mass within 6 mm of the plain soft-argmax: near 1 for a single sharp peak, low for a flat
  or split one).

The heads are fused: the landmark head sees the decomposition head's features, pooled to its
scale (a vertebra's landmarks lie on its own decomposition image). With a ``refiner``
configuration the network also takes a second look at each vertebra
(:mod:`.landmark_refinement`): its output then holds ``refined`` positions, which
``landmark_positions`` prefers, and with a decomposing refiner its ``decomposition`` is the
refiner's (the main network's is kept as ``coarse_decomposition``). Small enough for CPU
inference. Core module (torch), no MRML.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT_SIZE = 256
INPUT_SPACING_MM = 1.5
DECOMPOSITION_SCALE = 0.5  # decomposition target = line integral x this
VIEWS = ("AP", "LAT")
PEAK_WINDOW_MM = 18.0  # inference: soft-argmax about each heatmap's highest pixel (``decode_landmarks``)
CHAIN_DECODING = True  # inference: the levels' landmarks decoded as one chain of vertebrae (``landmark_chain``)
HEATMAP_SIGMA_PX = 1.0  # training: each landmark's target heatmap is a Gaussian of this sigma (heatmap pixels)
# What the heatmaps' spread cannot see (quantisation, the decoding): added in quadrature to their
# uncertainty. The tenth of the synthetic test landmarks with the sharpest heatmaps (expected 0.70-0.97
# mm) are 0.86 mm off per axis, RMS (benchmarks/biplanar_network.py, 2026-12-05).
UNCERTAINTY_FLOOR_MM = 0.7


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.GroupNorm(min(8, c_out), c_out),
                         nn.ReLU(inplace=True), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                         nn.GroupNorm(min(8, c_out), c_out), nn.ReLU(inplace=True))


def encoder(c_in: int, widths: Sequence[int]) -> nn.ModuleList:
    """One block per scale, widths[k] channels at 1/2**k of the input (a U-Net's down path)."""
    blocks = nn.ModuleList()
    for width in widths:
        blocks.append(conv_block(c_in, width))
        c_in = width
    return blocks


def encode(blocks: nn.ModuleList, x: torch.Tensor) -> list:
    """The features of every scale (the skips), each block after a 2 x 2 max-pool but the first."""
    skips = []
    for k, block in enumerate(blocks):
        x = block(x if k == 0 else F.max_pool2d(x, 2))
        skips.append(x)
    return skips


def up(block: nn.Module, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """One step of a U-Net's up path: ``x`` enlarged to ``skip``'s size, joined to it, ``block``."""
    return block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip],
                           dim=1))


class BiplanarNet(nn.Module):
    """Shared encoder-decoder, decomposition head, landmark head fused with it."""

    def __init__(self, levels: int = 5, landmarks_per_level: int = 19, widths: Sequence[int] = (16, 32, 64, 96, 128),
                 landmark_stride: int = 4, refiner: Optional[dict] = None):
        super().__init__()
        scale = int(round(math.log2(landmark_stride)))
        if landmark_stride < 1 or 2 ** scale != landmark_stride or scale >= len(widths):
            raise ValueError(f"landmark_stride must be a power of 2 below {2 ** (len(widths) - 1) + 1}.")
        self.config = dict(levels=levels, landmarks_per_level=landmarks_per_level, widths=list(widths),
                           landmark_stride=landmark_stride)
        self.levels, self.landmarks_per_level, self.landmark_stride = levels, landmarks_per_level, landmark_stride
        self.down = encoder(2, widths)
        self.up = nn.ModuleList()
        for skip, width in zip(reversed(widths[:-1]), reversed(widths[1:])):
            self.up.append(conv_block(width + skip, skip))
        top = widths[0]
        self.decomposition_features = conv_block(top, top)
        self.decomposition_out = nn.Conv2d(top, levels, 1)
        width = 2 * widths[scale]
        self.landmark_features = conv_block(widths[scale] + top, width)
        self.landmark_out = nn.Conv2d(width, levels * landmarks_per_level, 1)
        self.refiner = None
        if refiner is not None:
            from .landmark_refinement import LandmarkRefiner

            self.refiner = LandmarkRefiner(**refiner)
            if self.refiner.landmarks_per_level != landmarks_per_level:
                raise ValueError("The refiner's landmark count differs from the network's.")
            self.config["refiner"] = self.refiner.config

    def forward(self, image: torch.Tensor, view: torch.Tensor,
                valid: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """``image`` (B, 1, H, W) normalised, ``view`` (B,) 0 = AP, 1 = lateral; H, W multiples of 16;
        ``valid`` (B, 1, H, W): where the image holds the radiograph rather than padding (for the refiner)."""
        plane = view.to(image.dtype).reshape(-1, 1, 1, 1).expand_as(image)
        x = torch.cat([image, plane], dim=1)
        skips = encode(self.down, x)
        x = skips[-1]
        decoded = {}  # stride -> decoder features
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = up(block, x, skip)
            decoded[image.shape[-1] // x.shape[-1]] = x
        decomposition_features = self.decomposition_features(x)
        s = self.landmark_stride
        pooled = F.avg_pool2d(decomposition_features, s) if s > 1 else decomposition_features
        landmark_features = self.landmark_features(torch.cat([decoded[s], pooled], dim=1))
        output = dict(decomposition=self.decomposition_out(decomposition_features),
                      heatmaps=self.landmark_out(landmark_features))
        if self.refiner is not None or not self.training:
            coarse, _ = inference_landmarks(output["heatmaps"], self.levels, s)
        if not self.training:
            output["uncertainty"] = heatmap_uncertainty(output["heatmaps"].detach(), coarse, s)
        if self.refiner is not None:
            from .landmark_refinement import refine

            refined = refine(self.refiner, image, view, coarse, self.levels, valid, output["decomposition"])
            output["refined"] = refined["positions"]
            if "uncertainty" in output:  # the refiner's where it refined, the main heatmaps' where it kept them
                output["uncertainty"] = torch.where(refined["refined"], refined["uncertainty"], output["uncertainty"])
            if "decomposition" in refined:
                output["coarse_decomposition"] = output["decomposition"]
                output["decomposition"] = refined["decomposition"]
        return output

    def base_config(self) -> dict:
        """The configuration without the refiner (what a refiner is trained on top of)."""
        return {key: value for key, value in self.config.items() if key != "refiner"}


def landmark_positions(model: BiplanarNet, output: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Positions (..., K, 2) in input pixels and confidences (..., K) of a network output: the
    refined positions when the network has a refiner, else the decoded heatmaps; the confidences
    are always the main heatmaps' (the found rule is calibrated on them)."""
    positions, confidence = inference_landmarks(output["heatmaps"], model.levels, model.landmark_stride)
    return output.get("refined", positions), confidence


def inference_landmarks(heatmaps: torch.Tensor, levels: int, stride: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Positions and confidences of the main heatmaps (B, L*K, h, w) at inference: decoded about
    each map's highest pixel (``PEAK_WINDOW_MM``) and, with ``CHAIN_DECODING``, as one chain of
    vertebrae (``landmark_chain.chain_decode``)."""
    if CHAIN_DECODING and PEAK_WINDOW_MM is not None:
        from .landmark_chain import chain_decode

        return chain_decode(heatmaps, levels, stride, PEAK_WINDOW_MM)
    return decode_landmarks(heatmaps, stride, window_mm=PEAK_WINDOW_MM)


def decode_landmarks(heatmaps: torch.Tensor, stride: int = 1, radius_mm: float = 6.0,
                     spacing_mm: float = INPUT_SPACING_MM,
                     window_mm: Optional[float] = None,
                     peaks: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel positions (..., K, 2) in input pixels as (i = column, j = row) and confidences
    (..., K) of heatmap logits (..., K, H, W) made at 1/``stride`` of the input resolution: the
    soft-argmax of each map's softmax, and the probability mass within ``radius_mm`` (at the input
    spacing) of that position. Heatmap pixel k covers input pixels stride*k .. stride*k + stride - 1.

    With ``window_mm`` the soft-argmax only weighs the disc of that radius about the map's highest
    pixel (inference: where a map has two peaks, typically on neighbouring vertebrae of a real
    radiograph, the plain soft-argmax lands between them, on neither). Training keeps the plain
    soft-argmax, whose gradient reaches every pixel. ``peaks`` (..., K, 2) heatmap pixels (column,
    row) centre the windows elsewhere than on the highest pixels (``landmark_chain``). The
    confidence stays the mass about the plain soft-argmax in both cases: a map split between two
    peaks is unsure which is right, and the found rule (``FOUND_CONFIDENCE``) was calibrated on
    that measure."""
    radius_px = radius_mm / spacing_mm / stride
    *lead, height, width = heatmaps.shape
    flat = heatmaps.reshape(*lead, height * width).float()
    probabilities = torch.softmax(flat, dim=-1).reshape(*lead, height, width)
    rows = torch.arange(height, dtype=probabilities.dtype, device=heatmaps.device)
    cols = torch.arange(width, dtype=probabilities.dtype, device=heatmaps.device)
    weights = probabilities
    if window_mm is not None:
        if peaks is None:
            peak = flat.argmax(dim=-1)
            peak_i = (peak % width).to(rows.dtype)
            peak_j = torch.div(peak, width, rounding_mode="floor").to(rows.dtype)
        else:
            peak_i, peak_j = peaks[..., 0].to(rows.dtype), peaks[..., 1].to(rows.dtype)
        window_px = window_mm / spacing_mm / stride
        inside = ((cols - peak_i[..., None, None]) ** 2 + (rows[:, None] - peak_j[..., None, None]) ** 2
                  <= window_px ** 2)
        weights = probabilities * inside
        weights = weights / weights.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    i = (weights.sum(dim=-2) * cols).sum(dim=-1)
    j = (weights.sum(dim=-1) * rows).sum(dim=-1)
    mean_i = (probabilities.sum(dim=-2) * cols).sum(dim=-1)
    mean_j = (probabilities.sum(dim=-1) * rows).sum(dim=-1)
    near = ((cols - mean_i[..., None, None]) ** 2 + (rows[:, None] - mean_j[..., None, None]) ** 2) <= radius_px ** 2
    confidence = (probabilities * near).sum(dim=(-2, -1))
    return torch.stack([i, j], dim=-1) * stride + (stride - 1) / 2, confidence


def heatmap_uncertainty(heatmaps: torch.Tensor, positions: torch.Tensor, stride: int = 1,
                        spacing_mm: float = INPUT_SPACING_MM,
                        floor_mm: float = UNCERTAINTY_FLOOR_MM) -> torch.Tensor:
    """Each landmark's expected error (mm, one s.d. per axis, ..., K) from its heatmap logits (..., K, H,
    W) and its decoded position (..., K, 2) in input pixels: a heatmap trained towards a Gaussian of
    ``HEATMAP_SIGMA_PX`` is that Gaussian convolved with the network's own uncertainty, so the
    softmax's mean squared radius about the position, less the target's 2 sigma^2, leaves twice the
    uncertainty's variance. A flat or split map gives a large one, a single sharp peak about
    ``floor_mm``. On the refiner's heatmaps it ranks the errors far better than the confidence (rank
    correlation 0.62 against the confidence's -0.32 on the synthetic test split) and matches their
    RMS per axis (``benchmarks/biplanar_network.py``), so the registration can weigh each landmark by it."""
    *lead, height, width = heatmaps.shape
    probabilities = torch.softmax(heatmaps.reshape(*lead, height * width).float(), dim=-1).reshape(*lead, height, width)
    rows = torch.arange(height, dtype=probabilities.dtype, device=heatmaps.device)
    cols = torch.arange(width, dtype=probabilities.dtype, device=heatmaps.device)
    centre = (positions.to(probabilities.dtype) - (stride - 1) / 2) / stride  # heatmap pixels
    square = ((cols - centre[..., 0, None, None]) ** 2 + (rows[:, None] - centre[..., 1, None, None]) ** 2)
    radius2 = (probabilities * square).sum(dim=(-2, -1))  # heatmap pixels^2
    variance = (radius2 - 2 * HEATMAP_SIGMA_PX ** 2).clamp_min(0.0) / 2 * (stride * spacing_mm) ** 2
    return torch.sqrt(variance + floor_mm ** 2)


def landmark_uncertainty(output: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
    """Each landmark's expected error (mm per axis, (B, K)) of a network output at inference, or None
    (an output of a network in training mode)."""
    return output.get("uncertainty")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_network(path=None, device="cpu") -> BiplanarNet:
    """A network from weights with their configuration: a training folder's ``best.pt`` /
    ``checkpoint.pt``, or (``path`` None) the bundled "biplanar" network, its hash checked."""
    from pathlib import Path

    from .errors import InputError
    from .network_library import bundled_weights

    path = bundled_weights("biplanar") if path is None else Path(path)
    if not path.is_file():
        raise InputError(f"No network weights at {path}.")
    state = torch.load(path, map_location=device, weights_only=False)
    config = state.get("config") or state.get("history", {}).get("settings", {}).get("config")
    if config is None or "model" not in state:
        raise InputError(f"{path} holds no BiplanarRecon network (weights and configuration).")
    try:
        model = BiplanarNet(**config).to(device)
        model.load_state_dict(state["model"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"The weights in {path} do not fit this version's network: {str(exc)[:200]}") from exc
    return model.eval()
