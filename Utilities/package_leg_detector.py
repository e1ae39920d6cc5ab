"""Bundle a trained leg feature detector: weights + manifest entry "leg-detector" (data, training, metrics, licence).

    python Utilities/package_leg_detector.py --run RUN --version 0.1.0 --metrics METRICS.json [--checkpoint best.pt]

RUN is a `bonerecon train leg` folder; METRICS.json is written by
`python benchmarks/leg_reconstruction.py --images radiograph --points detector --detector RUN/best.pt --json METRICS.json`
(the real legs of the shared data, whole chain).
"""

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.network_library import package_weights  # noqa: E402
from package_depth_network import dataset_summary  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--checkpoint", default="best.pt")
    parser.add_argument("--licence", default="CC BY-NC 4.0: trained only on radiographs rendered from the bundled "
                        "femur and tibia shape models, themselves derived from CC BY-NC 4.0 surfaces (see "
                        "Resources/ShapeModels/Leg/README.md)")
    args = parser.parse_args()
    run = Path(args.run)
    history = json.loads((run / "history.json").read_text())
    settings = history["settings"]
    best = torch.load(run / args.checkpoint, map_location="cpu", weights_only=True)
    summary = dict(
        task="Leg feature detector: the femur's and tibia's feature points in an AP or lateral long-leg radiograph",
        input=dict(size=best["config"]["size"], pixel_mm=best["config"]["pixel_mm"],
                   pixels="any intensity scale, bone bright; resampled to pixel_mm at the detector, standardised"),
        data=dict(dataset_summary(Path(settings["data"])), made_by="bonerecon dataset leg"),
        training=dict(settings={k: v for k, v in settings.items() if k != "data"}, step=best.get("step"),
                      seconds=round(history.get("seconds", 0.0), 1), device=history.get("device", "cpu"),
                      validation=best.get("validation")),
        metrics=dict(real_legs_whole_chain=json.loads(Path(args.metrics).read_text())),
    )

    def short(path):  # no machine's folders in the manifest: "run/best.pt"
        return f"{Path(path).parent.name}/{Path(path).name}"

    if settings.get("init"):  # trained on from an earlier run (`bonerecon train leg --init`): record that one too
        summary["training"]["settings"]["init"] = short(settings["init"])
        earlier = Path(settings["init"]).parent / "history.json"
        if earlier.is_file():
            before = json.loads(earlier.read_text())
            kept = {k: v for k, v in before["settings"].items() if k not in ("data", "config")}
            if kept.get("init"):
                kept["init"] = short(kept["init"])
            summary["training"]["started_from"] = dict(
                settings=kept, step=(before.get("best") or {}).get("step"),
                seconds=round(before.get("seconds", 0.0), 1), device=before.get("device", "cpu"))
    entry = package_weights(run / args.checkpoint, "leg-detector", args.version, summary, licence=args.licence)
    print(f"Bundled leg-detector-{args.version}: {entry['bytes'] / 1e6:.2f} MB, sha256 {entry['sha256'][:16]}...")


if __name__ == "__main__":
    main()
