"""Synthetic variation of the femur and tibia models: the twists and tilts five people cannot span.

The bundled leg models are built from five people. Their modes are mostly size and bowing; the
angles surgeons measure vary far more between people than five can show (one of the five has a
femoral anteversion near 0 deg, the other four 18-23 deg, so a model built without that person
cannot reach it). Each field below changes one such angle by one standard deviation, placed by the
model's named feature points (:mod:`.leg_landmarks`), and is added to the model's covariance like
the vertebrae's regional variation (:class:`.synthetic_variation.SyntheticVariation`; nothing is
added to the mean):

- **femoral anteversion** (8 deg): the proximal femur turned about the shaft axis, the twist
  growing smoothly along the shaft from the distal to the proximal shaft centre (the shaft is
  near-cylindrical, so the twist shows at the neck and trochanters);
- **neck-shaft angle** (5 deg): the head and neck turned in the plane of shaft and neck about
  where their axes meet, blended in along the neck;
- **tibial torsion** (7 deg): the distal tibia turned about the shaft axis, growing from the
  proximal to the distal shaft centre;
- **posterior tibial slope** (3 deg): the plateau tilted about the medio-lateral axis through the
  knee centre, blended in over the 15 mm below it.

Fields are first-order rotations (small-angle), positive = more anteversion / a larger angle /
more external torsion / more posterior slope. The standard deviations are of the order of the
between-subject spread reported for adults (anteversion: Kaiser et al., Skeletal Radiol 2016;
neck-shaft angle: Boese et al., BMC Musculoskelet Disord 2016; tibial torsion: Mullaji et al.,
J Bone Joint Surg Br 2008; posterior slope: Hashemi et al., J Bone Joint Surg Am 2008); they are
choices, written into the model's info. Core module (numpy), no MRML.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .errors import InputError
from .shape_model import ShapeModel
from .synthetic_variation import SyntheticVariation, _ramp

LEG_SD_DEG = {
    "femur": {"femoral anteversion": 8.0, "neck-shaft angle": 5.0},
    "tibia": {"tibial torsion": 7.0, "posterior tibial slope": 3.0},
}
SLOPE_BLEND_MM = (5.0, 20.0)  # the plateau tilts whole above 5 mm below the knee centre, not below 20 mm
NECK_RAMP = (0.0, 0.3)  # fractions of the pivot-to-head distance along the neck: the neck turns nearly whole


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _turn(points: np.ndarray, weight: np.ndarray, axis: np.ndarray, pivot: np.ndarray, degrees: float) -> np.ndarray:
    """The first-order displacement of ``points`` turned by ``degrees`` x ``weight`` about ``axis`` through ``pivot``."""
    return np.radians(degrees) * weight[:, None] * np.cross(axis, points - pivot)


def _signed(axis: np.ndarray, point: np.ndarray, pivot: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """``axis`` or its opposite: the one whose positive turn moves ``point`` towards ``direction``."""
    return axis if np.dot(np.cross(axis, point - pivot), direction) >= 0 else -axis


def _femur_fields(at: Dict[str, np.ndarray], points: np.ndarray, anterior: np.ndarray) -> Dict[str, callable]:
    proximal, distal = at["femoral shaft proximal centre"], at["femoral shaft distal centre"]
    head, neck = at["femoral head centre"], at["femoral neck centre"]
    up = _unit(proximal - distal)
    along = np.clip((points - distal) @ up / max(np.linalg.norm(proximal - distal), 1.0), 0.0, 1.0)
    twist_axis = _signed(up, head, distal, anterior)  # positive: the head turns forwards
    # Where the neck's axis meets the shaft's (their closest approach), and the plane they span.
    direction = _unit(head - neck)
    w = distal - neck
    b, d, e = up @ direction, up @ w, direction @ w
    denominator = max(1.0 - b * b, 1e-6)
    pivot = distal + up * ((b * e - d) / denominator)
    bend_axis = _signed(_unit(np.cross(up, direction)), head, pivot, up)  # positive: the head goes up
    reach = max(float((head - pivot) @ direction), 1.0)
    neck_weight = _ramp(((points - pivot) @ direction / reach - NECK_RAMP[0]) / (NECK_RAMP[1] - NECK_RAMP[0]))
    return {
        "femoral anteversion": lambda deg: _turn(points, _ramp(along), twist_axis, distal, deg),
        "neck-shaft angle": lambda deg: _turn(points, neck_weight, bend_axis, pivot, deg),
    }


def _tibia_fields(at: Dict[str, np.ndarray], points: np.ndarray, anterior: np.ndarray) -> Dict[str, callable]:
    proximal, distal = at["tibial shaft proximal centre"], at["tibial shaft distal centre"]
    knee, malleolus = at["tibial knee centre"], at["medial malleolus tip"]
    down = _unit(distal - proximal)
    along = np.clip((points - proximal) @ down / max(np.linalg.norm(distal - proximal), 1.0), 0.0, 1.0)
    torsion_axis = _signed(down, malleolus, proximal, anterior)  # positive: the medial malleolus turns forwards
    across = _unit(np.cross(anterior, -down))  # the medio-lateral axis
    posterior_point = knee - 20.0 * anterior
    slope_axis = _signed(across, posterior_point, knee, down)  # positive: the back of the plateau goes down
    below = (points - knee) @ down  # mm below the knee centre
    plateau = 1.0 - _ramp((below - SLOPE_BLEND_MM[0]) / (SLOPE_BLEND_MM[1] - SLOPE_BLEND_MM[0]))
    return {
        "tibial torsion": lambda deg: _turn(points, _ramp(along), torsion_axis, proximal, deg),
        "posterior tibial slope": lambda deg: _turn(points, plateau, slope_axis, knee, deg),
    }


def leg_variation(model: ShapeModel, sd_deg: Optional[Dict[str, float]] = None) -> SyntheticVariation:
    """The fields of ``LEG_SD_DEG`` for the model's bone (or ``sd_deg``), one s.d. each, on its mean.
    The model is in its anatomical frame (x right, y anterior, z superior) with the feature points
    of :mod:`.leg_landmarks`."""
    names = set(model.landmark_names)
    bone = "femur" if "femoral head centre" in names else "tibia" if "tibial knee centre" in names else None
    if bone is None:
        raise InputError(f"Leg variation needs a femur or tibia model with its feature points; '{model.name}' has neither.")
    sd = dict(LEG_SD_DEG[bone] if sd_deg is None else sd_deg)
    unknown = sorted(set(sd) - set(LEG_SD_DEG[bone]))
    if unknown:
        raise InputError(f"Unknown {bone} variation(s): {', '.join(unknown)} (known: {', '.join(LEG_SD_DEG[bone])}).")
    at = {lm.name: lm.position(model.mean) for lm in model.landmarks}
    anterior = np.array([0.0, 1.0, 0.0])
    fields = (_femur_fields if bone == "femur" else _tibia_fields)(at, model.mean, anterior)
    chosen = [name for name in LEG_SD_DEG[bone] if name in sd]
    stack = np.stack([fields[name](sd[name]) for name in chosen])
    description = {"regional": {name: dict(unit="degrees", sd=sd[name]) for name in chosen}}
    return SyntheticVariation(model.mean.copy(), chosen, stack, description)
