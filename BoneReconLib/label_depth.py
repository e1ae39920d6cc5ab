"""Depth maps of labelled bones in a label map: where each ray crosses the label's boundary.

The boundary is the 0.5 level set of the label's indicator (1 inside, 0 outside) interpolated
trilinearly, the surface marching cubes would extract from the same label map. On a face of a
voxel box it lies exactly half a voxel beyond the outer voxel centres.

Each ray is sampled at most ``step`` voxels apart between where it enters and leaves the label's
bounding box; every change of side between two samples is then located by bisection to ~1e-7
voxel. Features thinner than ``step`` that fall between two samples can be missed.

Core module: numpy/torch only, no MRML.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .depth import DepthMaps, reduce_crossings
from .drr import Volume, as_poses, detector_window
from .errors import InputError
from .geometry import View

BISECTIONS = 26


def label_depth(labels_kji, ijk_to_ras, values: Sequence[int], views: Sequence[View], poses=None,
                step: float = 0.25, max_samples: int = 1 << 22) -> DepthMaps:
    """Depth maps (L labels, N poses, V views, nv, nu) of each label value in a label map.

    ``labels_kji`` integer array indexed [k, j, i] with its 4x4 ``ijk_to_ras``; ``poses`` (N, 4, 4)
    move the labelled volume in world space. Computed in float64.
    """
    views = list(views)
    if not views:
        raise InputError("At least one view is needed to render.")
    if len({v.size for v in views}) != 1:
        raise InputError("All views of one render call must have the same detector size.")
    if not 0 < step <= 1:
        raise InputError(f"The sampling step must be within (0, 1] voxel, got {step}.")
    labels = torch.as_tensor(np.asarray(labels_kji))
    if labels.ndim != 3:
        raise InputError(f"A label map must be 3D, got shape {tuple(labels.shape)}.")
    Volume(torch.zeros(1, 1, 1), ijk_to_ras)  # validates the matrix (spacing, finiteness)
    poses = as_poses(poses, labels.device, torch.float64)
    maps = []
    for value in values:
        inside = labels == int(value)
        where = torch.nonzero(inside)
        if where.numel() == 0:
            raise InputError(f"Label {value} is absent from the label map.")
        # Crop with one empty voxel all round, so the interpolated indicator is 0 on the crop's box.
        lower = where.min(dim=0).values - 1
        upper = where.max(dim=0).values + 2
        pad_lo = (-lower).clamp(min=0)
        pad_hi = (upper - torch.tensor(labels.shape)).clamp(min=0)
        lower, upper = lower.clamp(min=0), torch.minimum(upper, torch.tensor(labels.shape))
        (k0, j0, i0), (k1, j1, i1) = lower.tolist(), upper.tolist()
        crop = inside[k0:k1, j0:j1, i0:i1].to(torch.float64)
        crop = torch.nn.functional.pad(crop, (int(pad_lo[2]), int(pad_hi[2]), int(pad_lo[1]), int(pad_hi[1]),
                                              int(pad_lo[0]), int(pad_hi[0])))
        shift = np.asarray(ijk_to_ras, dtype=np.float64).copy()
        first = np.array([i0 - int(pad_lo[2]), j0 - int(pad_lo[1]), k0 - int(pad_lo[0])], dtype=np.float64)
        shift[:3, 3] = shift[:3, :3] @ first + shift[:3, 3]
        indicator = Volume(crop, shift)
        maps.append(DepthMaps.stack(
            DepthMaps.stack(_render_view(indicator, pose, view, step, max_samples, value) for view in views)
            for pose in poses))
    return DepthMaps.stack(maps)


def _render_view(indicator: Volume, pose, view: View, step, max_samples, value) -> DepthMaps:
    data = indicator.data
    device, f64 = data.device, torch.float64
    nu, nv = view.size
    n_pixels = nu * nv
    k, j, i = data.shape
    box = indicator.ijk_to_ras.copy()
    corners = np.array([[a, b, c, 1.0] for a in (0, i - 1) for b in (0, j - 1) for c in (0, k - 1)], float)
    pose_np = pose.cpu().numpy()
    moved = (corners @ box.T) @ pose_np.T
    window = detector_window(view, moved[:, :3])
    empty = torch.zeros(0, dtype=torch.long, device=device)
    if window is None:
        flat = reduce_crossings(n_pixels, empty, empty.to(f64), empty.bool(), f64, device)
        return DepthMaps(*(m.reshape(nv, nu) for m in flat))
    (jj0, jj1), (ii0, ii1) = window
    rows, cols = torch.meshgrid(torch.arange(jj0, jj1, device=device), torch.arange(ii0, ii1, device=device),
                                indexing="ij")
    pixel = (rows * nu + cols).flatten()
    targets = torch.as_tensor(view.pixel_to_world(cols.cpu().numpy(), rows.cpu().numpy()), device=device,
                              dtype=f64).reshape(-1, 3)
    to_ijk = torch.as_tensor(np.linalg.inv(pose_np @ box), device=device, dtype=f64)
    source_world = torch.as_tensor(view.source, device=device, dtype=f64)
    src = to_ijk[:3, :3] @ source_world + to_ijk[:3, 3]
    direction = targets @ to_ijk[:3, :3].T + to_ijk[:3, 3] - src  # tau in [0, 1]: source -> pixel
    length = (targets - source_world).norm(dim=1)  # mm from the source to the pixel

    # Where each ray is inside the box of voxel centres (slab method), in tau.
    upper = torch.tensor([i - 1, j - 1, k - 1], device=device, dtype=f64)
    safe = torch.where(direction.abs() < 1e-300, torch.full_like(direction, 1e-300), direction)
    t1, t2 = (0.0 - src) / safe, (upper - src) / safe
    enter = torch.minimum(t1, t2).max(dim=1).values
    leave = torch.maximum(t1, t2).min(dim=1).values
    crosses = leave > enter
    if bool((crosses & ((enter <= 0) | (leave >= 1))).any()):
        raise InputError(f"Label {value} reaches the source plane or the detector of view '{view.name}'; "
                         "depth maps need the bone between the source and the detector.")
    keep = torch.nonzero(crosses).flatten()
    pixel, direction, length = pixel[keep], direction[keep], length[keep]
    enter, leave = enter[keep], leave[keep]

    volume = data[None, None]
    coarse_volume = volume.float()  # the coarse pass only decides sides; bisection runs in float64
    scale = 2.0 / torch.tensor([max(i - 1, 1), max(j - 1, 1), max(k - 1, 1)], device=device, dtype=f64)
    start, slope = src * scale - 1.0, direction * scale  # grid_sample coordinates: start + t * slope

    def field(t, rays, coarse=False):
        """The interpolated indicator at parameters t (R,) or (R, M) along rays (R,)."""
        ray_slope = slope[rays] if t.ndim == 1 else slope[rays][:, None, :]
        source = coarse_volume if coarse else volume
        grid = (start + t[..., None] * ray_slope).to(source.dtype).reshape(1, -1, 1, 1, 3)
        return torch.nn.functional.grid_sample(source, grid, mode="bilinear", padding_mode="zeros",
                                               align_corners=True).reshape(t.shape)

    chord = (leave - enter) * direction.norm(dim=1)  # voxel units
    n_samples = int(torch.ceil(chord.max() / step).item()) + 1 if len(keep) else 0
    pixels, distances, leaving = [], [], []
    chunk = max(1, max_samples // max(n_samples, 1))
    for r0 in range(0, len(keep), chunk):
        rays = torch.arange(r0, min(r0 + chunk, len(keep)), device=device)
        fraction = torch.linspace(0.0, 1.0, n_samples, device=device, dtype=f64)
        t = enter[rays, None] + fraction[None, :] * (leave - enter)[rays, None]
        above = field(t, rays, coarse=True) > 0.5
        change = torch.nonzero(above[:, 1:] != above[:, :-1])
        if change.numel() == 0:
            continue
        ray, sample = rays[change[:, 0]], change[:, 1]
        lo, hi = t[change[:, 0], sample], t[change[:, 0], sample + 1]
        rising = field(lo, ray) <= 0.5  # re-decided in float64, so bisection keeps a true bracket
        bracketed = rising != (field(hi, ray) <= 0.5)
        ray, lo, hi, rising = ray[bracketed], lo[bracketed], hi[bracketed], rising[bracketed]
        for _ in range(BISECTIONS):
            mid = 0.5 * (lo + hi)
            beyond = (field(mid, ray) > 0.5) == rising  # crossing lies between lo and mid
            hi, lo = torch.where(beyond, mid, hi), torch.where(beyond, lo, mid)
        pixels.append(pixel[ray])
        distances.append(0.5 * (lo + hi) * length[ray])
        leaving.append(~rising)
    cat = lambda parts, dtype: torch.cat(parts) if parts else torch.zeros(0, dtype=dtype, device=device)  # noqa: E731
    flat = reduce_crossings(n_pixels, cat(pixels, torch.long), cat(distances, f64), cat(leaving, torch.bool),
                            f64, device)
    return DepthMaps(*(m.reshape(nv, nu) for m in flat))
