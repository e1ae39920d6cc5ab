"""A femur or tibia from one or two radiographs: feature points place the shape model, CMA-ES fits it.

1. **Initial instance**: the detected feature points (:mod:`.leg_landmarks` names) seen in both
   views are triangulated; the model's points are fitted to them by a robust similarity
   (:mod:`.spine_initialisation`) alternated with a least-squares fit of the shape coefficients
   (with a prior); too few points, or a scale no femur/tibia has, is refused.
2. **Registration**: the same landmark-weighted CMA-ES over pose, scale and shape coefficients as
   the vertebrae (:func:`.vertebra_registration.register_vertebra`): image term = normalised
   cross-correlation between the instance's rendered thickness and the bone's image in each view
   (its own image: the bone's line integral, or its silhouette), plus the feature points'
   reprojection error and the shape prior. Optionally refined beyond the model's span
   (:mod:`.free_form_registration`).
3. **Measurements** of the result (:mod:`.leg_measurements`).

Core module (numpy/torch), no MRML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import InputError
from .free_form_registration import FreeFormSettings, refine_beyond_span
from .geometry import View
from .leg_landmarks import fit_sphere
from .leg_measurements import femur_measurements, tibia_measurements
from .progress import ProgressCallback, as_progress
from .single_view_pose import single_view_pose
from .shape_model import Landmark, ShapeModel
from .spine_initialisation import SimilarityFit, robust_similarity, triangulate_landmarks
from .vertebra_registration import (TRANSLATION_UNIT_MM, RegistrationResult, RegistrationWeights, VertebraTarget,
                                   register_vertebra)

MIN_POINTS = 4
SCALE_RANGE = (0.75, 1.3)
MAX_SINGLE_VIEW_RMS_MM = 8.0
# Convergence: the points' residual a long bone may keep (the bundled detector's median error is
# 4-5 mm at the detector, spread over 400 mm of bone; a vertebra's check allows 4 mm).
MAX_POINTS_RMS_MM = 8.0
OUTLIER_MIN_MM = 10.0  # at the detector: a detection this far from the robust fit of the others is ignored
# The points' error the landmark term expects (one s.d. at the detector): a detector's on a long bone
# (the bundled one's median is 4-5 mm) rather than a vertebra's 3 mm, so the images, not the points,
# settle the shape. benchmarks/leg_reconstruction.py --images radiograph --points detector: femur
# 1.11 -> 0.88 mm, tibia 1.45 -> 1.25 mm; with the true points 0.84 -> 0.80, 1.13 -> 1.13; one view unchanged.
LEG_POINT_SIGMA_MM = 8.0
ONE_VIEW_DEPTH_SD_MM = 3.0  # one view: the registration keeps the start's depth (set by its prior) within this
# Refinement beyond the span, sized for long bones (leave-one-person-out on the real femurs, oracle
# images: 8 mm / 1 mm fields 1.55 mm, 15 / 2: 1.14, 20 / 3: 1.09; benchmarks/leg_reconstruction.py),
# on the images at full resolution: a long bone's outline is 1-2 pixels wide where the free-form
# field has to move it, and block-averaged pixels blur it away (--images radiograph on its earlier
# 1050 mm frame, 6 mm high-pass, seeds 0 | 1: femur 0.78 | 0.79, tibia 0.93 | 0.92 mm; at half
# resolution 0.84 | 0.82, 0.96 | 0.97; --images oracle: 0.70, 0.69; at half resolution 0.72, 0.71).
LEG_FREE_FORM = FreeFormSettings(steps=60, sigma_mm=20.0, amplitude_mm=3.0, factor=1)


@dataclass
class LegBoneReconstruction:
    bone: str
    initial: SimilarityFit
    initial_coefficients: np.ndarray
    registration: RegistrationResult
    points: np.ndarray  # (P, 3) world mm
    triangles: np.ndarray
    landmarks: Dict[str, np.ndarray]  # world mm
    measurements: Dict[str, float]
    messages: List[str] = field(default_factory=list)


def bone_of(model: ShapeModel) -> str:
    names = set(model.landmark_names)
    if "femoral head centre" in names:
        return "femur"
    if "tibial knee centre" in names:
        return "tibia"
    raise InputError(f"Shape model '{model.name}' is not a femur or tibia model (its landmarks are not the leg's).")


def initial_pose(model: ShapeModel, views: Sequence[View], landmarks_ij: Sequence[np.ndarray],
                 confidences: Sequence[np.ndarray], min_confidence: float = 0.2, modes: int = 6,
                 noise_mm: float = 2.0, rounds: int = 8, scaling: bool = False):
    """(similarity, shape coefficients) of the model instance whose feature points best match the
    detections. Two views: the triangulated points; a robust similarity of the model's points onto
    them, alternated with the coefficients' least squares (a Gaussian prior of one s.d. against
    ``noise_mm`` per point, so few or noisy points keep it near the mean). Rigid by default: the
    models are built without scaling, so their first mode is size, and a free scale beside it only
    slows the alternation down. A long bone's few points pin its shape well: its length, neck and
    condyles are where the points are. One view: :func:`.single_view_pose.single_view_pose` (the
    points' rays, with a prior on the bone's depth)."""
    if not 1 <= len(views) <= 2:
        raise InputError("The initial pose from feature points needs one or two views.")
    modes = min(modes, model.n_modes)
    basis = np.array([[lm.position(mode) for lm in model.landmarks]
                      for mode in model.modes[:modes] * np.sqrt(model.variances[:modes])[:, None, None]])
    all_mean_points = np.array([lm.position(model.mean) for lm in model.landmarks])
    if len(views) == 1:
        weights = np.where(np.asarray(confidences[0]) >= min_confidence, 1.0, 0.0)
        try:
            fit = single_view_pose(all_mean_points, basis, views[0], np.asarray(landmarks_ij[0]), weights,
                                   noise_mm=noise_mm, anchor=model.mean.mean(axis=0))
        except InputError as exc:
            raise InputError(f"{model.name}: {exc}") from None
        if fit.reprojection_rms_mm > MAX_SINGLE_VIEW_RMS_MM or np.abs(fit.coefficients).max() > 4.0:
            raise InputError(f"{model.name}: no instance of the model matches the feature points in view "
                             f"{views[0].name} (reprojection {fit.reprojection_rms_mm:.1f} mm RMS, shape "
                             f"{np.abs(fit.coefficients).max():.1f} s.d. off the mean): wrong anatomy or wrong geometry?")
        return fit.pose, fit.coefficients
    triangulated = triangulate_landmarks(views, landmarks_ij, confidences, min_confidence=min_confidence)
    used = triangulated.used
    if used.sum() < MIN_POINTS:
        raise InputError(f"{model.name}: only {int(used.sum())} feature points were found in both views "
                         f"(at least {MIN_POINTS} are needed).")
    mean_points, basis = all_mean_points[used], basis[:, used]
    found = triangulated.points[used]
    size = robust_similarity(mean_points, found).scale
    if not SCALE_RANGE[0] <= size <= SCALE_RANGE[1]:
        raise InputError(f"{model.name}: the feature points need the model scaled by {size:.2f}: they do not "
                         "look like this bone (wrong anatomy or wrong geometry?).")
    coefficients = np.zeros(modes)
    for _ in range(rounds):
        fit = robust_similarity(mean_points + np.tensordot(coefficients, basis, axes=1), found, scaling=scaling)
        in_model = (found - fit.translation) @ fit.rotation / fit.scale
        a = basis.reshape(modes, -1).T
        prior = (noise_mm / fit.scale) ** 2
        coefficients = np.linalg.solve(a.T @ a + prior * np.eye(modes), a.T @ (in_model - mean_points).ravel())
    return fit, coefficients


def without_outliers(model: ShapeModel, views: Sequence[View], landmarks_ij: Sequence[np.ndarray],
                     confidences: Sequence[np.ndarray], initial: SimilarityFit, coefficients: np.ndarray,
                     min_mm: float = OUTLIER_MIN_MM):
    """(confidences with the outlying points at 0, their names): a point is an outlier in a view when
    the instance fitted (robustly) to all the points projects it more than max(``min_mm``, 3 x the
    median) away at the detector: a detection on the wrong structure, which would otherwise pull
    the registration and fail its convergence check."""
    instance = initial.apply(model.instances(np.asarray(coefficients)[None]).numpy()[0])
    marks = np.array([lm.position(instance) for lm in model.landmarks])
    cleaned, ignored = [], []
    for view, found, confidence in zip(views, landmarks_ij, confidences):
        confidence = np.asarray(confidence, dtype=np.float64).copy()
        error = np.linalg.norm((view.project(marks)[0] - np.asarray(found, np.float64)) * view.pixel_spacing, axis=1)
        seen = confidence > 0
        if seen.any():
            far = seen & (np.nan_to_num(error, nan=np.inf) > max(min_mm, 3.0 * float(np.median(error[seen]))))
            ignored += [f"{view.name} {model.landmarks[k].name} ({error[k]:.0f} mm)" for k in np.nonzero(far)[0]]
            confidence[far] = 0.0
        cleaned.append(confidence)
    return cleaned, ignored


def leg_weights(model: ShapeModel, **settings) -> RegistrationWeights:
    """The registration's settings with search units sized to the bone: one rotation or scale unit
    moves a point at the mean's RMS distance from its centre by half a translation unit (as 3
    degrees does on a vertebra; on a femur that is under a degree); the points' expected error
    ``LEG_POINT_SIGMA_MM`` unless given."""
    settings.setdefault("landmark_sigma_mm", LEG_POINT_SIGMA_MM)
    reach = float(np.sqrt(((model.mean - model.mean.mean(axis=0)) ** 2).sum(axis=1).mean()))
    unit = 0.5 * TRANSLATION_UNIT_MM / reach
    return RegistrationWeights(rotation_unit_deg=math.degrees(unit), log_scale_unit=unit, **settings)


def measure(bone: str, landmarks: Sequence[Landmark], features: Sequence[dict], points: np.ndarray) -> Dict[str, float]:
    """The bone's measurements from its landmarks and spheres on the surface ``points``."""
    positions = {lm.name: lm.position(points) for lm in landmarks}
    if bone == "femur":
        head = next((f for f in features if f["name"] == "femoral head"), None)
        radius = fit_sphere(points[head["vertices"]])[1] if head else None
        return femur_measurements(positions, radius)
    return tibia_measurements(positions)


def reconstruct_leg_bone(model: ShapeModel, views: Sequence[View], images: Sequence[np.ndarray],
                         landmarks_ij: Sequence[np.ndarray], confidences: Sequence[np.ndarray],
                         modes: int = 6, levels: Sequence[int] = (4, 2), generations: Sequence[int] = (40, 25),
                         free_form: Optional[FreeFormSettings] = LEG_FREE_FORM, weights: Optional[RegistrationWeights] = None,
                         seed: int = 0, step: float = 0.3, highpass_mm: Optional[float] = None, masks=None,
                         backgrounds=None, refine_highpass_mm: Optional[float] = None,
                         progress: Optional[ProgressCallback] = None) -> LegBoneReconstruction:
    """One bone from its image in each view and its feature points there ((L, 2) pixels (i, j) in the
    model's landmark order, confidences (L,), 0 = not found; one view or two). ``free_form``: refine
    a converged two-view fit beyond the model's span with these settings (None: no refinement). ``step``: CMA-ES's first step
    (units of the search; the instance fitted to the points is already close). ``highpass_mm``,
    ``masks``: compare the images high-passed and on these pixels; ``backgrounds``: other bones'
    thickness per view, added to the rendered bone (:class:`.vertebra_registration.VertebraTarget`);
    ``refine_highpass_mm``: the refinement beyond the span compares them high-passed at this
    sigma instead (None: as registered)."""
    bone = bone_of(model)
    report = as_progress(progress)
    if not (len(views) == len(images) == len(landmarks_ij) == len(confidences)):
        raise InputError("Give one image, one set of feature points and confidences per view.")
    for view, image in zip(views, images):
        if np.asarray(image).shape != view.shape:
            raise InputError(f"View {view.name}: the image is {np.asarray(image).shape[::-1]} pixels (columns, rows) "
                             f"but the geometry says {tuple(view.size)}.")
    modes = min(modes, model.n_modes)
    initial, start = initial_pose(model, views, landmarks_ij, confidences, modes=modes)
    confidences, ignored = without_outliers(model, views, landmarks_ij, confidences, initial, start)
    target = VertebraTarget(views, [np.asarray(i, dtype=np.float64) for i in images],
                            [np.asarray(p, dtype=np.float64) for p in landmarks_ij], confidences, highpass_mm, masks,
                            depth_sd_mm=ONE_VIEW_DEPTH_SD_MM if len(views) == 1 else None, backgrounds=backgrounds)
    weights = weights or leg_weights(model, min_ncc=0.5 if highpass_mm else 0.8, max_landmark_rms_mm=MAX_POINTS_RMS_MM)

    def stage(start, span):
        return lambda fraction, message: report(start + span * fraction, message)

    result = register_vertebra(model, initial.rotation, initial.translation, initial.scale, target, modes=modes,
                               levels=levels, generations=generations, seed=seed, weights=weights,
                               progress=stage(0.0, 0.8 if free_form else 1.0), coefficients=start, step=step)
    # Beyond the span only where two views agree: from one, a field moves the surface along the
    # beam unseen (one-view femurs of benchmarks/leg_reconstruction.py got worse with it).
    if free_form is not None and free_form.steps > 0 and result.converged and len(views) > 1:
        refined = target if refine_highpass_mm is None else replace(target, highpass_mm=refine_highpass_mm)
        result = refine_beyond_span(model, result, refined, weights, free_form, progress=stage(0.8, 0.2))
    points = result.points(model)
    messages = [f"{model.name}: feature points ignored (too far from where the others put them): "
                + ", ".join(ignored)] if ignored else []
    messages += [] if result.converged else [
        f"{model.name}: the fit did not converge (image agreement {', '.join(f'{v:.2f}' for v in result.ncc)}, "
        f"feature points {result.landmark_rms_mm:.1f} mm RMS): do not trust this surface."]
    report(1.0, f"{model.name}: done")
    return LegBoneReconstruction(bone, initial, start, result, points, model.triangles,
                                 {lm.name: lm.position(points) for lm in model.landmarks},
                                 measure(bone, model.landmarks, model.info.get("features", []), points), messages)
