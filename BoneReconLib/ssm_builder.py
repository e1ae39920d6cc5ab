"""Build a vertebra shape model from a collection of surfaces of one level.

Pipeline: pick a template (the surface of median volume, reduced to ``template_triangles``),
fit it onto every surface (:mod:`.shape_correspondence`), optionally refit with the mean as the
template (removes the first template's bias), align the fits by generalised Procrustes, PCA,
place the named landmarks on the mean (:mod:`.vertebra_landmarks`) and express the model in the
vertebra's anatomical frame (origin on the mid-sagittal plane, axes right/anterior/superior), so
that an instance's pose says how the vertebra sits in the patient.

With ``synthetic``, a level built from few surfaces gets synthetic variation in its covariance
(regional fields, and the modes of a ``donor`` level built from many: :mod:`.synthetic_variation`).

Quality report: each surface's fitting error, compactness, leave-one-out generalisation as the
mean surface distance between a left-out surface and its best model reconstruction (fitting
error included; with synthetic variation, also the real-only model's), the same with the
free-form refinement term added (:mod:`.shape_refinement`: the floor that registration can go
below the model's span to), and specificity. Core module (numpy/torch/vtk), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError
from .progress import ProgressCallback, as_progress
from .shape_correspondence import fit_template, surface_distance
from .shape_model import Landmark, ShapeModel
from .shape_refinement import SmoothDeformation, map_fit
from .shape_statistics import (MIN_SHAPES, apply, build_shape_model, compactness, generalisation, rigid_align,
                               specificity)
from .synthetic_variation import Transfer, describe_synthetic, pooled_weights, regional_variation
from .vertebra_landmarks import vertebra_landmarks

FREE_FORM_NOISE_MM = 0.3  # residual noise assumed when the free-form term is fitted (posterior mean)


@dataclass
class Surface:
    """One input surface: closed (points, triangles) in RAS mm, where it came from and whose it is
    (``subject``: surfaces of one person at different levels share it; default: the name)."""

    name: str
    points: np.ndarray
    triangles: np.ndarray
    subject: Optional[str] = None

    @property
    def person(self) -> str:
        return self.subject or self.name


@dataclass
class Donor:
    """A level built from many surfaces, whose modes other levels borrow: its model (for the mean,
    frame and vertices), the fits it was built from and whose they are."""

    model: ShapeModel
    fits: np.ndarray
    persons: List[str]

    def lender(self, person: Optional[str] = None) -> ShapeModel:
        """The level's model from its real surfaces only (no synthetic variation is lent on), without
        ``person``'s surface if it has one (for leave-one-person-out checks); in the model's frame
        and on its vertices."""
        keep = [n for n, p in enumerate(self.persons) if p != person]
        model = build_shape_model(self.model.name, self.fits[keep], self.model.triangles)
        rotation, translation, _ = rigid_align(model.mean, self.model.mean)
        return ShapeModel(self.model.name, apply(model.mean, rotation, translation), model.triangles,
                          model.modes @ rotation.T, model.variances, list(self.model.landmarks),
                          dict(self.model.info, n_shapes=len(keep)))


@dataclass
class BuildReport:
    level: str
    sources: List[str]
    template: str
    fit_distance: List[float]  # mm, symmetric mean surface distance of each fit
    compactness: List[float]  # cumulative variance fraction, modes 1..K
    generalisation: List[float] = field(default_factory=list)  # mm, leave-one-out, with 1.. modes
    specificity: Optional[float] = None  # mm, with all modes
    free_form_generalisation: Optional[float] = None  # mm, leave-one-out, all modes + free-form term
    real_generalisation: List[float] = field(default_factory=list)  # mm, without the synthetic variation
    real_specificity: Optional[float] = None
    synthetic: Optional[dict] = None
    fits: Optional[np.ndarray] = field(default=None, repr=False)  # (M, P, 3) fitted templates, input coordinates

    def lines(self) -> List[str]:
        out = [f"{self.level}: {len(self.sources)} shapes, template {self.template}",
               f"  fit (mean surface distance, mm): mean {np.mean(self.fit_distance):.3f}, "
               f"max {np.max(self.fit_distance):.3f}",
               "  compactness (cumulative variance): " + " ".join(f"{c:.3f}" for c in self.compactness[:10])]
        if self.synthetic:
            out.append("  synthetic variation: " + describe_synthetic(self.synthetic))
        if self.real_generalisation:
            out.append("  real shapes only: leave-one-out generalisation (mm) with 1.. modes: "
                       + " ".join(f"{g:.3f}" for g in self.real_generalisation)
                       + f"; specificity {self.real_specificity:.3f}")
        if self.generalisation:
            out.append("  leave-one-out generalisation (mm) with 1.. modes: "
                       + " ".join(f"{g:.3f}" for g in self.generalisation))
        if self.free_form_generalisation is not None:
            out.append(f"  leave-one-out with the free-form term (mm): {self.free_form_generalisation:.3f}")
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
    synthetic: bool = False,
    donor: Optional[Donor] = None,
    regional: Callable = regional_variation,
    progress: Optional[ProgressCallback] = None,
) -> Tuple[ShapeModel, BuildReport]:
    """A shape model of one level from >= 3 surfaces, and its quality report.

    ``synthetic``: add regional variation (``regional``: its fields for a model of this level; the
    leg bones' are :func:`.leg_variation.leg_variation`) and, with a ``donor`` (another level, built from more
    surfaces), its transferred modes, pooled with this level's by degrees of freedom. The
    leave-one-out check then leaves the person out of the donor too (same ``Surface.person``), so
    a person's other vertebra cannot help represent the left-out one.
    """
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
    model = model_from_fits(level, fits, template[1], landmarks, max_modes)
    model.info.update(sources=[s.name for s in surfaces], template=surfaces[first].name)
    real_model, augment = model, None
    if synthetic:
        report(0.91, f"{level}: synthetic variation")
        fields = regional(model)
        transfer = Transfer.between(donor.model, model) if donor is not None else None

        def augment(candidate, left_out=None):
            variation, real_weight = fields, 1.0
            if transfer is not None:
                lender = donor.lender(None if left_out is None else surfaces[left_out].person)
                own = len(surfaces) - (left_out is not None)
                real_weight, lender_weight = pooled_weights(own, int(lender.info["n_shapes"]))
                variation = variation + transfer.variation(lender, model, lender_weight)
            return variation.augment(candidate, real_weight)

        model = augment(model)
    build = BuildReport(level, [s.name for s in surfaces], surfaces[first].name, distances,
                        compactness(model).tolist(), synthetic=model.info.get("synthetic_variation"), fits=fits)
    if evaluate and len(surfaces) > MIN_SHAPES:
        report(0.95, f"{level}: leave-one-out generalisation")
        if augment is not None:
            build.real_generalisation = generalisation_to_surfaces(fits, template[1], surfaces)
            build.real_specificity = specificity(real_model, fits, k=real_model.n_modes, samples=100)
        build.generalisation = generalisation_to_surfaces(fits, template[1], surfaces, augment=augment,
                                                          ks=range(1, model.n_modes + 1) if augment else None)
        build.free_form_generalisation = generalisation_to_surfaces(
            fits, template[1], surfaces, augment=augment, ks=[model.n_modes], fit=free_form_fit)[0]
        build.specificity = specificity(model, fits, k=model.n_modes, samples=100)
    report(1.0, f"{level}: done")
    return model, build


def model_from_fits(level: str, fits: np.ndarray, triangles: np.ndarray, landmarks: Callable = vertebra_landmarks,
                    max_modes: Optional[int] = None) -> ShapeModel:
    """Procrustes and PCA of fitted templates (M, P, 3), landmarks placed on the mean by ``landmarks``,
    the model expressed in the frame those rules find."""
    model = build_shape_model(level, fits, triangles, max_modes=max_modes)
    found, frame = landmarks(model.mean, model.triangles)
    model = _in_frame(model, frame.origin, frame.axes, found)
    model.info.update(level=level, frame="origin on the mid-sagittal plane; axes x right, y anterior, z superior (mm)")
    model.info.update(getattr(frame, "info", {}))  # a leg bone's side, spheres and rings, and its frame
    return model


def free_form_fit(model: ShapeModel, aligned: np.ndarray, k: int) -> np.ndarray:
    """The posterior-mean reconstruction with k modes plus the default free-form term."""
    return map_fit(model, aligned, SmoothDeformation.on_points(model.mean), k, FREE_FORM_NOISE_MM)[2]


def _in_frame(model: ShapeModel, origin, axes, landmarks: List[Landmark]) -> ShapeModel:
    """The model with its mean and modes expressed in the anatomical frame (rows of ``axes``)."""
    mean = (model.mean - origin) @ axes.T
    modes = model.modes @ axes.T
    return ShapeModel(model.name, mean, model.triangles, modes, model.variances, landmarks, dict(model.info))


def generalisation_to_surfaces(fits: np.ndarray, triangles: np.ndarray, surfaces: Sequence[Surface],
                               ks: Optional[Sequence[int]] = None, augment=None, fit=None) -> List[float]:
    """Leave-one-person-out: for k modes (default 1..M-2 with one surface per person), the mean over
    left-out surfaces of the symmetric mean surface distance between the surface and the best
    reconstruction of its fit by a model built without that person's surfaces."""
    def error(i, placed):
        return surface_distance(placed, triangles, surfaces[i].points, surfaces[i].triangles)

    groups = [s.person for s in surfaces]
    largest_group = max(groups.count(g) for g in groups)
    ks = range(1, len(fits) - largest_group) if ks is None else ks  # up to the smallest left-out model's modes
    return generalisation(fits, triangles, ks, error=error, augment=augment, fit=fit, groups=groups).tolist()
