"""Bundle a trained BiplanarRecon network: weights + manifest entry (data, training, metrics, licence).

    python Utilities/package_biplanar_network.py --run RUN --version 1.0.0 --metrics METRICS.json
        [--real-metrics REAL.json] [--checkpoint best.pt]

RUN is a `bonerecon train biplanar` folder; METRICS.json is written by
`python benchmarks/biplanar_network.py --data DATASET --weights RUN/best.pt --json METRICS.json` (held-out
synthetic test split) and REAL.json by `benchmarks/biplanar_real_ap.py --json` (real AP radiographs).
The manifest records the dataset's description (seed, size, backgrounds, shape-model hashes and
split), the training settings, steps, time and device, the best validation, and those metrics.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.network_library import package_weights  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--real-metrics")
    parser.add_argument("--checkpoint", default="best.pt")
    args = parser.parse_args()
    run = Path(args.run)
    checkpoint = run / args.checkpoint
    history = json.loads((run / "history.json").read_text())
    settings = history["settings"]
    data = json.loads((Path(settings["data"]) / "manifest.json").read_text())
    split = {}
    for case in data.get("cases", []):
        split[case["split"]] = split.get(case["split"], 0) + 1
    best = torch.load(checkpoint, map_location="cpu", weights_only=False)
    summary = dict(
        task="BiplanarRecon: L1-L5 decomposition + 95 landmark heatmaps, AP and lateral lumbar radiographs",
        input=dict(size=settings["size"], spacing_mm=1.5, views=["AP", "LAT"], pixels="bone bright, normalised"),
        data=dict(kind=data.get("kind"), description=data.get("description"), cases=len(data.get("cases", [])),
                  split=split, split_by=data.get("split", {}).get("by"),
                  made_by="bonerecon dataset lumbar (synthetic: bundled shape models on the bundled sample CT)"),
        training=dict(settings={k: v for k, v in settings.items() if k != "data"}, step=best.get("step"),
                      seconds=round(history.get("seconds", 0.0), 1), device=history.get("device", "cpu"),
                      validation=best.get("validation")),
        metrics=dict(synthetic_test=json.loads(Path(args.metrics).read_text())),
    )
    if args.real_metrics:
        summary["metrics"]["real_ap"] = json.loads(Path(args.real_metrics).read_text())
    entry = package_weights(checkpoint, "biplanar", args.version, summary,
                            licence="Apache-2.0 (trained by BoneRecon on synthetic data made from the bundled "
                                    "shape models and sample CT; see Resources/Networks/README.md)")
    print(f"Bundled biplanar-{args.version}: {entry['bytes'] / 1e6:.1f} MB, sha256 {entry['sha256'][:16]}...")


if __name__ == "__main__":
    main()
