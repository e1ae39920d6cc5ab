"""Exact depth maps of closed triangle meshes: every ray/triangle crossing, without voxelising.

A ray from the source through a pixel centre crosses a triangle exactly when the pixel centre
lies inside the triangle's central projection onto the detector. So each triangle is projected
and rasterised: only the pixels inside its projected bounding box are tested, which keeps the
cost proportional to the projected area instead of pixels x triangles. The crossing distance is
the exact intersection of the ray with the triangle's plane.

Watertight by construction: projected vertices are snapped to 1/4096 pixel, so the edge
functions are computed exactly in float64 (for vertices within 8192 pixels of the image
origin), the same way for the two triangles that share an edge, and a pixel centre falling
exactly on an edge or vertex is given to the triangles that an infinitesimal shift of the
pixel in the direction (1, epsilon) would fall in. Every ray therefore
crosses a closed surface an even number of times and thickness is exact even on shared edges.
The price: a ray passing within 1/8192 pixel of an edge may be given to the neighbouring
triangle, whose plane then sets its distance (an error of 1/8192 pixel times the change of
slope across the edge: about a micrometre even at grazing faces).

Batched over N meshes/poses (e.g. a CMA-ES population of shape-model instances) and V views:
the N meshes of a view are rasterised together in one pass.
Distances are differentiable with respect to the vertices (autograd), pixel coverage is not.

Core module: numpy/torch (+ vtk for polydata input), no MRML.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Sequence, Tuple

import numpy as np
import torch

from .depth import DepthMaps, reduce_crossings
from .drr import as_poses
from .errors import InputError
from .geometry import View

SNAP = 4096.0  # projected vertices are snapped to 1/SNAP pixel (exact edge functions up to 8192 pixels)


_CLOSED_SURFACES: "OrderedDict[tuple, None]" = OrderedDict()  # triangulations already found closed
_CLOSED_KEPT = 64


def check_closed_surface(triangles: np.ndarray, n_points: int, what: str = "mesh") -> None:
    """InputError unless the triangles form closed surfaces, consistently oriented.

    Closed and consistent = every directed edge (a, b) occurs exactly once and so does (b, a).
    A triangulation found closed is remembered by its digest (a registration renders the same
    one hundreds of times; the check costs more than a small mesh's rendering).
    """
    triangles = np.asarray(triangles)
    if triangles.ndim != 2 or triangles.shape[1] != 3 or len(triangles) == 0:
        raise InputError(f"The {what} is empty (it has no triangles).")
    key = (n_points, triangles.dtype.str, triangles.shape,
           hashlib.blake2b(np.ascontiguousarray(triangles).tobytes(), digest_size=16).digest())
    if key in _CLOSED_SURFACES:
        _CLOSED_SURFACES.move_to_end(key)
        return
    if triangles.min() < 0 or triangles.max() >= n_points:
        raise InputError(f"The {what} refers to vertices that do not exist.")
    a = triangles.astype(np.int64)
    directed = np.concatenate([a[:, [0, 1]], a[:, [1, 2]], a[:, [2, 0]]])
    codes = directed[:, 0] * n_points + directed[:, 1]
    unique, counts = np.unique(codes, return_counts=True)
    reverse = directed[:, 1] * n_points + directed[:, 0]
    bad = int(np.count_nonzero(counts > 1)) + int(np.count_nonzero(~np.isin(reverse, unique)))
    if bad:
        raise InputError(f"The {what} is not a closed, consistently oriented surface ({bad} open, non-manifold "
                         "or flipped edges).")
    _CLOSED_SURFACES[key] = None
    if len(_CLOSED_SURFACES) > _CLOSED_KEPT:
        _CLOSED_SURFACES.popitem(last=False)


def vertex_normals(points: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Unit area-weighted vertex normals (..., P, 3) of meshes (..., P, 3) sharing ``triangles``
    (T, 3); they point the way the triangles wind (outward for an outward-oriented mesh)."""
    a, b, c = (points[..., triangles[:, k], :] for k in range(3))
    face = torch.linalg.cross(b - a, c - a)
    normals = torch.zeros_like(points)
    for k in range(3):
        normals.index_add_(-2, triangles[:, k], face)
    return normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def mesh_from_polydata(polydata) -> Tuple[np.ndarray, np.ndarray]:
    """(points, triangles) of a closed vtk surface, with every component's normals turned outward."""
    import vtk

    from .surface_metrics import triangles as triangle_arrays

    if polydata is None or polydata.GetNumberOfPoints() == 0 or polydata.GetNumberOfPolys() == 0:
        raise InputError("The mesh is empty (it has no triangles).")
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputData(polydata)
    normals.ConsistencyOn()
    normals.AutoOrientNormalsOn()
    normals.SplittingOff()
    normals.ComputeCellNormalsOff()
    normals.Update()
    return triangle_arrays(normals.GetOutput())


def mesh_depth(points, triangles, views: Sequence[View], poses=None, max_pairs: int = 1 << 22) -> DepthMaps:
    """Depth maps (N, V, nv, nu) of a closed mesh seen in every view.

    ``points`` (P, 3) or (N, P, 3) world mm (numpy or torch; N instances of one triangulation),
    ``triangles`` (T, 3) vertex indices, ``poses`` None or (N, 4, 4) applied to the points.
    Distances are computed in float64.
    """
    moved, tri, outward, views = _prepared(points, triangles, views, poses)
    n, device, f64 = moved.shape[0], moved.device, torch.float64
    per_view = []
    for view in views:
        nu, nv = view.size
        flat = reduce_crossings(n * nu * nv, *_crossings(moved, tri, view, outward, max_pairs), f64, device)
        per_view.append([m.reshape(n, nv, nu) for m in flat])
    return DepthMaps(*(torch.stack([m[k] for m in per_view], dim=1) for k in range(4)))


def mesh_thickness(points, triangles, views: Sequence[View], poses=None, max_pairs: int = 1 << 22) -> torch.Tensor:
    """``mesh_depth(...).thickness`` (N, V, nv, nu) alone, the same to the bit, without the front,
    back and hit maps that a registration's cost does not use."""
    moved, tri, outward, views = _prepared(points, triangles, views, poses)
    n = moved.shape[0]
    per_view = []
    for view in views:
        nu, nv = view.size
        pixel, distance, leaving = _crossings(moved, tri, view, outward, max_pairs)
        path = moved.new_zeros(n * nu * nv).index_add(0, pixel, torch.where(leaving, distance, -distance))
        per_view.append(path.clamp(min=0.0).reshape(n, nv, nu))
    return torch.stack(per_view, dim=1)


def _prepared(points, triangles, views, poses):
    """Checked input: (posed points (N, P, 3) float64, triangles (T, 3) long, outward (N,) +-1 (the
    triangles' winding about each instance's inside), views)."""
    views = list(views)
    if not views:
        raise InputError("At least one view is needed to render.")
    if len({v.size for v in views}) != 1:
        raise InputError("All views of one render call must have the same detector size.")
    points = torch.as_tensor(points)
    if not points.is_floating_point():
        points = points.double()
    points = points.to(torch.float64)
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[-1] != 3 or points.shape[1] == 0:
        raise InputError(f"Mesh points must be (P, 3) or (N, P, 3), got shape {tuple(points.shape)}.")
    if not bool(torch.isfinite(points.detach()).all()):
        raise InputError("The mesh has non-finite vertex coordinates.")
    check_closed_surface(triangles, points.shape[1])
    device = points.device
    tri = torch.as_tensor(np.ascontiguousarray(triangles), dtype=torch.int64, device=device)
    poses = as_poses(poses, device, torch.float64)
    n = max(points.shape[0], poses.shape[0])
    if points.shape[0] not in (1, n) or poses.shape[0] not in (1, n):
        raise InputError(f"{points.shape[0]} meshes and {poses.shape[0]} poses do not pair up.")

    index = torch.arange(n, device=device)
    pose = poses[index.clamp(max=poses.shape[0] - 1)]
    moved = points[index.clamp(max=points.shape[0] - 1)] @ pose[:, :3, :3].transpose(1, 2) + pose[:, None, :3, 3]
    a, b, c = moved[:, tri[:, 0]], moved[:, tri[:, 1]], moved[:, tri[:, 2]]
    volume = (a * torch.linalg.cross(b, c, dim=-1)).sum(dim=(1, 2)).detach()
    if bool((volume.abs() < 1e-9).any()):
        raise InputError("The mesh encloses no volume.")
    return moved, tri, torch.where(volume > 0, 1.0, -1.0).to(torch.float64), views


def _crossings(points, tri, view: View, outward, max_pairs: int):
    """Every ray/surface crossing of N meshes (N, P, 3) in one view, all rasterised in one pass:
    (flat pixel index into (N, nv, nu), distance from the source, leaving the inside there).

    Per triangle: projection, bounding box and edge functions; per pixel/triangle pair only two
    gathers, the triangle's raster data and, for the pairs that hit, its geometry."""
    device, f64 = points.device, torch.float64
    as_t = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float64), device=device)  # noqa: E731
    source, normal = as_t(view.source), as_t(view.normal)
    u, v = as_t(view.detector_u), as_t(view.detector_v)
    (su, sv), (nu, nv) = view.pixel_spacing, view.size
    origin = as_t(view.pixel_origin() - view.source)  # pixel (0, 0) relative to the source
    n, p = points.shape[:2]
    relative = points - source  # (N, P, 3)

    along = relative @ normal
    if bool((along.detach() <= 1e-6).any()):
        raise InputError(f"The mesh reaches the source plane of view '{view.name}' "
                         "(a vertex lies level with or behind the X-ray source).")
    with torch.no_grad():
        on_detector = relative * (view.source_to_detector_distance / along)[..., None] - origin
        q = torch.round(torch.stack([on_detector @ u / su, on_detector @ v / sv], dim=-1) * SNAP) / SNAP
        corners = q[:, tri].reshape(-1, 3, 2)  # (N*T, 3, 2): instance b's triangles are rows b*T ...
        c0, c1, c2 = corners.unbind(dim=1)
        edge1, edge2 = c1 - c0, c2 - c0
        area = edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0]
        lo = torch.ceil(torch.minimum(torch.minimum(c0, c1), c2)).long().clamp_min(0)
        hi = torch.minimum(torch.floor(torch.maximum(torch.maximum(c0, c1), c2)).long(),
                           torch.tensor([nu - 1, nv - 1], device=device))
        keep = torch.nonzero((area != 0) & (hi >= lo).all(dim=1)).flatten()
        instance, local = keep // len(tri), keep % len(tri)
        lo, hi, winding = lo[keep], hi[keep], torch.sign(area[keep])
        width = hi[:, 0] - lo[:, 0] + 1
        counts = width * (hi[:, 1] - lo[:, 1] + 1)
        ends = torch.cumsum(counts, 0)
        # Integer raster data per kept triangle: box corner, width, first pair, first pixel of its instance.
        raster = torch.stack([lo[:, 0], lo[:, 1], width, ends - counts, instance * (nu * nv)], dim=1)
        edges = _edge_functions(corners[keep], tri[local], winding)  # (K, 4, 3)

    # A crossing leaves the surface where the outward normal points away from the source; that is
    # where the projected triangle winds positively about the beam direction.
    handed = float(np.sign(np.cross(view.detector_u, view.detector_v) @ view.normal))
    leaves_tri = (winding * handed * outward[instance]) > 0
    corners_rel = relative.reshape(n * p, 3)[(instance * p)[:, None] + tri[local]]  # (K, 3, 3)
    normals = torch.linalg.cross(corners_rel[:, 1] - corners_rel[:, 0], corners_rel[:, 2] - corners_rel[:, 0])
    # Per kept triangle: normal, its plane's offset (normal . anchor) and the three corners.
    geometry = torch.cat([normals, (normals * corners_rel[:, 0]).sum(dim=1, keepdim=True),
                          corners_rel.reshape(-1, 9)], dim=1)  # (K, 13)

    pixels, distances, leaving = [], [], []
    start = 0
    while start < len(keep):
        base = int(ends[start - 1]) if start else 0
        stop = max(int(torch.searchsorted(ends, base + max_pairs, right=True)), start + 1)
        with torch.no_grad():
            owner = torch.repeat_interleave(torch.arange(start, stop, device=device), counts[start:stop])
            box = raster[owner]  # (M, 5)
            offset = torch.arange(base, base + owner.numel(), device=device) - box[:, 3]
            row = torch.div(offset, box[:, 2], rounding_mode="floor")
            x, y = box[:, 0] + offset - row * box[:, 2], box[:, 1] + row
            inside = _inside(edges[owner], x.to(f64), y.to(f64))
            owner, x, y, block = owner[inside], x[inside], y[inside], box[inside, 4]
        target = origin + (x.to(f64) * su)[:, None] * u + (y.to(f64) * sv)[:, None] * v
        direction = target / target.norm(dim=1, keepdim=True)
        g = geometry[owner]  # (H, 13)
        numerator = g[:, 3]
        denominator = (g[:, :3] * direction).sum(dim=1)
        # The hit lies inside the triangle, so between its vertices' distances along the ray.
        spread = (g[:, 4:].reshape(-1, 3, 3) * direction[:, None, :]).sum(dim=2)
        low, high = spread.amin(dim=1), spread.amax(dim=1)
        safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        t = torch.where(denominator != 0, numerator / safe, (low + high) / 2)
        pixels.append(block + y * nu + x)
        distances.append(torch.maximum(torch.minimum(t, high), low))
        leaving.append(leaves_tri[owner])
        start = stop

    def cat(parts, dtype):  # one chunk (the usual case) is used as it is, not copied
        if not parts:
            return torch.zeros(0, dtype=dtype, device=device)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    return cat(pixels, torch.long), cat(distances, f64), cat(leaving, torch.bool)


def _edge_functions(corners, tri, winding):
    """(K, 4, 3) per triangle and edge: the edge function's coefficients (a, b, c), value
    a x + b y + c, positive inside, and its tie-break sign.

    Each edge is evaluated in a canonical direction (lower vertex index first), so two triangles
    sharing an edge compute the same number with opposite sign factors. With corners snapped to
    1/SNAP pixel within 8192 pixels of the origin, a, b, c and the value at a pixel centre are
    exact in float64 (at most 52 significant bits), so the sign never depends on rounding.
    """
    following = torch.roll(tri, -1, dims=1)
    forward = tri < following  # (K, 3): the edge from corner k to k+1 runs in the canonical direction
    this, nxt = corners, torch.roll(corners, -1, dims=1)  # (K, 3, 2)
    first = torch.where(forward[..., None], this, nxt)
    second = torch.where(forward[..., None], nxt, this)
    gx, gy = first[..., 1] - second[..., 1], second[..., 0] - first[..., 0]  # gradient of the edge function
    factor = winding[:, None] * torch.where(forward, 1.0, -1.0).to(corners.dtype)
    a, b = factor * gx, factor * gy
    c = -(a * first[..., 0] + b * first[..., 1])
    tie = factor * torch.where(gx != 0, torch.sign(gx), torch.sign(gy))
    return torch.stack([a, b, c, tie], dim=1)


def _inside(edges, x, y):
    """Pixel centres (x, y) inside their triangles (edges (M, 4, 3) from ``_edge_functions``)."""
    value = edges[:, 0] * x[:, None] + edges[:, 1] * y[:, None] + edges[:, 2]
    return ((value > 0) | ((value == 0) & (edges[:, 3] > 0))).all(dim=1)
