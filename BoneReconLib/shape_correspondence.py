"""Put surfaces into correspondence: fit one template mesh onto each surface.

1. Similarity ICP places the template on the target (closest points both ways).
2. Non-rigid fitting moves every template vertex towards the target surface (point-to-plane
   goals at the closest target sample), and every target sample pulls the closest point of the
   template's surface (so thin processes are reached), while the displacement field is kept
   smooth by a graph-Laplacian penalty. The penalty starts stiff and is relaxed step by step
   (annealing, as in non-rigid ICP), so the template first follows the overall shape and then
   the details, and its triangles stay valid. Each step is a sparse linear least-squares problem
   solved by conjugate gradients in torch.

The fitted template vertices of every surface are then in correspondence (same index = same
anatomical point), ready for Procrustes and PCA. Core module: numpy/torch (+ vtk), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
import torch

from .errors import InputError
from .shape_statistics import apply, rigid_align

STIFFNESS_SCHEDULE = (100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.2)
FORWARD_SAMPLES = 8000  # target surface samples the template is pulled onto
BACKWARD_SAMPLES = 4000  # target surface samples that pull their closest template vertex
ICP_SAMPLES = 2000
TEMPLATE_SAMPLES = 8000  # spots on the template that target samples pull


def _sample_faces(points: np.ndarray, triangles: np.ndarray, count: int, seed: int):
    """(faces (count,), barycentric weights (count, 3)) of points spread uniformly by area."""
    a, b, c = (points[triangles[:, k]] for k in range(3))
    area = np.linalg.norm(np.cross(b - a, c - a), axis=1)
    rng = np.random.default_rng(seed)
    face = rng.choice(len(triangles), size=count, p=area / area.sum())
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1  # fold the unit square onto the triangle
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    return face, np.stack([1 - u - v, u, v], axis=1)


def surface_samples(points: np.ndarray, triangles: np.ndarray, count: int, seed: int = 0):
    """(samples (count, 3), unit face normals (count, 3)) spread uniformly by area over the surface.

    Vertices are not a fair sample of a surface (decimated meshes crowd them at edges); area-uniform
    samples make closest-point matching unbiased. Deterministic for a given seed.
    """
    face, weights = _sample_faces(points, triangles, count, seed)
    corners = points[triangles[face]]  # (count, 3 corners, 3)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return (weights[:, :, None] * corners).sum(axis=1), normals / np.linalg.norm(normals, axis=1, keepdims=True)


def _barycentric_spots(points: np.ndarray, triangles: np.ndarray, count: int):
    """Area-uniform surface points as barycentric mixes: (vertex indices (count, 3), weights (count, 3))."""
    face, weights = _sample_faces(points, triangles, count, seed=4)
    return torch.as_tensor(triangles[face]), torch.as_tensor(weights)


@dataclass
class Fit:
    """A template fitted to one surface."""

    points: np.ndarray  # (P, 3) template vertices on the target, in the target's coordinates
    mean_distance: float  # symmetric mean surface distance, fitted template <-> target (mm)
    flipped_triangles: int  # triangles whose orientation turned over (0 for a valid fit)


def nearest(queries: torch.Tensor, points: torch.Tensor, chunk: int = 4096) -> Tuple[torch.Tensor, torch.Tensor]:
    """(index, distance) of the nearest of ``points`` (M, 3) for every query (Q, 3)."""
    indices, distances = [], []
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start:start + chunk], points)
        value, index = d.min(dim=1)
        indices.append(index)
        distances.append(value)
    return torch.cat(indices), torch.cat(distances)


def graph_laplacian(n_points: int, triangles: np.ndarray) -> torch.Tensor:
    """Sparse uniform graph Laplacian (degree - adjacency) of the mesh's edges, float64."""
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    degree = np.bincount(rows, minlength=n_points).astype(np.float64)
    index = np.concatenate([np.stack([rows, cols]), np.stack([np.arange(n_points)] * 2)], axis=1)
    values = np.concatenate([-np.ones(len(rows)), degree])
    return torch.sparse_coo_tensor(torch.as_tensor(index), torch.as_tensor(values), (n_points, n_points),
                                   check_invariants=True).coalesce()


def _conjugate_gradients(apply_a, rhs: torch.Tensor, x0: torch.Tensor, iterations: int = 200, tol: float = 1e-10):
    x = x0.clone()
    r = rhs - apply_a(x)
    p = r.clone()
    rs = (r * r).sum(dim=0)
    for _ in range(iterations):
        ap = apply_a(p)
        alpha = rs / (p * ap).sum(dim=0).clamp(min=1e-300)
        x = x + alpha * p
        r = r - alpha * ap
        new = (r * r).sum(dim=0)
        if float(new.max()) < tol * float((rhs * rhs).sum(dim=0).max() + 1e-300):
            break
        p = r + (new / rs.clamp(min=1e-300)) * p
        rs = new
    return x


def similarity_icp(source_points, source_triangles, target_points, target_triangles,
                   iterations: int = 100) -> np.ndarray:
    """Source vertices moved onto the target surface by a similarity transform (closest points both
    ways between area-uniform samples of the two surfaces)."""
    source, _ = surface_samples(source_points, source_triangles, ICP_SAMPLES, seed=2)
    target, _ = surface_samples(target_points, target_triangles, ICP_SAMPLES, seed=3)
    shift = target.mean(axis=0) - source.mean(axis=0)
    moved, full = source + shift, source_points + shift
    tgt = torch.as_tensor(target)
    for _ in range(iterations):
        src = torch.as_tensor(moved)
        forward, _ = nearest(src, tgt)
        backward, _ = nearest(tgt, src)
        a = np.concatenate([moved, moved[backward.numpy()]])
        b = np.concatenate([target[forward.numpy()], target])
        rotation, translation, scale = rigid_align(a, b, scaling=True)
        step = apply(moved, rotation, translation, scale)
        change = float(np.abs(step - moved).max())
        moved, full = step, apply(full, rotation, translation, scale)
        if change < 1e-4:
            break
    return full


def fit_template(template_points, template_triangles, target_points, target_triangles,
                 schedule: Sequence[float] = STIFFNESS_SCHEDULE, steps_per_stiffness: int = 3) -> Fit:
    """The template (points, triangles) fitted onto the closed target surface (points, triangles)."""
    template_points = np.asarray(template_points, dtype=np.float64)
    target_points = np.asarray(target_points, dtype=np.float64)
    template_triangles = np.asarray(template_triangles, dtype=np.int64)
    target_triangles = np.asarray(target_triangles, dtype=np.int64)
    if len(target_points) < 4 or len(target_triangles) < 4:
        raise InputError("The target surface is empty.")
    placed = similarity_icp(template_points, template_triangles, target_points, target_triangles)
    laplacian = graph_laplacian(len(placed), template_triangles)
    target, target_normals = (torch.as_tensor(a) for a in surface_samples(target_points, target_triangles,
                                                                          FORWARD_SAMPLES, seed=0))
    pullers = torch.as_tensor(surface_samples(target_points, target_triangles, BACKWARD_SAMPLES, seed=1)[0])
    # Points spread over the template's surface, each a fixed barycentric mix of one triangle's vertices:
    # every target sample pulls the closest of them, i.e. (nearly) the closest point of the template.
    spot_vertices, spot_weights = _barycentric_spots(placed, template_triangles, TEMPLATE_SAMPLES)
    rest = torch.as_tensor(placed)
    x = rest.clone()
    n = len(placed)
    backward_weight = n / len(pullers)  # both directions weigh the same in total
    for stiffness in schedule:
        for _ in range(steps_per_stiffness):
            forward, _ = nearest(x, target)
            t, normal = target[forward], target_normals[forward]
            on_plane = x - ((x - t) * normal).sum(dim=1, keepdim=True) * normal  # slide along the face
            closest, _ = nearest(pullers, (x[spot_vertices] * spot_weights[:, :, None]).sum(dim=1))
            rows = torch.arange(len(pullers)).repeat_interleave(3)
            mix = torch.sparse_coo_tensor(torch.stack([rows, spot_vertices[closest].reshape(-1)]),
                                          spot_weights[closest].reshape(-1), (len(pullers), n),
                                          check_invariants=False)  # (J, P), built from valid indices
            rhs = on_plane + backward_weight * torch.sparse.mm(mix.t(), pullers) \
                + stiffness * torch.sparse.mm(laplacian, rest)

            def apply_a(v, stiffness=stiffness, mix=mix):
                return v + backward_weight * torch.sparse.mm(mix.t(), torch.sparse.mm(mix, v)) \
                    + stiffness * torch.sparse.mm(laplacian, v)

            # Minimises sum_i |x_i - goal_i|^2 + w sum_j |spot_j(x) - pull_j|^2 + stiffness |L^(1/2) (x - rest)|^2.
            x = _conjugate_gradients(apply_a, rhs, x)
    fitted = untangle(placed, x.numpy(), template_triangles)
    return Fit(fitted, surface_distance(fitted, template_triangles, target_points, target_triangles),
               int(flipped(placed, fitted, template_triangles).sum()))


def flipped(before: np.ndarray, after: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Which triangles turned over between two vertex sets of one mesh."""
    def normals(points):
        a, b, c = (points[triangles[:, k]] for k in range(3))
        return np.cross(b - a, c - a)

    return (normals(before) * normals(after)).sum(axis=1) <= 0


def untangle(rest: np.ndarray, points: np.ndarray, triangles: np.ndarray, rounds: int = 30) -> np.ndarray:
    """Move the vertices of turned-over triangles (and their neighbours, if needed) to the mean of
    their neighbours until no triangle is turned over: local folds of the fit are smoothed out."""
    points = points.copy()
    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    degree = np.bincount(edges[:, 0], minlength=len(points))
    for round_ in range(rounds):
        bad = flipped(rest, points, triangles)
        if not bad.any():
            break
        involved = np.zeros(len(points), bool)
        involved[triangles[bad].ravel()] = True
        for _ in range(round_ // 10):  # widen the smoothed patch if folds persist
            involved[edges[involved[edges[:, 0]], 1]] = True
        neighbour_sum = np.zeros_like(points)
        np.add.at(neighbour_sum, edges[:, 0], points[edges[:, 1]])
        average = neighbour_sum / degree[:, None]
        points[involved] = average[involved]
    return points


def surface_distance(points_a, triangles_a, points_b, triangles_b) -> float:
    """Symmetric mean surface distance (mm): vertices of each surface to the other surface (exact)."""
    return 0.5 * (float(point_to_surface(points_a, points_b, triangles_b).mean())
                  + float(point_to_surface(points_b, points_a, triangles_a).mean()))


def point_to_surface(queries, points, triangles) -> np.ndarray:
    """Exact distance from every query point to a triangle surface (vtk's implicit distance)."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy

    from .mesh_io import polydata_from_arrays

    polydata = polydata_from_arrays(points, triangles)
    distance = vtk.vtkImplicitPolyDataDistance()
    distance.SetInput(polydata)
    values = vtk.vtkDoubleArray()
    distance.FunctionValue(numpy_to_vtk(np.ascontiguousarray(queries, dtype=np.float64), deep=True), values)
    return np.abs(vtk_to_numpy(values))
