"""Regenerate docs/drr-example.png: `bonerecon drr` on the bundled sample, AP + lateral at 1.5 mm.

Panels: AP DRR, lateral DRR, then L3 in the lateral view enlarged: its own DRR, its front depth
(near = bright) and its thickness. Run from the repository root: python Utilities/make_drr_figure.py
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.drr_command import run_drr  # noqa: E402
from BoneReconLib.geometry import biplanar_rig, save_geometry  # noqa: E402
from BoneReconLib.sample_data import SAMPLE_CT, SAMPLE_VERTEBRA_LABELS  # noqa: E402
from BoneReconLib.screenshot import write_png  # noqa: E402


def read(path):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[0].astype(float)


def stretch(image, mask=None):
    values = image[mask] if mask is not None else image
    lo, hi = np.percentile(values, [0.5, 99.5])
    out = np.clip((image - lo) / max(hi - lo, 1e-9), 0, 1)
    return np.where(mask, out, 0.0) if mask is not None else out


def main():
    import SimpleITK as sitk

    ct = sitk.ReadImage(str(SAMPLE_CT))
    centre_lps = ct.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in ct.GetSize()])
    centre = np.array(centre_lps) * [-1, -1, 1]
    views = biplanar_rig(size=(256, 256), pixel_spacing=(1.5, 1.5), isocenter=centre)
    with tempfile.TemporaryDirectory() as tmp:
        geometry = save_geometry(views, Path(tmp) / "views.json")
        out = Path(tmp) / "drr"
        run_drr(out, SAMPLE_CT, geometry, SAMPLE_VERTEBRA_LABELS, "totalsegmentator", ["L3"], scene_bundle=False)
        panels = [stretch(read(out / "AP.nrrd")), stretch(read(out / "LAT.nrrd"))]
        thickness = read(out / "L3_LAT_thickness.nrrd")
        hit = thickness > 0
        rows, cols = np.nonzero(hit)
        r0 = int(np.clip(rows.mean() - 43, 0, 256 - 86))
        c0 = int(np.clip(cols.mean() - 43, 0, 256 - 86))
        crop = (slice(r0, r0 + 86), slice(c0, c0 + 86))
        front = read(out / "L3_LAT_front.nrrd")
        near_bright = np.where(hit, 1.0 - stretch(front, hit), 0.0)
        for image in (stretch(read(out / "L3_LAT_drr.nrrd")), near_bright, stretch(thickness)):
            panels.append(np.kron(image[crop], np.ones((3, 3)))[:256, :256])
    gap = np.ones((256, 4))
    strip = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    grey = (strip * 255).round().astype(np.uint8)
    path = write_png(np.repeat(grey[..., None], 3, axis=2), REPO / "docs" / "drr-example.png")
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
