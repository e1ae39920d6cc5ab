"""DepthRecon's two-stage network: which bones are on each pixel, then where each ray enters and leaves them.

Stage 1 (segmentation): a U-Net from the radiograph to one logit per bone per pixel. Independent
sigmoids, not a softmax, so overlapping bones (carpals behind each other, radius over ulna) are
all "on" where they overlap.

Stage 2 (depth): a second U-Net from the radiograph and stage 1's probabilities (the guidance:
it knows which bones to draw where) to two maps per bone: the front depth ``z`` and the extent
``softplus(e)`` >= 0, so back = front + extent can never lie before front. Both are in
object-plane pixels relative to the object plane (:mod:`.depth_reference`), divided by
``DEPTH_SCALE`` to keep the outputs near 1; a change of magnification leaves them unchanged.

The input is the radiograph as the limb dataset renders it: ``size`` x ``size`` pixels at about
``object_pixel_mm`` per pixel at the object plane (the network's configuration records both;
inference resamples to them). Core module (torch), no MRML.
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .biplanar_network import conv_block, encode, encoder, up

DEPTH_SCALE = 32.0  # object-plane pixels per unit of the depth outputs


class UNet(nn.Module):
    """Plain U-Net: ``c_in`` channels -> features of ``widths[0]`` channels at full resolution."""

    def __init__(self, c_in: int, widths: Sequence[int]):
        super().__init__()
        self.down = encoder(c_in, widths)
        self.up = nn.ModuleList(conv_block(width + skip, skip)
                                for skip, width in zip(reversed(widths[:-1]), reversed(widths[1:])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = encode(self.down, x)
        x = skips[-1]
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = up(block, x, skip)
        return x


class DepthNet(nn.Module):
    """Radiograph (N, 1, H, W) -> {"logits": (N, B, H, W), "front": (N, B, H, W), "extent": (N, B, H, W)}
    for the ``bones`` named in the configuration (front/extent in object-plane pixels)."""

    def __init__(self, bones: Sequence[str], widths: Sequence[int] = (16, 32, 64, 128, 192),
                 depth_widths: Sequence[int] = (16, 32, 64, 128, 192), size: int = 256,
                 object_pixel_mm: float = 0.5):
        super().__init__()
        bones = [str(b) for b in bones]
        if not bones or len(set(bones)) != len(bones):
            raise ValueError("Give the network distinct bone names.")
        if size % 2 ** (max(len(widths), len(depth_widths)) - 1):
            raise ValueError("The input size must be divisible by the U-Nets' downsampling.")
        self.config = dict(bones=bones, widths=list(widths), depth_widths=list(depth_widths), size=int(size),
                           object_pixel_mm=float(object_pixel_mm))
        self.bones = bones
        count = len(bones)
        self.segmentation = UNet(1, widths)
        self.segmentation_out = nn.Conv2d(widths[0], count, 1)
        self.depth = UNet(1 + count, depth_widths)
        self.depth_out = nn.Conv2d(depth_widths[0], 2 * count, 1)

    def forward(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        logits = self.segmentation_out(self.segmentation(image))
        guided = torch.cat([image, torch.sigmoid(logits)], dim=1)
        depth = self.depth_out(self.depth(guided))
        front, extent = depth.chunk(2, dim=1)
        return dict(logits=logits, front=front * DEPTH_SCALE, extent=F.softplus(extent) * DEPTH_SCALE)
