"""Registration beyond a shape model's span: gradient steps on a smooth free-form field.

CMA-ES (:mod:`.vertebra_registration`) finds the model instance that best explains a vertebra's
two images and landmarks, but a model built from a few people cannot reach a new person's
vertebra closer than its leave-one-out error (0.8-1.2 mm for the bundled models). This step
adds a smooth displacement field with a Gaussian-process prior (:mod:`.shape_refinement`) and
refines it together with the pose, scale and shape coefficients by Adam, through the
differentiable thickness renderer (:mod:`.mesh_depth`: ray/triangle distances are
differentiable in the vertices). The cost is the registration's own (image NCC averaged over
both views, landmark reprojection, Mahalanobis prior on the coefficients, and the depth inside
neighbours already placed, ``VertebraTarget.neighbours``) plus the field's
prior ``free_form_weight x |w|^2 / 2``: a change that helps one view and hurts the other does not
lower it, so the field moves the surface only where both views agree. The refined instance is
kept only if it lowers the registration's cost at full resolution (without the field's prior).
Core module (numpy/torch), no MRML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch

from .mesh_depth import mesh_thickness
from .progress import ProgressCallback, as_progress
from .shape_model import ShapeModel
from .shape_refinement import DEFAULT_AMPLITUDE_MM, DEFAULT_SIGMA_MM, SmoothDeformation, model_deformation
from .vertebra_registration import (TRANSLATION_UNIT_MM, RegistrationResult,
                                    RegistrationWeights, VertebraTarget, _ncc, _Problem, coarse_surface)


@dataclass
class FreeFormSettings:
    steps: int = 30
    factor: int = 2  # images block-averaged by this factor while refining
    learning_rate: float = 0.05  # Adam, in parameter units (3 deg, 3 mm, 0.03 log-scale, 1 s.d.)
    free_form_weight: float = 0.002  # on |w|^2 / 2 of the field's weights (standard deviations)
    sigma_mm: float = DEFAULT_SIGMA_MM
    amplitude_mm: float = DEFAULT_AMPLITUDE_MM
    coarse_surface: bool = True  # render the search surface (a vertex subset) while refining


def _skew(v: torch.Tensor) -> torch.Tensor:
    zero = v.new_zeros(())
    return torch.stack([torch.stack([zero, -v[2], v[1]]), torch.stack([v[2], zero, -v[0]]),
                        torch.stack([-v[1], v[0], zero])])


def project_centred_mm(view, points: torch.Tensor) -> torch.Tensor:
    """Differentiable central projection of points (..., 3) to mm on the detector from its centre
    (as ``vertebra_registration._centred_mm`` of ``View.project``)."""
    t = {name: torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=points.dtype, device=points.device)
         for name, value in dict(source=view.source, normal=view.normal, u=view.detector_u, v=view.detector_v,
                                 centre=view.detector_center).items()}
    direction = points - t["source"]
    hit = t["source"] + (view.source_to_detector_distance / (direction @ t["normal"]))[..., None] * direction
    offset = hit - t["centre"]
    return torch.stack([offset @ t["u"], offset @ t["v"]], dim=-1)


class _FreeFormProblem(_Problem):
    """(pose step, coefficients, field weights) -> differentiable cost terms at one resolution: the
    CMA-ES problem's set-up (views, images, landmark weights) with a torch cost."""

    def __init__(self, model: ShapeModel, start: RegistrationResult, target: VertebraTarget, factor: int,
                 weights: RegistrationWeights, deformation: SmoothDeformation, surface=None):
        centre = start.scale * model.mean.mean(axis=0) @ start.rotation.T + start.translation
        super().__init__(model, start.rotation, start.translation, start.scale, centre, target, factor,
                         len(start.coefficients), weights, surface)
        self.deformation = deformation
        self.start = {name: torch.as_tensor(np.asarray(value, dtype=np.float64)) for name, value in
                      dict(rotation=start.rotation, translation=start.translation, centre=centre).items()}
        self.found_mm = [torch.as_tensor(found) for found in self.landmarks_mm]

    def pose(self, step: torch.Tensor):
        """(rotation (3, 3), translation (3,), scale) of a pose step (7,) from the start: rotation,
        translation and log-scale in the registration's units."""
        delta = torch.linalg.matrix_exp(_skew(step[:3] * math.radians(self.weights.rotation_unit_deg)))
        rotation = delta @ self.start["rotation"]
        centre = self.start["centre"]
        translation = delta @ (self.start["translation"] - centre) + centre + step[3:6] * TRANSLATION_UNIT_MM
        return rotation, translation, self.scale0 * torch.exp(step[6] * self.weights.log_scale_unit)

    def points(self, step: torch.Tensor, coefficients: torch.Tensor, field: Optional[torch.Tensor]):
        """World vertices (1, P, 3) of a pose step, coefficients (k,) and field weights (R, 3) or None."""
        rotation, translation, scale = self.pose(step)
        pose = torch.cat([torch.cat([rotation, translation[:, None]], dim=1),
                          torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=rotation.dtype)], dim=0)
        displacement = None if field is None else self.deformation.displacements(field[None])
        return self.model.instances(coefficients[None], poses=pose[None], scales=scale[None],
                                    displacements=displacement)

    def terms(self, step, coefficients, field):
        """{"data": image + landmark + coefficient prior (the registration's cost), "ncc": (V,),
        "landmark_rms_mm"} of one parameter set."""
        points = self.points(step, coefficients, field)
        subset, triangles = self.surface or (slice(None), self.model.triangles)
        thickness = mesh_thickness(points[:, subset], triangles, self.views)
        ncc = torch.stack([_ncc(self.rendered(thickness[:, v], v), image)[0] for v, image in enumerate(self.images)])
        marks = self.model.landmark_positions(points)[0]  # (L, 3)
        squared, residual, total, total_residual = points.new_zeros(()), points.new_zeros(()), 0.0, 0.0
        for view, found, w, r in zip(self.views, self.found_mm, self.landmark_weight, self.residual_weight):
            error2 = (project_centred_mm(view, marks) - found).norm(dim=-1) ** 2
            squared = squared + (error2 * torch.as_tensor(w)).sum()
            residual = residual + (error2 * torch.as_tensor(r)).sum()
            total += float(w.sum())
            total_residual += float(r.sum())
        mean_square = squared / max(total, 1e-9)
        w = self.weights
        data = (w.image_weight * (1.0 - ncc.mean()) + mean_square / w.landmark_sigma_mm ** 2
                + w.prior_weight * (coefficients ** 2).sum() / max(self.modes, 1))
        if self.neighbours:  # as in the CMA-ES cost
            data = data + self.overlap_penalty(points)[0]
        return dict(data=data, ncc=ncc, landmark_rms_mm=(residual / max(total_residual, 1e-9)).sqrt())


def refine_beyond_span(model: ShapeModel, start: RegistrationResult, target: VertebraTarget,
                       weights: Optional[RegistrationWeights] = None, settings: Optional[FreeFormSettings] = None,
                       progress: Optional[ProgressCallback] = None) -> RegistrationResult:
    """``start`` (a CMA-ES result) refined with a free-form field: a new result whose ``displacement``
    holds the field (model frame, before scale and pose), or ``start`` itself when refining does
    not lower the registration's cost at full resolution."""
    weights = weights or RegistrationWeights()
    settings = settings or FreeFormSettings()
    report = as_progress(progress)
    deformation = model_deformation(model, settings.sigma_mm, settings.amplitude_mm)
    surface = coarse_surface(model) if settings.coarse_surface else None
    problem = _FreeFormProblem(model, start, target, settings.factor, weights, deformation, surface)
    step = torch.zeros(7, dtype=torch.float64, requires_grad=True)
    coefficients = torch.as_tensor(np.asarray(start.coefficients, dtype=np.float64)).clone().requires_grad_(True)
    field = torch.zeros(deformation.n_functions, 3, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([step, coefficients, field], lr=settings.learning_rate)
    for n in range(settings.steps):
        optimiser.zero_grad()
        terms = problem.terms(step, coefficients, field)
        cost = terms["data"] + settings.free_form_weight * 0.5 * (field ** 2).sum()
        cost.backward()
        optimiser.step()
        report((n + 1) / settings.steps, f"Refining {model.name} beyond the model: cost {float(cost.detach()):.3f}")
    with torch.no_grad():
        full = _FreeFormProblem(model, start, target, 1, weights, deformation)
        before = full.terms(torch.zeros(7, dtype=torch.float64),
                            torch.as_tensor(np.asarray(start.coefficients, dtype=np.float64)), None)
        after = full.terms(step, coefficients, field)
        if float(after["data"]) >= float(before["data"]):
            return start
        rotation, translation, scale = (value.numpy().copy() for value in full.pose(step))
    displacement = deformation.displacements(field.detach()[None])[0].numpy()
    ncc = after["ncc"].numpy()
    rms = float(after["landmark_rms_mm"])
    converged = bool(ncc.min() >= weights.min_ncc and rms <= weights.max_landmark_rms_mm)
    return replace(start, rotation=rotation, translation=translation, scale=float(scale),
                   coefficients=coefficients.detach().numpy().copy(), cost=float(after["data"]), ncc=ncc,
                   landmark_rms_mm=rms, converged=converged, displacement=displacement)

