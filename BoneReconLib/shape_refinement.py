"""A smooth free-form deformation on top of a shape model, for registration beyond the model's span.

A model built from a handful of people cannot reach a new person's vertebra to sub-millimetre
accuracy (its leave-one-out error is the floor). Where the images demand more, registration adds
a smooth displacement field ``d`` to the model instance, with a Gaussian-process prior
(as in Gaussian process morphable models, Luethi et al., IEEE TPAMI 2018):

    d(x) ~ GP(0, amplitude^2 exp(-|x - y|^2 / (2 sigma^2)) I_3)

made finite by its leading eigenfunctions on the model's mean vertices (Nystroem: the kernel
between the vertices and a farthest-point subset of them). Then ``d = sum_j sqrt(lambda_j)
u_j w_j`` with weights ``w_j`` in R^3 standard normal, so the prior's negative log density is
``|w|^2 / 2``: the same units as the model's shape coefficients (standard deviations), and one
regulariser (the Mahalanobis norm) serves both. ``sigma`` sets how local the corrections may be
(smaller = more detail, needs more functions), ``amplitude`` how large (mm, per axis).

The field lives in the model's frame on its vertex correspondence: add it to the instance before
the pose (``ShapeModel.instances(..., displacements=...)``). Batched and differentiable in torch.
Core module: numpy/torch only, no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from .errors import InputError

DEFAULT_SIGMA_MM = 8.0
DEFAULT_AMPLITUDE_MM = 1.0
DEFAULT_VARIANCE_KEPT = 0.95
MAX_FUNCTIONS = 200
INDUCING_POINTS = 800


def farthest_points(points: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` points spread over the set (greedy farthest-point order, from point 0)."""
    count = min(count, len(points))
    chosen = np.zeros(count, dtype=np.int64)
    distance = np.full(len(points), np.inf)
    for n in range(1, count):
        distance = np.minimum(distance, np.linalg.norm(points - points[chosen[n - 1]], axis=1))
        chosen[n] = int(np.argmax(distance))
    return chosen


def _gaussian_kernel(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2.0 * a @ b.T
    return np.exp(-np.maximum(squared, 0.0) / (2.0 * sigma * sigma))


@dataclass
class SmoothDeformation:
    """Low-rank Gaussian-process displacement fields on fixed points (P, 3).

    ``functions`` (R, P): orthonormal eigenvectors of the kernel matrix on the points;
    ``variances`` (R,) mm^2 its eigenvalues (amplitude^2 included), largest first.
    """

    points: np.ndarray
    sigma: float
    amplitude: float
    functions: np.ndarray
    variances: np.ndarray
    _torch: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def on_points(cls, points, sigma: float = DEFAULT_SIGMA_MM, amplitude: float = DEFAULT_AMPLITUDE_MM,
                  variance_kept: float = DEFAULT_VARIANCE_KEPT, max_functions: int = MAX_FUNCTIONS,
                  inducing: int = INDUCING_POINTS) -> "SmoothDeformation":
        """The leading eigenfunctions that hold ``variance_kept`` of the prior's total variance
        (at most ``max_functions``)."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3 or len(points) < 4 or not np.all(np.isfinite(points)):
            raise InputError("A free-form deformation needs (P >= 4, 3) finite points.")
        if not (sigma > 0 and amplitude > 0 and 0 < variance_kept <= 1 and max_functions >= 1):
            raise InputError("A free-form deformation needs sigma > 0, amplitude > 0, 0 < variance_kept <= 1 "
                             "and at least one function.")
        subset = points[farthest_points(points, inducing)]
        values, vectors = np.linalg.eigh(_gaussian_kernel(subset, subset, sigma))
        keep = values > 1e-10 * values.max()
        # K ~ F F^T with F = K_nm U diag(1/sqrt(lambda)) (Nystroem); the thin SVD of F gives K's eigenvectors.
        factor = _gaussian_kernel(points, subset, sigma) @ (vectors[:, keep] / np.sqrt(values[keep]))
        functions, singular, _ = np.linalg.svd(factor, full_matrices=False)
        variances = amplitude ** 2 * singular ** 2
        share = np.cumsum(variances) / (amplitude ** 2 * len(points))  # the exact kernel's trace is P a^2
        count = min(max_functions, int(np.searchsorted(share, variance_kept - 1e-12)) + 1, len(variances))
        functions = functions[:, :count].T
        functions *= np.sign(functions[np.arange(count), np.abs(functions).argmax(axis=1)])[:, None]
        return cls(points, float(sigma), float(amplitude), functions, variances[:count])

    @property
    def n_functions(self) -> int:
        return len(self.variances)

    @property
    def n_weights(self) -> int:
        """Scalar weights of one field: 3 per function (x, y, z)."""
        return 3 * self.n_functions

    def variance_kept(self) -> float:
        return float(self.variances.sum() / (self.amplitude ** 2 * len(self.points)))

    def _basis(self, device, dtype) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._torch:
            scaled = self.functions * np.sqrt(self.variances)[:, None]  # (R, P): one s.d. per function
            self._torch[key] = torch.as_tensor(scaled, device=device, dtype=dtype)
        return self._torch[key]

    def displacements(self, weights, device=None, dtype=torch.float64) -> torch.Tensor:
        """Fields (N, P, 3) of weights (N, R, 3) or (N, 3R) in standard deviations (fewer R: leading ones)."""
        weights = torch.as_tensor(weights, device=device, dtype=dtype)
        if weights.ndim == 1:
            weights = weights[None]
        if weights.ndim == 2:
            if weights.shape[1] % 3:
                raise InputError("Flat free-form weights come in threes (x, y, z per function).")
            weights = weights.reshape(len(weights), -1, 3)
        r = weights.shape[1]
        if r > self.n_functions:
            raise InputError(f"The deformation has {self.n_functions} functions, {r} were given.")
        return torch.einsum("rp,nrc->npc", self._basis(weights.device, weights.dtype)[:r], weights)

    @staticmethod
    def energy(weights) -> torch.Tensor:
        """The prior's negative log density (N,): |w|^2 / 2 per field."""
        weights = torch.as_tensor(weights)
        return 0.5 * (weights.reshape(len(weights), -1) ** 2).sum(dim=1)

    def weights_of(self, displacement, noise_mm: Optional[float] = None) -> np.ndarray:
        """Weights (R, 3) of the field closest to ``displacement`` (P, 3): least squares, or with
        ``noise_mm`` the posterior mean under the prior (residual noise of that s.d. per coordinate)."""
        displacement = np.asarray(displacement, dtype=np.float64)
        projected = self.functions @ displacement  # (R, 3)
        scale = np.sqrt(self.variances)[:, None]
        if noise_mm is None:
            return projected / scale
        return projected * scale / (self.variances[:, None] + noise_mm ** 2)


def map_fit(model, aligned, deformation: Optional[SmoothDeformation] = None, k: Optional[int] = None,
            noise_mm: float = 0.5):
    """(coefficients (k,), free-form weights (R, 3) or None, reconstruction (P, 3)) of a shape (P, 3)
    in correspondence and already aligned to the model's frame: the posterior mean under the
    model's prior (and the deformation's, if given) with residual noise of ``noise_mm`` per coordinate.
    """
    aligned = np.asarray(aligned, dtype=np.float64)
    k = model.n_modes if k is None else min(k, model.n_modes)
    p = len(model.mean)
    columns = [(model.modes[:k] * np.sqrt(model.variances[:k])[:, None, None]).reshape(k, -1)]
    if deformation is not None:
        scaled = deformation.functions * np.sqrt(deformation.variances)[:, None]  # (R, P)
        fields = np.zeros((deformation.n_functions, 3, p, 3))
        for axis in range(3):
            fields[:, axis, :, axis] = scaled
        columns.append(fields.reshape(-1, 3 * p))
    basis = np.concatenate(columns)  # (k + 3R, 3P): one s.d. per row
    residual = (aligned - model.mean).reshape(-1)
    normal = basis @ basis.T + noise_mm ** 2 * np.eye(len(basis))
    solution = np.linalg.solve(normal, basis @ residual)
    reconstruction = model.mean + (solution @ basis).reshape(p, 3)
    weights = solution[k:].reshape(-1, 3) if deformation is not None else None
    return solution[:k], weights, reconstruction


_MODEL_DEFORMATIONS: dict = {}


def model_deformation(model, sigma_mm: float = DEFAULT_SIGMA_MM,
                      amplitude_mm: float = DEFAULT_AMPLITUDE_MM) -> SmoothDeformation:
    """The free-form field on a shape model's mean vertices, made once per model and settings (its
    eigenfunctions take seconds)."""
    key = (id(model), float(sigma_mm), float(amplitude_mm))
    if key not in _MODEL_DEFORMATIONS:  # the model is kept with it so that its id stays its own
        _MODEL_DEFORMATIONS[key] = (model, SmoothDeformation.on_points(model.mean, sigma=sigma_mm,
                                                                       amplitude=amplitude_mm))
    return _MODEL_DEFORMATIONS[key][1]
