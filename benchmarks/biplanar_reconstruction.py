"""BiplanarRecon reconstruction on held-out synthetic cases: surface error per vertebra and time per stage.

    python benchmarks/biplanar_reconstruction.py --data DATASET [--cases 5] [--source SOURCE]
                                                 [--weights W] [--preset P] [--modes K] [--free-form-steps N]
                                                 [--decoding chain|peak]

--source oracle feeds the registration the cases' true per-vertebra images and landmarks (what a
perfect network would give: this measures the initialisation + registration alone); --source
network runs the whole chain on the cases' radiographs (``biplanar_pipeline.reconstruct_biplanar``:
input checks, the network (bundled unless --weights), initialisation, registration, measurements);
--source network-images (the network's vertebra images, the true landmarks) and network-landmarks
(the true images, the network's landmarks) say which of the network's two outputs costs the
accuracy. Per vertebra:
mean surface distance (both directions averaged), RMS, Hausdorff 95, posterior-arch error (true
vertices behind the body's posterior wall to the reconstructed surface), 3D landmark error, Dice,
beside the targets (0.8 / 1.2 / 2.5 mm) and the initial pose's surface distance. Note: the
lumbar dataset's shapes are drawn from the bundled shape models, so they lie in the models' span,
unless it was made with ``bonerecon dataset lumbar --beyond-span-mm``; the "in-span floor" line
gives the mean surface distance of each true shape's best reconstruction by its model (what a
registration confined to the span could reach at best). Neighbours: how deep two reconstructed
neighbours run into each other (``spine_alignment.neighbour_overlaps``) beside the same for the
true shapes (the data engine's own joints overlap by a few mm, see ``spine_alignment``).
Measurement errors: the measurements of the reconstructed landmarks (all five levels, converged or
not) against those of the true landmarks, for cases with all five levels placed.
"""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib import biplanar_network  # noqa: E402
from BoneReconLib.biplanar_pipeline import PRESETS  # noqa: E402
from BoneReconLib.dataset_store import CaseDataset  # noqa: E402
from BoneReconLib.geometry import View  # noqa: E402
from BoneReconLib.shape_model_library import load_models  # noqa: E402
from BoneReconLib.shape_refinement import map_fit  # noqa: E402
from BoneReconLib.shape_statistics import apply, rigid_align  # noqa: E402
from BoneReconLib.spine_alignment import LEVELS, neighbour_overlaps  # noqa: E402
from BoneReconLib.surface_evaluation import compare_surfaces  # noqa: E402
from BoneReconLib.spine_measurements import measure_spine, measurement_rows  # noqa: E402
from BoneReconLib.spine_reconstruction import SPINE_WEIGHTS, reconstruct_spine  # noqa: E402

TARGETS = dict(mean=0.8, posterior=1.2, hd95=2.5)


def surface_errors(model, found, truth, truth_marks, with_dice=True):
    """(mean of both directions, RMS, HD95, posterior-arch mean, Dice) between two instances."""
    marks = dict(zip(model.landmark_names, truth_marks))
    e = compare_surfaces(found, model.triangles, truth, model.triangles, landmarks=marks, with_dice=with_dice)
    return e["mean_mm"], e["rms_mm"], e["hd95_mm"], e["posterior_mm"], e.get("dice", float("nan"))


def in_span_floor(model, truth):
    """Mean surface distance between a true shape and its best reconstruction by the model
    (posterior mean, all modes, in the truth's place)."""
    rotation, translation, _ = rigid_align(truth, model.mean)
    reconstruction = map_fit(model, apply(truth, rotation, translation), noise_mm=0.3)[2]
    rotation, translation, _ = rigid_align(reconstruction, truth)
    return compare_surfaces(apply(reconstruction, rotation, translation), model.triangles, truth,
                            model.triangles)["mean_mm"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--source", choices=["oracle", "network", "network-images", "network-landmarks"],
                        default="oracle")
    parser.add_argument("--weights")
    parser.add_argument("--preset", default="balanced", choices=list(PRESETS), help="registration preset")
    parser.add_argument("--modes", type=int, help="shape modes (default: the preset's)")
    parser.add_argument("--free-form-steps", type=int,
                        help="steps of the refinement beyond the models' span (default: the preset's; 0 = none)")
    parser.add_argument("--independent", action="store_true",
                        help="register each level blind to its neighbours (before 2026-12-04; default: each level "
                             "kept out of the neighbours already registered)")
    parser.add_argument("--finest-landmark-sigma-factor", type=float,
                        help="the landmarks' sigma at the finest image level, x the coarse one (default: the "
                             "product's, spine_reconstruction.SPINE_WEIGHTS: 1; 2 = 2026-12-04's default)")
    parser.add_argument("--no-uncertainty", action="store_true",
                        help="weigh the network's landmarks by their confidence alone, not also by their expected "
                             "error (before 2026-12-05)")
    parser.add_argument("--restart-search", action="store_true",
                        help="restart CMA-ES isotropic at the finer image level (before 2026-12-05; default: "
                             "continue the coarse level's adapted distribution)")
    parser.add_argument("--decoding", default="chain", choices=["chain", "peak"],
                        help="the network's landmarks decoded as one chain of vertebrae (the default) or each map "
                             "about its own highest pixel")
    args = parser.parse_args()
    biplanar_network.CHAIN_DECODING = args.decoding == "chain"
    models = load_models()
    cases = CaseDataset(args.data, args.split)
    settings = dict(PRESETS[args.preset], **({"modes": args.modes} if args.modes else {}),
                    **({"free_form_steps": args.free_form_steps} if args.free_form_steps is not None else {}))
    names = models["L1"].landmark_names
    weights = dataclasses.replace(SPINE_WEIGHTS, **({"overlap_weight": 0.0} if args.independent else {}),
                                  **({"landmark_uncertainty": False} if args.no_uncertainty else {}),
                                  **({"carry_search": False} if args.restart_search else {}), **(
        {} if args.finest_landmark_sigma_factor is None else
        {"finest_landmark_sigma_factor": args.finest_landmark_sigma_factor}))
    if args.source != "oracle":
        from BoneReconLib.biplanar_inference import detect
        from BoneReconLib.biplanar_network import load_network
        from BoneReconLib.biplanar_pipeline import VIEW_NAMES, reconstruct_biplanar

        network = load_network(args.weights)
    rows, initial, times, measured, floor = {level: [] for level in LEVELS}, [], [], [], []
    overlaps = {"reconstructed": [], "true": []}  # per segment whose two levels were reconstructed
    for index in range(min(args.cases, len(cases))):
        case = cases[index]
        views = [View.from_dict(v) for v in case["meta"]["geometry"]["views"]]
        tick = time.perf_counter()
        if args.source != "network":
            images = [case["decomposition"][:, v].float().numpy() for v in range(2)]
            ij = case["landmarks_ij"].numpy()
            landmarks = [[dict(vertebra=level, name=name, i=float(p[0]), j=float(p[1]), confidence=1.0)
                          for level, per in zip(LEVELS, ij[v]) for name, p in zip(names, per)] for v in range(2)]
            if args.source != "oracle":  # one of the network's outputs in place of the truth
                found = [detect(network, case["image"][v].numpy(), views[v].pixel_spacing, VIEW_NAMES[v], names)
                         for v in range(2)]
                if args.source == "network-images":
                    images = [d.decomposition for d in found]
                else:
                    landmarks = [d.landmarks for d in found]
            detection_s = time.perf_counter() - tick
            result = reconstruct_spine(models, views, images, landmarks, LEVELS, weights=weights, **settings)
            times.append(dict(network=detection_s, **result.seconds))
        else:
            images = [case["image"][v].numpy() for v in range(2)]
            chain = reconstruct_biplanar(network, models, images, views, preset=args.preset, modes=args.modes,
                                         free_form_steps=settings["free_form_steps"],
                                         weights=weights)
            result = chain.reconstruction
            times.append(dict(chain.seconds))
        truth_marks = case["landmarks"].numpy()
        truths = {level: case[f"vertices_{level}"].numpy().astype(np.float64) for level in LEVELS}
        if len(result.points) == len(LEVELS):
            named = lambda marks: {level: dict(zip(names, marks[n])) for n, level in enumerate(LEVELS)}  # noqa: E731
            found_marks = np.stack([models[level].landmark_positions(torch.as_tensor(result.points[level])[None])[0]
                                    .numpy() for level in LEVELS])
            measured.append((measure_spine(named(truth_marks)), measure_spine(named(found_marks))))
        for n, level in enumerate(LEVELS):
            truth = truths[level]
            if level not in result.points:
                rows[level].append(None)
                continue
            found = result.points[level]
            marks = models[level].landmark_positions(torch.as_tensor(found)[None])[0].numpy()
            errors = surface_errors(models[level], found, truth, truth_marks[n])
            rows[level].append((*errors[:4], float(np.linalg.norm(marks - truth_marks[n], axis=1).mean()),
                                bool(result.results[level].converged), errors[4]))
            floor.append(in_span_floor(models[level], truth))
            pose = result.initialisation.poses[level]
            initial.append(surface_errors(models[level], pose.apply(models[level].mean), truth, truth_marks[n],
                                          with_dice=False)[0])
        placed_truths = {level: truths[level] for level in result.points}
        truth_overlap = neighbour_overlaps({level: models[level].triangles for level in placed_truths}, placed_truths)
        overlaps["reconstructed"] += list(result.overlap_mm.values())
        overlaps["true"] += list(truth_overlap.values())
        print(f"case {case['meta']['case']}: {', '.join(result.messages) or 'all levels converged'}", flush=True)
    detected_weighed = weights.landmark_uncertainty and args.source in ("network", "network-landmarks")
    print(f"\n{args.source} inputs, {min(args.cases, len(cases))} {args.split} cases, preset {args.preset} "
          f"({settings['modes']} modes, generations {settings['generations']}, "
          f"{settings['free_form_steps']} free-form steps, "
          f"{'levels independent' if args.independent else 'neighbours avoided'}, finest landmark sigma x "
          f"{weights.finest_landmark_sigma_factor:g}, landmarks weighed by "
          f"{'their expected error' if detected_weighed else 'confidence alone'}, finer level "
          f"{'continues the coarse search' if weights.carry_search else 'restarts the search'}), "
          f"device cpu ({torch.get_num_threads()} threads)")
    print(f"{'level':6s}{'found':>6s}{'mean mm':>9s}{'RMS':>7s}{'HD95':>7s}{'posterior':>10s}{'landmarks':>10s}"
          f"{'converged':>10s}{'Dice':>7s}")
    every = []
    for level in LEVELS:
        got = [r for r in rows[level] if r is not None]
        every.extend(got)
        if got:
            v = np.array([r[:5] for r in got])
            print(f"{level:6s}{len(got):6d}{v[:, 0].mean():9.2f}{v[:, 1].mean():7.2f}{v[:, 2].mean():7.2f}"
                  f"{v[:, 3].mean():10.2f}{v[:, 4].mean():10.2f}{np.mean([r[5] for r in got]):10.0%}"
                  f"{np.mean([r[6] for r in got]):7.3f}")
    v = np.array([r[:5] for r in every])
    print(f"{'all':6s}{len(every):6d}{v[:, 0].mean():9.2f}{v[:, 1].mean():7.2f}{v[:, 2].mean():7.2f}"
          f"{v[:, 3].mean():10.2f}{v[:, 4].mean():10.2f}{'':10s}{np.mean([r[6] for r in every]):7.3f}")
    print(f"{'target':12s}{TARGETS['mean']:9.2f}{'':7s}{TARGETS['hd95']:7.2f}{TARGETS['posterior']:10.2f}")
    print(f"ratios to target: mean {v[:, 0].mean() / TARGETS['mean']:.2f}, posterior "
          f"{v[:, 3].mean() / TARGETS['posterior']:.2f}, HD95 {v[:, 2].mean() / TARGETS['hd95']:.2f}")
    flagged = [r for r in every if not r[5]]
    print(f"converged levels: mean surface distance {np.mean([r[0] for r in every if r[5]]):.2f} mm "
          f"({len(every) - len(flagged)}); flagged as not converged: "
          + (f"{np.mean([r[0] for r in flagged]):.2f} mm ({len(flagged)})" if flagged else "none"))
    print(f"initial pose (mean shape, before registration): mean surface distance {np.mean(initial):.2f} mm")
    print(f"in-span floor (best model reconstruction of the true shapes): mean surface distance "
          f"{np.mean(floor):.2f} mm")
    if overlaps["true"]:
        print("neighbours, deepest point of one inside the other (mm, mean | max over segments): reconstructed "
              + " | ".join(f"{f(overlaps['reconstructed']):.2f}" for f in (np.mean, np.max)) + "; true shapes "
              + " | ".join(f"{f(overlaps['true']):.2f}" for f in (np.mean, np.max)))
    if measured:
        errors = {}
        for truth, found in measured:
            for a, b in zip(measurement_rows(truth), measurement_rows(found)):
                if isinstance(a["value"], float) and a["measure"] != "coronal Cobb angle":
                    errors.setdefault((a["measure"], a["unit"]), []).append(abs(b["value"] - a["value"]))
            errors.setdefault(("coronal Cobb angle", "deg"), []).append(abs(found["cobb_deg"] - truth["cobb_deg"]))
        print(f"measurement errors, {len(measured)} cases (mean absolute over cases and levels): "
              + ", ".join(f"{name} {np.mean(e):.2f} {unit}" for (name, unit), e in errors.items()))
    stages = {key: np.median([t[key] for t in times]) for key in times[0]}
    print("time per case (median, s): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
          + f"; total {sum(stages.values()):.1f} (target < 20)")


if __name__ == "__main__":
    main()
