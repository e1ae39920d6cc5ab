"""Biplanar lumbar training cases per minute (AP + lateral, 256 x 256 per view) and what they hold.

    python benchmarks/lumbar_cases.py [--cases 60] [--size 256]

Background: the bundled sample CT (TotalSegmentator test CT, 3 mm; in the repository, so this runs
on a fresh clone). Each case: new L1-L5 shapes from the bundled shape models, a random alignment,
both views rendered (background DRR + exact meshes with cortical shell), two realism chains,
written and hashed into a temporary dataset folder as a real run would. Prints cases per minute
against the target (60/min on the 2-core CPU), then the spread of the alignments as measured back
from the placed meshes, the facet overlap of neighbours, landmark visibility and disk use.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.lumbar_dataset import generate_lumbar_dataset  # noqa: E402
from BoneReconLib.lumbar_radiograph import SpineCT  # noqa: E402
from BoneReconLib.sample_data import SAMPLE_CT, SAMPLE_VERTEBRA_LABELS  # noqa: E402
from BoneReconLib.shape_model_library import load_models  # noqa: E402

TARGET_PER_MINUTE = 60.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    models = load_models()
    background = SpineCT.from_files(SAMPLE_CT, SAMPLE_VERTEBRA_LABELS)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        manifest = generate_lumbar_dataset(Path(folder) / "data", [background], models, args.cases, seed=0,
                                           size=(args.size, args.size))
        elapsed = time.perf_counter() - start
        files = sorted((Path(folder) / "data" / "cases").glob("*.npz"))
        megabytes = sum(f.stat().st_size for f in files) / 1e6 / len(files)
        metas, visible = [], []
        for path in files:
            with np.load(path) as data:
                metas.append(json.loads(str(data["meta"])))
                visible.append(data["visible"])
    n = len(manifest["cases"])
    rate = 60.0 * n / elapsed
    print(f"device: cpu ({torch.get_num_threads()} threads), {args.size} x {args.size} per view, {n} cases")
    print(f"{'':24s}{'cases/min':>10s}{'s/case':>9s}{'target':>8s}{'ratio':>7s}")
    ratio = rate / TARGET_PER_MINUTE
    print(f"{'lumbar AP + LAT':24s}{rate:10.1f}{elapsed / n:9.3f}{TARGET_PER_MINUTE:8.0f}{ratio:7.2f}")

    segments = ("L1-L2", "L2-L3", "L3-L4", "L4-L5")
    measured = [m["measured_alignment"] for m in metas]
    lordosis = np.array([sum(a[s]["lordosis_deg"] for s in segments) for a in measured])
    coronal = np.abs([sum(a[s]["coronal_deg"] for s in segments) for a in measured])
    slips = np.array([max(m["alignment"]["slip_mm"].values()) for m in metas])
    overlap = np.array([list(m["facet_overlap_mm"].values()) for m in metas]).ravel()
    visible = np.stack(visible)  # (cases, V, 5, L)
    print("\nWhat the cases hold (measured back from the placed meshes):")
    print(f"  disc lordosis L1-L5 (sum of the 4 disc wedges): mean {lordosis.mean():.1f} deg, "
          f"s.d. {lordosis.std():.1f}, range {lordosis.min():.1f} .. {lordosis.max():.1f}")
    print(f"  coronal curve across the 4 discs: median {np.median(coronal):.1f} deg, max {coronal.max():.1f}; "
          f"{np.mean(coronal > 10):.0%} over 10 deg")
    print(f"  cases with a slip > 2 mm: {np.mean(slips > 2):.0%} (largest {slips.max():.1f} mm)")
    print(f"  facet overlap of neighbours (mm): median {np.median(overlap):.2f}, 90th pct "
          f"{np.percentile(overlap, 90):.2f}, max {overlap.max():.2f}")
    print(f"  visible landmarks: AP {visible[:, 0].mean():.0%}, LAT {visible[:, 1].mean():.0%}")
    print(f"  disk: {megabytes:.2f} MB per case")


if __name__ == "__main__":
    main()
