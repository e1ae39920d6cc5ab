"""Realism of simulated radiographs: DRRs, ideal and through radiograph_realism, against real ones.

    python benchmarks/radiograph_realism.py [--real 40] [--draws 12] [--figure real_vs_drr.png]
        [--synthetic-figure docs/realism-examples.png]

Real: AP spine radiographs of ../shared/data/xray/aasce_train, each cropped to a square around its
L1-L5 vertebral bodies (from the marked corners; side 1.4 x the L1-L5 height) and resized to
256 x 256. Synthetic: AP DRRs (256 x 256, same framing from the label maps) of the CTs in
../shared/data/ct that hold L1-L5 with the body's whole width, rendered ideal (log image, no
noise) and with `--draws` random `sample_realism` settings each. Every image is normalised to its 1st..99th percentile.

Printed per set: the grey-level histogram's distance to the real set's mean histogram (earth
mover's distance, grey levels 0..1; for the real set, each real image to the others' mean), the
slope of the radially averaged power spectrum (log power over log frequency, 0.02-0.25
cycles/pixel) and the share of power above 0.25 cycles/pixel (noise and fine edges).

`--figure` puts three real crops beside the ideal DRR and three realistic ones, for looking at
here only: the AASCE images are for research use and are not redistributed (the README's picture,
`--synthetic-figure`, shows the synthetic panels alone).
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.drr import Volume, hu_to_mu, radiograph_from_attenuation, render_attenuation  # noqa: E402
from BoneReconLib.geometry import ap_view  # noqa: E402
from BoneReconLib.image_io import read_label_map, read_volume_array  # noqa: E402
from BoneReconLib.radiograph_realism import realistic_radiograph, sample_realism  # noqa: E402

DATA = REPO.parent / "shared" / "data"
SIZE = 256
CTS = {  # name: (CT, label map, L1..L5 label values); VerSe 012 is left out: its field of view is spine-wide only
    "TotalSegmentator abdomen": ("ct/totalseg_abdomen/ct.nii.gz", "ct/totalseg_abdomen/spine_labels.nii.gz",
                                 (31, 30, 29, 28, 27)),
}


def normalised(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, [1, 99])
    return np.clip((image - low) / max(high - low, 1e-12), 0.0, 1.0)


def real_crops(count: int):
    import SimpleITK as sitk

    folder = DATA / "xray" / "aasce_train"
    names = [row[0] for row in csv.reader(open(folder / "filenames.csv"))]
    marks = np.loadtxt(folder / "landmarks.csv", delimiter=",")
    crops = []
    for name, row in list(zip(names, marks))[:count]:
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "images" / name))).astype(np.float64)
        if image.ndim == 3:
            image = image.mean(axis=-1)
        height, width = image.shape
        x, y = row[:68] * width, row[68:] * height
        lumbar = slice(12 * 4, 17 * 4)  # L1..L5: vertebrae 13..17 of T1..L5, four corners each
        cx, cy = x[lumbar].mean(), y[lumbar].mean()
        side = 1.4 * (y[lumbar].max() - y[lumbar].min())
        crop = image[int(max(cy - side / 2, 0)):int(cy + side / 2), int(max(cx - side / 2, 0)):int(cx + side / 2)]
        tensor = torch.as_tensor(crop)[None, None]
        crops.append(F.interpolate(tensor, size=(SIZE, SIZE), mode="area")[0, 0].numpy())
    return crops


def drr_attenuation(ct_path, labels_path, values):
    ct, matrix = read_volume_array(DATA / ct_path, "CT")
    labels, _ = read_label_map(DATA / labels_path)
    k, j, i = np.nonzero(np.isin(labels, values))
    points = np.c_[i, j, k, np.ones_like(i)] @ matrix.T
    centre = points[:, :3].mean(axis=0)
    height = np.ptp(points[:, 2])  # whole vertebrae: about 1.15 x the bodies' height
    view = ap_view(size=(SIZE, SIZE), pixel_spacing=(1.4 / 1.15 * height / SIZE * 1.25,) * 2, isocenter=centre)
    volume = Volume.from_numpy(hu_to_mu(ct.astype(np.float32)), matrix)
    return render_attenuation(volume, [view])[0, 0]  # the detector magnifies by 1.25 at the isocentre


def histogram(image, bins=64):
    counts, _ = np.histogram(image, bins=bins, range=(0.0, 1.0))
    return counts / counts.sum()


def emd(a, b):
    return float(np.abs(np.cumsum(a) - np.cumsum(b)).sum() / len(a))


def spectrum_figures(image):
    centred = (image - image.mean()) * np.outer(np.hanning(SIZE), np.hanning(SIZE))
    power = np.abs(np.fft.fftshift(np.fft.fft2(centred))) ** 2
    fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(SIZE)), np.fft.fftshift(np.fft.fftfreq(SIZE)), indexing="ij")
    radius = np.hypot(fx, fy)
    edges = np.linspace(0.0, 0.5, 65)
    index = np.digitize(radius.ravel(), edges) - 1
    valid = (index >= 0) & (index < 64)
    radial = np.bincount(index[valid], power.ravel()[valid], minlength=64)[:64] / np.maximum(
        np.bincount(index[valid], minlength=64)[:64], 1)
    centres = (edges[:-1] + edges[1:]) / 2
    mid = (centres >= 0.02) & (centres <= 0.25)
    slope = np.polyfit(np.log(centres[mid]), np.log(radial[mid] + 1e-30), 1)[0]
    high = radial[centres > 0.25].sum() / radial[centres >= 0.02].sum()
    return float(slope), float(high)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", type=int, default=40, help="number of real radiographs (default 40)")
    parser.add_argument("--draws", type=int, default=12, help="realism draws per CT (default 12)")
    parser.add_argument("--figure", help="write real and synthetic images side by side here (not for sharing)")
    parser.add_argument("--synthetic-figure", help="write the ideal and three realistic DRRs side by side here")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"needs {DATA} (the shared data folder)")
    torch.set_grad_enabled(False)
    real = [normalised(c) for c in real_crops(args.real)]
    ideal, realistic = [], []
    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(0)
    for name, (ct, labels, values) in CTS.items():
        attenuation = drr_attenuation(ct, labels, values).double()
        ideal.append(normalised(radiograph_from_attenuation(attenuation).numpy()))
        spacing = (1.0, 1.0)  # the realism widths are given for ~1 mm pixels at the detector
        for _ in range(args.draws):
            image = realistic_radiograph(attenuation, sample_realism(rng), spacing, generator)
            realistic.append(normalised(image.numpy()))
    real_histograms = np.array([histogram(r) for r in real])
    reference = real_histograms.mean(axis=0)

    def row(label, images, leave_one_out=False):
        if leave_one_out:
            distances = [emd(h, np.delete(real_histograms, n, 0).mean(axis=0)) for n, h in enumerate(real_histograms)]
        else:
            distances = [emd(histogram(image), reference) for image in images]
        figures = np.array([spectrum_figures(image) for image in images])
        print(f"{label:28s}{len(images):7d}{np.mean(distances):16.3f}{figures[:, 0].mean():16.2f}"
              f"{figures[:, 0].std():8.2f}{figures[:, 1].mean():14.4f}")

    print(f"{'set':28s}{'images':>7s}{'hist. EMD':>16s}{'spectral slope':>16s}{'s.d.':>8s}{'HF share':>14s}")
    row("real (AASCE AP)", real, leave_one_out=True)
    row("DRR ideal", ideal)
    row("DRR + realism", realistic)
    if args.figure:
        print("wrote", strip_png(real[:3] + ideal[:1] + realistic[:3], args.figure))
    if args.synthetic_figure:
        print("wrote", strip_png(ideal[:1] + realistic[:3], args.synthetic_figure))


def strip_png(panels, path):
    from BoneReconLib.screenshot import write_png

    gap = np.ones((SIZE, 4))
    strip = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    grey = (strip * 255).round().astype(np.uint8)
    return write_png(np.repeat(grey[..., None], 3, axis=2), path)

if __name__ == "__main__":
    main()
