"""Femur and tibia from two calibrated radiographs (or one) and their feature points: the leg's whole chain.

Feature points come per view as ``{"bone": "femur", "name": "femoral head centre", "i": column,
"j": row, "confidence": 1.0}`` (placed by hand in Slicer, or by a detector). For each bone with
enough points in both views:

1. the model instance fitted to the triangulated points (:func:`.leg_reconstruction.initial_pose`);
2. what to compare in each view: the radiograph (bone bright) and the rendered bone thickness,
   both high-passed alike (``HIGHPASS_MM``: the smooth soft tissue under the bone drops out of
   the radiograph without biasing the bone's profile; the refinement beyond the span narrower,
   ``REFINE_HIGHPASS_MM``), on the pixels within ``BAND_MM`` of the
   initial instance's silhouette and off the other bones' silhouettes (the neighbour at the knee);
3. with a fibula model beside the tibia's (``models["fibula"]``), the fibula registered first
   (:mod:`.leg_fibula`) and rendered beside every tibia instance, so the tibia fits its own outline
   rather than the fibula's ridge;
4. the registration to those images and points (:func:`.leg_reconstruction.reconstruct_leg_bone`).

A left leg uses the right-bone models mirrored. Core module (numpy/torch/SimpleITK), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from .errors import InputError
from .geometry import View
from .leg_fibula import FibulaFit, fit_fibula
from .leg_reconstruction import LEG_FREE_FORM, LegBoneReconstruction, initial_pose, reconstruct_leg_bone
from .progress import ProgressCallback, as_progress
from .shape_model import ShapeModel
from .single_view_pose import depth_note

HIGHPASS_MM = 8.0
# The refinement beyond the span compares the images high-passed narrower: the registration needs
# the wider one's reach from a start 3-7 mm off (detected points), the refinement, near the bone,
# keeps the fibula's ridge apart from the tibia's edge (benchmarks/leg_reconstruction.py --images
# radiograph on its earlier 1050 mm frame, full-resolution refinement, true | detected points:
# 8 mm throughout: femur 0.76 | 0.84, tibia 0.96 | 1.06 mm; 6 mm throughout: 0.78 | 0.87,
# 0.93 | 1.20 (two detected tibias lost); 8 then 6: 0.75 | 0.84, 0.92 | 1.02).
REFINE_HIGHPASS_MM = 6.0
BAND_MM = 12.0
BONES = ("femur", "tibia")
SURFACES = (*BONES, "fibula")  # what a reconstruction may give, in colour order


@dataclass
class LegReconstruction:
    bones: Dict[str, LegBoneReconstruction]
    side: str
    messages: List[str] = field(default_factory=list)
    fibula: Optional[FibulaFit] = None  # fitted beside the tibia (used as its background when ``used``)

    def surfaces(self) -> Dict[str, tuple]:
        """{bone: (points, triangles)} of the reconstructed bones, and the fibula when it was found."""
        found = {bone: (result.points, result.triangles) for bone, result in self.bones.items()}
        if self.fibula is not None and self.fibula.used:
            found["fibula"] = (self.fibula.points, self.fibula.triangles)
        return found


def mirrored_model(model: ShapeModel) -> ShapeModel:
    """The model of the other side's bone: x -> -x for the mean and modes, triangles reversed."""
    flip = np.array([-1.0, 1.0, 1.0])
    info = dict(model.info, side="left" if model.info.get("side", "right") == "right" else "right")
    return ShapeModel(model.name, model.mean * flip, model.triangles[:, ::-1].copy(), model.modes * flip,
                      model.variances, list(model.landmarks), info)


def points_for(model: ShapeModel, bone: str, view_points: Sequence[Mapping]) -> tuple:
    """(pixels (L, 2), confidences (L,)) in the model's landmark order from one view's point list
    (missing points get confidence 0)."""
    names = model.landmark_names
    pixels, confidences = np.zeros((len(names), 2)), np.zeros(len(names))
    for point in view_points:
        if point.get("bone") != bone:
            continue
        if point.get("name") not in names:
            raise InputError(f"'{point.get('name')}' is not a {bone} feature point (one of: {', '.join(names)}).")
        k = names.index(point["name"])
        pixels[k] = float(point["i"]), float(point["j"])
        confidences[k] = float(point.get("confidence", 1.0))
    return pixels, confidences


def comparison_mask(view: View, silhouette: np.ndarray, others: np.ndarray) -> np.ndarray:
    """The pixels a bone is compared on: within ``BAND_MM`` of its silhouette, off the other bones'."""
    import SimpleITK as sitk

    distance = float(np.mean(view.pixel_spacing)) * sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        sitk.GetImageFromArray(silhouette.astype(np.uint8)), insideIsPositive=False, squaredDistance=False,
        useImageSpacing=False))
    return (distance <= BAND_MM) & ~(others & ~silhouette)


def _fibula_beside_tibia(model: ShapeModel, tibia, tibia_masks, others, views, radiographs, report) -> FibulaFit:
    """The fibula fitted beside a quick first fit of the tibia (coarse images only, no refinement):
    the fibula model lies in the tibia's frame, so the tibia's pose places it, and a pose from
    detected points alone (often 3-7 mm off) leaves it too far to find its own outline."""
    from .mesh_depth import mesh_depth

    tibia_model, pixels, confidences = tibia

    def stay(fraction, message):  # progress messages (and Cancel) without moving the bar
        report(0.0, f"Fibula: {message}")

    rough = reconstruct_leg_bone(tibia_model, views, radiographs, pixels, confidences, levels=(4,), generations=(25,),
                                 free_form=None, highpass_mm=HIGHPASS_MM, masks=tibia_masks, progress=stay)
    placed = rough.registration
    tibia_thickness = mesh_depth(rough.points, tibia_model.triangles, views).thickness[0].clamp_min(0).numpy()
    outline = mesh_depth(placed.scale * model.mean @ placed.rotation.T + placed.translation, model.triangles,
                         views).hit[0].numpy()
    masks = [comparison_mask(v, s, o) for v, s, o in zip(views, outline, others)]
    return fit_fibula(model, placed, views, radiographs, tibia_thickness, masks, HIGHPASS_MM, tibia_masks,
                      progress=stay)


def reconstruct_leg(models: Mapping[str, ShapeModel], views: Sequence[View], radiographs: Sequence[np.ndarray],
                    points: Sequence[Sequence[Mapping]], side: str = "right", bones: Sequence[str] = BONES,
                    free_form=LEG_FREE_FORM, progress: Optional[ProgressCallback] = None) -> LegReconstruction:
    """Every bone of ``bones`` that has enough feature points (in both views, or in the one view
    given: one-view mode, where depth along the beam rests on the geometry's object plane,
    :mod:`.single_view_pose`); the rest is reported, not guessed. A ``models["fibula"]`` (in the
    tibia's frame) is fitted beside the tibia first and explains the fibula's share of its images."""
    from .mesh_depth import mesh_depth

    report = as_progress(progress)
    if side not in ("right", "left"):
        raise InputError(f"side must be 'right' or 'left', not '{side}'.")
    if not (len(views) == len(radiographs) == len(points) and len(views) in (1, 2)):
        raise InputError("The leg needs one or two views (AP and lateral), each with its radiograph and feature points.")
    for view, image in zip(views, radiographs):
        if np.asarray(image).shape != view.shape:
            raise InputError(f"View {view.name}: the radiograph is {np.asarray(image).shape[::-1]} pixels "
                             f"(columns, rows) but the geometry says {tuple(view.size)}.")
    found: Dict[str, LegBoneReconstruction] = {}
    messages: List[str] = [depth_note(views[0])] if len(views) == 1 else []

    def on_side(model):
        return model if side == model.info.get("side", "right") else mirrored_model(model)

    starts, silhouettes = {}, {}
    for bone in bones:
        if bone not in models:
            raise InputError(f"No shape model for the {bone}.")
        model = on_side(models[bone])
        pixels, confidences = zip(*(points_for(model, bone, p) for p in points))
        try:
            start, coefficients = initial_pose(model, views, pixels, confidences)
        except InputError as exc:
            messages.append(f"{bone}: not reconstructed: {exc}")
            continue
        instance = start.apply(model.instances(coefficients[None]).numpy()[0])
        starts[bone] = (model, pixels, confidences)
        silhouettes[bone] = mesh_depth(instance, model.triangles, views).hit[0].numpy()  # (V, nv, nu)

    def others_than(bone):
        others = np.zeros_like(next(iter(silhouettes.values())))
        for other in silhouettes:
            if other != bone:
                others |= silhouettes[other]
        return others

    def masks_of(bone):
        return [comparison_mask(v, s, o) for v, s, o in zip(views, silhouettes[bone], others_than(bone))]

    backgrounds: Dict[str, list] = {}
    fibula = None
    if "tibia" in starts and models.get("fibula") is not None:
        fibula = _fibula_beside_tibia(on_side(models["fibula"]), starts["tibia"], masks_of("tibia"),
                                      others_than("tibia"), views, radiographs, report)
        messages.append(fibula.note())
        if fibula.used:
            backgrounds["tibia"] = list(fibula.thickness)
    for n, (bone, (model, pixels, confidences)) in enumerate(starts.items()):
        masks = masks_of(bone)

        def sub(fraction, message, n=n):
            report((n + fraction) / len(starts), message)

        found[bone] = reconstruct_leg_bone(model, views, radiographs, pixels, confidences, free_form=free_form,
                                           progress=sub, highpass_mm=HIGHPASS_MM, masks=masks,
                                           refine_highpass_mm=REFINE_HIGHPASS_MM,
                                           backgrounds=backgrounds.get(bone))
        messages.extend(found[bone].messages)
    if not found:
        raise InputError("No bone could be reconstructed: " + " ".join(messages))
    report(1.0, "Done")
    return LegReconstruction(found, side, messages, fibula)
