"""Shapes in correspondence -> statistical shape model, and the standard measures of its quality.

- Generalised Procrustes analysis (rigid by default, so size stays in the modes: the size of a
  vertebra is part of what the radiographs must reveal; similarity on request).
- PCA of the aligned shapes (SVD of the centred data matrix).
- Compactness (variance captured by the first k modes), generalisation (leave-one-out: how
  well a model built without a shape can represent it) and specificity (how close random
  instances are to some real shape), as in Davies et al. and Styner et al.

Core module: numpy only, no MRML.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError
from .shape_model import ShapeModel

MIN_SHAPES = 3


def rigid_align(source, target, scaling: bool = False, weights=None) -> Tuple[np.ndarray, np.ndarray, float]:
    """(R, t, s) minimising sum w_i |s R source_i + t - target_i|^2 over corresponding points (Umeyama;
    weights default to 1)."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    w = np.ones(len(source)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_t = w @ source, w @ target
    a, b = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(b.T @ (w[:, None] * a))
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    correction = np.diag([1.0, 1.0, d])
    rotation = u @ correction @ vt
    scale = float((sigma * np.diag(correction)).sum() / (w[:, None] * a * a).sum()) if scaling else 1.0
    return rotation, mu_t - scale * rotation @ mu_s, scale


def apply(points, rotation, translation, scale=1.0) -> np.ndarray:
    return scale * np.asarray(points) @ rotation.T + translation


def generalised_procrustes(shapes, scaling: bool = False, iterations: int = 50,
                           tolerance: float = 1e-10) -> Tuple[np.ndarray, np.ndarray]:
    """(aligned shapes (M, P, 3), mean (P, 3)). The mean keeps the first shape's orientation and sits
    at the origin; with ``scaling`` every shape is scaled to the mean's size."""
    shapes = np.asarray(shapes, dtype=np.float64)
    if shapes.ndim != 3 or shapes.shape[2] != 3:
        raise InputError(f"Shapes must be (M, P, 3) points in correspondence, got {shapes.shape}.")
    reference = shapes[0] - shapes[0].mean(axis=0)
    aligned = shapes.copy()
    for _ in range(iterations):
        aligned = np.stack([apply(s, *rigid_align(s, reference, scaling)) for s in shapes])
        mean = aligned.mean(axis=0)
        rotation, translation, _ = rigid_align(mean, reference)  # keep the reference frame fixed
        mean = apply(mean, rotation, translation)
        if scaling:
            mean *= np.sqrt((reference ** 2).sum() / (mean ** 2).sum())
        change = float(np.abs(mean - reference).max())
        reference = mean
        if change < tolerance:
            break
    aligned = np.stack([apply(s, *rigid_align(s, reference, scaling)) for s in shapes])
    return aligned, reference


def principal_components(aligned, max_modes: Optional[int] = None,
                         variance_kept: float = 1.0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean (P, 3), orthonormal modes (K, P, 3), variances (K,)) of aligned shapes.

    Keeps at most ``max_modes`` and the fewest modes whose variance reaches ``variance_kept`` of
    the total; modes with no variance are dropped.
    """
    aligned = np.asarray(aligned, dtype=np.float64)
    m, p, _ = aligned.shape
    mean = aligned.mean(axis=0)
    centred = (aligned - mean).reshape(m, -1)
    _, sigma, vt = np.linalg.svd(centred, full_matrices=False)
    variances = sigma ** 2 / max(m - 1, 1)
    total = variances.sum()
    keep = int(np.count_nonzero(variances > 1e-12 * max(total, 1e-300)))
    if total > 0 and variance_kept < 1.0:
        keep = min(keep, int(np.searchsorted(np.cumsum(variances) / total, variance_kept - 1e-12) + 1))
    if max_modes is not None:
        keep = min(keep, max_modes)
    modes = vt[:keep]
    # A deterministic sign: the largest-magnitude entry of each mode is positive.
    signs = np.sign(modes[np.arange(keep), np.abs(modes).argmax(axis=1)])
    return mean, (modes * signs[:, None]).reshape(keep, p, 3), variances[:keep]


def build_shape_model(name: str, shapes, triangles, scaling: bool = False, max_modes: Optional[int] = None,
                      variance_kept: float = 1.0, landmark_targets: Optional[Dict[str, Tuple[str, Sequence]]] = None,
                      info: Optional[dict] = None) -> ShapeModel:
    """A shape model from M >= 3 shapes (M, P, 3) in correspondence sharing ``triangles``.

    ``landmark_targets`` {name: (region, point near the mean)} places named landmarks on the mean
    surface (closest surface point).
    """
    from .shape_model import landmark_on_surface

    shapes = np.asarray(shapes, dtype=np.float64)
    if shapes.ndim != 3 or len(shapes) < MIN_SHAPES:
        raise InputError(f"A shape model needs at least {MIN_SHAPES} shapes, got {len(shapes) if shapes.ndim else 0}.")
    if not np.all(np.isfinite(shapes)):
        raise InputError("The shapes have non-finite coordinates.")
    aligned, _ = generalised_procrustes(shapes, scaling)
    mean, modes, variances = principal_components(aligned, max_modes, variance_kept)
    if len(variances) == 0:
        raise InputError("The shapes are all identical after alignment: there is no variation to model.")
    landmarks = [landmark_on_surface(mean, np.asarray(triangles), target, lm_name, region)
                 for lm_name, (region, target) in (landmark_targets or {}).items()]
    details = dict(n_shapes=int(len(shapes)), alignment="similarity" if scaling else "rigid")
    details.update(info or {})
    return ShapeModel(name, mean, triangles, modes, variances, landmarks, details)


def compactness(model: ShapeModel) -> np.ndarray:
    """Fraction of the model's total variance captured by the first 1..K modes."""
    return np.cumsum(model.variances) / model.variances.sum()


def projection(model: ShapeModel, aligned, k: int) -> np.ndarray:
    """The best approximation (least squares) with the first k modes of a shape aligned to the model."""
    coefficients = model.coefficients_of(aligned, k)
    return model.mean + np.tensordot(coefficients * np.sqrt(model.variances[:k]), model.modes[:k], axes=1)


def generalisation(shapes, triangles, ks: Sequence[int], scaling: bool = False,
                   error: Optional[Callable[[int, np.ndarray], float]] = None,
                   augment: Optional[Callable[[ShapeModel, int], ShapeModel]] = None,
                   fit: Optional[Callable[[ShapeModel, np.ndarray, int], np.ndarray]] = None,
                   groups: Optional[Sequence] = None) -> np.ndarray:
    """Leave-one-out error with k modes, for every k in ``ks``: (len(ks),).

    ``groups`` (one per shape, e.g. the person): a left-out shape's whole group leaves the model with
    it (a person's other knee must not help represent the left-out one).

    Each left-out shape's best reconstruction is put back where the shape is; ``error(i, placed)``
    scores it (default: mean vertex distance to shape i, mm). ``augment(model, i)`` turns the model
    without shape i into the model under test (e.g. adds synthetic variation); ``fit(model, aligned, k)``
    reconstructs the aligned shape (default: least-squares projection on the first k modes).
    """
    shapes = np.asarray(shapes, dtype=np.float64)
    if len(shapes) < MIN_SHAPES + 1:
        raise InputError(f"Leave-one-out needs at least {MIN_SHAPES + 1} shapes.")
    if error is None:
        def error(i, placed):
            return float(np.linalg.norm(placed - shapes[i], axis=1).mean())
    fit = fit or projection
    errors = np.zeros((len(shapes), len(ks)))
    groups = np.arange(len(shapes)) if groups is None else np.asarray(groups)
    for i in range(len(shapes)):
        others = groups != groups[i]
        if others.sum() < MIN_SHAPES:
            raise InputError(f"Leaving out shape {i} and its group leaves fewer than {MIN_SHAPES} shapes.")
        model = build_shape_model("loo", shapes[others], triangles, scaling)
        if augment is not None:
            model = augment(model, i)
        rotation, translation, scale = rigid_align(shapes[i], model.mean, scaling)
        aligned = apply(shapes[i], rotation, translation, scale)
        for n, k in enumerate(ks):
            approximation = fit(model, aligned, min(k, model.n_modes))
            errors[i, n] = error(i, (approximation - translation) @ rotation / scale)  # undo the alignment
    return errors.mean(axis=0)


def specificity(model: ShapeModel, shapes, k: int, samples: int = 200, seed: int = 0,
                scaling: bool = False) -> float:
    """Mean over random instances (first k modes, N(0, 1) coefficients) of the mean vertex distance
    to the closest training shape (mm)."""
    rng = np.random.default_rng(seed)
    k = min(k, model.n_modes)
    training = np.stack([apply(s, *rigid_align(s, model.mean, scaling)) for s in np.asarray(shapes, np.float64)])
    instances = model.instances(rng.standard_normal((samples, k))).numpy()
    distances = np.linalg.norm(instances[:, None] - training[None], axis=-1).mean(axis=-1)  # (samples, M)
    return float(distances.min(axis=1).mean())

