"""Give a subject a bone its scan lacks, borrowed from another subject and placed by the bones both share.

    python Utilities/place_missing_bone.py --bone DONOR_RADIUS.vtk --out RADIUS.vtk \\
        --donor DONOR_ULNA.vtk DONOR_SCAPHOID.vtk DONOR_LUNATE.vtk \\
        --onto ULNA.vtk SCAPHOID.vtk LUNATE.vtk

Why: a training person whose scan misses one bone (the ManskeLab InjurySample1 wrist has no
radius) can still teach a DepthRecon network the others, if the missing bone sits where it
plausibly would. The donor's shared bones (``--donor``, together, as one rigid set) are aligned
to the subject's (``--onto``) by rigid ICP, and the donor's ``--bone`` is moved by the same
transform. The result is a chimera, not the person's own bone: the printed residual says how
well the shared bones agree. Written in millimetres (VTK legacy); data only, like its sources.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.mesh_io import polydata_from_arrays, read_surface, write_surface  # noqa: E402
from BoneReconLib.register_command import rigid_icp  # noqa: E402
from BoneReconLib.shape_correspondence import point_to_surface  # noqa: E402
from BoneReconLib.surface_metrics import triangles as triangle_arrays  # noqa: E402


def union(paths, units):
    """Points and triangles of several surfaces as one."""
    points, triangles, offset = [], [], 0
    for path in paths:
        p, t = triangle_arrays(read_surface(path, units=units))
        points.append(p)
        triangles.append(t + offset)
        offset += len(p)
    return np.concatenate(points), np.concatenate(triangles)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bone", required=True, help="the donor's bone to place")
    parser.add_argument("--donor", nargs="+", required=True, help="the donor's bones that the subject also has")
    parser.add_argument("--onto", nargs="+", required=True, help="the subject's same bones, in the same order")
    parser.add_argument("--out", required=True, help="where to write the placed bone (.vtk)")
    parser.add_argument("--units", choices=["mm", "cm", "m"], help="units of all the surfaces (default mm)")
    args = parser.parse_args()
    if len(args.donor) != len(args.onto):
        sys.exit("--donor and --onto must list the same bones, in the same order")
    donor_points, _ = union(args.donor, args.units)
    onto_points, onto_triangles = union(args.onto, args.units)
    pose = rigid_icp(donor_points, polydata_from_arrays(onto_points, onto_triangles))
    moved = donor_points @ pose[:3, :3].T + pose[:3, 3]
    residual = point_to_surface(moved, onto_points, onto_triangles)
    bone_points, bone_triangles = triangle_arrays(read_surface(args.bone, units=args.units))
    write_surface(bone_points @ pose[:3, :3].T + pose[:3, 3], bone_triangles, args.out)
    turn = np.degrees(np.arccos(np.clip((np.trace(pose[:3, :3]) - 1) / 2, -1, 1)))
    print(f"shared bones aligned: rms {np.sqrt(np.mean(residual ** 2)):.2f} mm, median {np.median(residual):.2f} mm "
          f"(turned {turn:.1f} deg, moved {np.linalg.norm(pose[:3, 3]):.1f} mm); wrote {args.out}")


if __name__ == "__main__":
    main()
