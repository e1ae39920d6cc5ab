"""Analytic femur and tibia phantoms: unions of spheres, capsules and ellipsoids with known anatomy.

A right femur/tibia in RAS (x right, y anterior, z superior, mm), knee near the origin; every
feature sits where its parameters put it, so rules and measurements have known answers.
"""

from typing import Sequence

import numpy as np

VOXEL = 3.0  # marching cubes on this grid, no decimation: evenly spread vertices, as a real model has


def _capsule(p, a, b, r):
    a, b = np.asarray(a, float), np.asarray(b, float)
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1) / r - 1.0


def _sphere(p, c, r):
    return np.linalg.norm(p - np.asarray(c, float), axis=-1) / r - 1.0


def _ellipsoid(p, c, radii):
    return np.linalg.norm((p - np.asarray(c, float)) / np.asarray(radii, float), axis=-1) - 1.0


def _surface(field, low, high):
    """The zero level of ``field`` (a function of (..., 3) points) between ``low`` and ``high``."""
    from BoneReconLib.label_surface import iso_surface
    from BoneReconLib.mesh_io import polydata_from_arrays, prepare_surface
    from BoneReconLib.mesh_depth import mesh_from_polydata

    low, high = np.asarray(low, float), np.asarray(high, float)
    axes = [np.arange(lo, hi + VOXEL, VOXEL) for lo, hi in zip(low, high)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)  # (I, J, K, 3)
    values = field(grid).transpose(2, 1, 0)  # (K, J, I)
    points, triangles = mesh_from_polydata(iso_surface(values, 0.0, outside=1.0))
    points = points * VOXEL + low
    return prepare_surface(polydata_from_arrays(points, triangles), smoothing_iterations=10, what="phantom")


def femur_head_centre(neck_length: float = 1.0, anteversion_deg: float = 13.0, height: float = 420.0):
    """Where the phantom femur's head centre is (right femur)."""
    reach = 46.0 * neck_length
    a = np.radians(anteversion_deg)
    return np.array([-reach * np.cos(a), reach * np.sin(a), height])


def femur_phantom(neck_length: float = 1.0, anteversion_deg: float = 13.0, height: float = 420.0,
                  head_radius: float = 23.0, condyle_width: float = 1.0):
    """(points, triangles) of a right femur: shaft, neck at ~125 degrees to it, head, greater and
    lesser trochanters, two posterior condyles on a distal flare."""
    head = femur_head_centre(neck_length, anteversion_deg, height)
    neck_start = np.array([-4.0, 0.0, height - 30.0])
    w = 22.0 * condyle_width

    def field(p):
        parts = [
            _capsule(p, (0, 0, 60), (0, 0, height - 30.0), 13.0),
            _capsule(p, neck_start, head, 14.0),
            _sphere(p, head, head_radius),
            _sphere(p, (22.0, -6.0, height - 15.0), 15.0),  # greater trochanter
            _sphere(p, (-12.0, -12.0, height - 75.0), 8.0),  # lesser trochanter
            _ellipsoid(p, (0.0, 0.0, 45.0), (34.0 * condyle_width, 22.0, 32.0)),
            _sphere(p, (-w, -10.0, 22.0), 21.0),  # medial condyle
            _sphere(p, (w, -10.0, 22.0), 21.0),  # lateral condyle
        ]
        return np.min(np.stack(parts), axis=0)

    return _surface(field, (-110, -50, -10), (60, 50, height + 40))


def tibia_phantom(length: float = 330.0, plateau_width: float = 1.0):
    """(points, triangles) of a right tibia: shaft, plateau (wider than deep), tuberosity in front,
    medial malleolus reaching below the distal end."""
    bottom = -length

    def field(p):
        parts = [
            _capsule(p, (0, 0, bottom), (0, 0, -30.0), 11.0),
            _ellipsoid(p, (0.0, 0.0, -15.0), (38.0 * plateau_width, 25.0, 14.0)),
            _sphere(p, (4.0, 20.0, -30.0), 10.0),  # tuberosity
            _ellipsoid(p, (0.0, 0.0, bottom + 5.0), (20.0, 18.0, 14.0)),
            _capsule(p, (-12.0, 0.0, bottom), (-14.0, 2.0, bottom - 22.0), 6.0),  # medial malleolus
        ]
        return np.min(np.stack(parts), axis=0)

    return _surface(field, (-50, -40, bottom - 40), (50, 40, 10))


def fibula_phantom(x: float = 32.0, y: float = -8.0, length: float = 330.0):
    """(points, triangles) of a fibula beside :func:`tibia_phantom` (lateral: +x, a little behind):
    a shaft with a head below the plateau and a lateral malleolus reaching below the tibia."""
    def field(p):
        shaft = _capsule(p, (x, y, -length - 20.0), (x - 2.0, y - 2.0, -40.0), 7.0)
        return np.minimum(np.minimum(shaft, _sphere(p, (x - 2.0, y - 2.0, -40.0), 12.0)),
                          _sphere(p, (x, y, -length - 20.0), 9.0))

    return _surface(field, (x - 30, y - 30, -length - 50), (x + 30, y + 30, -15))


def mirrored(points, triangles):
    """The left bone of a right one (x -> -x), still outward-oriented."""
    return np.asarray(points) * [-1.0, 1.0, 1.0], np.asarray(triangles)[:, ::-1].copy()


def turned(points, angle_deg: float, axis: Sequence[float] = (0.0, 0.0, 1.0)):
    from BoneReconLib.geometry import rotation_about

    return np.asarray(points) @ rotation_about(axis, np.radians(angle_deg)).T
