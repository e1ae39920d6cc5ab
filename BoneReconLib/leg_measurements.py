"""Femur and tibia measurements from their named landmarks (:mod:`.leg_landmarks`), in mm and degrees.

Definitions (landmark names in quotes):

- **femoral mechanical length**: "femoral head centre" to "femoral knee centre" (mid-epicondylar).
- **femoral length**: along the femoral mechanical axis, from "femoral head top" to the lower of
  the two distal condyle points (the length a long-leg radiograph shows).
- **femoral head diameter**: twice the radius of the sphere fitted to the head's vertices.
- **neck-shaft angle**: between the neck axis ("femoral neck centre" -> "femoral head centre")
  and the shaft axis pointing distally ("femoral shaft proximal centre" -> "... distal centre");
  about 125-135 degrees in adults (Boese et al., Arch Orthop Trauma Surg 2016).
- **femoral anteversion**: the neck axis against the posterior condylar line (lateral -> medial
  posterior condyle points), both projected on the plane perpendicular to the femoral mechanical
  axis; positive when the neck points forward of the condylar line (anterior = from the posterior
  condyles towards the epicondyles); about 10-15 degrees in adults (Kingsley & Olmsted 1948).
- **tibial mechanical length**: "tibial knee centre" (between the plateau centres) to "tibial
  ankle centre" (the distal tibia's section centroid 15 mm above the malleolus tip).
- **hip-knee-ankle angle** (both bones): 180 degrees minus the angle between the femoral
  mechanical axis (head centre -> femoral knee centre) and the tibial one (tibial knee centre ->
  ankle centre); 180 = a straight leg. In the coronal plane of a given anterior direction it is
  signed: below 180 = varus (knee lateral of the hip-ankle line), above = valgus.

Core module (numpy), no MRML.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np

from .errors import InputError

Positions = Mapping[str, np.ndarray]


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _angle(a, b) -> float:
    return float(np.degrees(np.arccos(np.clip(_unit(a) @ _unit(b), -1.0, 1.0))))


def _flat(v, normal) -> np.ndarray:
    normal = _unit(normal)
    return np.asarray(v, dtype=np.float64) - (np.asarray(v) @ normal) * normal


def _need(positions: Positions, names) -> None:
    missing = [name for name in names if name not in positions]
    if missing:
        raise InputError(f"Measurements need the landmark(s) {', '.join(missing)}.")


def femur_measurements(positions: Positions, head_radius: Optional[float] = None) -> Dict[str, float]:
    p = {k: np.asarray(v, dtype=np.float64) for k, v in positions.items()}
    _need(p, ["femoral head centre", "femoral head top", "femoral neck centre", "femoral knee centre",
              "femoral shaft proximal centre", "femoral shaft distal centre", "medial condyle distal",
              "lateral condyle distal", "medial condyle posterior", "lateral condyle posterior"])
    mechanical = p["femoral head centre"] - p["femoral knee centre"]
    axis = _unit(mechanical)
    lowest = min((p[f"{s} condyle distal"] - p["femoral head top"]) @ axis for s in ("medial", "lateral"))
    neck = p["femoral head centre"] - p["femoral neck centre"]
    shaft_down = p["femoral shaft distal centre"] - p["femoral shaft proximal centre"]
    condylar = _flat(p["medial condyle posterior"] - p["lateral condyle posterior"], axis)
    behind = (p["medial condyle posterior"] + p["lateral condyle posterior"]) / 2
    forward = _flat(p["femoral knee centre"] - behind, axis)
    forward = _unit(forward - (forward @ _unit(condylar)) * _unit(condylar))
    neck_flat = _flat(neck, axis)
    result = {
        "femoral mechanical length (mm)": float(np.linalg.norm(mechanical)),
        "femoral length (mm)": float(-lowest),
        "neck-shaft angle (deg)": _angle(neck, shaft_down),
        "femoral anteversion (deg)": float(np.degrees(np.arctan2(neck_flat @ forward, neck_flat @ _unit(condylar)))),
    }
    if head_radius is not None:
        result["femoral head diameter (mm)"] = 2.0 * float(head_radius)
    return result


def tibia_measurements(positions: Positions) -> Dict[str, float]:
    p = {k: np.asarray(v, dtype=np.float64) for k, v in positions.items()}
    _need(p, ["tibial knee centre", "tibial ankle centre"])
    return {"tibial mechanical length (mm)": float(np.linalg.norm(p["tibial knee centre"] - p["tibial ankle centre"]))}


def hip_knee_ankle(femur: Positions, tibia: Positions, anterior=None, right=None,
                   side: Optional[str] = None) -> Dict[str, float]:
    """The hip-knee-ankle angle of one leg (3D; given the patient's ``anterior`` and ``right``
    directions and the leg's ``side``, also the coronal one, signed: varus < 180 < valgus)."""
    _need(femur, ["femoral head centre", "femoral knee centre"])
    _need(tibia, ["tibial knee centre", "tibial ankle centre"])
    hip, knee_f = np.asarray(femur["femoral head centre"]), np.asarray(femur["femoral knee centre"])
    knee_t, ankle = np.asarray(tibia["tibial knee centre"]), np.asarray(tibia["tibial ankle centre"])
    result = {"hip-knee-ankle angle (deg)": 180.0 - _angle(knee_f - hip, ankle - knee_t)}
    if anterior is not None and right is not None and side is not None:
        if side not in ("right", "left"):
            raise InputError(f"side must be 'right' or 'left', not '{side}'.")
        a = _unit(anterior)
        bend = _angle(_flat(knee_f - hip, a), _flat(ankle - knee_t, a))
        # Varus: the knee lies lateral of the hip-ankle line (lateral = the patient's right for a right leg).
        line = _unit(_flat(ankle - hip, a))
        offset = _flat((knee_f + knee_t) / 2 - hip, a)
        lateral = _unit(right) * (1.0 if side == "right" else -1.0)
        varus = (offset - (offset @ line) * line) @ lateral > 0
        result["coronal hip-knee-ankle angle (deg)"] = 180.0 - bend if varus else 180.0 + bend
    return result
