"""The fibula beside the tibia: a shape model in the tibia's frame, and its fit to the radiographs.

A leg's radiographs show the fibula beside the tibia in the AP view and over the tibia's back half
in the lateral view. Compared with the tibia's rendering alone, its ridge pulls the tibia
(``benchmarks/leg_reconstruction.py --images radiograph``: tibia 0.98 mm alone (``--no-fibula``),
0.87 mm with the fitted fibula beside it). So before the tibia is registered, the fibula is:

1. a shape model built in the tibia's anatomical frame (origin at the knee centre, x right, y
   anterior, z up; :mod:`.leg_landmarks`) from the fibulas exported with the tibias (each file's
   second piece), with no alignment of its own: where a fibula sits beside its tibia is part of
   its shape (:func:`build_fibula_model`);
2. placed by a quick first fit of the tibia and registered (pose, size, shape; it has no feature
   points) to the same high-passed images, with that tibia rendered beside it (:func:`fit_fibula`;
   :mod:`.leg_pipeline` runs the steps), and kept only if it raises the tibia's image agreement;
3. the tibia's background: its thickness is added to every rendered tibia
   (:class:`.vertebra_registration.VertebraTarget`), so the tibia fits its own outline.

Core module (numpy/torch/vtk), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .errors import InputError
from .geometry import View
from .progress import ProgressCallback, as_progress
from .shape_model import Landmark, ShapeModel
from .shape_statistics import principal_components
from .ssm_builder import Surface, fit_all, template_index
from .vertebra_registration import RegistrationResult, VertebraTarget, register_vertebra

FIBULA_TRIANGLES = 1400  # at most what the registration searches on (its coarse surface), 5 mm edges
FIBULA_MODES = 4  # searched in the registration (the model keeps all its shapes' modes)
MIN_FIBULA_NCC = 0.3  # below this in a view the fit is not used as the tibia's background


@dataclass
class FibulaFit:
    registration: RegistrationResult
    points: np.ndarray  # (P, 3) world mm
    triangles: np.ndarray
    thickness: np.ndarray  # (V, nv, nu) mm on each view's detector
    agreement_alone: np.ndarray  # (V,) the tibia's image agreement without the fibula beside it
    agreement_with: np.ndarray  # (V,) and with it
    used: bool  # converged and raises the tibia's agreement in every view: the tibia's background

    def note(self) -> str:
        """What became of the fit, for the report."""
        agreement = ", ".join(f"{a:.2f} -> {b:.2f}" for a, b in zip(self.agreement_alone, self.agreement_with))
        if self.used:
            return f"fibula: fitted beside the tibia and rendered with it (tibia's image agreement {agreement})."
        fit = "converged" if self.registration.converged else "did not converge"
        return (f"fibula: not found beside the tibia (its fit {fit}; tibia's image agreement {agreement}): "
                "the tibia is compared alone.")


def fibula_surfaces(paths: Sequence, persons: Optional[Sequence[str]] = None, units: Optional[str] = None,
                    lps: bool = False) -> List[Surface]:
    """The fibula of each tibia file (its second-largest piece) in that tibia's anatomical frame, a
    left leg's mirrored (as :func:`.leg_surfaces.leg_bone_surfaces` mirrors the tibia)."""
    from .leg_surfaces import MAX_TRIANGLES, bone_frame, right_side
    from .mesh_io import polydata_from_arrays, prepare_surface, read_surface, surface_pieces

    if persons is not None and len(persons) != len(paths):
        raise InputError(f"{len(persons)} persons were given for {len(paths)} surfaces: give one per surface.")
    surfaces = []
    for n, path in enumerate(paths):
        name = Path(path).name
        polydata = read_surface(path, units=units, lps=lps)
        pieces = sorted(surface_pieces(polydata, what=f"surface {name}"), key=lambda piece: len(piece[1]))
        if len(pieces) < 2:
            raise InputError(f"{name} holds no fibula (one closed piece): give tibia files exported with the fibula.")
        frame = bone_frame("tibia", *prepare_surface(polydata, max_triangles=MAX_TRIANGLES, what=f"surface {name}"),
                           name)
        local, triangles = right_side(frame, *prepare_surface(polydata_from_arrays(*pieces[-2]),
                                                              max_triangles=MAX_TRIANGLES, what=f"fibula of {name}"))
        surfaces.append(Surface(f"{name} fibula ({frame.side})", local, triangles,
                                subject=None if persons is None else persons[n]))
    return surfaces


def fit_fibulas(surfaces: Sequence[Surface], template_triangles: int = FIBULA_TRIANGLES,
                progress: Optional[ProgressCallback] = None):
    """(fits (M, P, 3), triangles, fitting distances (M,), template name): the template (the
    median-volume fibula, reduced) fitted to each fibula where it lies."""
    from .mesh_io import polydata_from_arrays, prepare_surface

    if len(surfaces) < 3:
        raise InputError(f"A fibula model needs at least 3 fibulas; got {len(surfaces)}.")
    first = template_index(surfaces)
    template = prepare_surface(polydata_from_arrays(surfaces[first].points, surfaces[first].triangles),
                               smoothing_iterations=0, max_triangles=template_triangles, what="fibula template")
    fits, distances = fit_all(template, surfaces, as_progress(progress), 0.0, 1.0)
    return fits, np.asarray(template[1]), distances, surfaces[first].name


def fibula_model_from_fits(fits: np.ndarray, triangles: np.ndarray, **info) -> ShapeModel:
    """The model of fits in the tibia's frame: their mean and principal modes as they lie (no
    Procrustes alignment: where a fibula sits beside its tibia is part of its shape); landmarks:
    the fibular head's apex and the lateral malleolus' tip (the mean's highest and lowest vertices)."""
    mean, modes, variances = principal_components(fits)
    landmarks = [Landmark("fibular head apex", "fibular head", (int(np.argmax(mean[:, 2])),), (1.0,)),
                 Landmark("lateral malleolus tip", "malleolus", (int(np.argmin(mean[:, 2])),), (1.0,))]
    return ShapeModel("fibula", mean, np.asarray(triangles), modes, variances, landmarks,
                      dict(info, side="right", frame="tibia", n_shapes=len(fits)))


def build_fibula_model(surfaces: Sequence[Surface], template_triangles: int = FIBULA_TRIANGLES,
                       progress: Optional[ProgressCallback] = None) -> ShapeModel:
    """A fibula model in the tibia's frame from fibulas there (:func:`fibula_surfaces`)."""
    fits, triangles, distances, template = fit_fibulas(surfaces, template_triangles, progress)
    return fibula_model_from_fits(fits, triangles, sources=[s.name for s in surfaces], template=template,
                                  fit_distance_mm=[round(float(d), 3) for d in distances])


def add_fibula_model(folder, model: ShapeModel) -> dict:
    """Write ``model`` as ``fibula.ssm.npz`` into a leg model folder (made if missing) and add it to
    the folder's manifest (its other models stay), all or nothing; returns its manifest entry."""
    import json

    from .shape_model_library import MANIFEST, MANIFEST_FORMAT, read_manifest
    from .staged_output import StagedOutput

    folder = Path(folder)
    manifest = read_manifest(folder) if (folder / MANIFEST).is_file() else dict(format=MANIFEST_FORMAT, models={})
    with StagedOutput(folder) as out:
        digest = model.save(out.path("fibula.ssm.npz"))
        entry = dict(file="fibula.ssm.npz", sha256=digest, n_shapes=model.info["n_shapes"],
                     sources=model.info.get("sources", []), template=model.info.get("template"), modes=model.n_modes,
                     vertices=len(model.mean), frame="tibia", fit_distance_mm=model.info.get("fit_distance_mm"))
        manifest["models"]["fibula"] = entry
        out.path(MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return entry


def agreement(images: Sequence[np.ndarray], rendered: Sequence[np.ndarray], masks: Sequence[np.ndarray],
              highpass_mm: float, views: Sequence[View]) -> np.ndarray:
    """(V,) normalised cross-correlation of each view's image and rendering, both high-passed as the
    registration high-passes them, over its mask's pixels."""
    import torch

    from .gaussian_highpass import highpass
    from .vertebra_registration import _ncc

    values = []
    for image, render, mask, view in zip(images, rendered, masks, views):
        sigma = highpass_mm / float(np.mean(view.pixel_spacing))
        inside = torch.as_tensor(np.asarray(mask, bool))
        a, b = (highpass(torch.as_tensor(np.asarray(x, dtype=np.float64)), sigma)[inside] for x in (image, render))
        values.append(float(_ncc(b[None], a)[0]))
    return np.array(values)


def fit_fibula(model: ShapeModel, tibia_start, views: Sequence[View], images: Sequence[np.ndarray],
               tibia_thickness: Sequence[np.ndarray], masks: Sequence[np.ndarray], highpass_mm: float,
               tibia_masks: Sequence[np.ndarray], modes: int = FIBULA_MODES, generations: Sequence[int] = (30, 20),
               seed: int = 0, progress: Optional[ProgressCallback] = None) -> FibulaFit:
    """The fibula registered to ``images`` (one per view) from the tibia's similarity ``tibia_start``
    (the model lies in the tibia's frame), compared high-passed on ``masks`` with ``tibia_thickness``
    (per view) rendered beside it; its thickness in each view comes back. It is ``used`` when it
    converged and, on the tibia's pixels ``tibia_masks``, the tibia with it agrees better with every
    view than the tibia alone: a radiograph without a fibula there (a phantom, a framing that
    cuts it off) must not get one."""
    from .leg_reconstruction import leg_weights
    from .mesh_depth import mesh_depth

    target = VertebraTarget(views, [np.asarray(i, dtype=np.float64) for i in images],
                            [np.zeros((len(model.landmarks), 2))] * len(views),
                            [np.zeros(len(model.landmarks))] * len(views), highpass_mm, masks,
                            backgrounds=[np.asarray(t, dtype=np.float64) for t in tibia_thickness])
    weights = leg_weights(model, min_ncc=MIN_FIBULA_NCC)
    result = register_vertebra(model, tibia_start.rotation, tibia_start.translation, tibia_start.scale, target,
                               modes=modes, generations=generations, seed=seed, weights=weights, progress=progress,
                               step=0.5)
    points = result.points(model)
    thickness = mesh_depth(points, model.triangles, views).thickness.clamp_min(0).numpy()[0]
    alone = agreement(images, tibia_thickness, tibia_masks, highpass_mm, views)
    beside = agreement(images, [t + f for t, f in zip(tibia_thickness, thickness)], tibia_masks, highpass_mm, views)
    return FibulaFit(result, points, model.triangles, thickness, alone, beside,
                     used=bool(result.converged and np.all(beside > alone)))
