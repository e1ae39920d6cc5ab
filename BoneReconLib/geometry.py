"""X-ray imaging geometry (RAS, mm): one view = point source + flat detector.

The contract (see README "Imaging geometry"): a view has ``source`` (x, y, z), ``detector_center``
(x, y, z), unit vectors ``detector_u`` (image column direction, +i) and ``detector_v`` (image row
direction, +j), ``pixel_spacing`` [su, sv] and ``size`` [nu, nv]. Pixel (i, j) has its centre at

    detector_center + (i - (nu - 1) / 2) * su * u + (j - (nv - 1) / 2) * sv * v

where i is the image column and j the row (numpy arrays are indexed image[j, i]). u and v follow
no display convention: flips, rotated detectors and off-centre principal points all occur, and
everything here honours the vectors as given.

Core module: numpy only, no MRML.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError

UNIT_TOLERANCE = 1e-4  # |u| and |v| must be 1, and u.v must be 0, within this
_FIELDS = ("source", "detector_center", "detector_u", "detector_v", "pixel_spacing", "size")


def _vector(value, name: str, view: str, length: int = 3) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"View '{view}': {name} must be {length} numbers, got {value!r}.") from None
    if array.size != length or not np.all(np.isfinite(array)):
        raise InputError(f"View '{view}': {name} must be {length} finite numbers, got {value!r}.")
    return array


@dataclass(frozen=True)
class View:
    """One calibrated projection; validated on construction (InputError names the bad field)."""

    name: str
    source: np.ndarray
    detector_center: np.ndarray
    detector_u: np.ndarray
    detector_v: np.ndarray
    pixel_spacing: np.ndarray
    size: Tuple[int, int]
    extra: Dict[str, object] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        name = str(self.name)
        put = lambda key, value: object.__setattr__(self, key, value)  # noqa: E731 (frozen dataclass)
        put("name", name)
        for key in ("source", "detector_center", "detector_u", "detector_v"):
            put(key, _vector(getattr(self, key), key, name))
        put("pixel_spacing", _vector(self.pixel_spacing, "pixel_spacing", name, 2))
        try:
            size = tuple(int(s) for s in self.size)
        except (TypeError, ValueError):
            raise InputError(f"View '{name}': size must be two positive integers, got {self.size!r}.") from None
        if len(size) != 2 or min(size) < 1 or any(float(s) != float(t) for s, t in zip(size, self.size)):
            raise InputError(f"View '{name}': size must be two positive integers, got {self.size!r}.")
        put("size", size)
        if np.any(self.pixel_spacing <= 0):
            raise InputError(f"View '{name}': pixel_spacing must be positive, got {self.pixel_spacing.tolist()}.")
        for key in ("detector_u", "detector_v"):
            norm = np.linalg.norm(getattr(self, key))
            if abs(norm - 1.0) > UNIT_TOLERANCE:
                raise InputError(f"View '{name}': {key} must be a unit vector (its length is {norm:.6g}).")
        if abs(float(self.detector_u @ self.detector_v)) > UNIT_TOLERANCE:
            raise InputError(f"View '{name}': detector_u and detector_v must be orthogonal "
                             f"(their dot product is {float(self.detector_u @ self.detector_v):.6g}).")
        if self.source_to_detector_distance < 1e-3:
            raise InputError(f"View '{name}': the source lies on the detector plane; "
                             "source and detector_center must be apart along the detector normal.")

    # --- derived quantities -----------------------------------------------------------------

    @property
    def normal(self) -> np.ndarray:
        """Unit detector normal pointing away from the source (the beam direction at the principal point)."""
        n = np.cross(self.detector_u, self.detector_v)
        n /= np.linalg.norm(n)
        return n if (self.detector_center - self.source) @ n > 0 else -n

    @property
    def source_to_detector_distance(self) -> float:
        """Perpendicular distance from the source to the detector plane (mm)."""
        n = np.cross(self.detector_u, self.detector_v)
        return float(abs((self.detector_center - self.source) @ n) / max(np.linalg.norm(n), 1e-300))

    @property
    def principal_point(self) -> np.ndarray:
        """(i, j) of the foot of the perpendicular from the source onto the detector (may be fractional)."""
        return self.world_to_pixel_on_detector(self.source + self.source_to_detector_distance * self.normal)

    @property
    def shape(self) -> Tuple[int, int]:
        """numpy image shape (rows, columns) = (nv, nu)."""
        return self.size[1], self.size[0]

    def pixel_origin(self) -> np.ndarray:
        """World position of pixel (0, 0)'s centre."""
        (su, sv), (nu, nv) = self.pixel_spacing, self.size
        return self.detector_center - (nu - 1) / 2 * su * self.detector_u - (nv - 1) / 2 * sv * self.detector_v

    # --- pixels <-> world -------------------------------------------------------------------

    def pixel_to_world(self, i, j) -> np.ndarray:
        """Detector-plane points (..., 3) of pixel coordinates i (column) and j (row), fractional allowed."""
        i, j = np.asarray(i, dtype=np.float64), np.asarray(j, dtype=np.float64)
        su, sv = self.pixel_spacing
        return self.pixel_origin() + (i * su)[..., None] * self.detector_u + (j * sv)[..., None] * self.detector_v

    def world_to_pixel_on_detector(self, points) -> np.ndarray:
        """(i, j) of points lying on the detector plane (no projection through the source)."""
        offset = np.asarray(points, dtype=np.float64) - self.pixel_origin()
        return np.stack([offset @ self.detector_u / self.pixel_spacing[0],
                         offset @ self.detector_v / self.pixel_spacing[1]], axis=-1)

    def project(self, points) -> Tuple[np.ndarray, np.ndarray]:
        """Central projection of 3D points (..., 3) -> pixel coordinates (..., 2) as (i, j), and depth.

        Depth is the distance from the source to the point (mm). Points not strictly between the
        source plane and beyond (behind the source) get NaN pixel coordinates.
        """
        points = np.asarray(points, dtype=np.float64)
        direction = points - self.source
        along = direction @ self.normal
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(along > 0, self.source_to_detector_distance / along, np.nan)
        hit = self.source + scale[..., None] * direction
        return self.world_to_pixel_on_detector(hit), np.linalg.norm(direction, axis=-1)

    def rays(self, i=None, j=None) -> Tuple[np.ndarray, np.ndarray]:
        """Ray (origin = source, unit direction) through pixel centres; default: every pixel, shape (nv, nu, 3)."""
        if i is None and j is None:
            j, i = np.meshgrid(np.arange(self.size[1]), np.arange(self.size[0]), indexing="ij")
        targets = self.pixel_to_world(i, j)
        directions = targets - self.source
        directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
        return np.broadcast_to(self.source, directions.shape).copy(), directions

    def contains(self, ij, margin: float = 0.0) -> np.ndarray:
        """Whether pixel coordinates (..., 2) fall on the detector (pixel centres span 0..n-1)."""
        ij = np.asarray(ij, dtype=np.float64)
        nu, nv = self.size
        return ((ij[..., 0] >= -0.5 - margin) & (ij[..., 0] <= nu - 0.5 + margin)
                & (ij[..., 1] >= -0.5 - margin) & (ij[..., 1] <= nv - 0.5 + margin))

    # --- serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict:
        data = {"name": self.name}
        for key in _FIELDS:
            value = getattr(self, key)
            data[key] = [int(v) for v in value] if key == "size" else [float(v) for v in value]
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: dict, default_name: str = "view") -> "View":
        if not isinstance(data, dict):
            raise InputError(f"A view must be a JSON object, got {type(data).__name__}.")
        name = str(data.get("name", default_name))
        missing = [key for key in _FIELDS if key not in data]
        if missing:
            raise InputError(f"View '{name}' is missing {', '.join(missing)}.")
        extra = {k: v for k, v in data.items() if k not in _FIELDS and k != "name"}
        return cls(name=name, **{key: data[key] for key in _FIELDS}, extra=extra)


# --- files --------------------------------------------------------------------------------------


def views_from_json_text(text: str, where: str = "geometry") -> List[View]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"The {where} is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    entries = data.get("views") if isinstance(data, dict) and "views" in data else [data]
    if not isinstance(entries, list) or not entries:
        raise InputError(f"The {where} must hold {{\"views\": [...]}} with at least one view.")
    views = [View.from_dict(entry, default_name=f"view{k}") for k, entry in enumerate(entries)]
    names = [v.name for v in views]
    if len(set(names)) != len(names):
        raise InputError(f"The {where} has repeated view names: {names}.")
    return views


def load_geometry(path) -> List[View]:
    """Read a geometry JSON file: ``{"views": [...]}`` or a single view object."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The geometry file {path} does not exist.")
    return views_from_json_text(path.read_text(encoding="utf-8"), where=f"geometry file {path}")


def load_view(path, name: Optional[str] = None) -> View:
    """One view of a geometry JSON file: the one named ``name``, else the only one."""
    return pick_view(load_geometry(path), name)


def pick_view(views, name: Optional[str] = None) -> View:
    """The geometry's view for the image: the one named ``name``, else the only one."""
    if name is not None:
        named = [v for v in views if v.name == name]
        if not named:
            raise InputError(f"The geometry has no view named '{name}' (found: {', '.join(v.name for v in views)}).")
        return named[0]
    if len(views) != 1:
        raise InputError(f"The geometry holds {len(views)} views; name the one to use (--view, or viewName in Python).")
    return views[0]


def geometry_json(views: Iterable[View]) -> str:
    return json.dumps({"views": [v.to_dict() for v in views]}, indent=2)


def save_geometry(views: Iterable[View], path) -> Path:
    path = Path(path)
    path.write_text(geometry_json(views) + "\n", encoding="utf-8")
    return path


# --- rigs ---------------------------------------------------------------------------------------


def rotation_about(axis, angle_rad: float) -> np.ndarray:
    """3x3 rotation by ``angle_rad`` (right-handed) about ``axis`` (Rodrigues' formula)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle_rad) * k + (1 - math.cos(angle_rad)) * (k @ k)


def ap_view(
    source_to_detector: float = 1000.0,
    source_to_isocenter: float = 800.0,
    size: Sequence[int] = (256, 256),
    pixel_spacing: Sequence[float] = (1.0, 1.0),
    isocenter: Sequence[float] = (0.0, 0.0, 0.0),
    rotation_deg: float = 0.0,
    name: str = "AP",
) -> View:
    """An anterior-posterior view, optionally turned about the patient's long (S) axis.

    At ``rotation_deg`` = 0 the source is anterior and the detector posterior; the image is laid
    out as a radiograph is read, facing the patient: columns run toward the patient's left
    (u = -R), rows toward the feet (v = -S). ``rotation_deg`` = -90 puts the source on the
    patient's right (a left lateral view: the left side against the detector).
    """
    if not 0 < source_to_isocenter < source_to_detector:
        raise InputError("The isocentre must lie between the source and the detector "
                         f"(0 < {source_to_isocenter} < {source_to_detector} mm).")
    iso = np.asarray(isocenter, dtype=np.float64)
    r = rotation_about((0, 0, 1), math.radians(rotation_deg))
    beam = r @ np.array([0.0, -1.0, 0.0])  # from source to detector
    return View(
        name=name,
        source=iso - source_to_isocenter * beam,
        detector_center=iso + (source_to_detector - source_to_isocenter) * beam,
        detector_u=r @ np.array([-1.0, 0.0, 0.0]),
        detector_v=np.array([0.0, 0.0, -1.0]),
        pixel_spacing=pixel_spacing,
        size=size,
    )


def biplanar_rig(
    angle_deg: float = 90.0,
    source_to_detector: float = 1000.0,
    source_to_isocenter: float = 800.0,
    size: Sequence[int] = (256, 256),
    pixel_spacing: Sequence[float] = (1.0, 1.0),
    isocenter: Sequence[float] = (0.0, 0.0, 0.0),
) -> List[View]:
    """AP + a second view turned by ``angle_deg`` about the long axis (90 = left lateral "LAT")."""
    common = dict(source_to_detector=source_to_detector, source_to_isocenter=source_to_isocenter,
                  size=size, pixel_spacing=pixel_spacing, isocenter=isocenter)
    return [ap_view(name="AP", **common), ap_view(rotation_deg=-angle_deg, name="LAT", **common)]


# --- triangulation ------------------------------------------------------------------------------


@dataclass
class Triangulation:
    point: np.ndarray  # (3,) RAS mm
    ray_distance_rms: float  # RMS distance of the point to the rays (mm)
    reprojection_error: np.ndarray  # per view, distance on the detector in mm


def triangulate(views: Sequence[View], pixels: Sequence[Sequence[float]],
                weights: Optional[Sequence[float]] = None) -> Triangulation:
    """The 3D point closest (least squares) to the rays through matching pixels (i, j) of 2+ views."""
    if len(views) != len(pixels) or len(views) < 2:
        raise InputError("Triangulation needs the same point in at least two views.")
    weights = np.ones(len(views)) if weights is None else np.asarray(weights, dtype=np.float64)
    a = np.zeros((3, 3))
    b = np.zeros(3)
    origins, directions = [], []
    for view, (i, j), w in zip(views, pixels, weights):
        origin, direction = view.rays(np.array(i), np.array(j))
        projector = np.eye(3) - np.outer(direction, direction)
        a += w * projector
        b += w * projector @ origin
        origins.append(origin)
        directions.append(direction)
    if np.linalg.cond(a) > 1e12:
        raise InputError("The rays are parallel: the views are too similar to triangulate.")
    point = np.linalg.solve(a, b)
    distances = [np.linalg.norm((np.eye(3) - np.outer(d, d)) @ (point - o)) for o, d in zip(origins, directions)]
    errors = []
    for view, (i, j) in zip(views, pixels):
        ij, _ = view.project(point)
        errors.append(float(np.hypot((ij[0] - i) * view.pixel_spacing[0], (ij[1] - j) * view.pixel_spacing[1])))
    return Triangulation(point, float(np.sqrt(np.mean(np.square(distances)))), np.array(errors))
