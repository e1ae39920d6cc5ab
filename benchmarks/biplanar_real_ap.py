"""BiplanarRecon network on real AP radiographs: L1-L5 vertebral-body corner error on the AASCE images
kept aside for the report (every 4th; never used in training or model selection).

    python benchmarks/biplanar_real_ap.py --data DATASET [--weights RUN/best.pt] [--real DIR] [--split report]
                                          [--decoding chain|peak] [--json REAL.json]

DATASET is the synthetic `bonerecon dataset lumbar` folder the network was trained on: the mean
L1-L5 endplate width of its AP views at the detector sets the scale of the real images, which
carry no pixel spacing (see BoneReconLib/real_ap_corners.py). Printed: the corner error in the
images' own pixels, in mm at that scale, and as a share of the image's own endplate width (free of
the scale assumption), per vertebra, beside the goal (median < 3 mm), with the corners' confidence;
then how many vertebrae the found rule (biplanar_inference) finds and the corner error of those
found and of the others (what the rule is worth on real images); and per image the chain offset:
the shift of the annotated vertebrae (T11..L5) that best fits the predicted L1-L5 corners (-1: the
predicted chain sits one vertebra high, its L1 on T12), with the error of the unshifted images.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib import biplanar_network  # noqa: E402
from BoneReconLib.biplanar_network import landmark_positions, load_network  # noqa: E402
from BoneReconLib.biplanar_samples import resample_covered  # noqa: E402
from BoneReconLib.biplanar_samples import from_network_pixels  # noqa: E402
from BoneReconLib.dataset_store import CaseDataset  # noqa: E402
from BoneReconLib.real_ap_corners import RealAPSamples, body_width_mm  # noqa: E402
from BoneReconLib.biplanar_inference import found_by_cues, layout_and_edge  # noqa: E402
from BoneReconLib.spine_alignment import LEVELS  # noqa: E402

GOAL_MEDIAN_MM = 3.0
AASCE = REPO.parent / "shared" / "data" / "xray" / "aasce_train"


OFFSETS = (-2, -1, 0, 1)


def chain_offset(corners: np.ndarray, spine: np.ndarray) -> int:
    """The shift k in ``OFFSETS`` for which the predicted L1-L5 corners (5, 4, 2) lie closest (mean
    over the levels with a counterpart) to the annotated vertebrae shifted by k, ``spine`` (17, 4,
    2) T1..L5: -1 pairs the predicted L1 with T12, +1 the predicted L1 with L2."""
    first = len(spine) - len(LEVELS)  # L1's index in spine
    fits = {}
    for shift in OFFSETS:
        pairs = [(k, first + k + shift) for k in range(len(LEVELS)) if 0 <= first + k + shift < len(spine)]
        fits[shift] = np.mean([np.linalg.norm(corners[k] - spine[j], axis=-1).mean() for k, j in pairs])
    return min(fits, key=fits.get)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="the synthetic lumbar dataset (sets the reference scale)")
    parser.add_argument("--weights", help="network weights (default: the bundled network)")
    parser.add_argument("--real", default=str(AASCE), help="annotated real AP folder (AASCE format)")
    parser.add_argument("--split", default="report", choices=["report", "validation", "train"])
    parser.add_argument("--decoding", default="chain", choices=["chain", "peak"],
                        help="landmarks decoded as one chain of vertebrae (the default, as in the product) or "
                             "each map about its own highest pixel (before 2026-12-04)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    biplanar_network.CHAIN_DECODING = args.decoding == "chain"
    model = load_network(args.weights)
    cases = CaseDataset(args.data, "train", keys=["landmarks_ij"])
    names = cases[0]["meta"]["landmark_names"]
    width_mm = body_width_mm([cases[i] for i in range(min(50, len(cases)))], names)
    samples = RealAPSamples(args.real, args.split, names, width_mm)
    index = samples.index  # (5, 4) corner landmarks
    px, mm, share, confidence, per_level = [], [], [], [], {level: [] for level in LEVELS}
    found_mm, missed_mm, offsets, unshifted_mm = [], [], [], []
    for n, item in enumerate(samples.items):
        sample = samples[n]
        transform = samples.transform(item, samples.pixels(n).shape)
        _, covered = resample_covered(samples.pixels(n)[None], transform)  # as at inference
        output = model(sample["image"][None], sample["view"][None], covered[None])
        found, sure = (value[0] for value in landmark_positions(model, output))
        corners = from_network_pixels(found.double().numpy()[index.reshape(-1)], transform).reshape(5, 4, 2)
        error = np.linalg.norm(corners - item.corners, axis=-1)  # (5, 4) image pixels
        px.extend(error.ravel())
        mm.extend(error.ravel() * samples.spacing_mm(item))
        share.extend(error.ravel() / item.width_px())
        confidence.extend(sure.numpy()[index.reshape(-1)])
        for level, row in zip(LEVELS, error * samples.spacing_mm(item)):
            per_level[level].extend(row)
        offsets.append(chain_offset(corners, item.spine))
        if offsets[-1] == 0:
            unshifted_mm.extend(error.ravel() * samples.spacing_mm(item))
        layout_mm, edge_mm = layout_and_edge(found.double().numpy(), "AP", names, covered[0].numpy())
        sure_level = sure.reshape(len(LEVELS), -1).median(dim=-1).values.numpy()
        for row, c, r, e in zip(error * samples.spacing_mm(item), sure_level, layout_mm, edge_mm):
            (found_mm if found_by_cues(c, r, e) else missed_mm).extend(row)
    px, mm, share = np.asarray(px), np.asarray(mm), np.asarray(share)
    print(f"{args.weights or 'bundled network'} ({args.decoding} decoding) on {len(samples)} real AP radiographs ({args.split} split of "
          f"{args.real}), {len(px)} L1-L5 corners; scale: endplate width = {width_mm:.1f} mm (synthetic AP mean)")
    print(f"\n{'error':14s}{'mean':>8s}{'median':>8s}{'p90':>8s}")
    for name, values in (("pixels", px), ("mm", mm), ("% of width", 100 * share)):
        print(f"{name:14s}{values.mean():8.2f}{np.median(values):8.2f}{np.percentile(values, 90):8.2f}")
    ratio = np.median(mm) / GOAL_MEDIAN_MM
    print(f"\nmedian {np.median(mm):.2f} mm, goal < {GOAL_MEDIAN_MM:.1f} mm: ratio {ratio:.2f}; "
          f"within 3 mm {np.mean(mm <= 3):.0%}, within 6 mm {np.mean(mm <= 6):.0%}")
    print("per vertebra (mean mm): " + "  ".join(f"{level} {np.mean(per_level[level]):.2f}" for level in LEVELS))
    print(f"corner confidence: median {np.median(confidence):.3f}")
    found_mm, missed_mm = np.asarray(found_mm), np.asarray(missed_mm)
    cell = lambda e: f"corner error median {np.median(e):.2f}, mean {e.mean():.2f} mm" if len(e) else "-"  # noqa: E731
    print(f"found rule: {len(found_mm) // 4} of {len(mm) // 4} vertebrae found ({cell(found_mm)}); "
          f"not found: {len(missed_mm) // 4} ({cell(missed_mm)})")
    counts = {shift: offsets.count(shift) for shift in OFFSETS}
    print("chain offset (shift of the annotated vertebrae that best fits the predicted L1-L5): "
          + ", ".join(f"{shift:+d} on {count}" for shift, count in counts.items())
          + f" images; the unshifted images' corner error: median {np.median(unshifted_mm):.2f}, "
          f"mean {np.mean(unshifted_mm):.2f} mm")
    if args.json:
        summary = dict(split=args.split, decoding=args.decoding, images=len(samples), corners=int(len(px)),
                       reference_width_mm=round(width_mm, 2),
                       error_px=dict(mean=round(float(px.mean()), 2), median=round(float(np.median(px)), 2)),
                       error_mm=dict(mean=round(float(mm.mean()), 2), median=round(float(np.median(mm)), 2),
                                     p90=round(float(np.percentile(mm, 90)), 2)),
                       error_share_of_width=round(float(np.median(share)), 4), goal_median_mm=GOAL_MEDIAN_MM,
                       found_vertebrae=int(len(found_mm) // 4), chain_offsets={str(k): v for k, v in counts.items()},
                       found_error_mm=dict(median=round(float(np.median(found_mm)), 2)) if len(found_mm) else None)
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
        print(f"Wrote {args.json}")


if __name__ == "__main__":
    main()
