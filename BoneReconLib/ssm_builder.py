"""Build a vertebra shape model from a collection of surfaces of one level.

Pipeline: pick a template (the surface of median volume, reduced to ``template_triangles``),
fit it onto every surface (:mod:`.shape_correspondence`), optionally refit with the mean as the
template (removes the first template's bias), align the fits by generalised Procrustes, PCA,
place the named landmarks on the mean (:mod:`.vertebra_landmarks`) and express the model in the
vertebra's anatomical frame (origin on the mid-sagittal plane, axes right/anterior/superior), so
that an instance's pose says how the vertebra sits in the patient.

Quality report: each surface's fitting error, compactness, leave-one-out generalisation as the
mean surface distance between a left-out surface and its best model reconstruction (fitting
error included), and specificity. Core module (numpy/torch/vtk), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError
from .progress import ProgressCallback, as_progress
from .shape_correspondence import fit_template, surface_distance
from .shape_model import Landmark, ShapeModel
from .shape_statistics import (MIN_SHAPES, apply, build_shape_model, compactness, generalisation, rigid_align,
                               specificity)
from .vertebra_landmarks import vertebra_landmarks


@dataclass
class Surface:
    """One input surface: closed (points, triangles) in RAS mm, and where it came from."""

    name: str
    points: np.ndarray
    triangles: np.ndarray


@dataclass
class BuildReport:
    level: str
    sources: List[str]
    template: str
    fit_distance: List[float]  # mm, symmetric mean surface distance of each fit
    compactness: List[float]  # cumulative variance fraction, modes 1..K
    generalisation: List[float] = field(default_factory=list)  # mm, leave-one-out, with 1..K-1 modes
    specificity: Optional[float] = None  # mm, with all modes

    def lines(self) -> List[str]:
        out = [f"{self.level}: {len(self.sources)} shapes, template {self.template}",
               f"  fit (mean surface distance, mm): mean {np.mean(self.fit_distance):.3f}, "
               f"max {np.max(self.fit_distance):.3f}",
               "  compactness (cumulative variance): " + " ".join(f"{c:.3f}" for c in self.compactness[:10])]
        if self.generalisation:
            out.append("  leave-one-out generalisation (mm) with 1.. modes: "
                       + " ".join(f"{g:.3f}" for g in self.generalisation))
        if self.specificity is not None:
            out.append(f"  specificity (mm): {self.specificity:.3f}")
        return out


def template_index(surfaces: Sequence[Surface]) -> int:
    """The surface of median enclosed volume (a typical size: the fits move it least on average)."""
    volumes = []
    for s in surfaces:
        a, b, c = (s.points[s.triangles[:, k]] for k in range(3))
        volumes.append(abs(float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum())) / 6.0)
    return int(np.argsort(volumes)[len(volumes) // 2])


def fit_all(template: Tuple[np.ndarray, np.ndarray], surfaces: Sequence[Surface], report, start: float,
            span: float) -> Tuple[np.ndarray, List[float]]:
    fits, distances = [], []
    for n, surface in enumerate(surfaces):
        report(start + span * n / len(surfaces), f"Fitting the template to {surface.name}")
        fit = fit_template(template[0], template[1], surface.points, surface.triangles)
        fits.append(fit.points)
        distances.append(fit.mean_distance)
    return np.stack(fits), distances


def build_level_model(
    level: str,
    surfaces: Sequence[Surface],
    template_triangles: int = 8000,
    refit_with_mean: bool = True,
    max_modes: Optional[int] = None,
    evaluate: bool = True,
    landmarks: Callable = vertebra_landmarks,
    progress: Optional[ProgressCallback] = None,
) -> Tuple[ShapeModel, BuildReport]:
    """A shape model of one level from >= 3 surfaces, and its quality report."""
    from .mesh_io import polydata_from_arrays, prepare_surface

    report = as_progress(progress)
    surfaces = list(surfaces)
    if len(surfaces) < MIN_SHAPES:
        raise InputError(f"{level}: a shape model needs at least {MIN_SHAPES} surfaces, got {len(surfaces)}.")
    first = template_index(surfaces)
    template = prepare_surface(polydata_from_arrays(surfaces[first].points, surfaces[first].triangles),
                               smoothing_iterations=0, max_triangles=template_triangles, what="template")
    span = 0.45 if refit_with_mean else 0.9
    fits, distances = fit_all(template, surfaces, report, 0.0, span)
    if refit_with_mean:
        model = build_shape_model(level, fits, template[1])
        # The mean placed where the first template was, so the fits start from the same spot.
        rotation, translation, _ = rigid_align(model.mean, fits[first])
        template = (apply(model.mean, rotation, translation), template[1])
        fits, distances = fit_all(template, surfaces, report, 0.45, 0.45)
    report(0.9, f"{level}: Procrustes, PCA and landmarks")
    model = build_shape_model(level, fits, template[1], max_modes=max_modes)
    found, frame = landmarks(model.mean, model.triangles)
    model = _in_frame(model, frame.origin, frame.axes, found)
    model.info.update(level=level, sources=[s.name for s in surfaces], template=surfaces[first].name,
                      frame="origin on the mid-sagittal plane; axes x right, y anterior, z superior (mm)")
    build = BuildReport(level, [s.name for s in surfaces], surfaces[first].name, distances,
                        compactness(model).tolist())
    if evaluate and len(surfaces) > MIN_SHAPES:
        report(0.95, f"{level}: leave-one-out generalisation")
        build.generalisation = generalisation_to_surfaces(fits, template[1], surfaces)
        build.specificity = specificity(model, fits, k=model.n_modes, samples=100)
    report(1.0, f"{level}: done")
    return model, build


def _in_frame(model: ShapeModel, origin, axes, landmarks: List[Landmark]) -> ShapeModel:
    """The model with its mean and modes expressed in the anatomical frame (rows of ``axes``)."""
    mean = (model.mean - origin) @ axes.T
    modes = model.modes @ axes.T
    return ShapeModel(model.name, mean, model.triangles, modes, model.variances, landmarks, dict(model.info))


def generalisation_to_surfaces(fits: np.ndarray, triangles: np.ndarray, surfaces: Sequence[Surface]) -> List[float]:
    """Leave-one-out: for k = 1..M-2 modes, the mean over left-out surfaces of the symmetric mean surface
    distance between the surface and the model's best reconstruction of its fit."""
    def error(i, placed):
        return surface_distance(placed, triangles, surfaces[i].points, surfaces[i].triangles)

    return generalisation(fits, triangles, range(1, len(fits) - 1), error=error).tolist()
