"""2D/3D registration of one vertebra's shape model to its two per-vertebra images and landmarks.

CMA-ES (``cmaes``) searches pose (rotation and translation about the vertebra's centre), scale
and the first ``modes`` shape coefficients from the initial similarity pose. Each generation's
whole population is instanced and rendered in one call (``mesh_thickness``: exact ray-mesh thickness
in both views), on a coarser surface made of a subset of the model's vertices
(``mesh_io.vertex_subset_surface``, 1500-1900 triangles: a fifth to two fifths of the models')
while searching; the final residuals are those of the full surface. The cost of an instance is

    image_weight x (1 - mean over views of the normalised cross-correlation between its thickness
    image and the vertebra's image)  [the decomposition's density is unknown; NCC ignores scale]
  + mean over views and landmarks of w (reprojection error / landmark_sigma_mm)^2, w = the
    landmark's confidence x region weight (posterior structures, whose shape the body outline
    does not pin down, count ``posterior_weight`` times a body landmark) / its expected error^2
    when the detector gives one (``VertebraTarget.uncertainties_mm``: a landmark whose heatmap
    is spread pulls less than a sharp one)
  + prior_weight x the squared Mahalanobis norm of the coefficients / modes
  + overlap_weight x (depth of its deepest vertex inside an already placed neighbour, less
    overlap_tolerance_mm, when positive)^2  [only with ``VertebraTarget.neighbours``].

Coarse images first: the images are block-averaged by each factor of ``levels`` in turn (the
views' pixels grow to match), each level restarting CMA-ES from the last level's best. A result
whose image agreement or landmark residual is poor is flagged (``converged`` False) with its
residuals, never shown as a confident fit. Core module (numpy/torch), no MRML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .cma_search import coarse_to_fine
from .gaussian_highpass import highpass
from .geometry import View, rotation_about
from .mesh_depth import mesh_thickness
from .progress import ProgressCallback
from .shape_model import ShapeModel

if TYPE_CHECKING:
    from .neighbour_clearance import Clearance

ROTATION_UNIT_DEG = 3.0  # one CMA-ES unit of each parameter
TRANSLATION_UNIT_MM = 3.0
LOG_SCALE_UNIT = 0.03


@dataclass
class RegistrationWeights:
    """The cost's weights and thresholds, and the search's units: one CMA-ES unit of rotation turns
    the bone by ``rotation_unit_deg`` (3 degrees moves a vertebra's far points ~1.5 mm; a femur
    needs ~1 degree for the same) and one of scale changes it by ``log_scale_unit``.
    ``finest_landmark_sigma_factor`` > 1 lets the landmarks lead on the coarse images and pull less
    once the images are sharp (detected landmarks have heavy-tailed errors)."""

    image_weight: float = 20.0
    landmark_sigma_mm: float = 3.0
    posterior_weight: float = 2.0
    prior_weight: float = 0.05
    overlap_weight: float = 1.0  # on (depth inside a placed neighbour beyond the tolerance, mm)^2
    overlap_tolerance_mm: float = 3.0  # twice the models' vertex spacing: shallower is mesh resolution
    finest_landmark_sigma_factor: float = 1.0  # landmark_sigma_mm x this at the finest image level
    landmark_uncertainty: bool = True  # weigh landmarks by 1 / their expected error^2 where the target gives it
    carry_search: bool = False  # finer image levels continue the coarser CMA-ES distribution (cma_search)
    min_ncc: float = 0.8  # below this in a view: not converged
    max_landmark_rms_mm: float = 4.0
    rotation_unit_deg: float = ROTATION_UNIT_DEG
    log_scale_unit: float = LOG_SCALE_UNIT


@dataclass
class VertebraTarget:
    """What one bone is registered to: per view its image (nv, nu) on the view's detector and
    its detected landmarks (L, 2) pixel (i, j) with confidences (L,) (0 = not found).

    ``highpass_mm``: compare the rendered thickness and the image after the same high-pass filter
    (each less its Gaussian blur of this sigma): a smooth background under the bone in the image
    (soft tissue) then drops out of both alike, without biasing the bone's own profile. ``masks``:
    per view, only these pixels are compared (e.g. near the bone, off its neighbours).
    ``depth_sd_mm``: hold the bone's centre within this (one s.d.) of its start along the first
    view's beam: one view cannot see depth, so the start's depth (set by a prior) is kept.
    ``backgrounds``: per view, the thickness (mm, on the view's detector) of other bones already
    placed, added to every rendered instance before it is compared: a bone that overlaps this one in
    the image (the fibula beside the tibia) is then explained rather than fitted by this one.
    ``neighbours``: bones already placed that this one must not run into
    (:class:`.neighbour_clearance.Clearance`); an instance's deepest vertex inside any of them, beyond
    ``RegistrationWeights.overlap_tolerance_mm``, is penalised. ``uncertainties_mm``: per view each
    landmark's expected error (mm per axis, (L,); ``biplanar_network.heatmap_uncertainty``); its
    weight is divided by its square."""

    views: Sequence[View]
    images: Sequence[np.ndarray]
    landmarks_ij: Sequence[np.ndarray]
    confidences: Sequence[np.ndarray]
    highpass_mm: Optional[float] = None
    masks: Optional[Sequence[np.ndarray]] = None
    depth_sd_mm: Optional[float] = None
    backgrounds: Optional[Sequence[np.ndarray]] = None
    neighbours: Optional[Sequence["Clearance"]] = None
    uncertainties_mm: Optional[Sequence[np.ndarray]] = None


@dataclass
class RegistrationResult:
    rotation: np.ndarray
    translation: np.ndarray
    scale: float
    coefficients: np.ndarray
    cost: float
    ncc: np.ndarray  # per view
    landmark_rms_mm: float
    converged: bool
    history: list = field(default_factory=list)  # best cost per generation
    displacement: Optional[np.ndarray] = None  # (P, 3) free-form field beyond the model (model frame)

    def points(self, model: ShapeModel) -> np.ndarray:
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = self.rotation, self.translation
        displacements = None if self.displacement is None else self.displacement[None]
        return model.instances(self.coefficients[None], poses=pose[None], scales=[self.scale],
                               displacements=displacements).numpy()[0]


def coarser(view: View, factor: int) -> View:
    """The same detector with pixels ``factor`` times larger (pixel centres at the block centres)."""
    nu, nv = view.size
    return View(name=view.name, source=view.source, detector_center=view.detector_center,
                detector_u=view.detector_u, detector_v=view.detector_v,
                pixel_spacing=np.asarray(view.pixel_spacing) * factor, size=(nu // factor, nv // factor))


def _centred_mm(ij: np.ndarray, view: View) -> np.ndarray:
    """Pixel coordinates (..., 2) -> mm on the detector from its centre (the same at every resolution)."""
    return (np.asarray(ij, dtype=np.float64) - (np.asarray(view.size, dtype=np.float64) - 1) / 2) * view.pixel_spacing


def block_pool(image, factor: int, reduce: str = "mean") -> torch.Tensor:
    """Means (or maxima) of ``factor`` x ``factor`` pixel blocks of (..., rows, columns), float64; the
    last rows and columns that do not fill a block are dropped (as ``coarser`` drops them)."""
    t = torch.as_tensor(np.asarray(image, dtype=np.float64))
    if factor == 1:
        return t
    rows, cols = (t.shape[-2] // factor) * factor, (t.shape[-1] // factor) * factor
    flat = t[..., :rows, :cols].reshape(-1, 1, rows, cols)
    pooled = F.avg_pool2d(flat, factor) if reduce == "mean" else F.max_pool2d(flat, factor)
    return pooled.reshape(*t.shape[:-2], rows // factor, cols // factor)


def _ncc(rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Normalised cross-correlation of (N, nv, nu) images with one (nv, nu) target -> (N,)."""
    a = rendered.flatten(1) - rendered.flatten(1).mean(dim=1, keepdim=True)
    b = (target.flatten() - target.mean())[None]
    return (a * b).sum(dim=1) / ((a * a).sum(dim=1) * (b * b).sum()).sqrt().clamp_min(1e-12)


class _Problem:
    """Parameters -> instances -> cost, for one vertebra at one image resolution."""

    def __init__(self, model: ShapeModel, rotation, translation, scale, centre, target: VertebraTarget,
                 factor: int, modes: int, weights: RegistrationWeights, surface=None, coefficients=None):
        self.model, self.modes, self.weights = model, modes, weights
        self.coefficients0 = np.zeros(modes)
        if coefficients is not None:
            given = np.asarray(coefficients, dtype=np.float64)[:modes]
            self.coefficients0[:len(given)] = given
        self.surface = surface  # (vertex subset, triangles) to render, or None for the full surface
        self.rotation0, self.translation0, self.scale0, self.centre = rotation, translation, scale, centre
        self.views = [coarser(v, factor) if factor > 1 else v for v in target.views]
        self.sigma_px = None if target.highpass_mm is None else target.highpass_mm / float(
            np.mean(self.views[0].pixel_spacing))
        self.masks = None if target.masks is None else [block_pool(np.asarray(m, dtype=np.float64), factor) > 0.5
                                                         for m in target.masks]
        self.images = [self.compared(block_pool(image, factor)[None], v)[0] for v, image in enumerate(target.images)]
        self.backgrounds = None if target.backgrounds is None else [block_pool(b, factor) for b in target.backgrounds]
        regions = np.array([1.0 if lm.region == "body" else weights.posterior_weight for lm in model.landmarks])
        # The residual that judges convergence weighs by confidence and region only, as it did before
        # the uncertainties (its threshold, max_landmark_rms_mm, is in mm of such landmarks).
        self.residual_weight = [np.asarray(c, dtype=np.float64) * regions for c in target.confidences]
        uncertain = target.uncertainties_mm is not None and weights.landmark_uncertainty
        self.landmark_weight = self.residual_weight if not uncertain else [
            w / np.asarray(u, dtype=np.float64) ** 2 for w, u in zip(self.residual_weight, target.uncertainties_mm)]
        self.landmarks_mm = [_centred_mm(ij, view) for ij, view in zip(target.landmarks_ij, target.views)]
        self.depth_sd_mm, self.beam = target.depth_sd_mm, target.views[0].normal
        self.neighbours = list(target.neighbours or [])

    def compared(self, images: torch.Tensor, view: int) -> torch.Tensor:
        """Images (N, nv, nu) of one view as they are compared: high-passed and masked if the target says so."""
        if self.sigma_px is not None:
            images = highpass(images, self.sigma_px)
        if self.masks is not None:
            images = images * self.masks[view].to(images.dtype)
        return images

    def rendered(self, thickness: torch.Tensor, view: int) -> torch.Tensor:
        """Rendered instances (N, nv, nu) of one view as they are compared: with the other bones'
        thickness added (``VertebraTarget.backgrounds``), high-passed and masked."""
        if self.backgrounds is not None:
            thickness = thickness + self.backgrounds[view].to(thickness.dtype)
        return self.compared(thickness, view)

    def overlap_penalty(self, points: torch.Tensor) -> torch.Tensor:
        """(N,) overlap_weight x (depth of each instance's deepest vertex inside a placed neighbour,
        beyond the tolerance)^2, on the searched surface; differentiable in ``points`` (N, P, 3)."""
        subset = self.surface[0] if self.surface else slice(None)
        depth = torch.stack([n.depth_inside(points[:, subset]) for n in self.neighbours]).amax(dim=0)
        return self.weights.overlap_weight * (depth - self.weights.overlap_tolerance_mm).clamp_min(0.0) ** 2

    def pose(self, x: np.ndarray):
        """(rotation, translation, scale, coefficients) of one parameter vector."""
        turn = np.asarray(x[:3]) * math.radians(self.weights.rotation_unit_deg)
        angle = float(np.linalg.norm(turn))
        delta = rotation_about(turn / angle, angle) if angle > 1e-12 else np.eye(3)
        rotation = delta @ self.rotation0
        translation = delta @ (self.translation0 - self.centre) + self.centre + np.asarray(x[3:6]) * TRANSLATION_UNIT_MM
        return (rotation, translation, self.scale0 * math.exp(x[6] * self.weights.log_scale_unit),
                self.coefficients0 + np.asarray(x[7:7 + self.modes]))

    def evaluate(self, population: np.ndarray):
        """Costs (N,), NCC (N, V) and landmark RMS in mm (N,) of N parameter vectors."""
        poses, scales, coefficients = [], [], []
        for x in population:
            rotation, translation, scale, c = self.pose(x)
            pose = np.eye(4)
            pose[:3, :3], pose[:3, 3] = rotation, translation
            poses.append(pose)
            scales.append(scale)
            coefficients.append(c)
        points = self.model.instances(np.array(coefficients), poses=np.array(poses), scales=scales)
        subset, triangles = self.surface or (slice(None), self.model.triangles)
        thickness = mesh_thickness(points[:, subset], triangles, self.views)  # (N, V, nv, nu)
        ncc = torch.stack([_ncc(self.rendered(thickness[:, v], v), image) for v, image in enumerate(self.images)],
                          dim=1).numpy()
        marks = self.model.landmark_positions(points).numpy()  # (N, L, 3)
        squared, residual = np.zeros(len(population)), np.zeros(len(population))
        total_weight = total_residual_weight = 0.0
        for view, found_mm, w, r in zip(self.views, self.landmarks_mm, self.landmark_weight, self.residual_weight):
            ij, _ = view.project(marks)
            error2 = np.nan_to_num(np.linalg.norm(_centred_mm(ij, view) - found_mm, axis=-1), nan=1e3) ** 2  # (N, L)
            squared += (error2 * w).sum(axis=1)
            residual += (error2 * r).sum(axis=1)
            total_weight += w.sum()
            total_residual_weight += r.sum()
        mean_square = squared / max(total_weight, 1e-9)
        w = self.weights
        cost = (w.image_weight * (1.0 - ncc.mean(axis=1)) + mean_square / w.landmark_sigma_mm ** 2
                + w.prior_weight * (np.array(coefficients) ** 2).sum(axis=1) / max(self.modes, 1))
        if self.depth_sd_mm is not None:  # the centre's move along the beam (the pose turns about the centre)
            cost = cost + ((population[:, 3:6] * TRANSLATION_UNIT_MM) @ self.beam / self.depth_sd_mm) ** 2
        if self.neighbours:
            cost = cost + self.overlap_penalty(points).numpy()
        return cost, ncc, np.sqrt(residual / max(total_residual_weight, 1e-9))


_COARSE = {}


def coarse_surface(model: ShapeModel, max_triangles: int = 1500):
    """The model's vertex-subset search surface, made once per model."""
    from .mesh_io import vertex_subset_surface

    key = (id(model), max_triangles)
    if key not in _COARSE:
        _COARSE[key] = (model, vertex_subset_surface(model.mean, model.triangles, max_triangles))
    return _COARSE[key][1]


def register_vertebra(model: ShapeModel, rotation, translation, scale: float, target: VertebraTarget,
                      modes: int = 6, levels: Sequence[int] = (4, 2), generations: Sequence[int] = (40, 25),
                      population: Optional[int] = None, seed: int = 0,
                      weights: Optional[RegistrationWeights] = None,
                      progress: Optional[ProgressCallback] = None, coefficients=None,
                      step: float = 1.0) -> RegistrationResult:
    """Register ``model`` from the similarity (rotation, translation, scale) and shape ``coefficients``
    (default: the mean) to ``target``; ``step``: CMA-ES's first step in units (smaller for a start
    that is already close)."""
    weights = weights or RegistrationWeights()
    modes = min(modes, model.n_modes)
    dimension = 7 + modes
    rotation, translation = np.asarray(rotation, dtype=np.float64), np.asarray(translation, dtype=np.float64)
    centre = scale * model.mean.mean(axis=0) @ rotation.T + translation
    bounds = np.array([[-10.0, 10.0]] * 7 + [[-3.0, 3.0]] * modes)
    surface = coarse_surface(model)

    def costs_at(factor):
        finest = len(levels) > 1 and factor == levels[-1]
        level_weights = replace(weights, landmark_sigma_mm=weights.landmark_sigma_mm
                                * weights.finest_landmark_sigma_factor) if finest else weights
        problem = _Problem(model, rotation, translation, scale, centre, target, factor, modes, level_weights, surface,
                           coefficients)
        return lambda candidates: problem.evaluate(candidates)[0]

    best_x, history = coarse_to_fine(costs_at, dimension, levels, generations, bounds, seed=seed,
                                     population=population, progress=progress,
                                     describe=f"Registering {model.name}: cost {{:.3f}}".format, step=step,
                                     carry=weights.carry_search)
    full = _Problem(model, rotation, translation, scale, centre, target, 1, modes, weights, coefficients=coefficients)
    cost, ncc, rms = full.evaluate(best_x[None])
    r, t, s, c = full.pose(best_x)
    converged = bool(ncc[0].min() >= weights.min_ncc and rms[0] <= weights.max_landmark_rms_mm)
    return RegistrationResult(r, t, s, np.asarray(c, dtype=np.float64), float(cost[0]), ncc[0], float(rms[0]),
                              converged, history)
