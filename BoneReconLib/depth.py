"""Front/back depth and thickness maps: where each detector ray enters and leaves a bone.

For every pixel: ``front`` = distance (mm) from the X-ray source to the first point where the
ray enters the bone, ``back`` = distance to the last point where it leaves, ``thickness`` = the
summed length of the ray inside the bone (less than back - front where the ray leaves and
re-enters). Pixels whose rays miss the bone hold 0 in all three maps and False in ``hit``.

Rendered from closed meshes (:mod:`.mesh_depth`, exact) and from label maps
(:mod:`.label_depth`, the 0.5 level set of the interpolated label indicator). Both collect the
crossings of each ray as signed distances and reduce them here.

Core module: torch only, no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DepthMaps:
    """Depth maps with leading batch axes, e.g. (N poses, V views, nv, nu)."""

    front: torch.Tensor
    back: torch.Tensor
    thickness: torch.Tensor
    hit: torch.Tensor

    def __getitem__(self, index) -> "DepthMaps":
        return DepthMaps(self.front[index], self.back[index], self.thickness[index], self.hit[index])

    @staticmethod
    def stack(maps) -> "DepthMaps":
        maps = list(maps)
        return DepthMaps(*(torch.stack([getattr(m, key) for m in maps])
                           for key in ("front", "back", "thickness", "hit")))


def reduce_crossings(n_pixels: int, pixel, distance, leaving, dtype, device):
    """(front, back, thickness, hit) flat maps from ray crossings.

    ``pixel`` (C,) flat pixel index of each crossing, ``distance`` (C,) its distance from the
    source, ``leaving`` (C,) True where the ray leaves the bone there. Thickness is the sum of
    leaving distances minus entering distances: the path length inside for any closed surface.
    """
    front = torch.full((n_pixels,), float("inf"), dtype=dtype, device=device)
    back = torch.full((n_pixels,), float("-inf"), dtype=dtype, device=device)
    thickness = torch.zeros(n_pixels, dtype=dtype, device=device)
    count = torch.zeros(n_pixels, dtype=torch.int64, device=device)
    if pixel.numel():
        front = front.scatter_reduce(0, pixel, distance, reduce="amin")
        back = back.scatter_reduce(0, pixel, distance, reduce="amax")
        thickness = thickness.index_add(0, pixel, torch.where(leaving, distance, -distance))
        count = count.index_add(0, pixel, torch.ones_like(pixel))
    hit = count > 0
    zero = torch.zeros((), dtype=dtype, device=device)
    return (torch.where(hit, front, zero), torch.where(hit, back, zero),
            torch.where(hit, thickness.clamp(min=0.0), zero), hit)
