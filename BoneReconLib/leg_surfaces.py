"""Femur and tibia surfaces brought into their anatomical frame, left bones mirrored to right ones.

Leg-bone surfaces come in every orientation (RAS, LPS, scanner frames) and from both sides; a
shape model needs them alike before the template is fitted (the similarity ICP of
:mod:`.shape_correspondence` cannot turn a bone round its long axis by 180 degrees). Each surface
is moved into the frame its own landmark rules find (:mod:`.leg_landmarks`: origin at the knee
centre, x right, y anterior, z superior), and a left bone is mirrored (x -> -x, triangles reversed)
so that every model is of a right bone; the bone's side is kept with it. A file that also holds
the fibula (a tibia exported with it) gives its largest piece, the tibia.

Core module (numpy, vtk), no MRML.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .errors import InputError
from .leg_landmarks import LEG_LANDMARKS
from .ssm_builder import Surface

MAX_TRIANGLES = 40000  # larger surfaces are decimated (MRI/CT exports run to 150k)


def mirrored(points: np.ndarray, triangles: np.ndarray):
    """The mirror image in the x = 0 plane, still outward-oriented."""
    return np.asarray(points) * [-1.0, 1.0, 1.0], np.asarray(triangles)[:, ::-1].copy()


def leg_bone_surfaces(paths: Sequence, bone: str, units: Optional[str] = None, lps: bool = False,
                      persons: Optional[Sequence[str]] = None) -> List[Surface]:
    """Surfaces of one bone ('femur' or 'tibia'), each in its anatomical frame as a right bone.
    ``persons`` (one per path): whose each is, so both knees of one person leave a
    leave-one-out check together."""
    from .mesh_io import prepare_surface, read_surface

    if bone not in LEG_LANDMARKS:
        raise InputError(f"Unknown leg bone '{bone}' (one of {', '.join(LEG_LANDMARKS)}).")
    if persons is not None and len(persons) != len(paths):
        raise InputError(f"{len(persons)} persons were given for {len(paths)} surfaces: give one per surface.")
    surfaces = []
    for n, path in enumerate(paths):
        name = Path(path).name
        points, triangles = prepare_surface(read_surface(path, units=units, lps=lps), max_triangles=MAX_TRIANGLES,
                                            what=f"surface {name}")
        frame = bone_frame(bone, points, triangles, name)
        local, triangles = right_side(frame, points, triangles)
        surfaces.append(Surface(f"{name} ({frame.side})", local, triangles,
                                subject=None if persons is None else persons[n]))
    return surfaces


def bone_frame(bone: str, points: np.ndarray, triangles: np.ndarray, name: str):
    """The anatomical frame the bone's own rules find on a surface (``name`` in the error)."""
    try:
        return LEG_LANDMARKS[bone](points, triangles)[1]
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None


def right_side(frame, points: np.ndarray, triangles: np.ndarray):
    """(points, triangles) moved into ``frame``, mirrored to a right bone's if the frame is a left one's."""
    local = frame.to_frame(points)
    return mirrored(local, triangles) if frame.side == "left" else (local, np.asarray(triangles))
