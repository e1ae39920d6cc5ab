"""Anatomically plausible synthetic shape variation for levels built from few real vertebrae.

A level built from 4-5 people has 3-4 modes: it cannot represent the next person. Two kinds of
synthetic variation are added to its covariance (nothing is added to its mean):

1. **Transferred modes**: the modes of a level built from many people (L1, 16 people) carried
   over to this level. The donor's mean is fitted onto this level's mean (similarity ICP +
   template fitting, :mod:`.shape_correspondence`); each vertex takes the donor mode vector of the
   nearest fitted donor vertex, rotated and scaled like the donor's mean (:class:`Transfer`). The real and the
   transferred covariances are pooled by their degrees of freedom,
   ``((n - 1) C_level + (n_donor - 1) C_donor) / (n + n_donor - 2)``: the assumption is that the
   lumbar levels vary alike, which the between-level similarity of their shapes makes plausible.
2. **Regional variation**: smooth displacement fields, each one anatomical measure changed by one
   standard deviation (``REGIONAL_SD``), placed by the model's named landmarks in its anatomical
   frame (x right, y anterior, z superior): vertebral body height, width and depth (scaled about
   the body's centre / posterior wall), endplate wedging (the two endplates tilted apart in the
   sagittal plane), pedicle length (the posterior arch moved backwards), left and right
   transverse process length, spinous process length and its inclination. Regions are blended
   with logistic weights over ``BLEND_MM`` so the fields are smooth and the triangles stay valid.
   The standard deviations are chosen of the order of the between-subject spread reported for
   these measures (Panjabi et al., Spine 1992; Zhou et al., Eur Spine J 2000); they are choices,
   written into the model's info.

The augmented covariance is diagonalised again (its modes mix real and synthetic variation), so
the model keeps the same form and every consumer works unchanged. Core module, no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from .errors import InputError
from .shape_model import ShapeModel
from .shape_statistics import rigid_align

BLEND_MM = 2.0
REGIONAL_SD = {  # one standard deviation of each measure
    "body height": ("fraction", 0.05),
    "body width": ("fraction", 0.05),
    "body depth": ("fraction", 0.05),
    "endplate wedging": ("degrees", 2.0),
    "pedicle length": ("mm", 1.5),
    "left transverse process length": ("mm", 3.0),
    "right transverse process length": ("mm", 3.0),
    "spinous process length": ("mm", 3.0),
    "spinous process inclination": ("degrees", 5.0),
}


@dataclass
class SyntheticVariation:
    """Displacement fields (E, P, 3), one standard deviation each, on the vertices of ``reference``."""

    reference: np.ndarray
    names: List[str]
    fields: np.ndarray
    description: Dict[str, object]

    def __add__(self, other: "SyntheticVariation") -> "SyntheticVariation":
        rotation, translation, _ = rigid_align(other.reference, self.reference)
        return SyntheticVariation(self.reference, self.names + other.names,
                                  np.concatenate([self.fields, other.fields @ rotation.T]),
                                  {**self.description, **other.description})

    def augment(self, model: ShapeModel, real_weight: float = 1.0) -> ShapeModel:
        """``model`` with covariance ``real_weight * C_model + sum_e f_e f_e^T`` (fields turned into the
        model's frame: the reference is rigidly aligned to the model's mean, same correspondence)."""
        if self.fields.shape[1:] != model.mean.shape:
            raise InputError(f"The synthetic variation has {self.fields.shape[1]} vertices, "
                             f"the model '{model.name}' {len(model.mean)}.")
        rotation, _, _ = rigid_align(self.reference, model.mean)
        real = model.modes * np.sqrt(real_weight * model.variances)[:, None, None]
        columns = np.concatenate([real, self.fields @ rotation.T]).reshape(-1, model.mean.size)
        _, sigma, vt = np.linalg.svd(columns, full_matrices=False)
        variances = sigma ** 2
        keep = variances > 1e-10 * variances.max()
        modes = vt[keep]
        modes *= np.sign(modes[np.arange(len(modes)), np.abs(modes).argmax(axis=1)])[:, None]
        info = dict(model.info)
        info["synthetic_variation"] = dict(self.description, real_covariance_weight=round(real_weight, 6))
        return ShapeModel(model.name, model.mean, model.triangles, modes.reshape(-1, *model.mean.shape),
                          variances[keep], list(model.landmarks), info)


def _blend(u):
    return 1.0 / (1.0 + np.exp(-np.clip(u / BLEND_MM, -50, 50)))


def _ramp(u):
    """0 before 0, 1 after 1, smooth between: a process stretched along its length (no folds)."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def regional_variation(model: ShapeModel, sd: Optional[Dict[str, tuple]] = None) -> SyntheticVariation:
    """The regional fields of REGIONAL_SD (or ``sd``) on a model in its anatomical frame with the
    landmarks of :mod:`.vertebra_landmarks`."""
    sd = dict(REGIONAL_SD if sd is None else sd)
    unknown = sorted(set(sd) - set(REGIONAL_SD))
    if unknown:
        raise InputError(f"Unknown regional variation(s): {', '.join(unknown)}.")
    try:
        at = {lm.name: lm.position(model.mean) for lm in model.landmarks}
        superior, inferior = at["superior endplate centre"], at["inferior endplate centre"]
        posterior_wall = (at["body posterior superior"][1] + at["body posterior inferior"][1]) / 2
        anterior_wall = (at["body anterior superior"][1] + at["body anterior inferior"][1]) / 2
        pedicle_y = (at["left pedicle centre"][1] + at["right pedicle centre"][1]) / 2
        pedicle_x = (abs(at["left pedicle centre"][0]) + abs(at["right pedicle centre"][0])) / 2
        tip_x = (abs(at["left transverse process tip"][0]) + abs(at["right transverse process tip"][0])) / 2
        articular = np.array([at[f"{s} {p} articular process"] for s in ("left", "right")
                              for p in ("superior", "inferior")])
        spinous_tip = at["spinous process tip"]
    except KeyError as exc:
        raise InputError(f"Regional variation needs the vertebra landmarks; '{model.name}' lacks {exc}.") from exc
    x, y, z = (model.mean[:, k] for k in range(3))
    centre_z, height = (superior[2] + inferior[2]) / 2, max(superior[2] - inferior[2], 1.0)
    centre_y = (posterior_wall + anterior_wall) / 2
    body = _blend(y - (posterior_wall - BLEND_MM))  # the body, fading out through the pedicles' base
    arch = _blend(pedicle_y - y)  # everything behind the pedicles' centres
    behind_body = _blend(posterior_wall - y)
    root = np.array([0.0, articular[:, 1].mean(), spinous_tip[2]])  # the spinous process leaves the laminae here
    axis = (spinous_tip - root) / max(np.linalg.norm(spinous_tip - root), 1e-9)
    half_width = 0.75 * np.abs(articular[2:, 0]).mean()  # medial to the inferior articular processes
    length = max(np.linalg.norm(spinous_tip - root), 1.0)
    spinous_mask = _blend((model.mean - root) @ axis) * _blend(half_width - np.abs(x))
    spinous_stretch = _ramp((model.mean - root) @ axis / length) * _blend(half_width - np.abs(x))
    transverse_root = pedicle_x + 0.25 * (tip_x - pedicle_x)

    def transverse(side_x):
        return _ramp((side_x - transverse_root) / max(tip_x - transverse_root, 1.0)) * behind_body
    zero = np.zeros_like(x)

    def scaled(unit, value):
        return value * (np.pi / 180.0 if unit == "degrees" else 1.0)

    fields = {
        "body height": lambda v: np.stack([zero, zero, body * v * (z - centre_z)], 1),
        "body width": lambda v: np.stack([body * v * x, zero, zero], 1),
        "body depth": lambda v: np.stack([zero, body * v * (y - posterior_wall), zero], 1),
        "endplate wedging": lambda v: np.stack([zero, zero, body * np.tan(v) * (y - centre_y) * (z - centre_z)
                                                / height], 1),
        "pedicle length": lambda v: np.stack([zero, -arch * v, zero], 1),
        "left transverse process length": lambda v: np.stack([-v * transverse(-x), zero, zero], 1),
        "right transverse process length": lambda v: np.stack([v * transverse(x), zero, zero], 1),
        "spinous process length": lambda v: spinous_stretch[:, None] * v * axis,
        "spinous process inclination": lambda v: spinous_mask[:, None] * v * np.cross([1.0, 0.0, 0.0],
                                                                                      model.mean - root),
    }
    names = [name for name in REGIONAL_SD if name in sd]
    stack = np.stack([fields[name](scaled(*sd[name])) for name in names])
    description = {"regional": {name: dict(unit=sd[name][0], sd=sd[name][1]) for name in names}}
    return SyntheticVariation(model.mean.copy(), names, stack, description)


@dataclass
class Transfer:
    """Where a donor level's vertices land on a target level's mean: for every target vertex the
    nearest vertex of the donor mean fitted onto it, and the similarity (rotation, scale) taking the
    donor's frame to the target's."""

    index: np.ndarray
    rotation: np.ndarray
    scale: float
    fit_mm: float

    @classmethod
    def between(cls, donor: ShapeModel, target: ShapeModel) -> "Transfer":
        import torch

        from .shape_correspondence import fit_template, nearest, similarity_icp

        placed = similarity_icp(donor.mean, donor.triangles, target.mean, target.triangles)
        rotation, _, scale = rigid_align(donor.mean, placed, scaling=True)
        fit = fit_template(placed, donor.triangles, target.mean, target.triangles)
        index, _ = nearest(torch.as_tensor(target.mean), torch.as_tensor(fit.points))
        return cls(index.numpy(), rotation, float(scale), float(fit.mean_distance))

    def variation(self, donor: ShapeModel, target: ShapeModel, weight: float = 1.0) -> SyntheticVariation:
        """The donor's modes (one s.d. each, times sqrt(weight)) on the target's mean vertices. The donor
        must share the vertices (and frame) of the model the transfer was made from."""
        modes = donor.modes[:, self.index] * np.sqrt(weight * donor.variances)[:, None, None]
        description = {"transferred": dict(donor=donor.name, donor_shapes=donor.info.get("n_shapes"),
                                           modes=int(donor.n_modes), weight=round(weight, 6),
                                           correspondence_fit_mm=round(self.fit_mm, 4))}
        return SyntheticVariation(target.mean.copy(), [f"{donor.name} mode {k + 1}" for k in range(donor.n_modes)],
                                  self.scale * modes @ self.rotation.T, description)


def pooled_weights(n_level: int, n_donor: int):
    """(weight of the level's own covariance, weight of the donor's) pooled by degrees of freedom."""
    total = n_level + n_donor - 2
    return (n_level - 1) / total, (n_donor - 1) / total


def describe_synthetic(synthetic: dict) -> str:
    """One line saying what a model's synthetic variation is."""
    parts = []
    if "regional" in synthetic:
        parts.append("regional fields (1 s.d.): " + ", ".join(
            f"{name} {100 * v['sd']:g}%" if v["unit"] == "fraction" else f"{name} {v['sd']:g} {v['unit']}"
            for name, v in synthetic["regional"].items()))
    if "transferred" in synthetic:
        t = synthetic["transferred"]
        parts.append(f"{t['modes']} modes of {t['donor']} ({t['donor_shapes']} shapes) transferred, "
                     f"covariance weight {t['weight']:.3f}")
    if "real_covariance_weight" in synthetic:
        parts.append(f"real covariance weight {synthetic['real_covariance_weight']:.3f}")
    return "; ".join(parts)
