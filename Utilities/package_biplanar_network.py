"""Bundle a trained BiplanarRecon network: weights + manifest entry (data, training, metrics, licence).

    python Utilities/package_biplanar_network.py --run RUN --version 1.0.0 --metrics METRICS.json
        [--real-metrics REAL.json] [--checkpoint best.pt] [--refiner-run REFINER_RUN | --bundled-refiner]
        [--init-bundled]
    python Utilities/package_biplanar_network.py --bundled-main --refiner-run REFINER_RUN --version V --metrics ...

RUN is a `bonerecon train biplanar` folder; METRICS.json is written by
`python benchmarks/biplanar_network.py --data DATASET --weights RUN/best.pt --json METRICS.json` (held-out
synthetic test split) and REAL.json by `benchmarks/biplanar_real_ap.py --json` (real AP radiographs).
The manifest records the dataset's description (seed, size, backgrounds, shape-model hashes and
split), the training settings, steps, time and device, the best validation, and those metrics.
With --refiner-run (a `bonerecon train biplanar --refiner` folder) the landmark refiner of that
run's best.pt is attached to RUN's network (written as REFINER_RUN/combined.pt, then bundled) and
its training is recorded too; METRICS.json must then be measured on that combined file. A
refiner with a decomposition head (its config's "decomposition") also replaces the main
network's per-vertebra images. With --bundled-refiner the bundled network's refiner joins RUN's
network instead (RUN fine-tuned the main network alone), its training copied from the manifest.
--init-bundled says RUN started from the bundled network's main part: the manifest names it
("biplanar-<version> main network", not a path that means nothing elsewhere) and keeps its
training record as "init_training". --bundled-main (in place of --run) keeps the bundled network's
main part and its records, with REFINER_RUN's refiner (a refiner trained further on top of it).
"""

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.network_library import package_weights, read_network_manifest  # noqa: E402


def portable(settings: dict) -> dict:
    """Training settings without this machine's absolute paths: the dataset folder is described
    separately, and the real radiographs and starting weights are named from the shared data root
    (``shared/data/...``) or by their last two parts."""
    kept = {}
    for key, value in settings.items():
        if key == "data":
            continue
        if key in ("real_ap", "init") and value:
            parts = Path(value).parts
            value = ("/".join(parts[parts.index("shared"):]) if "shared" in parts else "/".join(parts[-2:]))
        kept[key] = value
    return kept


def with_refiner(base: dict, refined: dict, what: str):
    """(weights, configuration) of the network in ``base`` (a checkpoint's contents) with the
    refiner of ``refined`` (weights with a refiner on the same main network's layout)."""
    config = dict(base.get("config") or base["history"]["settings"]["config"])
    if "refiner" not in refined["config"] or {k: v for k, v in refined["config"].items() if k != "refiner"} != config:
        raise SystemExit(f"{what} holds no refiner for this network.")
    model = dict(base["model"])
    model.update({key: value for key, value in refined["model"].items() if key.startswith("refiner.")})
    return model, dict(config, refiner=refined["config"]["refiner"])


def combine(base_checkpoint: Path, refiner_run: Path):
    """RUN's network with the refiner of ``refiner_run``'s best.pt: (path of the combined weights,
    the refiner's training summary)."""
    base = torch.load(base_checkpoint, map_location="cpu", weights_only=False)
    refined = torch.load(refiner_run / "best.pt", map_location="cpu", weights_only=False)
    model, config = with_refiner(base, refined, f"{refiner_run}/best.pt")
    combined = refiner_run / "combined.pt"
    torch.save(dict(model=model, config=config, step=base.get("step"), validation=base.get("validation")), combined)
    history = json.loads((refiner_run / "history.json").read_text())
    settings = {k: v for k, v in portable(history["settings"]).items() if k != "init"}
    return combined, dict(settings=settings, step=refined.get("step"), seconds=round(history.get("seconds", 0.0), 1),
                          device=history.get("device", "cpu"), validation=refined.get("validation"))


def keep_bundled_refiner(base_checkpoint: Path):
    """RUN's network with the bundled network's refiner: (path of the combined weights, the refiner's
    training as the manifest records it, with where it comes from)."""
    from BoneReconLib.network_library import bundled_weights

    entry = read_network_manifest()["networks"]["biplanar"]
    base = torch.load(base_checkpoint, map_location="cpu", weights_only=False)
    bundled = torch.load(bundled_weights("biplanar"), map_location="cpu", weights_only=False)
    model, config = with_refiner(base, bundled, entry["file"])
    combined = base_checkpoint.with_name("combined.pt")
    torch.save(dict(model=model, config=config, step=base.get("step"), validation=base.get("validation")), combined)
    training = dict(entry.get("refiner_training") or {}, kept_from=f"biplanar-{entry['version']}")
    return combined, training


def bundled_main(folder: Path) -> Path:
    """The bundled network's main part (no refiner) written as ``folder``/bundled-main.pt."""
    from BoneReconLib.network_library import bundled_weights

    state = torch.load(bundled_weights("biplanar"), map_location="cpu", weights_only=False)
    main_only = dict(model={k: v for k, v in state["model"].items() if not k.startswith("refiner.")},
                     config={k: v for k, v in state["config"].items() if k != "refiner"}, step=state.get("step"))
    path = folder / "bundled-main.pt"
    torch.save(main_only, path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="the main network's training folder")
    parser.add_argument("--bundled-main", action="store_true",
                        help="keep the bundled network's main part (with --refiner-run)")
    parser.add_argument("--version", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--real-metrics")
    parser.add_argument("--checkpoint", default="best.pt")
    parser.add_argument("--refiner-run", help="a refiner training folder whose refiner joins RUN's network")
    parser.add_argument("--bundled-refiner", action="store_true",
                        help="the bundled network's refiner joins RUN's network")
    parser.add_argument("--init-bundled", action="store_true",
                        help="RUN started from the bundled network's main part (recorded as such)")
    args = parser.parse_args()
    if args.refiner_run and args.bundled_refiner:
        raise SystemExit("Give --refiner-run or --bundled-refiner, not both.")
    if bool(args.run) == args.bundled_main or (args.bundled_main and not args.refiner_run):
        raise SystemExit("Give --run, or --bundled-main with --refiner-run.")
    if args.bundled_main:
        entry = read_network_manifest()["networks"]["biplanar"]
        checkpoint, refiner_training = combine(bundled_main(Path(args.refiner_run)), Path(args.refiner_run))
        kept = {key: entry[key] for key in ("task", "input", "data", "training", "init_training") if key in entry}
        summary = dict(kept, main_kept_from=f"biplanar-{entry['version']}", refiner_training=refiner_training)
        bundle(checkpoint, args.version, summary, args.metrics, args.real_metrics)
        return
    run = Path(args.run)
    checkpoint = run / args.checkpoint
    refiner_training = None
    before = read_network_manifest()["networks"].get("biplanar") if args.init_bundled else None
    if args.init_bundled and before is None:
        raise SystemExit("--init-bundled: no biplanar network is bundled.")
    if args.refiner_run:
        checkpoint, refiner_training = combine(checkpoint, Path(args.refiner_run))
    elif args.bundled_refiner:
        checkpoint, refiner_training = keep_bundled_refiner(checkpoint)
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
        training=dict(settings=dict(portable(settings),
                                    **({"init": f"biplanar-{before['version']} main network"} if before else {})),
                      step=best.get("step"),
                      seconds=round(history.get("seconds", 0.0), 1), device=history.get("device", "cpu"),
                      validation=best.get("validation")),
    )
    if refiner_training:
        summary["task"] += "; landmarks refined per vertebra on 168 mm crops"
        if best["config"]["refiner"].get("decomposition"):
            summary["task"] += ", which also draw each vertebra's own image"
        summary["refiner_training"] = refiner_training
    if before:
        summary["init_training"] = dict(before["training"], network=f"biplanar-{before['version']}")
    bundle(checkpoint, args.version, summary, args.metrics, args.real_metrics)


def bundle(checkpoint: Path, version: str, summary: dict, metrics: str, real_metrics: str = None):
    """Write ``checkpoint`` as biplanar-``version`` with ``summary`` and the benchmarks' figures
    (METRICS.json, and REAL.json when given) as its manifest entry."""
    summary = dict(summary, metrics=dict(synthetic_test=json.loads(Path(metrics).read_text())))
    if real_metrics:
        summary["metrics"]["real_ap"] = json.loads(Path(real_metrics).read_text())
    entry = package_weights(checkpoint, "biplanar", version, summary,
                            licence="Apache-2.0 (trained by BoneRecon on synthetic data made from the bundled "
                                    "shape models and sample CT; see Resources/Networks/README.md)")
    print(f"Bundled biplanar-{version}: {entry['bytes'] / 1e6:.1f} MB, sha256 {entry['sha256'][:16]}...")


if __name__ == "__main__":
    main()
