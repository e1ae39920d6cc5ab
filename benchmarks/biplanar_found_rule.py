"""Calibrate the BiplanarRecon found rule: its two cues (landmark confidence, layout residual) on
vertebrae and on images without a spine, and what each pair of thresholds finds (with the rule's
third part, every landmark FOUND_EDGE_MM or more inside the radiograph, as it is).

    python benchmarks/biplanar_found_rule.py --data DATASET [--legs LEG_DATASET] [--weights W]
                                             [--max-cases N] [--real DIR]

DATASET is a `bonerecon dataset lumbar` folder: its validation split gives the synthetic vertebrae
(those with at least half their landmarks in the network's field). The real AP vertebrae are the
L1-L5 of the AASCE validation rows (every 4th row + 1; see real_ap_corners.py). The images without
a spine: LEG_DATASET's long-leg radiographs (`bonerecon dataset leg --out LEGS --cases 30 --seed 5`,
3 mm pixels), and 10 each of uniform noise, near-black noise and smooth blobs (seed 123), each read
as AP and as lateral. None of these is an image of benchmarks/biplanar_network.py or
biplanar_real_ap.py, which check the chosen rule. Printed: the 5th / 50th / 95th percentiles of
both cues per group, then for each pair of thresholds the share of vertebrae found and the number
of images without a spine where anything is found (the chosen pair marked).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.biplanar_inference import FOUND_CONFIDENCE, FOUND_EDGE_MM, FOUND_LAYOUT_MM, detect  # noqa: E402
from BoneReconLib.biplanar_inference import layout_and_edge  # noqa: E402
from BoneReconLib.biplanar_network import landmark_positions, load_network  # noqa: E402
from BoneReconLib.biplanar_samples import BiplanarSamples, resample_covered  # noqa: E402
from BoneReconLib.dataset_store import CaseDataset  # noqa: E402
from BoneReconLib.real_ap_corners import RealAPSamples, body_width_mm  # noqa: E402
from BoneReconLib.shape_model_library import load_models  # noqa: E402
from BoneReconLib.spine_alignment import LEVELS  # noqa: E402

AASCE = REPO.parent / "shared" / "data" / "xray" / "aasce_train"
VIEWS = ("AP", "LAT")


def cues(model, image, view, names, covered=None):
    """(L,) median landmark confidence, (L,) layout residual (mm) and (L,) edge margin (mm) of one
    network-grid image (``covered``: where it holds the radiograph; None: all of it)."""
    output = model(image[None], torch.tensor([float(VIEWS.index(view))]), None if covered is None else covered[None])
    positions, confidence = (value[0] for value in landmark_positions(model, output))
    layout, edge = layout_and_edge(positions.double().numpy(), view, names, None if covered is None else covered[0].numpy())
    return confidence.reshape(len(LEVELS), -1).median(dim=-1).values.numpy(), layout, edge


def no_spine_images(legs):
    """(what, pixels, spacing mm) of the images without a spine."""
    import SimpleITK as sitk

    images = []
    if legs:
        cases = CaseDataset(legs, None, keys=["image"])
        for n in range(len(cases)):
            case = cases[n]
            for v in range(2):
                spacing = float(case["meta"]["views"][v]["pixel_spacing"][0])
                pixels = case["image"][v].double().numpy()
                images.append(("leg radiograph", (pixels - pixels.min()) / np.ptp(pixels), spacing))
    rng = np.random.default_rng(123)
    for k in range(10):
        images.append(("uniform noise", rng.random((400, 300)), 1.0))
        images.append(("near-black noise", 0.01 * rng.random((400, 300)), 1.0))
        blob = sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(rng.random((400, 300))), 4.0 + 2 * k)
        blob = sitk.GetArrayFromImage(blob)
        images.append(("smooth blobs", (blob - blob.min()) / np.ptp(blob), 1.0))
    return images


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--legs", help="a `bonerecon dataset leg` folder (images without a spine)")
    parser.add_argument("--weights", help="network weights (default: the bundled network)")
    parser.add_argument("--max-cases", type=int, default=150, help="validation cases (both views each)")
    parser.add_argument("--real", default=str(AASCE), help="annotated real AP folder (AASCE format)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_network(args.weights)
    names = load_models(levels=["L1"])["L1"].landmark_names
    vertebrae = {"synthetic AP": [], "synthetic LAT": [], "real AP": []}
    samples = BiplanarSamples(args.data, "validation", augment=False)
    for n in range(min(len(samples), 2 * args.max_cases)):
        item = samples[n]
        view = VIEWS[int(item["view"])]
        confidence, layout, edge = cues(model, item["image"], view, names)  # the cases cover the field
        for level in range(len(LEVELS)):
            if item["weight"][level * len(names):(level + 1) * len(names)].mean() >= 0.5:
                vertebrae[f"synthetic {view}"].append((confidence[level], layout[level], edge[level]))
    if Path(args.real).is_dir():
        cases = CaseDataset(args.data, "train", keys=["landmarks_ij"])
        width_mm = body_width_mm([cases[i] for i in range(min(50, len(cases)))], names)
        real = RealAPSamples(args.real, "validation", names, width_mm)
        for n, item in enumerate(real.items):
            _, covered = resample_covered(real.pixels(n)[None], real.transform(item, real.pixels(n).shape))
            vertebrae["real AP"].extend(zip(*cues(model, real[n]["image"], "AP", names, covered)))  # all five
    others = []  # per (image, view): (L, 2) cues
    for what, pixels, spacing in no_spine_images(args.legs):
        for view in VIEWS:
            detection = detect(model, pixels, (spacing, spacing), view, names)
            others.append((what, view, np.array([[detection.vertebra_confidence[level], detection.vertebra_layout_mm[level],
                                                  detection.vertebra_edge_mm[level]] for level in LEVELS])))
    print(f"{args.weights or 'bundled network'}: found-rule cues (5th / 50th / 95th percentile)")
    print(f"{'group':28s}{'count':>7s}{'confidence':>20s}{'layout mm':>22s}{'edge mm':>22s}")
    groups = {name: np.asarray(rows) for name, rows in vertebrae.items() if rows}
    for what in dict.fromkeys(w for w, _, _ in others):
        for view in VIEWS:
            groups[f"{what} as {view}"] = np.concatenate([c for w, v, c in others if w == what and v == view])
    for name, rows in groups.items():
        c, r, e = (np.percentile(rows[:, k], [5, 50, 95]) for k in range(3))
        print(f"{name:28s}{len(rows):7d}{'%6.2f %6.2f %6.2f' % tuple(c):>20s}{'%6.1f %6.1f %6.1f' % tuple(r):>22s}"
              f"{'%6.1f %6.1f %6.1f' % tuple(e):>22s}")
    spines = [name for name in ("synthetic AP", "synthetic LAT", "real AP") if name in groups]
    print(f"\n{'confidence >=':>14s}{'layout <=':>10s}" + "".join(f"{name:>15s}" for name in spines)
          + f"{'no spine AP':>13s}{'no spine LAT':>14s}")
    for threshold in (0.1, 0.15, 0.2, 0.25):
        for limit in (4.0, 5.0, 6.0, np.inf):
            rule = lambda c: (c[:, 0] >= threshold) & (c[:, 1] <= limit) & (c[:, 2] >= FOUND_EDGE_MM)  # noqa: E731
            cells = [f"{np.mean(rule(groups[n])):15.0%}" for n in spines]
            wrong = [sum(bool(np.any(rule(c))) for _, v, c in others if v == view) for view in VIEWS]
            total = [sum(1 for _, v, _ in others if v == view) for view in VIEWS]
            chosen = "  <- chosen" if threshold == FOUND_CONFIDENCE and limit == FOUND_LAYOUT_MM else ""
            print(f"{threshold:14.2f}{limit:10.0f}" + "".join(cells)
                  + f"{f'{wrong[0]}/{total[0]}':>13s}{f'{wrong[1]}/{total[1]}':>14s}{chosen}")


if __name__ == "__main__":
    main()
