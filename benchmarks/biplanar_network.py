"""BiplanarRecon network on held-out synthetic cases: landmark error (mm at the detector) and
decomposition quality, side by side with the published multi-task network's figures.

    python benchmarks/biplanar_network.py --data DATASET [--weights RUN/best.pt] [--split test] [--max-cases N]
                                          [--decoding chain|peak] [--json METRICS.json]

DATASET is a `bonerecon dataset lumbar` folder; its test split holds shapes never seen in training
(each case its own shapes). Every (case, view) is resampled to the network grid without
augmentation. Printed per view: mean, median and 90th percentile landmark error over the landmarks
inside the network's field, the share within 2 and 4 mm, the error per anatomical region, and per
vertebra the decomposition MAE, PSNR and SSIM (on the network grid, line integrals x 0.5, data
range = the truth's maximum), the normalised cross-correlation with the truth (what registration
uses) and the mass ratio sum(predicted) / sum(true) (an empty image scores 0 here, however good its
SSIM), how well each landmark's expected error (``uncertainty_mm``, which the registration weighs
it by) matches its error, plus the inference time for both views of a case. Then the
"found" rule (a vertebra is found when its landmarks' median confidence reaches
FOUND_CONFIDENCE, they lie within FOUND_LAYOUT_MM of a vertebra's layout and FOUND_EDGE_MM or more
inside the image): how often it holds for the test vertebrae in the field, and on images without a lumbar spine (real chest and lower-leg
radiographs from ../shared/data when present, noise, a dark image, a smooth ramp; none of them was
used to set the rule) what each cue says and what is found. Without --weights the bundled
network is evaluated; --json also writes the figures (for the networks manifest).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib import biplanar_network  # noqa: E402
from BoneReconLib.biplanar_inference import layout_and_edge  # noqa: E402
from BoneReconLib.biplanar_network import landmark_positions, load_network  # noqa: E402
from BoneReconLib.biplanar_samples import BiplanarSamples  # noqa: E402
from BoneReconLib.biplanar_training import choose_device  # noqa: E402
from BoneReconLib.image_metrics import mae, ncc, psnr, ssim  # noqa: E402
from BoneReconLib.shape_model_library import load_models  # noqa: E402
from BoneReconLib.spine_alignment import LEVELS  # noqa: E402

PUBLISHED_MM = {"AP": 2.3, "LAT": 4.0}  # mean 2D landmark error of the published multi-task network
GOAL_MM = 1.5
VIEW_NAMES = ("AP", "LAT")
TARGET_S = {"cpu": 2.0, "cuda": 0.1}  # both views, issue 6


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--weights", help="network weights (default: the bundled network)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-cases", type=int, default=0, help="evaluate at most this many cases (0 = all)")
    parser.add_argument("--decoding", default="chain", choices=["chain", "peak"],
                        help="landmarks decoded as one chain of vertebrae (the default, as in the product) or "
                             "each map about its own highest pixel (before 2026-12-04)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"],
                        help="where the network runs (default cpu; the inference time is that device's)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    biplanar_network.CHAIN_DECODING = args.decoding == "chain"
    device = choose_device(args.device)
    model = load_network(args.weights, device)
    samples = BiplanarSamples(args.data, args.split, augment=False)
    count = len(samples) if args.max_cases <= 0 else min(len(samples), 2 * args.max_cases)
    regions = [lm.region for lm in load_models(levels=["L1"])["L1"].landmarks] * len(LEVELS)
    names = load_models(levels=["L1"])["L1"].landmark_names
    errors = {0: [], 1: []}
    by_region = {0: {}, 1: {}}
    decomposition = {0: {level: [] for level in LEVELS}, 1: {level: [] for level in LEVELS}}
    seconds = []
    vertebra_confidence = {0: [], 1: []}
    calibration = []  # per landmark in the field: (error mm, expected error mm per axis, confidence)
    for start in range(0, count, 2):  # both views of one case together, as at inference
        items = [samples[i] for i in range(start, min(start + 2, count))]
        images = torch.stack([item["image"] for item in items]).to(device)
        views = torch.stack([item["view"] for item in items]).to(device)
        valid = torch.stack([item["valid"] for item in items]).to(device)  # the refiner's crops, as in detect()
        tick = time.perf_counter()
        output = model(images, views, valid)
        positions, confidence = landmark_positions(model, output)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - tick)
        output = {key: value.cpu() for key, value in output.items()}
        positions, confidence = positions.cpu(), confidence.cpu()
        for item, predicted, found, sure, expected in zip(items, output["decomposition"], positions, confidence,
                                                          output["uncertainty"]):
            v = int(item["view"])
            layout_mm, edge_mm = layout_and_edge(found.double().numpy(), VIEW_NAMES[v], names)  # cases cover the field
            for n in range(len(LEVELS)):
                inside = item["weight"][n * 19:(n + 1) * 19]
                if inside.mean() >= 0.5:
                    vertebra_confidence[v].append((float(sure[n * 19:(n + 1) * 19].median()), layout_mm[n], edge_mm[n]))
            error = ((found - item["landmarks"]).norm(dim=-1) * item["spacing_mm"]).numpy()
            for k in np.nonzero(item["weight"].numpy() > 0)[0]:
                errors[v].append(error[k])
                calibration.append((error[k], float(expected[k]), float(sure[k])))
                by_region[v].setdefault(regions[k], []).append(error[k])
            for n, level in enumerate(LEVELS):
                truth = item["decomposition"][n]
                peak = float(truth.max())
                if peak > 0:
                    decomposition[v][level].append((mae(predicted[n], truth), psnr(predicted[n], truth, peak),
                                                    ssim(predicted[n], truth, peak), ncc(predicted[n], truth),
                                                    float(predicted[n].sum() / truth.sum())))
    summary = dict(split=args.split, decoding=args.decoding, cases=count // 2, landmarks_mm={}, decomposition={})
    print(f"{args.weights or 'bundled network'} ({args.decoding} decoding): {count // 2} {args.split} cases, both views, "
          f"device {describe(device)}")
    print(f"\n{'view':6s}{'landmarks':>10s}{'mean mm':>9s}{'median':>8s}{'p90':>7s}{'<=2 mm':>8s}{'<=4 mm':>8s}"
          f"{'published':>11s}{'ratio':>8s}{'goal':>6s}")
    for v, name in enumerate(VIEW_NAMES):
        e = np.asarray(errors[v])
        if len(e) == 0:
            continue
        ratio = e.mean() / PUBLISHED_MM[name]
        summary["landmarks_mm"][name] = dict(mean=round(float(e.mean()), 3), median=round(float(np.median(e)), 3),
                                             p90=round(float(np.percentile(e, 90)), 3),
                                             within_2mm=round(float(np.mean(e <= 2)), 3),
                                             within_4mm=round(float(np.mean(e <= 4)), 3), published=PUBLISHED_MM[name])
        print(f"{name:6s}{len(e):10d}{e.mean():9.3f}{np.median(e):8.2f}{np.percentile(e, 90):7.2f}"
              f"{np.mean(e <= 2):8.0%}{np.mean(e <= 4):8.0%}{PUBLISHED_MM[name]:11.1f}{ratio:8.3f}{GOAL_MM:6.1f}")
    print(f"\nMean landmark error per region (mm): {'AP':>8s}{'LAT':>8s}")
    for region in dict.fromkeys(regions):
        row = [np.mean(by_region[v].get(region, [np.nan])) for v in (0, 1)]
        print(f"  {region:33s}{row[0]:8.2f}{row[1]:8.2f}")
    print(f"\nDecomposition per vertebra: {'MAE':>8s}{'PSNR dB':>9s}{'SSIM':>7s}{'NCC':>6s}{'mass':>6s}  (AP | LAT)")
    for level in LEVELS:
        cells = []
        for v in (0, 1):
            values = np.asarray(decomposition[v][level])
            if len(values):
                summary["decomposition"].setdefault(VIEW_NAMES[v], {})[level] = dict(
                    mae=round(float(values[:, 0].mean()), 5), psnr_db=round(float(values[:, 1].mean()), 2),
                    ssim=round(float(values[:, 2].mean()), 4), ncc=round(float(values[:, 3].mean()), 4),
                    mass_ratio=round(float(values[:, 4].mean()), 4))
            cells.append(f"{values[:, 0].mean():8.4f}{values[:, 1].mean():9.1f}{values[:, 2].mean():7.3f}"
                         f"{values[:, 3].mean():6.2f}{values[:, 4].mean():6.2f}" if len(values) else f"{'-':>36s}")
        print(f"  {level:25s}{cells[0]}  |{cells[1]}")
    summary["uncertainty"] = uncertainty_calibration(np.asarray(calibration))
    print(f"\nInference, both views of a case (network + decoding, {device.type.upper()}): median "
          f"{np.median(seconds):.3f} s (target < {TARGET_S[device.type]:g} s)")
    summary["found"] = found_rule(model.cpu(), vertebra_confidence)
    if args.json:
        summary[f"inference_s_both_views_{device.type}"] = round(float(np.median(seconds)), 3)
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
        print(f"Wrote {args.json}")


def uncertainty_calibration(rows: np.ndarray) -> dict:
    """Print and return how well each landmark's expected error (``uncertainty_mm``, one s.d. per
    axis) matches its error: per tenth of the landmarks ordered by it, the measured RMS error per
    axis (calibrated: the two columns agree), and the rank correlations with the error of it and
    of the confidence."""
    error, expected, confidence = rows.T
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    correlation = float(np.corrcoef(rank(expected), rank(error))[0, 1])
    against_confidence = float(np.corrcoef(rank(confidence), rank(error))[0, 1])
    print(f"\nLandmark uncertainty (expected error per axis) against the error, both views, per tenth of the "
          f"landmarks:\n  {'expected mm':>16s}{'landmarks':>11s}{'mean error':>12s}{'RMS per axis':>14s}")
    edges = np.quantile(expected, np.linspace(0, 1, 11))
    table = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (expected >= lo) & (expected <= hi)
        rms = float(np.sqrt(np.mean(error[inside] ** 2) / 2))
        table.append(dict(expected_from=round(float(lo), 2), expected_to=round(float(hi), 2),
                          expected_median=round(float(np.median(expected[inside])), 2),
                          mean_error=round(float(error[inside].mean()), 2), rms_per_axis=round(rms, 2)))
        print(f"  {lo:7.2f} .. {hi:5.2f}{inside.sum():11d}{error[inside].mean():12.2f}{rms:14.2f}")
    print(f"  rank correlation with the error: uncertainty {correlation:.2f}, confidence {against_confidence:.2f}")
    return dict(rank_correlation=round(correlation, 3), confidence_rank_correlation=round(against_confidence, 3),
                tenths=table)


def found_rule(model, vertebra_confidence) -> dict:
    """Print and return how the found rule does on spines (test vertebrae) and on images without one."""
    from BoneReconLib.biplanar_inference import FOUND_CONFIDENCE, FOUND_EDGE_MM, FOUND_LAYOUT_MM, detect, found_by_cues
    from BoneReconLib.radiograph_file import read_radiograph

    names = load_models(levels=["L1"])["L1"].landmark_names
    print(f"\nFound rule (median landmark confidence >= {FOUND_CONFIDENCE}, layout within {FOUND_LAYOUT_MM:g} mm, "
          f"landmarks {FOUND_EDGE_MM:g} mm or more inside the image):")
    out = {}
    for v, name in enumerate(VIEW_NAMES):
        c, layout, edge = np.asarray(vertebra_confidence[v]).T
        found = found_by_cues(c, layout, edge)
        out[f"test_{name}_found"] = round(float(np.mean(found)), 3)
        print(f"  test vertebrae in the field, {name}: found {np.mean(found):.0%} (confidence median "
              f"{np.median(c):.2f}, 5th percentile {np.percentile(c, 5):.2f}; layout median {np.median(layout):.1f} mm, "
              f"95th percentile {np.percentile(layout, 95):.1f} mm)")
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(0, 1, 300), (400, 1))
    others = [("uniform noise", rng.random((400, 300)), 1.0), ("dark (1 % noise)", 0.01 * rng.random((400, 300)), 1.0),
              ("smooth ramp", ramp, 1.0)]
    xray = REPO.parent / "shared" / "data" / "xray" / "pydicom"
    for file, what in (("RG1_UNCI.dcm", "chest PA radiograph"), ("RG3_UNCI.dcm", "lower-leg radiograph")):
        if (xray / file).is_file():
            others.append((f"{what} (0.2 mm assumed)", read_radiograph(xray / file, [0.2]).pixels, 0.2))
    worst, closest, wrongly = 0.0, np.inf, 0
    for what, pixels, spacing in others:
        for view in VIEW_NAMES:
            detection = detect(model, pixels, (spacing, spacing), view, names)
            best = max(detection.vertebra_confidence.values())
            nearest = min(detection.vertebra_layout_mm.values())
            worst, closest, wrongly = max(worst, best), min(closest, nearest), wrongly + len(detection.found)
            print(f"  {what:38s} as {view:3s}: highest confidence {best:.2f}, closest layout {nearest:5.1f} mm, "
                  f"found {', '.join(detection.found) or 'none'}")
    out.update(no_spine_highest_confidence=round(worst, 3), no_spine_closest_layout_mm=round(float(closest), 2),
               no_spine_found=wrongly)
    return out


if __name__ == "__main__":
    main()
