"""Training cases for the leg feature detector: simulated AP + lateral long-leg radiographs with the
femur's and tibia's feature points.

Each case: a femur and a tibia drawn from the shape models (coefficients ~ N(0, 1) on every mode,
so the shapes are new people within the models' span), the tibia hinged below the femur (knee
flexion 0-15 degrees, varus/valgus +-4 degrees, the tibia turned about its long axis +-8 degrees
and shifted +-3 mm sideways and front to back, joint gap 20-25 mm), a left leg for half the cases
(the mirrored models), the leg turned about its long axis (+-12 degrees) and tilted (+-3 degrees),
with a real fibula beside the tibia when fibulas are given (``fibulas_from_files``),
inside a soft-tissue envelope 25-50 mm thick (:mod:`.limb_radiograph`: exact line integrals of
meshes), seen by an AP and a lateral view of a long-leg rig (source-detector 1100-1300 mm,
source-isocentre 900-1000 mm) at the detector's ``PIXEL_MM`` pixels, ``SIZE`` columns x rows.
Stored per case: ``image`` (2, rows, columns) line integrals, ``points`` (2, K, 2) pixels (i, j) of
the K detector points (the femur's then the tibia's feature points, the models' order, then the
extremes of the boxes and ellipses of :mod:`.leg_outlines`) and ``visible`` (2, K) (inside the
image). Core module (numpy/torch), no MRML.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from .errors import InputError
from .geometry import View, ap_view, rotation_about
from .progress import ProgressCallback, as_progress
from .shape_model import ShapeModel

PIXEL_MM = 3.0
SIZE = (96, 384)  # columns, rows: 288 x 1152 mm at the detector
KIND = "leg-biplanar"


def point_names(models: Mapping[str, ShapeModel]) -> list:
    """["femur: femoral head centre", ...]: the detector's points, femur's then tibia's feature
    points, then the outlines' extremes (:func:`.leg_outlines.outline_names`)."""
    from .leg_outlines import outline_names

    return [f"{bone}: {name}" for bone in ("femur", "tibia") for name in models[bone].landmark_names] + outline_names()


def fibulas_from_files(paths) -> list:
    """[(points, triangles)] of the fibula of each file that holds a tibia and its fibula (the second
    largest piece), in that tibia's anatomical frame as a right leg's (:mod:`.leg_surfaces`): real fibulas to stand beside the drawn tibias, so that the detector learns to
    tell the lateral malleolus from the medial one."""
    from .leg_landmarks import tibia_landmarks
    from .leg_surfaces import mirrored
    from .mesh_io import read_surface, surface_pieces

    found = []
    for path in paths:
        pieces = sorted(surface_pieces(read_surface(path)), key=lambda piece: len(piece[1]))
        if len(pieces) < 2 or np.ptp(pieces[-2][0], axis=0).max() < 200.0:
            raise InputError(f"{path}: no fibula beside the tibia (a second piece at least 200 mm long).")
        frame = tibia_landmarks(*pieces[-1])[1]
        points, triangles = frame.to_frame(pieces[-2][0]), pieces[-2][1]
        found.append(mirrored(points, triangles) if frame.side == "left" else (points, triangles))
    return found


def sample_leg(models: Mapping[str, ShapeModel], rng: np.random.Generator, fibulas: Sequence = ()
               ) -> Dict[str, np.ndarray]:
    """{bone: vertices} of a random right leg, femur's knee centre at the origin, z up (with a
    fibula of ``fibulas`` beside the tibia, moved with it, when any are given)."""
    femur, tibia = models["femur"], models["tibia"]
    legs = {}
    for name, model in (("femur", femur), ("tibia", tibia)):
        legs[name] = model.instances(rng.standard_normal((1, model.n_modes))).numpy()[0]
    flexion = np.radians(rng.uniform(0.0, 15.0))
    varus = np.radians(rng.uniform(-4.0, 4.0))
    # Knees also differ in how the tibia sits under the femur: turned about its own axis, shifted.
    twist = np.radians(rng.uniform(-8.0, 8.0))
    hinge = (rotation_about((0.0, 1.0, 0.0), varus) @ rotation_about((1.0, 0.0, 0.0), -flexion)
             @ rotation_about((0.0, 0.0, 1.0), twist))
    gap = np.array([*rng.uniform(-3.0, 3.0, 2), -rng.uniform(20.0, 25.0)])
    legs["tibia"] = legs["tibia"] @ hinge.T + gap
    if len(fibulas):
        legs["fibula"] = fibulas[int(rng.integers(len(fibulas)))][0] @ hinge.T + gap
    return legs


def sample_views(rng: np.random.Generator, centre) -> list:
    sid = rng.uniform(1100.0, 1300.0)
    sod = rng.uniform(900.0, 1000.0)
    common = dict(source_to_detector=sid, source_to_isocenter=sod, size=SIZE, pixel_spacing=(PIXEL_MM, PIXEL_MM),
                  isocenter=np.asarray(centre) + rng.uniform(-15.0, 15.0, 3))
    return [ap_view(name="AP", **common), ap_view(rotation_deg=-90.0, name="LAT", **common)]


def render_case(models: Mapping[str, ShapeModel], rng: np.random.Generator, fibulas: Sequence = ()):
    """(line integrals (2, rows, columns), points (2, K, 2), visible (2, K), views, the leg's side)."""
    from .leg_pipeline import mirrored_model
    from .limb_radiograph import Bone, render_limb, soft_tissue_envelope

    side = "left" if rng.random() < 0.5 else "right"
    used = {b: (m if side == "right" else mirrored_model(m)) for b, m in models.items()}
    chosen = int(rng.integers(len(fibulas))) if len(fibulas) else 0
    fibula = [] if not len(fibulas) else [fibulas[chosen] if side == "right" else _mirrored(*fibulas[chosen])]
    legs = sample_leg(used, rng, fibula)  # varus and valgus are drawn alike, so one hinge serves either side
    tilt_axis = rng.normal(size=3)
    turn = rotation_about((0.0, 0.0, 1.0), np.radians(rng.uniform(-12.0, 12.0))) @ rotation_about(
        tilt_axis / np.linalg.norm(tilt_axis), np.radians(rng.uniform(-3.0, 3.0)))
    legs = {b: p @ turn.T for b, p in legs.items()}
    triangles = {b: used[b].triangles for b in used}
    if fibula:
        triangles["fibula"] = fibula[0][1]
    bones = [Bone(b, p, triangles[b]) for b, p in legs.items()]
    centre = np.concatenate([b.points for b in bones]).mean(axis=0)
    views = sample_views(rng, centre)
    envelope = soft_tissue_envelope(bones, thickness_mm=rng.uniform(25.0, 50.0), voxel_mm=4.0)
    image = render_limb(bones, envelope, views).attenuation.numpy().astype(np.float32)
    from .leg_outlines import outline_pixels

    marks = np.concatenate([[lm.position(legs[b]) for lm in used[b].landmarks] for b in ("femur", "tibia")])
    points = np.stack([np.concatenate([view.project(marks)[0], outline_pixels(used, legs, view)])
                       for view in views]).astype(np.float32)
    visible = np.stack([view.contains(p) for view, p in zip(views, points)])
    return image, points, visible, views, side


def _mirrored(points, triangles):
    from .leg_surfaces import mirrored

    return mirrored(points, triangles)


def generate_leg_dataset(out_dir, models: Mapping[str, ShapeModel], cases: int, seed: int = 0,
                         fractions: Sequence[float] = (0.8, 0.1, 0.1), fibulas: Sequence = (),
                         fibula_sources: Sequence[str] = (), progress: Optional[ProgressCallback] = None) -> dict:
    """Write ``cases`` cases (each its own subject: a new leg) and the manifest; resumable. ``fibulas``
    (:func:`fibulas_from_files`) stand beside the tibias, one drawn per case."""
    from .dataset_store import DatasetWriter

    if cases < 1:
        raise InputError("The dataset needs at least one case.")
    for bone in ("femur", "tibia"):
        if bone not in models:
            raise InputError(f"No shape model for the {bone}.")
    report = as_progress(progress)
    writer = DatasetWriter(out_dir, KIND, dict(cases=cases, seed=seed, pixel_mm=PIXEL_MM, size=list(SIZE),
                                               points=point_names(models), fibulas=list(fibula_sources)))
    for n in range(cases):
        case_id = f"leg-{n:05d}"
        if writer.has(case_id):
            continue
        rng = np.random.default_rng([seed, n])
        image, points, visible, views, side = render_case(models, rng, fibulas)
        writer.add(case_id, case_id, dict(image=image, points=points, visible=visible),
                   dict(side=side, views=[v.to_dict() for v in views]))
        report((n + 1) / cases, f"Leg case {n + 1} of {cases}")
    return writer.finish(fractions, seed)


def detector_input(radiograph: np.ndarray, view: View):
    """A radiograph resampled to the detector's pixels: (image (rows, columns) of ``SIZE`` at
    ``PIXEL_MM``, centred on the radiograph's centre, zero outside it; (scale, offset) such that
    radiograph pixel = scale * detector pixel + offset, per axis (i, j))."""
    import torch
    import torch.nn.functional as F

    image = torch.as_tensor(np.asarray(radiograph, dtype=np.float32))
    spacing = np.asarray(view.pixel_spacing, dtype=np.float64)
    scale = PIXEL_MM / spacing  # radiograph pixels per detector pixel, (i, j)
    centre_in = (np.array(image.shape[::-1], dtype=np.float64) - 1) / 2
    centre_out = (np.array(SIZE, dtype=np.float64) - 1) / 2
    offset = centre_in - scale * centre_out
    cols = torch.as_tensor(scale[0] * np.arange(SIZE[0]) + offset[0])
    rows = torch.as_tensor(scale[1] * np.arange(SIZE[1]) + offset[1])
    gx = (2 * cols + 1) / image.shape[1] - 1  # align_corners=False pixel centres
    gy = (2 * rows + 1) / image.shape[0] - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None].float()
    if scale.min() > 1.5:  # shrinking: average first so the sampling does not alias (normalised
        k = int(scale.min())  # coordinates are unchanged by the pooling, up to the dropped border)
        image = F.avg_pool2d(image[None, None], k)[0, 0]
    resampled = F.grid_sample(image[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return resampled[0, 0].numpy(), (scale, offset)
