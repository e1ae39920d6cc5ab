"""Statistical shape model (SSM) of one bone: mean mesh, modes, variances, named landmarks.

An instance is ``mean + sum_k b_k sqrt(variance_k) mode_k`` (coefficients ``b`` in standard
deviations), then placed by a similarity pose ``x -> s R x + t``. Instances are made in torch,
batched (N coefficient vectors at once, e.g. a CMA-ES population) and differentiable.
Landmarks are fixed points of the mean's surface (a triangle and barycentric weights), so they
follow every instance.

Files: one ``.npz`` of plain arrays (read with ``allow_pickle=False``) holding the arrays and a
JSON metadata string; the bundle's manifest holds each file's sha256, checked on loading.

Core module: numpy/torch only, no MRML.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from .errors import InputError

FORMAT = "bonerecon-ssm/1"
REGIONS = ("body", "pedicle", "lamina", "transverse process", "spinous process", "articular process",  # vertebrae
           "femoral head", "femoral neck", "trochanter", "shaft", "condyle", "plateau", "tuberosity",  # leg bones
           "malleolus", "ankle", "fibular head")


@dataclass(frozen=True)
class Landmark:
    """A named point that moves with the mesh: a fixed weighted mean of some of its vertices.

    A surface point is 3 vertices of one triangle with barycentric weights; an interior point
    (e.g. a pedicle's centre) is the mean of several surface points.
    """

    name: str
    region: str
    vertices: tuple
    weights: tuple

    def __post_init__(self):
        if self.region not in REGIONS:
            raise InputError(f"Landmark '{self.name}': unknown region '{self.region}' (one of {', '.join(REGIONS)}).")
        if len(self.vertices) == 0 or len(self.vertices) != len(self.weights) or abs(sum(self.weights) - 1.0) > 1e-6:
            raise InputError(f"Landmark '{self.name}': needs vertices with weights summing to 1.")

    def position(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(self.weights) @ np.asarray(points)[list(self.vertices)]

    @staticmethod
    def mean_of(name: str, region: str, parts) -> "Landmark":
        """The landmark at the mean position of several landmarks."""
        weights: Dict[int, float] = {}
        for part in parts:
            for vertex, weight in zip(part.vertices, part.weights):
                weights[vertex] = weights.get(vertex, 0.0) + weight / len(parts)
        return Landmark(name, region, tuple(weights), tuple(weights.values()))


@dataclass
class ShapeModel:
    """Mean (P, 3) mm, triangles (T, 3), orthonormal modes (K, P, 3), variances (K,) mm^2, landmarks."""

    name: str
    mean: np.ndarray
    triangles: np.ndarray
    modes: np.ndarray
    variances: np.ndarray
    landmarks: List[Landmark] = field(default_factory=list)
    info: Dict[str, object] = field(default_factory=dict)
    _torch: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.triangles = np.asarray(self.triangles, dtype=np.int64)
        self.modes = np.asarray(self.modes, dtype=np.float64)
        self.variances = np.asarray(self.variances, dtype=np.float64)
        p = len(self.mean)
        if self.mean.ndim != 2 or self.mean.shape[1] != 3 or p == 0:
            raise InputError(f"Shape model '{self.name}': the mean must be (P, 3) points.")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3 or len(self.triangles) == 0:
            raise InputError(f"Shape model '{self.name}': triangles must be (T, 3) and non-empty.")
        if self.triangles.min() < 0 or self.triangles.max() >= p:
            raise InputError(f"Shape model '{self.name}': triangles refer to vertices that do not exist.")
        if self.modes.ndim != 3 or self.modes.shape[1:] != (p, 3) or len(self.variances) != len(self.modes):
            raise InputError(f"Shape model '{self.name}': modes must be (K, {p}, 3) with K variances.")
        if np.any(self.variances <= 0) or not np.all(np.isfinite(self.variances)):
            raise InputError(f"Shape model '{self.name}': variances must be positive.")
        for landmark in self.landmarks:
            if min(landmark.vertices) < 0 or max(landmark.vertices) >= p:
                raise InputError(f"Landmark '{landmark.name}' refers to vertices that do not exist.")

    @property
    def n_modes(self) -> int:
        return len(self.variances)

    @property
    def landmark_names(self) -> List[str]:
        return [landmark.name for landmark in self.landmarks]

    # --- instances ----------------------------------------------------------------------------

    def _tensors(self, device, dtype):
        key = (str(device), dtype)
        if key not in self._torch:
            scaled = self.modes * np.sqrt(self.variances)[:, None, None]  # (K, P, 3): one s.d. per mode
            mix = np.zeros((len(self.landmarks), len(self.mean)))  # (L, P): landmark = mix @ vertices
            for row, landmark in enumerate(self.landmarks):
                np.add.at(mix[row], list(landmark.vertices), landmark.weights)
            as_t = lambda a, t=dtype: torch.as_tensor(a, device=device, dtype=t)  # noqa: E731
            self._torch[key] = dict(mean=as_t(self.mean).reshape(-1), basis=as_t(scaled.reshape(self.n_modes, -1)),
                                    mix=as_t(mix).to_sparse())
        return self._torch[key]

    def instances(self, coefficients=None, poses=None, scales=None, n: Optional[int] = None,
                  device=None, dtype=torch.float64, displacements=None) -> torch.Tensor:
        """Vertices (N, P, 3) of N instances.

        ``coefficients`` (N, k <= K) in standard deviations (missing modes = 0; None = the mean),
        ``poses`` (N, 4, 4) rigid transforms, ``scales`` (N,) isotropic scale applied before the
        pose (about the model's origin), ``displacements`` (N, P, 3) a free-form field added in the
        model's frame before scale and pose (:mod:`.shape_refinement`). Differentiable in all.
        """
        t = self._tensors(device, dtype)
        if coefficients is None:
            coefficients = torch.zeros((n or 1, 0), device=device, dtype=dtype)
        coefficients = torch.as_tensor(coefficients, device=device, dtype=dtype)
        if coefficients.ndim == 1:
            coefficients = coefficients[None]
        k = coefficients.shape[1]
        if k > self.n_modes:
            raise InputError(f"Shape model '{self.name}' has {self.n_modes} modes, {k} coefficients were given.")
        points = (t["mean"] + coefficients @ t["basis"][:k]).reshape(len(coefficients), -1, 3)
        if displacements is not None:
            points = points + torch.as_tensor(displacements, device=device, dtype=dtype)
        if scales is not None:
            points = points * torch.as_tensor(scales, device=device, dtype=dtype).reshape(-1, 1, 1)
        if poses is not None:
            poses = torch.as_tensor(poses, device=device, dtype=dtype)
            if poses.ndim == 2:
                poses = poses[None]
            points = points @ poses[:, :3, :3].transpose(1, 2) + poses[:, None, :3, 3]
        return points

    def landmark_positions(self, points: torch.Tensor) -> torch.Tensor:
        """Landmarks (N, L, 3) of instance vertices (N, P, 3)."""
        t = self._tensors(points.device, points.dtype)
        n, p, _ = points.shape
        flat = points.permute(1, 0, 2).reshape(p, n * 3)  # (P, N*3)
        return torch.sparse.mm(t["mix"], flat).reshape(-1, n, 3).permute(1, 0, 2)

    def coefficients_of(self, points, k: Optional[int] = None) -> np.ndarray:
        """Least-squares coefficients (s.d.) of vertices (P, 3) already aligned to the model frame."""
        k = self.n_modes if k is None else k
        residual = (np.asarray(points, dtype=np.float64) - self.mean).reshape(-1)
        return (self.modes[:k].reshape(k, -1) @ residual) / np.sqrt(self.variances[:k])

    # --- files --------------------------------------------------------------------------------

    def save(self, path) -> str:
        """Write the model as ``.npz`` (atomically); returns its sha256."""
        path = Path(path)
        metadata = dict(format=FORMAT, name=self.name, info=self.info,
                        landmarks=[dict(name=lm.name, region=lm.region, vertices=[int(v) for v in lm.vertices],
                                        weights=[float(w) for w in lm.weights]) for lm in self.landmarks])
        arrays = dict(mean=self.mean, triangles=self.triangles.astype(np.int32), modes=self.modes.astype(np.float32),
                      variances=self.variances, metadata=np.array(json.dumps(metadata)))
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        partial.replace(path)
        return file_sha256(path)


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_shape_model(path, sha256: Optional[str] = None) -> ShapeModel:
    """Read a model file; with ``sha256``, refuse a file whose content differs."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The shape model file {path} does not exist.")
    if sha256 is not None and file_sha256(path) != sha256:
        raise InputError(f"The shape model file {path} does not match its manifest (sha256 differs); "
                         "it was changed or damaged.")
    try:
        with np.load(path, allow_pickle=False) as data:
            metadata = json.loads(str(data["metadata"]))
            if metadata.get("format") != FORMAT:
                raise InputError(f"{path} is not a BoneRecon shape model ({FORMAT}).")
            landmarks = [Landmark(m["name"], m["region"], tuple(int(v) for v in m["vertices"]),
                                  tuple(float(w) for w in m["weights"])) for m in metadata["landmarks"]]
            # Modes are stored in float32: re-orthonormalise so projections stay exact.
            modes = data["modes"].astype(np.float64)
            flat, _ = np.linalg.qr(modes.reshape(len(modes), -1).T)
            signs = np.sign(np.einsum("ij,ji->i", modes.reshape(len(modes), -1), flat)) if len(modes) else 1.0
            modes = (flat * signs).T.reshape(modes.shape)
            return ShapeModel(metadata["name"], data["mean"], data["triangles"], modes, data["variances"],
                              landmarks, metadata.get("info", {}))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise InputError(f"Could not read the shape model {path}: {exc}.") from exc


def landmark_on_surface(points: np.ndarray, triangles: np.ndarray, target, name: str, region: str) -> Landmark:
    """The landmark at the surface point closest to ``target`` (exact point-to-triangle distance)."""
    a, b, c = (points[triangles[:, k]] for k in range(3))
    closest, weights = _closest_on_triangles(np.asarray(target, dtype=np.float64), a, b, c)
    best = int(np.argmin(np.linalg.norm(closest - target, axis=1)))
    return Landmark(name, region, tuple(int(v) for v in triangles[best]), tuple(float(w) for w in weights[best]))


def _closest_on_triangles(p, a, b, c):
    """Closest points on triangles (T, 3) to point p and their barycentric weights (Ericson's method)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = p - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = p - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        v, w = vb / denom, vc / denom  # interior
        weights = np.stack([1 - v - w, v, w], axis=1)
        cases = [
            ((d1 <= 0) & (d2 <= 0), np.array([1.0, 0, 0])),
            ((d3 >= 0) & (d4 <= d3), np.array([0, 1.0, 0])),
            ((d6 >= 0) & (d5 <= d6), np.array([0, 0, 1.0])),
        ]
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    on_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    on_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    on_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
    weights = np.where(on_bc[:, None], np.stack([np.zeros_like(t_bc), 1 - t_bc, t_bc], 1), weights)
    weights = np.where(on_ac[:, None], np.stack([1 - t_ac, np.zeros_like(t_ac), t_ac], 1), weights)
    weights = np.where(on_ab[:, None], np.stack([1 - t_ab, t_ab, np.zeros_like(t_ab)], 1), weights)
    for mask, corner in reversed(cases):
        weights = np.where(mask[:, None], corner, weights)
    weights = np.nan_to_num(weights, nan=1.0 / 3.0)
    closest = weights[:, :1] * a + weights[:, 1:2] * b + weights[:, 2:] * c
    return closest, weights

