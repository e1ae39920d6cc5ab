"""Depth maps: accuracy against exact answers, mesh vs label agreement on real vertebrae, and speed.

    python benchmarks/depth_maps.py            (from the repository root; ~1 minute on 2 CPU cores)

1. Analytic phantoms: a box mesh and a tessellated ellipsoid (mesh renderer), a voxel box in an
   oblique anisotropic volume (label renderer); largest error over the pixels compared.
2. The same vertebra from its label map and from its marching-cubes surface: the bundled sample
   (3 mm voxels) and, when ../shared/data is present, VerSe subject 005 (1 mm).
3. Speed at 256 x 256 and 512 x 512 per view, AP + lateral, and a batch of 16 poses.
Prints tables; asserts nothing (the tests do).
"""

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Testing"))

from BoneReconLib.geometry import biplanar_rig, rotation_about  # noqa: E402
from BoneReconLib.label_depth import label_depth  # noqa: E402
from BoneReconLib.label_surface import label_surface  # noqa: E402
from BoneReconLib.mesh_depth import mesh_depth, mesh_from_polydata  # noqa: E402
from BoneReconLib.sample_data import SAMPLE_VERTEBRA_LABELS  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def read_labels(path):
    from BoneReconLib.image_io import read_volume_array

    return read_volume_array(path)


def slab(view, lower, upper, matrix):
    inverse = np.linalg.inv(matrix)
    origins, directions = view.rays()
    o, d = origins @ inverse[:3, :3].T + inverse[:3, 3], directions @ inverse[:3, :3].T
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (np.asarray(lower) - o) / d, (np.asarray(upper) - o) / d
    return np.nanmax(np.minimum(t1, t2), -1), np.nanmin(np.maximum(t1, t2), -1), o, d


def oblique():
    m = np.eye(4)
    m[:3, :3] = rotation_about([1.0, -2.0, 0.5], math.radians(25.0))
    m[:3, 3] = [3.0, -4.0, 5.0]
    return m


def phantoms(views):
    from test_depth import box_mesh  # the tests' own phantoms

    rows = []
    lower, upper, matrix = (-20.0, -15.0, -30.0), (25.0, 18.0, 35.0), oblique()
    points, triangles = box_mesh(lower, upper, matrix)
    maps = mesh_depth(points, triangles, views)[0]
    errors, count = [0.0, 0.0, 0.0], 0
    for v, view in enumerate(views):
        front, back, _, _ = slab(view, lower, upper, matrix)
        hit = back - front > 1e-6
        count += int(hit.sum())
        for n, (got, want) in enumerate(((maps.front, front), (maps.back, back), (maps.thickness, back - front))):
            errors[n] = max(errors[n], float(np.abs(got[v].numpy() - want)[hit].max()))
    rows.append(("box mesh, 12 triangles, oblique", count, *errors))

    import vtk

    sphere = vtk.vtkSphereSource()
    sphere.SetThetaResolution(240)
    sphere.SetPhiResolution(240)
    sphere.Update()
    unit, triangles = mesh_from_polydata(sphere.GetOutput())
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    radii, centre = np.array([18.0, 12.0, 25.0]), np.array([4.0, -6.0, 3.0])
    rotation = rotation_about([0.3, 1.0, -0.4], math.radians(35.0))
    maps = mesh_depth((unit * radii) @ rotation.T + centre, triangles, views)[0]
    errors, count = [0.0, 0.0, 0.0], 0
    for v, view in enumerate(views):
        origins, directions = view.rays()
        o, d = (origins - centre) @ rotation / radii, directions @ rotation / radii
        a, b, c = (d * d).sum(-1), 2 * (o * d).sum(-1), (o * o).sum(-1) - 1
        disc = b * b - 4 * a * c
        root = np.sqrt(np.clip(disc, 0, None))
        front, back = (-b - root) / (2 * a), (-b + root) / (2 * a)
        chord = np.where(disc > 0, back - front, 0.0)
        solid = chord > 0.3 * chord.max()
        count += int(solid.sum())
        for n, (got, want) in enumerate(((maps.front, front), (maps.back, back), (maps.thickness, back - front))):
            errors[n] = max(errors[n], float(np.abs(got[v].numpy() - want)[solid].max()))
    rows.append((f"ellipsoid mesh, {len(triangles)} triangles (chord > 30%)", count, *errors))

    labels = np.zeros((30, 40, 50), np.int16)
    labels[5:25, 8:30, 10:41] = 3
    matrix = np.eye(4)
    matrix[:3, :3] = rotation_about([1.0, 2.0, 3.0], 0.4) @ np.diag([0.8, 1.1, 1.7])
    matrix[:3, 3] = [-20.0, -25.0, -30.0]
    lower, upper = (9.5, 7.5, 4.5), (40.5, 29.5, 24.5)
    maps = label_depth(labels, matrix, [3], views)[0, 0]
    errors, count = [0.0, 0.0, 0.0], 0
    for v, view in enumerate(views):
        front, back, o, d = slab(view, lower, upper, matrix)

        def on_face(t):
            p = o + t[..., None] * d
            return ((p > np.add(lower, 1)) & (p < np.subtract(upper, 1))).sum(axis=-1) >= 2

        faces = (back > front) & on_face(front) & on_face(back)
        count += int(faces.sum())
        for n, (got, want) in enumerate(((maps.front, front), (maps.back, back), (maps.thickness, back - front))):
            errors[n] = max(errors[n], float(np.abs(got[v].numpy() - want)[faces].max()))
    rows.append(("voxel box label, oblique 0.8x1.1x1.7 mm (faces)", count, *errors))
    print("1. Analytic phantoms: largest |error| (mm) over the pixels compared (AP + LAT, 1 mm pixels)")
    print(f"{'phantom':52s} {'pixels':>7s} {'front':>10s} {'back':>10s} {'thickness':>10s}")
    for name, count, *errors in rows:
        print(f"{name:52s} {count:7d} " + " ".join(f"{e:10.2e}" for e in errors))


def agreement(cases):
    print("\n2. Label map vs its marching-cubes mesh, same vertebra (AP + LAT, 256 x 256 at 0.5 mm)")
    print(f"{'case':22s} {'voxel':>6s} {'mask IoU':>8s}  {'median |diff| (voxels)':>24s}  "
          f"{'within 1 voxel (front/back/thick)':>34s}")
    for name, labels, matrix, value in cases:
        voxel = float(np.linalg.norm(matrix[:3, :3], axis=0).min())
        points, triangles = label_surface(labels, matrix, value)
        views = biplanar_rig(size=(256, 256), pixel_spacing=(0.5, 0.5), isocenter=points.mean(axis=0))
        from_labels = label_depth(labels, matrix, [value], views)[0, 0]
        from_mesh = mesh_depth(points, triangles, views)[0]
        both = from_labels.hit & from_mesh.hit
        iou = float(both.sum()) / float((from_labels.hit | from_mesh.hit).sum())
        medians, within = [], []
        for key in ("front", "back", "thickness"):
            error = (getattr(from_labels, key) - getattr(from_mesh, key)).abs()[both] / voxel
            medians.append(float(error.median()))
            within.append(100.0 * float((error < 1.0).double().mean()))
        print(f"{name:22s} {voxel:4.1f}mm {iou:8.4f}  {' / '.join(f'{m:.3f}' for m in medians):>24s}  "
              f"{' / '.join(f'{w:.2f}%' for w in within):>34s}")


def timed(function, repeats=3):
    function()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def speed(labels, matrix):
    print(f"\n3. Speed (best of 3, {torch.get_num_threads()} threads, float64): ms per call, AP + LAT")
    print(f"{'renderer':48s} {'256 x 256':>10s} {'512 x 512':>10s}")
    points, triangles = label_surface(labels, matrix, 29)
    centre = points.mean(axis=0)
    large = None
    if (SHARED / "meshes" / "lumbar_mean_L2-L5" / "meanMesh_L2-L5.stl").is_file():
        import vtk

        reader = vtk.vtkSTLReader()
        reader.SetFileName(str(SHARED / "meshes" / "lumbar_mean_L2-L5" / "meanMesh_L2-L5.stl"))
        reader.Update()
        large = mesh_from_polydata(reader.GetOutput())
    for name, run in [
        (f"mesh, sample L3 ({len(triangles)} triangles)", lambda views: mesh_depth(points, triangles, views)),
        ("label map, sample L3 (3 mm voxels)", lambda views: label_depth(labels, matrix, [29], views)),
    ] + ([(f"mesh, mean L2-L5 ({len(large[1])} triangles)",
           lambda views: mesh_depth(large[0] - large[0].mean(0) + centre, large[1], views))] if large else []):
        times = []
        for size, spacing in ((256, 0.5), (512, 0.25)):
            views = biplanar_rig(size=(size, size), pixel_spacing=(spacing, spacing), isocenter=centre)
            times.append(1000 * timed(lambda: run(views)))
        print(f"{name:48s} {times[0]:10.1f} {times[1]:10.1f}")
    views = biplanar_rig(size=(256, 256), pixel_spacing=(0.5, 0.5), isocenter=centre)
    poses = np.stack([np.eye(4)] * 16)
    poses[:, :3, 3] = np.random.default_rng(0).normal(0, 3, (16, 3))
    batch = 1000 * timed(lambda: mesh_depth(points, triangles, views, poses), repeats=1) / 16
    print(f"{'mesh, sample L3, 16 poses in one call (per pose)':48s} {batch:10.1f}")


def main():
    torch.set_grad_enabled(False)
    views = biplanar_rig(size=(256, 256), pixel_spacing=(1.0, 1.0))
    phantoms(views)
    labels, matrix = read_labels(SAMPLE_VERTEBRA_LABELS)
    cases = [(f"sample {level}", labels, matrix, value)
             for level, value in (("L1", 31), ("L2", 30), ("L3", 29), ("L4", 28), ("L5", 27))]
    if (SHARED / "masks" / "verse005").is_dir():
        for level in ("L1", "L2", "L3", "L4", "L5"):
            mask, mask_matrix = read_labels(SHARED / "masks" / "verse005" / f"verse005_{level}_seg.nii.gz")
            cases.append((f"VerSe 005 {level}", (mask > 0).astype(np.int16), mask_matrix, 1))
    else:
        print(f"(VerSe 005 rows skipped: {SHARED} not found)")
    agreement(cases)
    speed(labels, matrix)


if __name__ == "__main__":
    main()
