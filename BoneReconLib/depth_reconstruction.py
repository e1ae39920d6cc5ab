"""Back-projection of one bone's front/back depth maps into 3D: an occupancy field, a volume, a surface.

A point lies inside the bone as the view sees it when its ray hits the bone and it lies between
where that ray enters (``front``) and leaves (``back``). :func:`depth_field` samples this on a grid
aligned with the view (columns along the detector's u, rows along v, slices along the beam) as a
continuous, roughly signed distance in mm:

    min( (hit - 1/2) x pixel width at the point,  distance - front,  back - distance )

with ``hit``, ``front`` and ``back`` interpolated bilinearly at the point's projection (the depths
averaged over the hit neighbours only, so the silhouette's zeros do not pull them in). Its zero
level set, extracted by marching cubes, is the surface (sub-voxel, not stair-stepped); its positive
part is the bone's volume (label map).

What one view cannot give: a ray that leaves the bone and enters it again (a concavity facing
the beam side-on) is filled between its first and last crossing, and the parts grazed by the
silhouette are as good as the depth maps near the edge. ``hit`` may be a probability (the network's
mask): the surface then runs where it is one half. Core module (numpy/torch/vtk), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from .errors import InputError
from .geometry import View

MARGIN_VOXELS = 3


@dataclass
class DepthField:
    """A sampled occupancy field (K, J, I) (mm, positive inside) and its voxel -> world (RAS) matrix."""

    values: np.ndarray
    ijk_to_ras: np.ndarray

    @property
    def voxel_mm(self) -> float:
        return float(np.linalg.norm(self.ijk_to_ras[:3, 0]))


def _as_map(array, view: View, what: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(array, dtype=np.float64) if not torch.is_tensor(array) else array)
    tensor = tensor.to(torch.float64)
    if tuple(tensor.shape) != view.shape:
        raise InputError(f"The {what} map is {tuple(tensor.shape)} pixels; the view '{view.name}' is {view.shape} "
                         "(rows, columns).")
    return tensor


def _view_frame(view: View) -> np.ndarray:
    """Columns: the detector's u, v and the beam direction (an orthonormal frame when u and v are
    perpendicular, as for every detector)."""
    return np.stack([view.detector_u, view.detector_v, view.normal], axis=1)


def _bilinear(maps: torch.Tensor, ij: torch.Tensor) -> torch.Tensor:
    """maps (C, nv, nu), ij (N, 2) fractional pixel coordinates -> (C, N); zero beyond the image."""
    channels, nv, nu = maps.shape
    padded = torch.nn.functional.pad(maps, (1, 1, 1, 1))  # a ring of zeros: outside the image is "no bone"
    i = (ij[:, 0] + 1.0).clamp(0.0, nu)
    j = (ij[:, 1] + 1.0).clamp(0.0, nv)
    i0, j0 = i.floor().long().clamp(max=nu), j.floor().long().clamp(max=nv)
    fi, fj = i - i0, j - j0
    flat = padded.reshape(channels, -1)
    width = nu + 2

    def at(jj, ii):
        return flat[:, jj * width + ii]

    return (at(j0, i0) * (1 - fi) * (1 - fj) + at(j0, i0 + 1) * fi * (1 - fj)
            + at(j0 + 1, i0) * (1 - fi) * fj + at(j0 + 1, i0 + 1) * fi * fj)


def depth_field(view: View, front, back, hit, voxel_mm: Optional[float] = None,
                chunk: int = 1 << 21) -> DepthField:
    """The bone's occupancy field on a view-aligned grid around its back-projected depth maps.

    ``front``/``back``: (nv, nu) mm from the source; ``hit``: (nv, nu) bool or probability.
    ``voxel_mm`` defaults to a pixel's width at the bone (the depth maps' own resolution)."""
    front, back, hit = _as_map(front, view, "front"), _as_map(back, view, "back"), _as_map(hit, view, "hit")
    hit = hit.clamp(0.0, 1.0)
    inside = hit >= 0.5
    if not bool(inside.any()):
        raise InputError(f"No bone pixel in view '{view.name}' (nothing to back-project).")
    if bool((back[inside] < front[inside]).any()):
        raise InputError("The back depth lies before the front depth on some rays (back must be >= front).")
    origins, directions = view.rays()
    directions = torch.from_numpy(directions)
    frame = _view_frame(view)
    ends = torch.cat([directions[inside] * front[inside, None], directions[inside] * back[inside, None]])
    local = ends.numpy() @ frame  # (u, v, beam) coordinates relative to the source
    along = float(np.median(local[:, 2]))
    pixel_at_bone = float(np.mean(view.pixel_spacing)) * along / view.source_to_detector_distance
    voxel = float(voxel_mm) if voxel_mm is not None else pixel_at_bone
    if not voxel > 0:
        raise InputError("The voxel size must be positive.")
    margin = MARGIN_VOXELS * voxel + 2 * pixel_at_bone * local[:, 2].max() / along
    low = np.floor((local.min(axis=0) - margin) / voxel) * voxel  # on one lattice per voxel size: grids align
    size = np.ceil((local.max(axis=0) + margin - low) / voxel).astype(int) + 1
    if int(np.prod(size)) > 400_000_000:
        raise InputError(f"The bone would need a {size.tolist()} voxel grid at {voxel:.3g} mm; give a larger voxel.")
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = frame * voxel
    ijk_to_ras[:3, 3] = view.source + frame @ low
    maps = torch.stack([hit, hit * front, hit * back])
    if np.allclose(frame.T @ frame, np.eye(3), atol=1e-9):
        values = _sample_field_aligned(view, maps, low, size, voxel, chunk)
    else:
        values = _sample_field(view, maps, frame, low, size, voxel, chunk)
    return DepthField(values, ijk_to_ras)


def _field_value(weight, front_sum, back_sum, distance, along, spacing, sid):
    """The occupancy field from the sampled (hit, hit x front, hit x back) at points ``distance`` mm
    from the source and ``along`` mm down the beam (see the module notes)."""
    safe = weight.clamp_min(1e-9)
    lateral = (weight - 0.5) * spacing * along / sid
    field = torch.minimum(lateral, torch.minimum(distance - front_sum / safe, back_sum / safe - distance))
    return torch.where(weight > 0, field, lateral)


def _sample_field_aligned(view: View, maps: torch.Tensor, low, size, voxel: float, chunk: int) -> np.ndarray:
    """The field on the view-aligned grid when u, v and the beam are orthonormal: a voxel's pixel
    is then (sid x offset_u / offset_beam, sid x offset_v / offset_beam) from the principal point,
    so the projection is separable, and the maps are sampled by ``grid_sample`` (bilinear, zero
    outside the image: the same as :func:`_bilinear`), a slab of slices at a time."""
    nv, nu = maps.shape[1:]
    sid = view.source_to_detector_distance
    su, sv = view.pixel_spacing
    spacing = float(np.mean(view.pixel_spacing))
    origin = _view_frame(view).T @ (view.pixel_origin() - view.source)  # pixel (0, 0) in (u, v, beam) offsets
    a, b, c = (torch.as_tensor(low[axis] + voxel * np.arange(size[axis]), dtype=torch.float64) for axis in range(3))
    values = np.empty((size[2], size[1], size[0]), dtype=np.float32)
    source_maps = maps.float()[None]  # (1, 3, nv, nu)
    slab = max(1, chunk // int(size[0] * size[1]))
    for start in range(0, size[2], slab):
        cc = c[start:start + slab]
        i = (sid * a[None, :] / cc[:, None] - origin[0]) / su  # (k, I)
        j = (sid * b[None, :] / cc[:, None] - origin[1]) / sv  # (k, J)
        grid = torch.stack(torch.broadcast_tensors(
            (2.0 * i / max(nu - 1, 1) - 1.0)[:, None, :], (2.0 * j / max(nv - 1, 1) - 1.0)[:, :, None]), dim=-1)
        sampled = torch.nn.functional.grid_sample(
            source_maps, grid.reshape(1, -1, size[0], 2).float(), mode="bilinear", padding_mode="zeros",
            align_corners=True)[0].double().reshape(3, len(cc), size[1], size[0])
        distance = torch.sqrt(a[None, None, :] ** 2 + b[None, :, None] ** 2 + cc[:, None, None] ** 2)
        along = cc[:, None, None].expand_as(distance)
        values[start:start + len(cc)] = _field_value(sampled[0], sampled[1], sampled[2], distance, along,
                                                     spacing, sid).numpy()
    return values


def _sample_field(view: View, maps: torch.Tensor, frame: np.ndarray, low, size, voxel: float,
                  chunk: int) -> np.ndarray:
    """The field on the view-aligned grid, point by point through the view's projection (any u, v)."""
    sid = view.source_to_detector_distance
    spacing = float(np.mean(view.pixel_spacing))
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    grid = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    values = np.empty(len(grid), dtype=np.float32)
    for start in range(0, len(grid), chunk):
        offset = torch.from_numpy(low + grid[start:start + chunk] * voxel)  # (u, v, beam) from the source
        world = torch.from_numpy(view.source) + offset @ torch.from_numpy(frame).T
        ij = torch.from_numpy(view.project(world.numpy())[0])
        sampled = _bilinear(maps, ij)
        values[start:start + chunk] = _field_value(sampled[0], sampled[1], sampled[2], offset.norm(dim=1),
                                                   offset[:, 2], spacing, sid).numpy()
    return values.reshape(size[2], size[1], size[0])


def field_surface(field: DepthField, smoothing_iterations: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(points, triangles) in world mm: the largest closed piece of the field's zero level set."""
    from .label_surface import iso_surface
    from .mesh_io import prepare_surface

    if not (field.values > 0).any():
        raise InputError("The depth maps enclose no volume.")
    points_ijk, triangles = prepare_surface(iso_surface(field.values, 0.0, outside=-field.voxel_mm),
                                            smoothing_iterations=smoothing_iterations, what="back-projected surface")
    matrix = field.ijk_to_ras
    return points_ijk @ matrix[:3, :3].T + matrix[:3, 3], triangles


def depth_surface(view: View, front, back, hit, voxel_mm: Optional[float] = None,
                  smoothing_iterations: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """One bone's surface from its depth maps in one view (see the module notes)."""
    return field_surface(depth_field(view, front, back, hit, voxel_mm), smoothing_iterations)


def depth_label_map(view: View, bones: Dict[str, tuple], voxel_mm: float) -> Tuple[np.ndarray, np.ndarray, list]:
    """(labels (K, J, I) uint8, ijk_to_ras, names) of several bones on one view-aligned grid:
    label n (1-based, in ``bones`` order) where bone n's field is positive and largest.
    ``bones``: name -> (front, back, hit)."""
    if not bones:
        raise InputError("No bones to put in the label map.")
    if len(bones) > 255:
        raise InputError("At most 255 bones per label map.")
    return fields_label_map({name: depth_field(view, *maps, voxel_mm=voxel_mm) for name, maps in bones.items()})


def fields_label_map(fields: Dict[str, DepthField]) -> Tuple[np.ndarray, np.ndarray, list]:
    """:func:`depth_label_map` of bones' fields already sampled (one view, one voxel size: their
    grids share a lattice)."""
    if not fields:
        raise InputError("No bones to put in the label map.")
    if len(fields) > 255:
        raise InputError("At most 255 bones per label map.")
    frame_inverse = np.linalg.inv(next(iter(fields.values())).ijk_to_ras)
    corners = []
    for field in fields.values():
        extent = np.array(field.values.shape[::-1]) - 1
        for corner in np.stack(np.meshgrid(*[[0, e] for e in extent], indexing="ij"), -1).reshape(-1, 3):
            corners.append((frame_inverse @ field.ijk_to_ras @ np.append(corner, 1.0))[:3])
    corners = np.round(np.array(corners)).astype(int)
    low, high = corners.min(axis=0), corners.max(axis=0)
    shape = tuple((high - low + 1)[::-1])
    best = np.zeros(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    for n, field in enumerate(fields.values(), start=1):
        start = np.round((frame_inverse @ field.ijk_to_ras[:, 3])[:3]).astype(int) - low  # same axes and voxel
        k, j, i = start[::-1]
        nk, nj, ni = field.values.shape
        region = (slice(k, k + nk), slice(j, j + nj), slice(i, i + ni))
        better = field.values > best[region]
        labels[region][better] = n
        best[region][better] = field.values[better]
    ijk_to_ras = next(iter(fields.values())).ijk_to_ras.copy()
    ijk_to_ras[:3, 3] = (ijk_to_ras @ np.append(low, 1.0))[:3]
    return labels, ijk_to_ras, list(fields)
