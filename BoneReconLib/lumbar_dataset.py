"""Generate biplanar lumbar training cases (AP + lateral) into a dataset folder.

Each case: fresh L1-L5 shapes drawn from the shape models (every mode's coefficient standard
normal, clipped to +-3; for L1-L4 the best fitting of ``SHAPE_CANDIDATES`` draws on the
vertebra below, see :mod:`.spine_alignment`), stacked in a random alignment (:mod:`.spine_alignment`), put in place
of a background CT's own lumbar spine (L5-L1 axis onto the CT's, front to front, shifted by up
to 3 mm and turned by up to 3 deg), rendered in a biplanar rig drawn at random (AP and lateral
beams 90 deg apart +- 3 deg as when the patient turns between exposures, the patient turned
about the long axis +-5 deg and tilted +-3 deg, source distances and magnification of
conventional and slot-scanning systems, field of view 1.2-1.6x the spine), with bone density
and a realism chain drawn for each view (:mod:`.radiograph_realism`).

Stored per case (:mod:`.dataset_store`), V = 2 views (AP, LAT), 5 levels, L landmarks:
``image`` (V, nv, nu) radiographs in [0, 1]; ``attenuation`` (V, nv, nu) line integrals;
``decomposition`` (5, V, nv, nu) float16 per-vertebra line integrals; ``landmarks_ij``
(V, 5, L, 2) pixel (column i, row j); ``landmarks_depth`` (V, 5, L) mm from the source;
``visible`` (V, 5, L) in the exposed field and no other vertebra on the ray; ``landmarks``
(5, L, 3) RAS mm; ``vertices_L1`` .. ``vertices_L5`` (P, 3) RAS mm (triangles: the model's);
``coefficients_L1`` .. (K,) and ``poses`` (5, 4, 4) model frame -> world. Metadata: geometry
JSON, realism per view, bone density, alignment as placed and as measured, facet overlap per
segment, background, shape models (sha256), landmark names.

Each case has its own shapes, so the split by subject is a split by shape (subject = case);
the background CTs are shared by all splits (see the README on bringing more CTs).
Core module, no MRML.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from .dataset_store import DatasetWriter
from .errors import InputError
from .geometry import View, ap_view, rotation_about
from .bone_density import sample_density
from .lumbar_radiograph import SpineCT, axis_frame, render_lumbar
from .progress import ProgressCallback, as_progress
from .radiograph_realism import exposed_field, realistic_radiograph, sample_realism
from .shape_model import ShapeModel
from .shape_refinement import DEFAULT_SIGMA_MM, model_deformation
from .spine_alignment import LEVELS, measured_alignment, place_spine, sample_alignment

KIND = "lumbar-biplanar"
SHAPE_CANDIDATES = 8
VIEW_NAMES = ("AP", "LAT")


def sample_biplanar_views(rng: np.random.Generator, frame: np.ndarray, spine_length_mm: float,
                          size=(256, 256)) -> list:
    """AP + left-lateral views of a spine whose frame (4x4: origin at its middle, z up, y to the
    front) is given, drawn as described in the module notes."""
    source_to_detector = rng.uniform(1000.0, 1300.0)
    source_to_isocenter = source_to_detector - rng.uniform(150.0, 350.0)
    magnification = source_to_detector / source_to_isocenter
    field_mm = spine_length_mm * rng.uniform(1.2, 1.6)
    spacing = field_mm * magnification / max(size)
    centre = frame[:3, 3] + frame[:3, :3] @ np.r_[rng.uniform(-5.0, 5.0, 2), rng.uniform(-0.05, 0.05) * field_mm]
    turn = (rotation_about(frame[:3, 2], math.radians(rng.uniform(-5.0, 5.0)))
            @ rotation_about(frame[:3, 0], math.radians(rng.uniform(-3.0, 3.0))) @ frame[:3, :3])
    common = dict(source_to_detector=source_to_detector, source_to_isocenter=source_to_isocenter, size=tuple(size),
                  pixel_spacing=(spacing, spacing))
    views = [ap_view(name="AP", **common), ap_view(rotation_deg=-90.0 + rng.uniform(-3.0, 3.0), name="LAT", **common)]
    return [_moved_view(view, turn, centre) for view in views]


def _moved_view(view: View, rotation: np.ndarray, centre: np.ndarray) -> View:
    """A view built about the origin in patient axes, turned by ``rotation`` and moved to ``centre``."""
    return View(name=view.name, source=rotation @ view.source + centre,
                detector_center=rotation @ view.detector_center + centre, detector_u=rotation @ view.detector_u,
                detector_v=rotation @ view.detector_v, pixel_spacing=view.pixel_spacing, size=view.size)


def draw_case(models: Mapping[str, ShapeModel], background: SpineCT, rng: np.random.Generator, size=(256, 256),
              energy_kev: float = 60.0, beyond_span_mm: float = 0.0) -> tuple:
    """One case: (arrays, metadata), reproducible from ``rng``. ``beyond_span_mm`` > 0: every
    shape gets a smooth free-form field of that amplitude (mm per axis, weights standard normal,
    :mod:`.shape_refinement`) on top of its model instance, so that it lies outside the models'
    span (held-out shapes for testing registration beyond the span)."""
    offered = {level: np.clip(rng.standard_normal((1 if level == "L5" else SHAPE_CANDIDATES, models[level].n_modes)),
                              -3.0, 3.0) for level in LEVELS}
    free_form = {}
    if beyond_span_mm > 0:
        for level in LEVELS:
            deformation = model_deformation(models[level], amplitude_mm=beyond_span_mm)
            free_form[level] = np.clip(rng.standard_normal((len(offered[level]), deformation.n_functions, 3)), -3, 3)
    shapes = {level: models[level].instances(
        torch.as_tensor(offered[level]), displacements=None if level not in free_form else
        model_deformation(models[level], amplitude_mm=beyond_span_mm).displacements(free_form[level])).numpy()
        for level in LEVELS}
    placed = place_spine(models, shapes, sample_alignment(rng))
    coefficients = {level: offered[level][placed.chosen[level]] for level in LEVELS}
    points = placed.points
    world = {level: placed.world(level) for level in LEVELS}
    own = axis_frame(world["L5"].mean(axis=0), world["L1"].mean(axis=0), placed.poses["L3"][:3, 1])
    nudge = np.eye(4)
    nudge[:3, :3] = rotation_about(rng.standard_normal(3), math.radians(rng.uniform(0.0, 3.0)))
    nudge[:3, 3] = rng.uniform(-3.0, 3.0, 3)
    target = background.spine_frame()
    to_background = target @ nudge @ np.linalg.inv(own)
    poses = {level: to_background @ placed.poses[level] for level in LEVELS}
    world = {level: points[level] @ poses[level][:3, :3].T + poses[level][:3, 3] for level in LEVELS}
    landmarks = {level: np.stack([lm.position(world[level]) for lm in models[level].landmarks]) for level in LEVELS}
    length = float(np.ptp(np.concatenate(list(world.values())) @ target[:3, 2]))
    views = sample_biplanar_views(rng, target, length, size)
    density = sample_density(rng)
    images = render_lumbar(background.volume(energy_kev), world, {lv: models[lv].triangles for lv in LEVELS},
                           landmarks, views, density, energy_kev=energy_kev)
    radiographs, realisms, visible = [], [], np.zeros_like(images.overlapped)
    for v, view in enumerate(views):
        realism = sample_realism(rng)
        generator = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        radiographs.append(realistic_radiograph(images.attenuation[v].double(), realism, view.pixel_spacing,
                                                generator).float())
        realisms.append(realism.to_dict())
        field = exposed_field(view.shape, realism.collimation).numpy()
        ij = images.landmarks_ij[v]
        inside = view.contains(ij)
        pixel = np.clip(np.round(np.nan_to_num(ij)).astype(int), 0, [view.size[0] - 1, view.size[1] - 1])
        visible[v] = inside & field[pixel[..., 1], pixel[..., 0]] & ~images.overlapped[v]
    arrays = dict(image=torch.stack(radiographs).numpy(), attenuation=images.attenuation.float().numpy(),
                  decomposition=images.decomposition.numpy().astype(np.float16),
                  landmarks_ij=images.landmarks_ij.astype(np.float32),
                  landmarks_depth=images.landmarks_depth.astype(np.float32), visible=visible,
                  landmarks=np.stack([landmarks[level] for level in LEVELS]).astype(np.float32),
                  poses=np.stack([poses[level] for level in LEVELS]))
    for level in LEVELS:
        arrays[f"vertices_{level}"] = world[level].astype(np.float32)
        arrays[f"coefficients_{level}"] = coefficients[level].astype(np.float32)
        if level in free_form:
            arrays[f"free_form_{level}"] = free_form[level][placed.chosen[level]].astype(np.float32)
    meta = dict(geometry={"views": [view.to_dict() for view in views]}, realism=realisms,
                density=density.to_dict(), alignment=placed.alignment.to_dict(),
                measured_alignment=measured_alignment(models, points, poses),
                facet_overlap_mm={k: round(v, 3) for k, v in placed.overlap_mm.items()},
                background=background.name, levels=list(LEVELS), landmark_names=models["L1"].landmark_names)
    if beyond_span_mm > 0:
        meta["beyond_span"] = dict(amplitude_mm=beyond_span_mm, sigma_mm=DEFAULT_SIGMA_MM)
    return arrays, meta


def generate_lumbar_dataset(out_dir, backgrounds: Sequence[SpineCT], models: Mapping[str, ShapeModel], cases: int,
                            seed: int = 0, size=(256, 256), fractions=(0.8, 0.1, 0.1),
                            model_hashes: Optional[Dict[str, str]] = None, beyond_span_mm: float = 0.0,
                            workers: int = 0, progress: Optional[ProgressCallback] = None) -> dict:
    """Write ``cases`` cases (backgrounds taken in turn); returns the manifest (with the rate).
    ``beyond_span_mm``: see ``draw_case``. ``workers`` > 0: that many processes draw the cases
    (one torch thread each) while this one writes them in order; each case is still drawn from its
    own generator, so the cases do not depend on it."""
    report = as_progress(progress)
    if workers < 0:
        raise InputError("The number of worker processes cannot be negative.")
    if not backgrounds or cases < 1:
        raise InputError("Give at least one background CT and one case.")
    if not 0 <= beyond_span_mm <= 5:
        raise InputError("The free-form amplitude beyond the models' span must lie between 0 and 5 mm.")
    missing = [level for level in LEVELS if level not in models]
    if missing:
        raise InputError(f"Shape models are missing for {', '.join(missing)}.")
    names = [models[level].landmark_names for level in LEVELS]
    if any(n != names[0] for n in names):
        raise InputError("The shape models' landmark names differ between levels.")
    description = dict(seed=seed, size=list(size), cases=cases, backgrounds=[b.name for b in backgrounds],
                       shape_models=dict(model_hashes or {}))
    if beyond_span_mm > 0:
        description["beyond_span_mm"] = beyond_span_mm
    writer = DatasetWriter(out_dir, KIND, description)
    start = time.perf_counter()
    missing = [n for n in range(cases) if not writer.has(f"case-{n:05d}")]
    drawer = _NumberedCases(models, backgrounds, seed, size, beyond_span_mm)
    if workers > 0 and len(missing) > 1:
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_start_worker, initargs=(drawer,)) as pool:
            _write_cases(writer, pool.imap(_draw_in_worker, missing), cases - len(missing), cases, report)
    else:
        _write_cases(writer, map(drawer, missing), cases - len(missing), cases, report)
    manifest = writer.finish(fractions, seed)
    manifest["cases_per_minute"] = 60.0 * cases / max(time.perf_counter() - start, 1e-9)
    return manifest


class _NumberedCases:
    """Case ``n`` of a dataset, drawn from ``numpy.random.default_rng([seed, n])`` (each case
    reproducible on its own: resume, workers): (case id, arrays, metadata)."""

    def __init__(self, models, backgrounds, seed: int, size, beyond_span_mm: float):
        self.models, self.backgrounds, self.seed, self.size, self.beyond_span_mm = (
            models, list(backgrounds), seed, size, beyond_span_mm)

    def __call__(self, n: int) -> tuple:
        arrays, meta = draw_case(self.models, self.backgrounds[n % len(self.backgrounds)],
                                 np.random.default_rng([self.seed, n]), self.size, beyond_span_mm=self.beyond_span_mm)
        return f"case-{n:05d}", arrays, meta


def _write_cases(writer: DatasetWriter, drawn, done: int, cases: int, report) -> None:
    """Write the drawn cases in order (``done`` of ``cases`` were there before)."""
    for case_id, arrays, meta in drawn:
        writer.add(case_id, case_id, arrays, meta)
        done += 1
        report(done / cases, f"case {done} of {cases}")


_worker_cases: Optional[_NumberedCases] = None


def _start_worker(drawer: _NumberedCases) -> None:
    global _worker_cases
    torch.set_num_threads(1)  # the processes share the cores
    _worker_cases = drawer


def _draw_in_worker(n: int) -> tuple:
    return _worker_cases(n)
