"""DepthRecon on held-out single-view cases: bone surfaces, masks and depths against the truth.

    python benchmarks/depth_reconstruction.py --data DATASET [--weights best.pt] [--split test] [--cases 20]
        [--json METRICS.json]

DATASET: a limb dataset made with ``--meshes`` (each case keeps its posed bone surfaces), e.g. the
held-out wrist (ManskeLab ControlSample2, a person the network never saw):

    bonerecon dataset limb --out wrist-test --cases 40 --pose wrist --fill-holes --meshes \\
      --fractions 0 0 1 --subject cs2 radius=.../ControlSample2_L_Radius_Mesh.vtk ...

Per bone: the network's surfaces against the true ones (mean surface distance = ASSD, both
directions averaged; Hausdorff 95; Dice of the voxelised shapes), beside the same for the exact
depth maps back-projected (``oracle``: what one view allows at best, the limit of the method);
the mask Dice and the depth error (mean of front and back, mm) on the network's grid, over all
of a bone's pixels and over those where it is the only bone on the ray, and its signed offset
(the predicted middle of the bone, between front and back, beyond (+) or short of (-) the true
one, mean over its pixels: an error that is mostly offset is where the bone lies, not its shape).
Time per radiograph.
Targets: ASSD < 1.0 mm (the published dual-face depth method: 1.76-1.96 mm on real data), depth
error < 1 mm where one bone lies on the ray, < 2 s per radiograph on CPU. Without --weights the
bundled wrist network is measured; --json writes the figures (for the network manifest).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.dataset_store import CaseDataset  # noqa: E402
from BoneReconLib.depth_inference import predict_depth  # noqa: E402
from BoneReconLib.depth_pipeline import reconstruct_bones  # noqa: E402
from BoneReconLib.depth_reconstruction import depth_surface  # noqa: E402
from BoneReconLib.depth_training import bundled_depth_weights, load_depth_network  # noqa: E402
from BoneReconLib.errors import InputError  # noqa: E402
from BoneReconLib.geometry import View  # noqa: E402
from BoneReconLib.mesh_depth import mesh_depth  # noqa: E402
from BoneReconLib.surface_evaluation import compare_surfaces  # noqa: E402

ASSD_TARGET_MM, ASSD_PUBLISHED_MM, DEPTH_TARGET_MM = 1.0, 1.76, 1.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="limb dataset made with --meshes")
    parser.add_argument("--weights", help="DepthRecon network (a training folder's best.pt; default: the bundled "
                        "wrist network)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    args.weights = args.weights or str(bundled_depth_weights())
    model = load_depth_network(args.weights)
    cases = CaseDataset(args.data, args.split)
    if not len(cases):
        sys.exit(f"{args.data} has no {args.split} cases")
    rows = {b: dict(net=[], oracle=[], mask=[], depth=[], single=[], offset=[], missed=0) for b in model.bones}
    seconds = dict(network=[], surfaces=[])
    count = min(args.cases, len(cases))
    for index in range(count):
        item = cases[index]
        meta = item["meta"]
        if "vertices_0" not in item:
            sys.exit(f"{args.data} keeps no meshes: make it with 'bonerecon dataset limb ... --meshes'")
        view = View.from_dict(meta["geometry"]["views"][0])
        try:  # what 'bonerecon depth' and the module run: network, surfaces and label map
            result = reconstruct_bones(model, item["image"][0].numpy(), view)
            prediction, surfaces = result.prediction, result.surfaces
            for stage in ("network", "surfaces"):
                seconds[stage].append(result.seconds[stage])
        except InputError:  # no bone found: every bone counts as missed
            prediction, surfaces = predict_depth(model, item["image"][0].numpy(), view), {}
        truth = {name: (item[f"vertices_{k}"].double().numpy(), item[f"triangles_{k}"].long().numpy())
                 for k, name in enumerate(meta["bones"])}
        true_maps = {name: mesh_depth(*mesh, [prediction.view])[0][0] for name, mesh in truth.items()}
        count_on_ray = sum(m.hit.double() for m in true_maps.values())
        for case_bone, (name, (points, triangles)) in enumerate(truth.items()):
            row, maps = rows[name], true_maps[name]
            exact = depth_surface(view, item["front"][case_bone, 0], item["back"][case_bone, 0],
                                  item["back"][case_bone, 0] > 0)
            row["oracle"].append(compare_surfaces(*exact, points, triangles))
            if name not in surfaces:
                row["missed"] += 1
                continue
            row["net"].append(compare_surfaces(*surfaces[name], points, triangles))
            front, back, probability = prediction.maps(name)
            found, true = probability >= 0.5, maps.hit
            row["mask"].append(2 * float((found & true).sum()) / max(float(found.sum() + true.sum()), 1.0))
            error = ((front - maps.front).abs() + (back - maps.back).abs()) / 2
            row["depth"].append(float(error[true].mean()))
            # signed: how far the bone's middle lies beyond (+) or short of (-) its true middle along the ray
            row["offset"].append(float(((front + back - maps.front - maps.back) / 2)[true].mean()))
            alone = true & (count_on_ray == 1)
            if bool(alone.any()):
                row["single"].append(float(error[alone].mean()))
        print(f"case {index + 1}/{count} {meta.get('case', '')}: " + ", ".join(
            f"{b} {r['net'][-1]['mean_mm']:.2f}" for b, r in rows.items() if r["net"]), flush=True)

    mean = lambda values: float(np.mean(values)) if values else float("nan")  # noqa: E731
    print(f"\n{count} {args.split} cases of {args.data}; weights {args.weights}; device cpu "
          f"({torch.get_num_threads()} threads)")
    print(f"{'bone':10s}{'found':>7s}{'ASSD':>7s}{'HD95':>7s}{'Dice':>7s}{'oracle ASSD':>13s}{'oracle HD95':>13s}"
          f"{'mask Dice':>11s}{'depth mm':>10s}{'one bone':>10s}{'offset mm':>11s}")
    every = dict(net=[], oracle=[], single=[], depth=[])
    figures = dict(data=str(args.data), split=args.split, cases=count, per_bone={})
    rounded = lambda value: round(value, 3) if np.isfinite(value) else None  # noqa: E731  (plain JSON: no NaN)
    for bone, row in rows.items():
        if not row["oracle"]:
            continue
        net, oracle = row["net"], row["oracle"]
        figures["per_bone"][bone] = dict(
            found=f"{len(net)}/{len(oracle)}", assd_mm=rounded(mean([r["mean_mm"] for r in net])),
            hd95_mm=rounded(mean([r["hd95_mm"] for r in net])), dice=rounded(mean([r["dice"] for r in net])),
            oracle_assd_mm=rounded(mean([r["mean_mm"] for r in oracle])), mask_dice=rounded(mean(row["mask"])),
            depth_mm=rounded(mean(row["depth"])), single_bone_depth_mm=rounded(mean(row["single"])),
            offset_mm=rounded(mean(row["offset"])))
        every["net"] += [r["mean_mm"] for r in net]
        every["oracle"] += [r["mean_mm"] for r in oracle]
        every["single"] += row["single"]
        every["depth"] += row["depth"]
        print(f"{bone:10s}{len(net):4d}/{len(oracle):<2d}{mean([r['mean_mm'] for r in net]):7.2f}"
              f"{mean([r['hd95_mm'] for r in net]):7.2f}{mean([r['dice'] for r in net]):7.3f}"
              f"{mean([r['mean_mm'] for r in oracle]):13.2f}{mean([r['hd95_mm'] for r in oracle]):13.2f}"
              f"{mean(row['mask']):11.3f}{mean(row['depth']):10.2f}{mean(row['single']):10.2f}{mean(row['offset']):+11.2f}")
    assd, single = mean(every["net"]), mean(every["single"])
    print(f"{'all':10s}{'':7s}{assd:7.2f}{'':14s}{mean(every['oracle']):13.2f}{'':24s}{mean(every['depth']):10.2f}"
          f"{single:10.2f}")
    print(f"ratios to target: ASSD {assd / ASSD_TARGET_MM:.2f} (target < {ASSD_TARGET_MM} mm; published "
          f"{ASSD_PUBLISHED_MM} mm: ratio {assd / ASSD_PUBLISHED_MM:.2f}), depth where one bone is on the ray "
          f"{single / DEPTH_TARGET_MM:.2f} (target < {DEPTH_TARGET_MM} mm)")
    print(f"time per radiograph (median, s): network {np.median(seconds['network']):.2f}, surfaces "
          f"{np.median(seconds['surfaces']):.2f}; total "
          f"{np.median(np.add(seconds['network'], seconds['surfaces'])):.2f} (target < 2 s for the network)")
    if args.json:
        figures.update(assd_mm=rounded(assd), oracle_assd_mm=rounded(mean(every["oracle"])),
                       depth_mm=rounded(mean(every["depth"])), single_bone_depth_mm=rounded(single),
                       network_s=round(float(np.median(seconds["network"])), 3),
                       surfaces_s=round(float(np.median(seconds["surfaces"])), 3), device="cpu",
                       threads=torch.get_num_threads())
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
