"""Clinical lumbar measurements from the named landmarks of L1-L5 (reconstructed or ground truth).

Every measure is taken from the vertebral-body landmarks of the shape models (endplate corners
anterior / posterior / left / right, endplate centres) in one 3D frame, so it is independent of
how the patient stood in the X-ray rig:

- Spine frame: x = the mean left-to-right axis of the ten endplates (patient right), z = from
  the L5 to the L1 body centre made perpendicular to x (up), y = z x x (anterior). Sagittal angles
  are measured in its y-z plane, coronal ones in its x-z plane, axial ones in its x-y plane.
- Endplate tilt: an endplate's normal (``spine_alignment.endplate_frame``) projected into the plane.
- Segmental angle L(n)-L(n+1): superior endplate of the upper against the inferior endplate of the
  lower vertebra (both bodies and the disc); disc angle: inferior endplate of the upper against the
  superior endplate of the lower. Positive = lordotic (open toward the front) [1].
- Lordosis L1-L5: superior endplate of L1 against the inferior endplate of L5, sagittal [1] (over
  fewer levels: from the top one's superior to the bottom one's inferior endplate).
- Coronal Cobb angle across L1-L5: the largest coronal angle between a superior endplate and the
  inferior endplate of the same or a lower vertebra, with its end vertebrae [2].
- Axial rotation of a vertebra: the angle, in the axial plane, from the spine's anterior axis to
  the vertebra's own (mean of its two endplate frames' y); positive = anterior side turned to the
  patient's left (counter-clockwise seen from above).
- Slip of the upper vertebra on the lower (spondylolisthesis, Taillard): the displacement of the
  upper's posterior-inferior body corner from the lower's posterior-superior corner along the
  lower's superior endplate (positive = forward, anterolisthesis), in mm and in % of that
  endplate's depth; Meyerding grade "0" without a forward slip, then I (up to 25 %), II (50),
  III (75), IV (100), V (beyond) [3].
- Disc height, anterior and posterior: distance between the facing anterior (posterior) endplate
  corners of the two vertebrae.
- Body height (anterior, posterior: superior to inferior corner), width (left-right, mean of the
  two endplates) and depth (anterior-posterior, mean of the two endplates).

[1] Cobb JR. Outline for the study of scoliosis. AAOS Instr Course Lect 1948 (the endplate-angle
    method, used for lordosis and segmental angles on lateral radiographs).
[2] Same, on the coronal view.
[3] Taillard W. Le spondylolisthésis chez l'enfant et l'adolescent. Acta Orthop Scand 1954;
    Meyerding HW. Spondylolisthesis. Surg Gynecol Obstet 1932.

Core module (numpy), no MRML.
"""

from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence

import numpy as np

from .spine_alignment import endplate_frame

Landmarks = Mapping[str, Mapping[str, np.ndarray]]  # level -> landmark name -> (3,) mm


def consecutive_levels(levels: Sequence[str], present: Sequence[str]) -> List[str]:
    """The longest run of neighbouring ``levels`` (top to bottom) that are all in ``present``: what
    the measurements can be taken over."""
    best: List[str] = []
    run: List[str] = []
    for level in levels:
        run = run + [level] if level in present else []
        if len(run) > len(best):
            best = run
    return best


def spine_frame(landmarks: Landmarks, levels: Sequence[str]) -> np.ndarray:
    """3x3 columns x (right), y (anterior), z (up) of the spine (see the module notes)."""
    rights = [endplate_frame(landmarks[level], which)[:3, 0] for level in levels for which in ("superior", "inferior")]
    x = np.mean(rights, axis=0)
    x /= np.linalg.norm(x)
    centre = lambda level: (np.asarray(landmarks[level]["superior endplate centre"])  # noqa: E731
                            + np.asarray(landmarks[level]["inferior endplate centre"])) / 2
    up = centre(levels[0]) - centre(levels[-1])
    z = up - (up @ x) * x
    z /= np.linalg.norm(z)
    return np.stack([x, np.cross(z, x), z], axis=1)


def _tilt_deg(normal: np.ndarray, frame: np.ndarray, plane: str) -> float:
    """Angle (deg) of an endplate normal from the spine's up axis within a plane: "sagittal"
    (positive = normal leaning forward) or "coronal" (positive = leaning to the right)."""
    local = frame.T @ normal
    across = local[1] if plane == "sagittal" else local[0]
    return math.degrees(math.atan2(across, local[2]))


def meyerding_grade(slip_percent: float) -> str:
    """Meyerding grade of a forward slip in % of the endplate depth ("0" when there is none)."""
    if slip_percent <= 0:
        return "0"
    for limit, grade in ((25, "I"), (50, "II"), (75, "III"), (100, "IV")):
        if slip_percent <= limit:
            return grade
    return "V"


def measure_spine(landmarks: Landmarks, levels: Sequence[str] = ("L1", "L2", "L3", "L4", "L5")) -> Dict[str, object]:
    """All measurements (see the module notes) of consecutive ``levels``, top to bottom."""
    levels = list(levels)
    frame = spine_frame(landmarks, levels)
    plates = {(level, which): endplate_frame(landmarks[level], which) for level in levels
              for which in ("superior", "inferior")}
    tilt = {key: {plane: _tilt_deg(plate[:3, 2], frame, plane) for plane in ("sagittal", "coronal")}
            for key, plate in plates.items()}
    point = lambda level, name: np.asarray(landmarks[level][name], dtype=np.float64)  # noqa: E731

    segments: Dict[str, Dict[str, float]] = {}
    for upper, lower in zip(levels[:-1], levels[1:]):
        # Lordotic: the upper endplate leans back relative to the lower one (they open toward the front).
        segmental = tilt[lower, "inferior"]["sagittal"] - tilt[upper, "superior"]["sagittal"]
        disc = tilt[lower, "superior"]["sagittal"] - tilt[upper, "inferior"]["sagittal"]
        base = plates[lower, "superior"]
        forward = base[:3, 1]
        slip = float((point(upper, "body posterior inferior") - point(lower, "body posterior superior")) @ forward)
        depth = float(np.linalg.norm(point(lower, "body anterior superior") - point(lower, "body posterior superior")))
        percent = 100.0 * slip / depth
        segments[f"{upper}-{lower}"] = dict(
            segmental_angle_deg=segmental, disc_angle_deg=disc, slip_mm=slip, slip_percent=percent,
            meyerding=meyerding_grade(percent),
            disc_height_anterior_mm=float(np.linalg.norm(point(upper, "body anterior inferior")
                                                         - point(lower, "body anterior superior"))),
            disc_height_posterior_mm=float(np.linalg.norm(point(upper, "body posterior inferior")
                                                          - point(lower, "body posterior superior"))))

    vertebrae: Dict[str, Dict[str, float]] = {}
    for level in levels:
        forward = plates[level, "superior"][:3, 1] + plates[level, "inferior"][:3, 1]
        local = frame.T @ forward
        vertebrae[level] = dict(
            axial_rotation_deg=math.degrees(math.atan2(-local[0], local[1])),
            body_height_anterior_mm=float(np.linalg.norm(point(level, "body anterior superior")
                                                         - point(level, "body anterior inferior"))),
            body_height_posterior_mm=float(np.linalg.norm(point(level, "body posterior superior")
                                                          - point(level, "body posterior inferior"))),
            body_width_mm=float(np.mean([np.linalg.norm(point(level, f"body right {w}")
                                                        - point(level, f"body left {w}"))
                                         for w in ("superior", "inferior")])),
            body_depth_mm=float(np.mean([np.linalg.norm(point(level, f"body anterior {w}")
                                                        - point(level, f"body posterior {w}"))
                                         for w in ("superior", "inferior")])))

    cobb, ends = 0.0, (levels[0], levels[0])
    for a, upper in enumerate(levels):
        for lower in levels[a:]:
            angle = abs(tilt[upper, "superior"]["coronal"] - tilt[lower, "inferior"]["coronal"])
            if angle > cobb:
                cobb, ends = angle, (upper, lower)
    lordosis = tilt[levels[-1], "inferior"]["sagittal"] - tilt[levels[0], "superior"]["sagittal"]
    return dict(levels=levels, lordosis_deg=lordosis, cobb_deg=cobb, cobb_levels=list(ends), segments=segments,
                vertebrae=vertebrae)


def measurement_rows(measured: Mapping[str, object]) -> List[Dict[str, object]]:
    """Flat rows (measure, where, value, unit) for a table node or a CSV file."""
    rows: List[Dict[str, object]] = [
        dict(measure="lordosis", where=f"{measured['levels'][0]}-{measured['levels'][-1]}",
             value=round(measured["lordosis_deg"], 2), unit="deg"),
        dict(measure="coronal Cobb angle", where="-".join(measured["cobb_levels"]),
             value=round(measured["cobb_deg"], 2), unit="deg")]
    units = dict(deg="deg", mm="mm", percent="%")
    for group in ("segments", "vertebrae"):
        for where, values in measured[group].items():
            for key, value in values.items():
                if isinstance(value, str):
                    rows.append(dict(measure=key, where=where, value=value, unit=""))
                    continue
                name, unit = key.rsplit("_", 1) if key.rsplit("_", 1)[-1] in units else (key, "")
                rows.append(dict(measure=name.replace("_", " "), where=where, value=round(float(value), 2),
                                 unit=units.get(unit, unit)))
    return rows
