"""The tibia from one real radiograph (one-view mode) and its projected outline over the image.

    python benchmarks/leg_real_radiograph.py [--out runs/rg3] [--picture docs/leg_real_radiograph.png]

Input: ../shared/data/xray/pydicom/RG3_UNCI.dcm (pydicom-data, MIT: a computed radiograph of a
RIGHT lower leg, AP, 1760 x 1760 pixels on a 35 x 35 cm plate, lossy JPEG 2000, MONOCHROME1; the
distal two thirds of the tibia, the fibula and the ankle). It carries no geometry, so this script
writes the one it assumes (all in the report):

- pixel spacing 350 mm / 1760 = 0.199 mm (the plate size, tag 0018,1403), reduced 4 x 4 to 0.80 mm;
- source-detector distance 1000 mm, the bones' mid-plane 40 mm above the plate (no
  source_to_object: the one-view fit holds the depth near that plane and says it assumed it);
- the image is mirrored left-right before use: its "R" marker reads backwards and the fibula lies
  on the image's right, i.e. the picture is seen from behind; mirrored, it is a standard AP of a
  right leg (patient's right on the image's left).

Feature points: the bundled leg detector, trained on simulated hip-to-ankle radiographs, does not
find them on this lower-leg framing (its points land off the bone), so four tibial points were
placed by hand on the image, as a user would place them in Slicer: the medial malleolus tip, the
ankle centre (mid-width, 15 mm above the tip, as the models define it), and the shaft's middle at
35 % and 65 % of a 360 mm tibia above the tip (the distal and proximal shaft centres). They are
approximate (a few pixels for the malleolus, the shaft levels to about 10 mm along the shaft).

Output: ``bonerecon biplanar --anatomy leg`` one-view results in --out (tibia.vtk, report.md, ...)
and a picture: the radiograph with the reconstructed tibia's projected outline and the points.
There is no ground truth for this image: the figure of merit printed is the image agreement (NCC
of the high-passed radiograph and rendered thickness near the bone) and the points' residual.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.geometry import ap_view, save_geometry  # noqa: E402

SOURCE = REPO.parent / "shared" / "data" / "xray" / "pydicom" / "RG3_UNCI.dcm"
PLATE_MM, PIXELS, REDUCE = 350.0, 1760, 4
SID_MM = 1000.0
# Hand-placed on the original image (columns i, rows j of the 1760 x 1760 pixels, as stored, before mirroring).
POINTS = {
    "medial malleolus tip": (702.0, 1452.0),
    "tibial ankle centre": (800.0, 1373.0),
    "tibial shaft distal centre": (848.0, 809.0),
    "tibial shaft proximal centre": (860.0, 241.0),
}


def reduced(pixels: np.ndarray) -> np.ndarray:
    """Block means of REDUCE x REDUCE pixels, mirrored left-right (see the module docstring)."""
    n = pixels.shape[0] // REDUCE
    blocks = pixels[:n * REDUCE, :n * REDUCE].reshape(n, REDUCE, n, REDUCE).mean(axis=(1, 3))
    return blocks[:, ::-1].copy()


def to_reduced(i: float, j: float) -> tuple:
    """Original pixel centre -> pixel of the reduced, mirrored image."""
    n = PIXELS // REDUCE
    return n - 1 - ((i + 0.5) / REDUCE - 0.5), (j + 0.5) / REDUCE - 0.5


def outline_picture(radiograph: np.ndarray, silhouettes, points_ij, path: Path) -> None:
    """The radiograph with each (silhouette, colour)'s outline and the feature points (cyan)."""
    from PIL import Image, ImageDraw

    rgb = np.repeat((np.clip(radiograph, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    for silhouette, colour in silhouettes:
        edge = silhouette & ~(np.roll(silhouette, 1, 0) & np.roll(silhouette, -1, 0)
                              & np.roll(silhouette, 1, 1) & np.roll(silhouette, -1, 1))
        rgb[edge] = colour
    picture = Image.fromarray(rgb)
    draw = ImageDraw.Draw(picture)
    for i, j in points_ij:
        draw.ellipse([i - 4, j - 4, i + 4, j + 4], outline=(0, 220, 255), width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)


def main():
    import SimpleITK as sitk

    from BoneReconLib.leg_command import run_leg
    from BoneReconLib.mesh_depth import mesh_depth
    from BoneReconLib.radiograph_file import read_radiograph

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "runs" / "rg3"))
    parser.add_argument("--picture", help="also save the outline picture here (e.g. docs/leg_real_radiograph.png)")
    args = parser.parse_args()
    if not SOURCE.is_file():
        sys.exit(f"{SOURCE} is missing: this benchmark needs the shared radiographs.")
    out = Path(args.out)
    work = out.parent / (out.name + "-input")
    work.mkdir(parents=True, exist_ok=True)
    spacing = PLATE_MM / PIXELS * REDUCE
    image = reduced(read_radiograph(SOURCE, [PLATE_MM / PIXELS]).pixels)
    sitk.WriteImage(sitk.GetImageFromArray(image.astype(np.float32)), str(work / "AP.nrrd"))
    view = ap_view(source_to_detector=SID_MM, source_to_isocenter=SID_MM - 40.0, size=image.shape[::-1],
                   pixel_spacing=(spacing, spacing), name="AP")
    save_geometry([view], work / "view.json")
    points = [dict(bone="tibia", name=name, i=float(p[0]), j=float(p[1]), confidence=1.0)
              for name, p in ((n, to_reduced(*ij)) for n, ij in POINTS.items())]
    (work / "points.json").write_text(json.dumps({"AP": points}, indent=1))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    run = run_leg(out, work / "AP.nrrd", None, work / "view.json", work / "points.json", side="right",
                  bones=["tibia"])
    tibia = run.result.bones["tibia"]
    fit = tibia.registration
    # The tibia orange, the fibula fitted beside it (when it was found) green.
    outlines = [(mesh_depth(points_mm, triangles, [view]).hit[0, 0].numpy(), colour) for (points_mm, triangles), colour
                in zip(run.result.surfaces().values(), [(255, 140, 0), (90, 230, 60)])]
    picture = out / "outline.png"
    for path in [picture] + ([Path(args.picture)] if args.picture else []):
        outline_picture(image, outlines, [(p["i"], p["j"]) for p in points], path)
    print(f"RG3_UNCI.dcm, right tibia, one view (AP), {image.shape[1]} x {image.shape[0]} pixels of {spacing:.2f} mm")
    print(f"  image agreement (NCC, high-passed, near the bone): {fit.ncc[0]:.2f}; feature points "
          f"{fit.landmark_rms_mm:.2f} mm RMS; {'converged' if fit.converged else 'NOT converged'}")
    for name, value in tibia.measurements.items():
        print(f"  {name}: {value:.1f}")
    for message in run.result.messages:
        print(f"  note: {message}")
    print(f"  wrote {out} ({', '.join(run.files)}) and {picture}")


if __name__ == "__main__":
    main()
