"""Named feature points, spheres and rings of a femur or tibia surface, found by rules in its own frame.

The surface must be roughly upright (+z superior, tilts of a few tens of degrees are fine); which
side is medial, which is anterior and whether it is a left or a right bone are found from the
shape itself, so files in RAS, LPS or any rotation about the long axis work alike:

- **Femur**: the head is the proximal part farthest from the shaft axis (medial); the posterior
  condyles reach much further behind the shaft than the trochlea reaches in front of it (posterior).
- **Tibia**: the medial malleolus is the lowest part of the tibia (medial); the tibial
  tuberosity and the condyles' anterior rims make the sections 10-30 mm below the plateau skewed
  forward (the third moment of the section along the antero-posterior line is positive). A fibula must not be part of the surface (its lateral
  malleolus reaches lower): pass the tibia's own piece.

Frame (both bones): origin at the knee centre, z along the mechanical axis (superior), y anterior,
x = y x z (the patient's right, as RAS). A right bone's medial side is -x, a left one's +x.

Points are :class:`~.shape_model.Landmark` (so they follow every instance of a shape model):
surface points (closest point on the mesh) or interior points (a fixed weighted mean of vertices,
e.g. the head centre, made to equal the fitted sphere's centre on this surface). Spheres (femoral
head, posterior condyles) and rings (tibial plateau rim) are stored as vertex sets, so an
instance's sphere radius or its plateau outline in a radiograph follow its shape too.

Core module (numpy), no MRML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np

from .errors import InputError
from .shape_correspondence import surface_samples
from .shape_model import Landmark, landmark_on_surface
from .vertebra_landmarks import VertebraFrame

SAMPLES = 30000
FEMUR_LANDMARKS = {  # name: region
    "femoral head centre": "femoral head", "femoral head top": "femoral head", "femoral neck centre": "femoral neck",
    "greater trochanter tip": "trochanter", "lesser trochanter": "trochanter",
    "femoral shaft proximal centre": "shaft", "femoral shaft distal centre": "shaft",
    "medial epicondyle": "condyle", "lateral epicondyle": "condyle", "femoral knee centre": "condyle",
    "medial condyle distal": "condyle", "lateral condyle distal": "condyle",
    "medial condyle posterior": "condyle", "lateral condyle posterior": "condyle",
}
TIBIA_LANDMARKS = {
    "medial plateau centre": "plateau", "lateral plateau centre": "plateau", "tibial knee centre": "plateau",
    "intercondylar eminence": "plateau", "tibial tuberosity": "tuberosity",
    "tibial shaft proximal centre": "shaft", "tibial shaft distal centre": "shaft",
    "medial malleolus tip": "malleolus", "tibial ankle centre": "ankle",
}


@dataclass
class LegBoneFrame(VertebraFrame):
    """Anatomical frame of a leg bone (rows of ``axes`` = right, anterior, superior), which side the
    bone is, and its spheres and rings (JSON-ready, stored in a shape model's info)."""

    side: str = "right"
    features: List[dict] = field(default_factory=list)

    @property
    def info(self) -> dict:
        return {"side": self.side, "features": self.features,
                "frame": "origin at the knee centre; axes x right, y anterior, z superior along the mechanical axis (mm)"}


def fit_sphere(points) -> Tuple[np.ndarray, float]:
    """Least-squares (algebraic) sphere through points (N >= 4): (centre, radius)."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) < 4:
        raise InputError("A sphere needs at least four points.")
    a = np.column_stack([2 * p, np.ones(len(p))])
    solution = np.linalg.lstsq(a, (p * p).sum(axis=1), rcond=None)[0]
    centre = solution[:3]
    return centre, float(np.sqrt(max(solution[3] + centre @ centre, 0.0)))


def centre_landmark(name: str, region: str, points: np.ndarray, vertices, centre) -> Landmark:
    """An interior landmark: the weights closest to uniform over ``vertices`` whose weighted mean is
    exactly ``centre`` on this surface (affine-equivariant, so it moves with pose and shape)."""
    vertices = np.unique(np.asarray(vertices, dtype=np.int64))
    if len(vertices) < 4:
        raise InputError(f"{name}: too few vertices to place it ({len(vertices)}).")
    p = points[vertices]
    uniform = np.full(len(vertices), 1.0 / len(vertices))
    a = np.vstack([p.T, np.ones(len(vertices))])
    w = uniform + a.T @ np.linalg.lstsq(a @ a.T, np.append(centre, 1.0) - a @ uniform, rcond=None)[0]
    return Landmark(name, region, tuple(int(v) for v in vertices), tuple(float(x) for x in w))


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / max(np.linalg.norm(v), 1e-12)


def _perpendicular(v, axis) -> np.ndarray:
    return _unit(v - (v @ axis) * axis)


@dataclass
class _Shaft:
    """The bone's shaft line (through section centroids at 30-70 % of its length) and every sample's
    position along it (t) and off it (radial)."""

    centre: np.ndarray
    axis: np.ndarray  # proximal
    t: np.ndarray
    radial: np.ndarray
    length: float

    @staticmethod
    def of(samples: np.ndarray, up) -> "_Shaft":
        centre = samples.mean(axis=0)
        axis = np.linalg.svd(samples - centre, full_matrices=False)[2][0]
        axis = axis if axis @ np.asarray(up, dtype=np.float64) >= 0 else -axis
        t = (samples - centre) @ axis
        length = float(np.ptp(t))
        if length < 100.0:
            raise InputError(f"The bone is only {length:.0f} mm long: a whole femur or tibia is needed.")
        centroids = []
        for q in np.linspace(0.3, 0.7, 9):
            slab = np.abs(t - (t.min() + q * length)) < 2.0
            if slab.sum() < 20:
                raise InputError("The bone's shaft has gaps: a closed surface of a whole femur or tibia is needed.")
            centroids.append(samples[slab].mean(axis=0))
        centroids = np.array(centroids)
        centre = centroids.mean(axis=0)
        line = np.linalg.svd(centroids - centre)[2][0]
        axis = line if line @ axis >= 0 else -line
        t = (samples - centre) @ axis
        return _Shaft(centre, axis, t, samples - centre - np.outer(t, axis), length)


def _right_handed(anterior, superior, medial) -> Tuple[np.ndarray, str]:
    """Rows (right, anterior, superior) and the side whose medial direction this is."""
    superior = _unit(superior)
    anterior = _perpendicular(anterior, superior)
    right = np.cross(anterior, superior)
    return np.stack([right, anterior, superior]), ("right" if medial @ right < 0 else "left")


def _slab_centre(name, region, points, heights, at, half=3.0, least=12) -> Landmark:
    """The centroid of the vertices within ``half`` mm of height ``at`` (of the ``least`` nearest in
    height where the mesh is coarser than that)."""
    vertices = np.nonzero(np.abs(heights - at) < half)[0]
    if len(vertices) < least:
        vertices = np.argsort(np.abs(heights - at))[:least]
    return centre_landmark(name, region, points, vertices, points[vertices].mean(axis=0))


def _sphere_feature(name: str, points: np.ndarray, centre, radius, near) -> dict:
    """A sphere as the vertices on it: an instance's sphere is the one fitted to its vertices."""
    vertices = np.nonzero(near & (np.abs(np.linalg.norm(points - centre, axis=1) - radius) < max(1.5, 0.1 * radius)))[0]
    if len(vertices) < 4:
        raise InputError(f"{name}: too few vertices on the sphere.")
    return {"name": name, "kind": "sphere", "vertices": [int(v) for v in vertices]}


def femur_landmarks(points, triangles, up=(0.0, 0.0, 1.0)) -> Tuple[List[Landmark], LegBoneFrame]:
    """The named landmarks (FEMUR_LANDMARKS) of a closed femur surface and its frame (with side, spheres)."""
    points = np.asarray(points, dtype=np.float64)
    triangles = np.asarray(triangles)
    samples = surface_samples(points, triangles, SAMPLES)[0]
    shaft = _Shaft.of(samples, up)
    t, radial, length = shaft.t, shaft.radial, shaft.length
    distance = np.linalg.norm(radial, axis=1)

    # Head: the proximal point farthest off the shaft is on it; a sphere fitted around it, refitted
    # on the points that lie on that sphere on the head's side (not the neck's).
    top = t > t.max() - 0.2 * length
    seed = samples[int(np.argmax(np.where(top, distance, -1.0)))]
    centre, radius = fit_sphere(samples[np.linalg.norm(samples - seed, axis=1) < 30.0])
    for _ in range(6):
        outward = _unit(centre - (shaft.centre + ((centre - shaft.centre) @ shaft.axis - radius) * shaft.axis))
        offset = samples - centre
        on = (np.abs(np.linalg.norm(offset, axis=1) - radius) < max(1.5, 0.08 * radius)) & (offset @ outward > -0.2 * radius)
        if on.sum() < 50:
            raise InputError("The femoral head was not found (no spherical part at the proximal end).")
        centre, radius = fit_sphere(samples[on])
    if not 12.0 < radius < 40.0:
        raise InputError(f"The femoral head's radius came out {radius:.0f} mm: is this a femur, upright?")
    medial = _perpendicular(centre - shaft.centre, shaft.axis)

    # Posterior: the condyles reach further behind the shaft than the trochlea reaches in front.
    distal = t < t.min() + 0.15 * length
    across = np.cross(shaft.axis, medial)
    reach = radial[distal] @ across
    posterior = across if reach.max() > -reach.min() else -across
    axes, side = _right_handed(-posterior, shaft.axis, medial)
    medial_sign = -1.0 if side == "right" else 1.0  # along x
    x = (samples - shaft.centre) @ axes[0]
    lateral_epicondyle = samples[distal][int(np.argmax(-medial_sign * x[distal]))]
    medial_epicondyle = samples[distal][int(np.argmax(medial_sign * x[distal]))]
    knee = (lateral_epicondyle + medial_epicondyle) / 2
    axes, _ = _right_handed(axes[1], centre - knee, medial)
    frame = LegBoneFrame(knee, axes, side=side)
    local = frame.to_frame(samples)
    vertex_local = frame.to_frame(points)
    found: Dict[str, Landmark] = {}

    def on_surface(name, target):
        found[name] = landmark_on_surface(points, triangles, target, name, FEMUR_LANDMARKS[name])

    head_vertices = np.nonzero(np.abs(np.linalg.norm(points - centre, axis=1) - radius) < max(1.5, 0.1 * radius))[0]
    head_vertices = head_vertices[(points[head_vertices] - centre) @ outward > -0.2 * radius]
    found["femoral head centre"] = centre_landmark("femoral head centre", "femoral head", points, head_vertices, centre)
    on_surface("femoral head top", centre + radius * axes[2])

    # Neck: the centroid of a slab across the neck 1.2-1.6 radii from the head centre, on the line
    # from the head to it (iterated, starting towards the shaft).
    direction = _unit(centre - (shaft.centre + ((centre - shaft.centre) @ shaft.axis - radius) * shaft.axis))
    for _ in range(5):
        along = (centre - samples) @ direction
        off = np.linalg.norm(centre - samples - np.outer(along, direction), axis=1)
        slab = (along > 1.2 * radius) & (along < 1.6 * radius) & (off < 1.3 * radius)
        if slab.sum() < 30:
            raise InputError("The femoral neck was not found.")
        direction = _unit(centre - samples[slab].mean(axis=0))
    along = (centre - points) @ direction
    off = np.linalg.norm(centre - points - np.outer(along, direction), axis=1)
    neck_vertices = np.nonzero((along > 1.2 * radius) & (along < 1.6 * radius) & (off < 1.3 * radius))[0]
    found["femoral neck centre"] = centre_landmark("femoral neck centre", "femoral neck", points, neck_vertices,
                                                   points[neck_vertices].mean(axis=0))

    lateral = radial @ (-medial) > 10.0
    proximal = t > t.max() - 0.25 * length
    candidates = np.nonzero(lateral & proximal)[0]
    on_surface("greater trochanter tip", samples[candidates[int(np.argmax(t[candidates]))]])
    head_t = (centre - shaft.centre) @ shaft.axis
    band = np.nonzero((t < head_t - 30.0) & (t > head_t - 90.0))[0]
    on_surface("lesser trochanter", samples[band[int(np.argmax(radial[band] @ _unit(medial + posterior)))]])
    top_z = (centre - knee) @ axes[2]
    found["femoral shaft proximal centre"] = _slab_centre("femoral shaft proximal centre", "shaft", points,
                                                          vertex_local[:, 2], 0.65 * top_z)
    found["femoral shaft distal centre"] = _slab_centre("femoral shaft distal centre", "shaft", points,
                                                        vertex_local[:, 2], 0.35 * top_z)
    on_surface("medial epicondyle", medial_epicondyle)
    on_surface("lateral epicondyle", lateral_epicondyle)
    found["femoral knee centre"] = Landmark.mean_of("femoral knee centre", "condyle",
                                                    [found["medial epicondyle"], found["lateral epicondyle"]])
    features = [_sphere_feature("femoral head", points, centre, radius,
                                (points - centre) @ outward > -0.2 * radius)]
    for name, sign in (("medial", medial_sign), ("lateral", -medial_sign)):
        condyle = (sign * local[:, 0] > 10.0) & (local[:, 2] < 40.0)
        index = np.nonzero(condyle)[0]
        on_surface(f"{name} condyle distal", samples[index[int(np.argmin(local[index, 2]))]])
        on_surface(f"{name} condyle posterior", samples[index[int(np.argmin(local[index, 1]))]])
        # Posterior condyle sphere: the condyle's surface behind and below the knee centre.
        back = condyle & (local[:, 1] < -5.0) & (local[:, 2] < 5.0)
        c, r = fit_sphere(samples[back])
        for _ in range(4):
            on = back & (np.abs(np.linalg.norm(samples - c, axis=1) - r) < 2.0)
            c, r = fit_sphere(samples[on])
        near = (sign * vertex_local[:, 0] > 10.0) & (vertex_local[:, 1] < -5.0) & (vertex_local[:, 2] < 5.0)
        features.append(_sphere_feature(f"{name} posterior condyle", points, c, r, near))
    frame.features = features
    return [found[name] for name in FEMUR_LANDMARKS], frame


def tibia_landmarks(points, triangles, up=(0.0, 0.0, 1.0)) -> Tuple[List[Landmark], LegBoneFrame]:
    """The named landmarks (TIBIA_LANDMARKS) of a closed tibia surface (no fibula), its frame and plateau ring."""
    points = np.asarray(points, dtype=np.float64)
    triangles = np.asarray(triangles)
    samples, normals = surface_samples(points, triangles, SAMPLES)
    shaft = _Shaft.of(samples, up)
    t, radial, length = shaft.t, shaft.radial, shaft.length

    plateau = t > t.max() - 0.04 * length
    spread = radial[plateau] - radial[plateau].mean(axis=0)
    across = _perpendicular(np.linalg.eigh(spread.T @ spread)[1][:, 2], shaft.axis)
    lowest = t < t.min() + 6.0
    above = (t > t.min() + 20.0) & (t < t.min() + 30.0)
    medial = across if (radial[lowest].mean(axis=0) - radial[above].mean(axis=0)) @ across > 0 else -across
    forward = np.cross(medial, shaft.axis)
    band = (t < t.max() - 10.0) & (t > t.max() - 30.0)  # just below the plateau: condyles and tuberosity
    reach = (radial[band] - radial[band].mean(axis=0)) @ forward
    anterior = forward if (reach ** 3).mean() > 0 else -forward
    axes, side = _right_handed(anterior, shaft.axis, medial)
    medial_sign = -1.0 if side == "right" else 1.0

    found: Dict[str, Landmark] = {}
    provisional = VertebraFrame(shaft.centre, axes)
    local = provisional.to_frame(samples)
    top = local[:, 2] > local[:, 2].max() - 25.0
    facing_up = top & (normals @ axes[2] > 0.6)
    mid_x = np.median(local[top, 0])
    for name, sign in (("medial", medial_sign), ("lateral", -medial_sign)):
        half = facing_up & (sign * (local[:, 0] - mid_x) > 8.0)
        if half.sum() < 50:
            raise InputError("The tibial plateau was not found (is the bone upright?).")
        found[f"{name} plateau centre"] = landmark_on_surface(
            points, triangles, provisional.to_world(local[half].mean(axis=0)[None])[0] + 5.0 * axes[2],
            f"{name} plateau centre", "plateau")
    found["tibial knee centre"] = Landmark.mean_of("tibial knee centre", "plateau",
                                                   [found["medial plateau centre"], found["lateral plateau centre"]])
    middle = np.nonzero(top & (np.abs(local[:, 0] - mid_x) < 8.0))[0]
    found["intercondylar eminence"] = landmark_on_surface(points, triangles, samples[middle[int(np.argmax(local[middle, 2]))]],
                                                          "intercondylar eminence", "plateau")
    upper = np.nonzero((t < t.max() - 0.02 * length) & (t > t.max() - 0.15 * length))[0]
    found["tibial tuberosity"] = landmark_on_surface(points, triangles, samples[upper[int(np.argmax(radial[upper] @ anterior))]],
                                                     "tibial tuberosity", "tuberosity")
    found["medial malleolus tip"] = landmark_on_surface(points, triangles, samples[int(np.argmin(t))],
                                                        "medial malleolus tip", "malleolus")
    vertex_t = (points - shaft.centre) @ shaft.axis
    found["tibial ankle centre"] = _slab_centre("tibial ankle centre", "ankle", points, vertex_t, t.min() + 15.0)
    found["tibial shaft proximal centre"] = _slab_centre("tibial shaft proximal centre", "shaft", points, vertex_t,
                                                         t.min() + 0.65 * length)
    found["tibial shaft distal centre"] = _slab_centre("tibial shaft distal centre", "shaft", points, vertex_t,
                                                       t.min() + 0.35 * length)
    knee = found["tibial knee centre"].position(points)
    ankle = found["tibial ankle centre"].position(points)
    axes, _ = _right_handed(anterior, knee - ankle, medial)
    frame = LegBoneFrame(knee, axes, side=side)

    # Plateau rim: in 36 directions around the plateau, the vertex of the top 12 mm farthest out.
    vertex_local = frame.to_frame(points)
    rim_zone = np.nonzero(vertex_local[:, 2] > vertex_local[:, 2].max() - 12.0)[0]
    xy = vertex_local[rim_zone, :2] - vertex_local[rim_zone, :2].mean(axis=0)
    sector = ((np.arctan2(xy[:, 1], xy[:, 0]) + np.pi) / (2 * np.pi) * 36).astype(int) % 36
    ring = [int(rim_zone[np.nonzero(sector == s)[0][np.argmax(np.linalg.norm(xy[sector == s], axis=1))]])
            for s in range(36) if np.any(sector == s)]
    if len(ring) < 12:
        raise InputError("The tibial plateau's rim was not found.")
    frame.features = [{"name": "tibial plateau", "kind": "ring", "vertices": ring}]
    return [found[name] for name in TIBIA_LANDMARKS], frame


LEG_LANDMARKS = {"femur": femur_landmarks, "tibia": tibia_landmarks}
