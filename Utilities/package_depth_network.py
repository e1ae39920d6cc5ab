"""Bundle a trained DepthRecon network: weights + manifest entry (data, training, metrics, licence).

    python Utilities/package_depth_network.py --run RUN --anatomy wrist --version 0.1.0 --metrics METRICS.json
        --test-data TEST_DATASET [--checkpoint best.pt] [--licence TEXT]

RUN is a `bonerecon train depth` folder; METRICS.json is written by
`python benchmarks/depth_reconstruction.py --data TEST_DATASET --weights RUN/best.pt --json METRICS.json`
(held-out cases of people the network never saw). The manifest entry ("depth-<anatomy>") records
the training dataset's description (subjects, posing, variation, sizes, split), the test dataset's,
the training settings, steps, time and device, the best validation, and those metrics.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.network_library import package_weights  # noqa: E402


def dataset_summary(folder: Path) -> dict:
    data = json.loads((folder / "manifest.json").read_text())
    split = {}
    for case in data.get("cases", []):
        split[case["split"]] = split.get(case["split"], 0) + 1
    return dict(kind=data.get("kind"), description=data.get("description"), cases=len(data.get("cases", [])),
                split=split, split_by=data.get("split", {}).get("by"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--anatomy", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--test-data", required=True, help="the held-out dataset the metrics were measured on")
    parser.add_argument("--checkpoint", default="best.pt")
    parser.add_argument("--licence", default="Apache-2.0 (code and weights by BoneRecon); see "
                        "Resources/Networks/README.md for the data the weights were trained on")
    args = parser.parse_args()
    run = Path(args.run)
    history = json.loads((run / "history.json").read_text())
    settings = history["settings"]
    best = torch.load(run / args.checkpoint, map_location="cpu", weights_only=True)
    summary = dict(
        task=f"DepthRecon ({args.anatomy}): per-bone masks + front/back depth relative to the object plane, "
             f"bones {', '.join(best['config']['bones'])}",
        input=dict(size=best["config"]["size"], object_pixel_mm=best["config"]["object_pixel_mm"],
                   pixels="bone bright, normalised; resampled to object_pixel_mm at the object plane"),
        data=dict(dataset_summary(Path(settings["data"])), made_by="bonerecon dataset limb"),
        test_data=dataset_summary(Path(args.test_data)),
        training=dict(settings={k: v for k, v in settings.items() if k != "data"}, step=best.get("step"),
                      seconds=round(history.get("seconds", 0.0), 1), device=history.get("device", "cpu"),
                      validation=best.get("validation")),
        metrics=dict(held_out_test=json.loads(Path(args.metrics).read_text())),
    )
    entry = package_weights(run / args.checkpoint, f"depth-{args.anatomy}", args.version, summary,
                            licence=args.licence)
    print(f"Bundled depth-{args.anatomy}-{args.version}: {entry['bytes'] / 1e6:.1f} MB, "
          f"sha256 {entry['sha256'][:16]}...")


if __name__ == "__main__":
    main()
