"""Command line: ``bonerecon <command> ...`` (also ``python -m BoneReconLib <command> ...``).

Exit status: 0 success; 2 bad input or usage (one sentence on stderr, no partial output left);
130 interrupted; 1 unexpected internal error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

from . import __version__
from .errors import InputError
from .progress import Cancelled

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _print_progress(fraction: float, message: str) -> None:
    print(f"[{100 * fraction:3.0f}%] {message}", file=sys.stderr, flush=True)


def _cmd_demo(args) -> int:
    from .demo import run_demo

    result = run_demo(
        out_dir=args.out,
        ct_path=args.ct,
        labels_path=args.labels,
        label_table=args.label_table,
        smoothing=args.smoothing,
        screenshot=not args.no_screenshot,
        reconstruct=not args.no_reconstruction,
        preset=args.preset,
        progress=None if args.quiet else _print_progress,
    )
    print(f"Scene: {result.scene_path}")
    if result.screenshot_path:
        print(f"Picture: {result.screenshot_path}")
    print("Vertebra models: " + ", ".join(f"{k} ({n} points)" for k, n in result.model_points.items()))
    if result.reconstruction is not None:
        print("Reconstructed from two DRRs, surface distance to the labels (mean mm, converged): " + ", ".join(
            f"{level} {row['mean_mm']:.2f}{'' if row['converged'] else ' (not converged)'}"
            for level, row in result.comparison.items()) + f"; report: {result.scene_path.parent / 'report.md'}")
    if result.skipped:
        print(f"bonerecon: {result.skipped}", file=sys.stderr)
    return EXIT_OK


def _cmd_drr(args) -> int:
    from .drr_command import run_drr

    result = run_drr(
        out_dir=args.out,
        ct_path=args.ct,
        geometry_path=args.geometry,
        labels_path=args.labels,
        label_table=args.label_table,
        only=args.only.split(",") if args.only else None,
        energy_kev=args.energy,
        device=args.device,
        scene_bundle=not args.no_scene,
        progress=None if args.quiet else _print_progress,
    )
    print(f"Wrote {len(result.files)} files to {result.out_dir} (views: {', '.join(result.views)}"
          + (f"; labels: {', '.join(result.labels)}" if result.labels else "") + ")")
    return EXIT_OK


def _cmd_ssm_build(args) -> int:
    from .ssm_command import run_ssm_build, surfaces_from_label_maps, surfaces_from_meshes
    from .vertebra_labels import load_label_table

    if bool(args.meshes) == bool(args.labels):
        raise InputError("Give either --meshes (surfaces of one level) or --labels (label maps).")
    rules = variations = None
    if args.persons and args.anatomy == "vertebra":
        raise InputError("--persons is for --anatomy femur, tibia or fibula.")
    if args.anatomy == "fibula":
        return _build_fibula(args)
    if args.anatomy != "vertebra":
        from .leg_landmarks import LEG_LANDMARKS
        from .leg_surfaces import leg_bone_surfaces
        from .leg_variation import leg_variation

        if not args.meshes:
            raise InputError(f"--anatomy {args.anatomy} takes --meshes (surfaces of that bone, either side).")
        surfaces = {args.anatomy: leg_bone_surfaces(args.meshes, args.anatomy, units=args.units, lps=args.lps,
                                                    persons=args.persons)}
        rules = {args.anatomy: LEG_LANDMARKS[args.anatomy]}
        variations = {args.anatomy: leg_variation}
    elif args.meshes:
        if not args.level:
            raise InputError("--meshes needs --level (the vertebra level they show, e.g. L1).")
        surfaces = {args.level: surfaces_from_meshes(args.meshes, units=args.units, lps=args.lps)}
    else:
        table = load_label_table(args.label_table)
        levels = args.levels.split(",") if args.levels else None
        surfaces = surfaces_from_label_maps(args.labels, table, levels)
    if args.synthetic_below < 0:
        raise InputError("--synthetic-below must be 0 (never) or a number of surfaces.")
    entries = run_ssm_build(args.out, surfaces, template_triangles=args.template_triangles,
                            evaluate=not args.no_evaluation, synthetic_below=args.synthetic_below,
                            progress=None if args.quiet else _print_progress, landmark_rules=rules,
                            variation_rules=variations)
    for level, entry in entries.items():
        loo = entry["generalisation_mm"]
        print(f"{level}: {entry['n_shapes']} shapes, {entry['modes']} modes"
              + (" (with synthetic variation)" if entry["synthetic_variation"] else "")
              + (f", leave-one-out {loo[-1]:.2f} mm" if loo else "") + f" -> {entry['file']}")
    return EXIT_OK


def _build_fibula(args) -> int:
    from .leg_fibula import add_fibula_model, build_fibula_model, fibula_surfaces

    if not args.meshes:
        raise InputError("--anatomy fibula takes --meshes: tibia files that also hold the fibula.")
    model = build_fibula_model(fibula_surfaces(args.meshes, persons=args.persons, units=args.units, lps=args.lps),
                               progress=None if args.quiet else _print_progress)
    entry = add_fibula_model(args.out, model)
    print(f"fibula: {entry['n_shapes']} shapes, {entry['modes']} modes, in the tibia's frame -> "
          f"{os.path.join(args.out, entry['file'])}")
    return EXIT_OK


def _cmd_dataset_limb(args) -> int:
    from .limb_dataset import generate_limb_dataset
    from .limb_posing import finger_from_file, finger_joints, wrist_joints
    from .limb_radiograph import Bone

    subjects, articulations = {}, {}
    sides = dict(_named_file(entry) for entry in args.side or [])
    for entry in args.subject:
        if len(entry) < 2:
            raise InputError(f"--subject {entry[0]}: give the subject's name, then its bone surface files.")
        name, paths = entry[0], entry[1:]
        if name in subjects:
            raise InputError(f"Subject '{name}' is given twice.")
        if args.pose == "finger" and len(paths) == 1:
            subjects[name] = finger_from_file(paths[0])
        else:
            subjects[name] = [Bone.from_file(path, units=args.units, lps=args.lps, fill_holes=args.fill_holes,
                                             name=bone or None) for bone, path in map(_named_file, paths)]
        if args.pose == "finger":
            if len(subjects[name]) != 3:
                raise InputError(f"--pose finger: subject '{name}' needs one file of three phalanges or three "
                                 "files (proximal, middle, distal).")
            articulations[name] = finger_joints(subjects[name])
        elif args.pose == "wrist":
            articulations[name] = wrist_joints(subjects[name], side=sides.pop(name, None))
    if sides:
        raise InputError(f"--side is for the subjects of --pose wrist: {', '.join(sorted(sides))} is not one.")
    _check_case_counts(args)
    variation = None
    if args.vary is not None:
        from .limb_variation import LimbVariation

        variation = LimbVariation(scale_sd=args.vary[0], warp_mm=args.vary[1])
    splits = dict(_named_file(entry) for entry in args.split or [])
    return _run_dataset(args, lambda progress: generate_limb_dataset(
        args.out, subjects, args.cases, seed=args.seed, size=(args.size, args.size), envelope_mm=args.envelope_mm,
        articulations=articulations, rotation_deg=args.rotation_deg, variation=variation, splits=splits,
        fractions=tuple(args.fractions), store_meshes=args.meshes, progress=progress), f"{len(subjects)} subjects")


def _cmd_dataset_depth(args) -> int:
    from .ct_depth_dataset import LabelledCT, generate_ct_depth_dataset
    from .drr_command import choose_labels
    from .geometry import load_view

    view = load_view(args.geometry, args.view)
    only = [item for item in (args.only or "").split(",") if item.strip()]
    bones = choose_labels(args.label_table, only) if (args.label_table or only) else None
    if args.cases < 1:
        raise InputError("--cases must be at least 1.")
    # A table may name bones that one CT lacks (keep what it has); bones chosen by --only must all be there.
    cts = [LabelledCT.from_files(ct, labels, bones, present_only=bool(args.label_table and not only))
           for ct, labels in args.ct]
    if args.registration:
        from .ct_depth_dataset import registered_pose

        if args.placement != "as-is" or len(args.registration) != len(cts):
            raise InputError("--registration goes with --placement as-is, one per --ct.")
        for ct, path in zip(cts, args.registration):
            ct.pose = registered_pose(path)
    splits = dict(_named_file(entry) for entry in args.split or [])
    return _run_dataset(args, lambda progress: generate_ct_depth_dataset(
        args.out, cts, view, args.cases, seed=args.seed, placement=args.placement, rotation_deg=args.rotation_deg,
        tilt_deg=args.tilt_deg, shift_mm=args.shift_mm, energy_kev=args.energy, fractions=tuple(args.fractions),
        splits=splits, store_meshes=args.meshes, progress=progress), f"{len(cts)} CT(s)")


def _named_file(entry: str):
    """'NAME=PATH' -> (NAME, PATH); a plain PATH -> ('', PATH)."""
    name, sep, rest = entry.partition("=")
    if sep and name and "/" not in name and "\\" not in name:
        return name, rest
    return "", entry


def _cmd_dataset_lumbar(args) -> int:
    from .lumbar_dataset import generate_lumbar_dataset
    from .lumbar_radiograph import SpineCT
    from .shape_model_library import load_models, read_manifest

    _check_case_counts(args)
    backgrounds = [SpineCT.from_files(ct, labels, args.label_table) for ct, labels in args.background]
    names = [b.name for b in backgrounds]
    if len(set(names)) != len(names):
        raise InputError("Two background CTs have the same file name; rename one.")
    models = load_models(args.models, levels=["L1", "L2", "L3", "L4", "L5"])
    hashes = {level: entry["sha256"] for level, entry in read_manifest(args.models)["models"].items()
              if level in models}
    return _run_dataset(args, lambda progress: generate_lumbar_dataset(
        args.out, backgrounds, models, args.cases, seed=args.seed, size=(args.size, args.size), model_hashes=hashes,
        fractions=tuple(args.fractions), beyond_span_mm=args.beyond_span_mm, workers=args.workers, progress=progress),
        f"{len(backgrounds)} background CT(s)")


def _train(args, train):
    """``train(progress)``'s history; None when interrupted (the checkpoint is named: run the same command again)."""
    try:
        return train(None if args.quiet else _print_progress)
    except (KeyboardInterrupt, Cancelled):
        print(f"bonerecon: interrupted; {args.out}/checkpoint.pt holds the last checkpoint: run the same command "
              "again to resume.", file=sys.stderr)
        return None


def _cmd_train_biplanar(args) -> int:
    from .biplanar_training import train_biplanar

    history = _train(args, lambda progress: train_biplanar(
        args.data, args.out, steps=args.steps, batch_size=args.batch, learning_rate=args.lr, seed=args.seed,
        device=args.device, validate_every=args.validate_every, init=args.init, real_ap=args.real_ap,
        real_per_batch=args.real_per_batch, refiner=args.refiner, workers=args.workers, progress=progress))
    if history is None:
        return EXIT_INTERRUPTED
    last = history["validation"][-1] if history["validation"] else {}
    print(f"Trained {args.steps} steps into {args.out}: validation landmark error AP "
          f"{last.get('landmark_mm_AP', float('nan')):.2f} mm, LAT {last.get('landmark_mm_LAT', float('nan')):.2f} mm "
          f"(best weights: {args.out}/best.pt)")
    return EXIT_OK


def _cmd_train_depth(args) -> int:
    from .depth_training import bundled_depth_weights, train_depth

    init = bundled_depth_weights(args.anatomy) if args.init == "bundled" else args.init
    history = _train(args, lambda progress: train_depth(
        args.data, args.out, steps=args.steps, batch_size=args.batch, learning_rate=args.lr, seed=args.seed,
        device=args.device, validate_every=args.validate_every, init=init, progress=progress))
    if history is None:
        return EXIT_INTERRUPTED
    last = history["validation"][-1] if history["validation"] else {}
    print(f"Trained {args.steps} steps into {args.out}: validation mask Dice {last.get('dice', float('nan')):.3f}, "
          f"depth error {last.get('depth_mm', float('nan')):.2f} mm (best weights: {args.out}/best.pt)")
    return EXIT_OK


def _cmd_dataset_leg(args) -> int:
    from .leg_dataset import fibulas_from_files, generate_leg_dataset
    from .shape_model_library import LEG_MODELS, load_models

    models = load_models(args.models or LEG_MODELS, levels=["femur", "tibia"])
    fibulas = fibulas_from_files(args.fibulas) if args.fibulas else []
    manifest = generate_leg_dataset(args.out, models, args.cases, seed=args.seed, fractions=args.fractions,
                                    fibulas=fibulas, fibula_sources=[os.path.basename(f) for f in args.fibulas or []],
                                    progress=None if args.quiet else _print_progress)
    print(f"Wrote {len(manifest['cases'])} leg cases to {args.out}")
    return EXIT_OK


def _cmd_train_leg(args) -> int:
    from .leg_detector import train_leg_detector

    history = _train(args, lambda progress: train_leg_detector(
        args.data, args.out, steps=args.steps, batch_size=args.batch, learning_rate=args.lr, seed=args.seed,
        device=args.device, validate_every=args.validate_every, init=args.init, progress=progress))
    if history is None:
        return EXIT_INTERRUPTED
    last = history["validation"][-1] if history["validation"] else {}
    print(f"Trained {args.steps} steps into {args.out}: validation point error {last.get('mean_mm', float('nan')):.2f} "
          f"mm (best weights: {args.out}/best.pt)")
    return EXIT_OK


def _cmd_biplanar(args) -> int:
    from .biplanar_command import run_biplanar

    if args.anatomy == "leg":
        return _cmd_biplanar_leg(args)
    if args.points or args.detector:
        raise InputError("--points and --detector are for --anatomy leg (the spine's landmarks come from its network).")
    if not (args.ap and args.lat):
        raise InputError("The spine needs both radiographs: --ap and --lat (one view is for --anatomy leg).")
    run = run_biplanar(args.out, args.ap, args.lat, args.geometry, weights=args.weights, preset=args.preset,
                       levels=args.levels.split(",") if args.levels else ("L1", "L2", "L3", "L4", "L5"),
                       screenshot=not args.no_screenshot, check_roles=not args.no_role_check,
                       progress=None if args.quiet else _print_progress)
    result = run.result
    print(f"Wrote {len(run.files)} files to {run.out_dir}: levels {', '.join(result.reconstruction.points) or 'none'}"
          f" (converged: {', '.join(result.converged) or 'none'}); {result.seconds.get('registration', 0):.1f} s "
          "registration")
    for message in result.messages:
        print(f"bonerecon: {message}", file=sys.stderr)
    return EXIT_OK


def _cmd_biplanar_leg(args) -> int:
    from .leg_command import run_leg

    run = run_leg(args.out, args.ap, args.lat, args.geometry, args.points, side=args.side, detector=args.detector,
                  bones=args.bones.split(",") if args.bones else ("femur", "tibia"),
                  progress=None if args.quiet else _print_progress)
    result = run.result
    print(f"Wrote {len(run.files)} files to {run.out_dir}: "
          + ", ".join(f"{bone} ({'converged' if r.registration.converged else 'did not converge'})"
                      for bone, r in result.bones.items()))
    for message in result.messages:
        print(f"bonerecon: {message}", file=sys.stderr)
    return EXIT_OK


def _cmd_register(args) -> int:
    from .register_command import run_register_2d3d, run_register_3d3d

    progress = None if args.quiet else _print_progress
    if args.moving or args.fixed:
        if not (args.moving and args.fixed) or args.ct:
            raise InputError("3D/3D registration takes --moving and --fixed surfaces (and no --ct).")
        run = run_register_3d3d(args.out, args.moving, args.fixed, units=args.units, lps=args.lps, progress=progress)
        print(f"Registered {args.moving} onto {args.fixed}: RMS surface distance {run.record['rms_before_mm']:.2f} -> "
              f"{run.record['rms_after_mm']:.2f} mm; wrote {', '.join(run.files)} to {run.out_dir}")
        return EXIT_OK
    if not (args.ct and args.geometry and args.images):
        raise InputError("2D/3D registration takes --ct, --geometry and --images (one radiograph per view).")
    run = run_register_2d3d(args.out, args.ct, args.geometry, args.images, labels_path=args.labels,
                            label_table=args.label_table, levels=args.levels.split(",") if args.levels else None,
                            whole=not args.no_whole, progress=progress)
    poses = run.record["poses"]
    print(f"Registered {', '.join(poses)}; converged: "
          f"{', '.join(n for n, p in poses.items() if p['converged']) or 'none'}; wrote {len(run.files)} files to "
          f"{run.out_dir}")
    for name, entry in poses.items():
        if not entry["converged"]:
            print(f"bonerecon: {name} did not converge (image agreement {entry['ncc']})", file=sys.stderr)
    return EXIT_OK


def _cmd_evaluate(args) -> int:
    from .evaluate_command import evaluate_folders, write_evaluation_csv

    levels = args.levels.split(",") if args.levels else ("L1", "L2", "L3", "L4", "L5")
    evaluation = evaluate_folders(args.found, args.truth, levels, truth_landmarks=args.truth_landmarks,
                                  units=args.truth_units, lps=args.truth_lps)
    print(f"{'level':6s}{'mean mm':>9s}{'RMS':>7s}{'HD95':>7s}{'Dice':>7s}{'posterior':>10s}{'landmarks':>10s}")
    for row in evaluation.rows:
        print(f"{row['level']:6s}{row['mean_mm']:9.2f}{row['rms_mm']:7.2f}{row['hd95_mm']:7.2f}{row['dice']:7.3f}"
              f"{row['posterior_mm']:10.2f}{row['landmark_mm']:10.2f}")
    means = {key: float(sum(r[key] for r in evaluation.rows) / len(evaluation.rows))
             for key in ("mean_mm", "rms_mm", "hd95_mm", "dice")}
    print(f"{'all':6s}{means['mean_mm']:9.2f}{means['rms_mm']:7.2f}{means['hd95_mm']:7.2f}{means['dice']:7.3f}")
    if evaluation.measurement_errors:
        print("measurement errors (found - true): " + ", ".join(
            f"{m['measure']} {m['where']} {m['error']:+.2f} {m['unit']}" for m in evaluation.measurement_errors))
    if evaluation.missing:
        print(f"bonerecon: no reconstructed surface for {', '.join(evaluation.missing)}", file=sys.stderr)
    if args.out:
        print(f"Wrote {write_evaluation_csv(evaluation, args.out)}")
    return EXIT_OK


def _cmd_depth(args) -> int:
    from .depth_command import run_depth

    run = run_depth(args.out, args.image, args.geometry, args.weights, view_name=args.view, centre_ij=args.centre,
                    voxel_mm=args.voxel_mm, anatomy=args.anatomy, progress=None if args.quiet else _print_progress)
    found = run.prediction.found
    print(f"Wrote {len(run.files)} files to {run.out_dir}: bones {', '.join(found)}"
          + (f"; {run.prediction.message}" if run.prediction.message else ""))
    return EXIT_OK


def _cmd_landmarks(args) -> int:
    from .biplanar_inference import detect, write_detection
    from .biplanar_network import load_network
    from .radiograph_file import read_radiograph
    from .shape_model_library import load_models

    model = load_network(args.weights)
    radiograph = read_radiograph(args.image, args.pixel_spacing)
    names = load_models(levels=["L1"])["L1"].landmark_names
    detection = detect(model, radiograph.pixels, radiograph.spacing_mm, args.view, names, args.centre)
    out = write_detection(detection, args.out, dict(image=str(args.image), view=args.view,
                                                    pixel_spacing_mm=list(radiograph.spacing_mm),
                                                    inverted=radiograph.inverted,
                                                    weights=str(args.weights or "bundled")),
                          radiograph.spacing_mm, args.decomposition)
    print(f"Wrote {len(detection.landmarks)} landmarks to {out}; found: {', '.join(detection.found) or 'none'}")
    if detection.message:
        print(f"bonerecon: {detection.message}", file=sys.stderr)
    return EXIT_OK


def _check_case_counts(args) -> None:
    if args.cases < 1 or args.size < 16:
        raise InputError("--cases must be at least 1 and --size at least 16 pixels.")


def _run_dataset(args, generate, what: str) -> int:
    """Run a dataset generation with progress; an interrupted run keeps its cases and says how to resume."""
    try:
        manifest = generate(None if args.quiet else _print_progress)
    except (KeyboardInterrupt, Cancelled):
        print(f"bonerecon: interrupted; the cases written so far are kept in {args.out} (no manifest yet): "
              "run the same command again to finish.", file=sys.stderr)
        return EXIT_INTERRUPTED
    splits = {}
    for case in manifest["cases"]:
        splits[case["split"]] = splits.get(case["split"], 0) + 1
    print(f"Wrote {len(manifest['cases'])} cases of {what} to {args.out} "
          f"({', '.join(f'{k} {v}' for k, v in splits.items())}; {manifest['cases_per_minute']:.1f} cases/min)")
    return EXIT_OK


def _command_group(commands, name: str, help: str, description: str):
    """A command with sub-commands (``bonerecon NAME SUB ...``); returns the sub-command parsers."""
    group = commands.add_parser(name, help=help, description=description)
    sub_commands = group.add_subparsers(dest=f"{name}_command", metavar=f"{name.upper()}_COMMAND")
    sub_commands.required = True
    return sub_commands


def _add_training_arguments(parser, data: str, steps: int, batch: str, lr: float) -> None:
    """--data, --out, --steps, --batch, --lr, --seed, --validate-every and --device of a train command."""
    parser.add_argument("--data", required=True, help=f"a finished {data} dataset folder")
    parser.add_argument("--out", required=True, help="training folder (new, or an unfinished run to resume)")
    parser.add_argument("--steps", type=int, default=steps, help=f"optimiser steps (default {steps})")
    parser.add_argument("--batch", type=int, default=8, help=f"{batch} per step (default 8)")
    parser.add_argument("--lr", type=float, default=lr, help=f"initial learning rate (default {lr:g})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--validate-every", type=int, default=500, help="steps between validations (default 500)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device")


def _add_split_arguments(parser, unit: str, example: str) -> None:
    """--fractions, --split and --seed of a single-view dataset command, split by ``unit`` (subject, CT)."""
    parser.add_argument("--fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1),
                        metavar=("TRAIN", "VALIDATION", "TEST"),
                        help=f"split fractions by {unit} (default 0.8 0.1 0.1)")
    parser.add_argument("--split", action="append", metavar=f"{unit.upper()}=SPLIT",
                        help=f"put a {unit} in a given split (train, validation or test), e.g. {example}; "
                        f"repeatable; the others are split by --fractions")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bonerecon",
        description="BoneRecon: 3D bone models from radiographs (3D Slicer extension, headless CLI).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs and VTK/MRML messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser(
        "demo",
        help="sample CT + labels -> label models, DRRs, L1-L5 reconstructed from the DRRs, compared with the labels",
        description="Load a CT and its vertebra label map (default: the bundled sample case) and build a surface "
        "model of each lumbar vertebra; when L1-L5 are all labelled, render an AP and a lateral DRR of the CT, "
        "reconstruct L1-L5 from them and compare with the label models. Writes OUT/scene.mrb, OUT/screenshot.png "
        "and, with the reconstruction, OUT/report.md and OUT/measurements.csv.",
    )
    demo.add_argument("--out", default="demo", help="output folder (default: ./demo)")
    demo.add_argument("--ct", help="CT image (NRRD/NIfTI/MHA); default: bundled sample")
    demo.add_argument("--labels", help="vertebra label map on the CT; default: bundled sample")
    demo.add_argument(
        "--label-table", default="totalsegmentator",
        help="label ids: 'totalsegmentator' (default), 'verse', or a CSV/JSON file of value,name",
    )
    demo.add_argument("--smoothing", type=float, default=0.5, help="surface smoothing factor 0..1 (default 0.5)")
    demo.add_argument("--no-screenshot", action="store_true", help="skip the offscreen 3D picture")
    demo.add_argument("--no-reconstruction", action="store_true",
                      help="only the label models (skip the DRRs and the reconstruction from them)")
    demo.add_argument("--preset", default="balanced", choices=["fast", "balanced", "accurate"],
                      help="reconstruction preset (default balanced)")
    demo.set_defaults(func=_cmd_demo)

    drr = commands.add_parser(
        "drr",
        help="CT + imaging geometry -> DRRs (+ per-label DRRs and front/back depth maps)",
        description="Render a digitally reconstructed radiograph of a CT for every view of a geometry JSON. "
        "With --labels, also each label's own DRR and its front depth, back depth and thickness maps (mm). "
        "Images are single-slice NRRDs placed on the detector plane; OUT also gets PNG previews, "
        "geometry.json and scene.mrb.",
    )
    drr.add_argument("--ct", required=True, help="CT image in HU (NRRD/NIfTI/MHA)")
    drr.add_argument("--geometry", required=True, help="views JSON ({\"views\": [...]}, see README)")
    drr.add_argument("--out", required=True, help="output folder")
    drr.add_argument("--labels", help="label map on the CT's voxel grid: per-label DRRs and depth maps")
    drr.add_argument("--label-table", help="names of the labels: 'totalsegmentator', 'verse' or a CSV/JSON file "
                     "(default: every non-zero value, named by its number)")
    drr.add_argument("--only", help="comma-separated label names or values to render (default: all)")
    drr.add_argument("--energy", type=float, default=60.0, help="effective X-ray energy in keV, 40-100 (default 60)")
    drr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device (default auto)")
    drr.add_argument("--no-scene", action="store_true", help="skip writing scene.mrb")
    drr.set_defaults(func=_cmd_drr)

    ssm_commands = _command_group(commands, "ssm", "statistical shape models of vertebrae and leg bones",
                                  "Statistical shape models (SSM) of vertebrae and of the femur and tibia.")
    build = ssm_commands.add_parser(
        "build", help="surfaces or label maps -> one shape model per level",
        description="Build a shape model per vertebra level: template fitting for correspondence, "
        "Procrustes, PCA, named landmarks; writes OUT/<level>.ssm.npz, the mean mesh, landmarks "
        "(JSON and Slicer .mrk.json), manifest.json and report.txt.")
    build.add_argument("--out", required=True, help="output folder")
    build.add_argument("--meshes", nargs="+", help="surface files (STL/PLY/OBJ/VTK/VTP) of one level")
    build.add_argument("--level", help="the level the --meshes show (e.g. L1)")
    build.add_argument("--anatomy", default="vertebra", choices=["vertebra", "femur", "tibia", "fibula"],
                       help="femur or tibia: --meshes of that bone from either leg (left ones mirrored; a file that "
                       "holds the fibula too gives its largest piece), a model of the right bone; fibula: --meshes "
                       "are tibia files that also hold the fibula, its model in the tibia's frame is added to OUT "
                       "(the leg folder beside its femur and tibia; fitted beside the tibia) (default vertebra)")
    build.add_argument("--persons", nargs="+", metavar="NAME",
                       help="--anatomy femur/tibia/fibula: whose each mesh is (one per mesh), so a person's two "
                       "knees leave the leave-one-out check together")
    build.add_argument("--units", choices=["mm", "cm", "m"], help="units of the --meshes (default mm)")
    build.add_argument("--lps", action="store_true", help="the --meshes are in LPS coordinates (ITK/DICOM)")
    build.add_argument("--labels", nargs="+", help="label maps, one label per vertebra")
    build.add_argument("--label-table", default="verse", help="label ids of --labels: 'verse' (default), "
                       "'totalsegmentator' or a CSV/JSON file")
    build.add_argument("--levels", help="comma-separated levels to build from --labels (default: all found)")
    build.add_argument("--template-triangles", type=int, default=8000, help="size of the model mesh (default 8000)")
    build.add_argument("--synthetic-below", type=int, default=10, metavar="N",
                       help="levels with fewer than N surfaces get synthetic variation: regional fields and the "
                       "real-shape modes of the level with the most surfaces (if it has 10 or more); a femur or "
                       "tibia its twist and tilt fields (anteversion, neck-shaft angle; torsion, slope); 0 = never "
                       "(default 10)")
    build.add_argument("--no-evaluation", action="store_true", help="skip leave-one-out and specificity")
    build.set_defaults(func=_cmd_ssm_build)

    dataset_commands = _command_group(commands, "dataset", "training data: simulated radiographs with exact ground "
                                      "truth", "Generate training data (a dataset folder with a manifest).")
    leg_data = dataset_commands.add_parser(
        "leg", help="femur and tibia shape models -> AP + lateral long-leg radiographs with feature points",
        description="Draw --cases legs from the femur and tibia shape models (new shapes within their span, the "
        "knee flexed 0-15 degrees, varus/valgus, the tibia turned and shifted under the femur, either side, turned "
        "and tilted), put them in soft tissue 25-50 mm "
        "thick and render an AP and a lateral long-leg radiograph with every feature point's pixel. Resumable.")
    leg_data.add_argument("--out", required=True, help="output folder")
    leg_data.add_argument("--cases", type=int, default=1000, help="number of legs (default 1000)")
    leg_data.add_argument("--models", help="a femur/tibia model folder (default: the bundled models)")
    leg_data.add_argument("--fibulas", nargs="+", metavar="MESH",
                          help="surface files each holding a tibia and its fibula: the fibulas stand beside the drawn "
                          "tibias (one per case), so the detector learns the lateral malleolus is not the medial one")
    leg_data.add_argument("--fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1),
                          metavar=("TRAIN", "VALIDATION", "TEST"), help="split fractions (default 0.8 0.1 0.1)")
    leg_data.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    leg_data.set_defaults(func=_cmd_dataset_leg)
    limb = dataset_commands.add_parser(
        "limb", help="bone surfaces -> single-view radiographs, bone masks and depth maps (DepthRecon)",
        description="Put each subject's bones in a soft-tissue envelope and render --cases random views of them "
        "(rotated about the limb's long axis, tilted, shifted, magnified) through a random radiograph "
        "realism chain. Each case holds the image, line integrals, bone mask, bone ids and every bone's "
        "front/back depth and thickness (mm). The split into train/validation/test is by subject. An "
        "interrupted run keeps its cases; the same command finishes it.")
    limb.add_argument("--out", required=True, help="dataset folder (new, or an unfinished one to resume)")
    limb.add_argument("--subject", nargs="+", action="append", required=True, metavar="NAME_OR_MESH",
                      help="a subject's name followed by its bone surface files (BONE=FILE names the bone, e.g. "
                      "radius=S1_Radius.vtk; default: the file name); repeat for every subject")
    limb.add_argument("--units", choices=["mm", "cm", "m"], help="units of the surfaces (default mm)")
    limb.add_argument("--lps", action="store_true", help="the surfaces are in LPS coordinates")
    limb.add_argument("--cases", type=int, default=100, help="cases per subject (default 100)")
    limb.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")
    limb.add_argument("--envelope-mm", type=float, default=8.0, help="soft tissue around the bones (default 8)")
    limb.add_argument("--pose", choices=["none", "finger", "wrist"], default="none",
                      help="pose every case: 'finger' (PIP/DIP flexion; one file of three phalanges or three files "
                      "proximal to distal), 'wrist' (carpus flexion and deviation about the capitate; bones named "
                      "radius, ulna, capitate ...); default none")
    limb.add_argument("--side", action="append", metavar="SUBJECT=right|left",
                      help="--pose wrist: which hand a subject's wrist is, so that every view looks from its back "
                      "(PA, as clinical wrist radiographs do); without it a left wrist is seen from the palm")
    limb.add_argument("--rotation-deg", type=float, default=30.0,
                      help="largest turn of the view about the limb's long axis from the front (default 30)")
    limb.add_argument("--fill-holes", action="store_true",
                      help="cap open surfaces (bones cut by the edge of the scan, e.g. a radius shaft)")
    limb.add_argument("--vary", type=float, nargs=2, metavar=("SCALE_SD", "WARP_MM"),
                      help="give every case's bones a new size and proportions (log-normal scale spread along "
                      "three random axes, e.g. 0.06) and smooth bends (typical amplitude in mm, e.g. 1.0)")
    _add_split_arguments(limb, "subject", "a real subject kept for the test")
    limb.add_argument("--meshes", action="store_true",
                      help="keep every case's bone surfaces as posed (the truth for "
                      "'benchmarks/depth_reconstruction.py'; about 1 MB per case)")
    limb.set_defaults(func=_cmd_dataset_limb)
    ct_depth = dataset_commands.add_parser(
        "depth", help="CTs + bone label maps + a view -> single-view DRRs with exact per-bone depth maps (DepthRecon)",
        description="Make DepthRecon training data from your own CTs: every case is one CT seen in the view of "
        "--geometry (your X-ray system), turned about the image's vertical axis, tilted and shifted at random, "
        "rendered as a DRR through a random radiograph realism chain, with each labelled bone's exact front/back "
        "depth maps (its label's boundary), mask and ids; the same case layout as 'dataset limb', so 'bonerecon "
        "train depth' trains on it. --placement standard puts the patient's anterior toward the source and "
        "superior up the image; as-is keeps the CT where its coordinates put it (after 'bonerecon register' to a "
        "radiograph of the system: paired data). The split is by CT. Resumable.")
    ct_depth.add_argument("--out", required=True, help="dataset folder (new, or an unfinished one to resume)")
    ct_depth.add_argument("--ct", nargs=2, action="append", required=True, metavar=("CT", "LABELS"),
                          help="a CT and its bone label map on the same grid (NRRD/NIfTI/MHA); repeat per CT; each "
                          "CT is a subject named by its file")
    ct_depth.add_argument("--geometry", required=True, help="views JSON of the X-ray system (one view, or --view)")
    ct_depth.add_argument("--view", help="the geometry's view to use (when it holds several)")
    ct_depth.add_argument("--label-table", help="CSV/JSON of label value -> bone name (default: every label, named "
                          "labelN)")
    ct_depth.add_argument("--only", help="comma-separated bones (names from the table, or label values) to render")
    ct_depth.add_argument("--placement", choices=["standard", "as-is"], default="standard",
                          help="where the CT sits in the view (default standard)")
    ct_depth.add_argument("--registration", action="append", metavar="REGISTRATION_JSON",
                          help="with --placement as-is: 'bonerecon register' result of a CT (the whole CT's pose "
                          "for a radiograph of this system); one per --ct, in the same order")
    ct_depth.add_argument("--cases", type=int, default=100, help="cases per CT (default 100)")
    ct_depth.add_argument("--rotation-deg", type=float, default=30.0,
                          help="largest turn about the image's vertical axis (default 30)")
    ct_depth.add_argument("--tilt-deg", type=float, default=5.0, help="largest tilt (default 5)")
    ct_depth.add_argument("--shift-mm", type=float, default=10.0, help="largest shift across the beam (default 10)")
    ct_depth.add_argument("--energy", type=float, default=60.0, help="effective energy in keV (default 60)")
    _add_split_arguments(ct_depth, "CT", "a CT (named by its file, without extension) kept for the test")
    ct_depth.add_argument("--meshes", action="store_true",
                          help="keep every case's posed label surfaces (the truth for the benchmark)")
    ct_depth.set_defaults(func=_cmd_dataset_depth)
    lumbar = dataset_commands.add_parser(
        "lumbar", help="shape models + background CTs -> biplanar lumbar radiographs, per-vertebra images, "
        "landmarks (BiplanarRecon)",
        description="Write biplanar (AP + lateral) lumbar cases: fresh L1-L5 shapes from the shape models in a "
        "random spine alignment, in place of each background CT's own lumbar vertebrae, rendered exactly "
        "(cortical shell, cancellous interior) through a random rig and radiograph realism; per case the "
        "radiographs, per-vertebra images L1-L5, 2D/3D landmarks with visibility, meshes, poses and geometry. "
        "Resumable: run the same command again after an interruption.")
    lumbar.add_argument("--out", required=True, help="dataset folder (new, or an unfinished one to resume)")
    lumbar.add_argument("--background", nargs=2, action="append", required=True, metavar=("CT", "LABELS"),
                        help="a CT in HU and its vertebra label map on the same grid, with L1-L5 labelled "
                        "(repeat for more CTs; cases take them in turn)")
    lumbar.add_argument("--label-table", default="totalsegmentator",
                        help="label ids: 'totalsegmentator' (default), 'verse', or a CSV/JSON file of value,name")
    lumbar.add_argument("--models", help="shape model folder (default: the bundled L1-L5 models)")
    lumbar.add_argument("--cases", type=int, default=1000, help="number of cases (default 1000)")
    lumbar.add_argument("--size", type=int, default=256, help="image size in pixels per view (default 256)")
    lumbar.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    lumbar.add_argument("--fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1),
                        metavar=("TRAIN", "VALIDATION", "TEST"),
                        help="split fractions by subject (default 0.8 0.1 0.1; 0 0 1 for a test-only set)")
    lumbar.add_argument("--beyond-span-mm", type=float, default=0.0, metavar="MM",
                        help="add a smooth free-form field of this amplitude (mm per axis, 8 mm correlation "
                        "length) to every shape, so that the shapes lie outside the models' span: held-out "
                        "shapes for testing registration beyond the span (default 0: shapes from the models)")
    lumbar.add_argument("--workers", type=int, default=0, metavar="N",
                        help="processes that draw the cases while this one writes them (default 0: this one "
                        "draws them too; about one per core); the cases do not depend on it")
    lumbar.set_defaults(func=_cmd_dataset_lumbar)

    depth_run = commands.add_parser(
        "depth", help="one radiograph + geometry -> bone masks, front/back depth maps, bone surfaces (DepthRecon)",
        description="Reconstruct bones from one calibrated radiograph: the network finds each bone's mask and where "
        "every ray enters and leaves it; the depths are back-projected through the geometry into a surface per bone "
        "and a label map. Writes OUT/scene.mrb, <bone>.vtk, <bone>_front_depth.nrrd / <bone>_back_depth.nrrd, "
        "labels.nrrd, geometry.json (the view used) and report.md. The view's source_to_object (mm; DICOM "
        "DistanceSourceToPatient) places the bones along the beam; without it the bones' mid-plane is assumed 40 mm "
        "before the detector, and the report says so.")
    depth_run.add_argument("--image", required=True, help="the radiograph file (NRRD/MHA/PNG/JPEG/DICOM)")
    depth_run.add_argument("--geometry", help="views JSON (one view, or name it with --view); default: the image's "
                           "DICOM header (ImagerPixelSpacing, DistanceSourceToDetector/Patient, ViewPosition, "
                           "PatientOrientation)")
    depth_run.add_argument("--weights", help="DepthRecon network weights (a training folder's best.pt; default: the "
                           "bundled network of --anatomy)")
    depth_run.add_argument("--anatomy", default="wrist", choices=["wrist"],
                           help="which bundled network to use when --weights is not given (default wrist)")
    depth_run.add_argument("--out", required=True, help="output folder")
    depth_run.add_argument("--view", help="the geometry's view to use (when it holds several)")
    depth_run.add_argument("--centre", type=float, nargs=2, metavar=("I", "J"),
                           help="image pixel (column, row) at the centre of the network's field (default: the "
                           "image centre)")
    depth_run.add_argument("--voxel-mm", type=float, help="voxel size of the surfaces and label map (default: a "
                           "network pixel at the bones)")
    depth_run.set_defaults(func=_cmd_depth)

    biplanar_run = commands.add_parser(
        "biplanar", help="AP + lateral radiographs + geometry -> L1-L5 surfaces, landmarks, measurements",
        description="Reconstruct L1-L5 from two calibrated radiographs: the network finds landmarks and per-vertebra "
        "images in each, the landmarks place each level's shape model, CMA-ES registers pose and shape to both views. "
        "Writes OUT/scene.mrb, L1.vtk..L5.vtk, landmarks.mrk.json, measurements.csv, report.md and screenshot.png. "
        "Levels that do not converge are kept, named so in the report and the scene.")
    biplanar_run.add_argument("--ap", help="the AP radiograph file (NRRD/MHA/PNG/JPEG/DICOM)")
    biplanar_run.add_argument("--lat", help="the lateral radiograph file (--anatomy leg: --ap or --lat alone is "
                              "one-view mode)")
    biplanar_run.add_argument("--geometry", required=True,
                              help="views JSON with the two views (named AP and LAT, or AP first); sets pixel spacing. "
                              "One-view mode: the one view (its source_to_object, if given, places the bones "
                              "along the beam)")
    biplanar_run.add_argument("--out", required=True, help="output folder")
    biplanar_run.add_argument("--preset", default="balanced", choices=["fast", "balanced", "accurate"],
                              help="time against accuracy (default balanced)")
    biplanar_run.add_argument("--levels", help="comma-separated levels to reconstruct (default L1,L2,L3,L4,L5)")
    biplanar_run.add_argument("--weights", help="network weights (default: bundled)")
    biplanar_run.add_argument("--no-screenshot", action="store_true", help="skip the offscreen 3D picture")
    biplanar_run.add_argument("--no-role-check", action="store_true",
                              help="do not test whether the AP and lateral images were swapped")
    biplanar_run.add_argument("--anatomy", default="spine", choices=["spine", "leg"],
                              help="spine: L1-L5 (default); leg: femur and tibia from --points (writes OUT/femur.vtk, "
                              "tibia.vtk, landmarks.json, measurements.csv, scene.mrb, report.md)")
    biplanar_run.add_argument("--points", help="--anatomy leg: feature points of both views, JSON "
                              "{\"AP\": [{\"bone\", \"name\", \"i\", \"j\", \"confidence\"}], \"LAT\": [...]} "
                              "(default: found by the leg feature detector)")
    biplanar_run.add_argument("--detector", help="--anatomy leg: feature detector weights (default: bundled)")
    biplanar_run.add_argument("--side", default="right", choices=["right", "left"], help="--anatomy leg: which leg")
    biplanar_run.add_argument("--bones", help="--anatomy leg: comma-separated bones (default femur,tibia)")
    biplanar_run.set_defaults(func=_cmd_biplanar)

    register = commands.add_parser(
        "register", help="CT (+ vertebra labels) -> radiographs (2D/3D), or surface -> surface (3D/3D), rigid",
        description="2D/3D: find the rigid pose of a CT whose DRRs match radiographs of known geometry, then with "
        "--labels each labelled vertebra's own pose (it moves with the rest of the CT fixed); writes "
        "registration.json (4x4 poses in RAS, image agreement, converged), <level>.vtk surfaces in the radiographs' "
        "frame (ground truth for 'bonerecon evaluate') and report.md. 3D/3D: --moving and --fixed surfaces, rigid "
        "ICP; writes registration.json and moved.vtk.")
    register.add_argument("--out", required=True, help="output folder")
    register.add_argument("--ct", help="CT in HU (NRRD/NIfTI/MHA)")
    register.add_argument("--geometry", help="views JSON of the radiographs")
    register.add_argument("--images", nargs="+", help="the radiographs, one per view in the geometry's order")
    register.add_argument("--labels", help="vertebra label map on the CT's grid: register each level too")
    register.add_argument("--label-table", default="totalsegmentator", help="label ids (default totalsegmentator)")
    register.add_argument("--levels", help="comma-separated levels (default: every lumbar level labelled)")
    register.add_argument("--no-whole", action="store_true",
                          help="the CT already sits where the radiographs were taken: register the levels only")
    register.add_argument("--moving", help="3D/3D: the surface to move")
    register.add_argument("--fixed", help="3D/3D: the surface to move it onto")
    register.add_argument("--units", choices=["mm", "cm", "m"], help="3D/3D: units of both surfaces (default mm)")
    register.add_argument("--lps", action="store_true", help="3D/3D: both surfaces are in LPS coordinates")
    register.set_defaults(func=_cmd_register)

    evaluate = commands.add_parser(
        "evaluate", help="reconstructed vertebra surfaces against ground truth: distances, Dice, landmarks",
        description="Compare the surfaces <level>.vtk|vtp|stl|ply|obj of --found (e.g. a 'bonerecon biplanar' "
        "output folder) with those of --truth, level by level: mean surface distance (both directions averaged), "
        "RMS, Hausdorff 95, Dice of the voxelised shapes, posterior-arch error (where body landmarks are known), "
        "3D landmark error and spine measurement errors (with --truth-landmarks).")
    evaluate.add_argument("--found", required=True, help="folder of reconstructed surfaces (+ landmarks.mrk.json)")
    evaluate.add_argument("--truth", required=True, help="folder of ground-truth surfaces named by level")
    evaluate.add_argument("--truth-landmarks", help="ground-truth landmarks (.mrk.json, labels '<level> <name>')")
    evaluate.add_argument("--truth-units", choices=["mm", "cm", "m"], help="units of the truth surfaces (default mm)")
    evaluate.add_argument("--truth-lps", action="store_true", help="the truth surfaces are in LPS coordinates")
    evaluate.add_argument("--levels", help="comma-separated levels (default L1,L2,L3,L4,L5)")
    evaluate.add_argument("--out", help="write the per-level figures to this CSV file")
    evaluate.set_defaults(func=_cmd_evaluate)

    landmarks = commands.add_parser(
        "landmarks", help="a radiograph file -> L1-L5 landmarks (and per-vertebra images) by the network",
        description="Run the BiplanarRecon network on a plain image file (PNG/JPEG/NRRD/MHA/DICOM, any bit "
        "depth; MONOCHROME1 inverted) and write every landmark as {vertebra, name, i (column), j (row), "
        "confidence} in the image's own pixels. The image is resampled to 1.5 mm detector pixels around its "
        "centre (a 384 mm field).")
    landmarks.add_argument("--image", required=True, help="the radiograph file")
    landmarks.add_argument("--view", required=True, choices=["AP", "LAT"], help="which view it is")
    landmarks.add_argument("--pixel-spacing", type=float, nargs="+", metavar="MM",
                           help="pixel spacing at the detector, one value or column and row (default: from the file)")
    landmarks.add_argument("--weights", help="network weights (a training folder's best.pt; default: bundled)")
    landmarks.add_argument("--centre", type=float, nargs=2, metavar=("I", "J"),
                           help="pixel (column, row) at the middle of L1-L5, for images wider than the network's "
                                "384 mm field (e.g. whole-spine radiographs); default: the image centre")
    landmarks.add_argument("--out", required=True, help="landmarks JSON file")
    landmarks.add_argument("--decomposition", help="folder for the per-vertebra images L1..L5 (NRRD)")
    landmarks.set_defaults(func=_cmd_landmarks)

    train_commands = _command_group(commands, "train", "train the networks on dataset folders",
                                    "Train the networks on dataset folders made by 'bonerecon dataset'.")
    biplanar = train_commands.add_parser(
        "biplanar", help="lumbar dataset -> the BiplanarRecon network (decomposition + landmarks)",
        description="Train the multi-task network (per-vertebra decomposition and landmark heatmaps, both views) on "
        "a 'bonerecon dataset lumbar' folder. Writes OUT/checkpoint.pt (resumable: run the same command again), "
        "OUT/best.pt (best validation landmark error) and OUT/history.json. Deterministic for a seed.")
    _add_training_arguments(biplanar, "lumbar", 20000, "samples (case views)", 1e-3)
    biplanar.add_argument("--init", help="weights to start from (fine-tuning), e.g. an earlier run's best.pt")
    biplanar.add_argument("--real-ap", help="annotated real AP radiographs (AASCE format: images/, filenames.csv, "
                          "landmarks.csv) mixed into every batch; every 4th image is never used (kept for the report)")
    biplanar.add_argument("--real-per-batch", type=int, default=1, metavar="N",
                          help="with --real-ap: real radiographs in every batch (default 1; the rest are synthetic)")
    biplanar.add_argument("--refiner", action="store_true",
                          help="train only a refiner (a second look at each vertebra on a crop: its landmarks and its "
                          "own image) on top of the network given by --init, which stays fixed")
    biplanar.add_argument("--workers", type=int, default=0, metavar="N",
                          help="processes that prepare the batches ahead (default 0: the training process itself; "
                          "a GPU run needs several to be kept busy); the weights do not depend on it")
    biplanar.set_defaults(func=_cmd_train_biplanar)
    depth = train_commands.add_parser(
        "depth", help="limb dataset -> the DepthRecon network (bone masks + front/back depth per bone)",
        description="Train the two-stage network (per-bone masks, then each bone's front and back depth relative to "
        "the object plane) on a 'bonerecon dataset limb' folder; its bones are every bone named by the dataset's "
        "subjects. Writes OUT/checkpoint.pt (resumable: run the same command again), OUT/best.pt and "
        "OUT/history.json. Deterministic for a seed.")
    _add_training_arguments(depth, "limb", 20000, "cases", 1e-3)
    depth.add_argument("--init", help="weights to start from: an earlier run's best.pt, or 'bundled' for the bundled "
                       "network of --anatomy (training goes on from there)")
    depth.add_argument("--anatomy", default="wrist", choices=["wrist"], help="the bundled network --init bundled "
                       "starts from (default wrist)")
    depth.set_defaults(func=_cmd_train_depth)
    leg_train = train_commands.add_parser(
        "leg", help="leg dataset -> the leg feature detector (femur and tibia points, AP or lateral)",
        description="Train the leg feature detector on a 'bonerecon dataset leg' folder. Writes OUT/checkpoint.pt "
        "(resumable: run the same command again), OUT/best.pt and OUT/history.json. Deterministic for a seed.")
    _add_training_arguments(leg_train, "leg", 3000, "cases, one view of each,", 2e-3)
    leg_train.add_argument("--init", help="weights to start from (an earlier run's best.pt, for the same points): "
                           "training goes on from there")
    leg_train.set_defaults(func=_cmd_train_leg)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from .app_context import set_vtk_log_level

    # Failures are reported as our own sentences; VTK's raw messages only with --verbose.
    set_vtk_log_level(logging.DEBUG if args.verbose else logging.CRITICAL)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"bonerecon: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except (KeyboardInterrupt, Cancelled):
        print("bonerecon: interrupted; no output was written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - last-resort report, traceback with --verbose
        logging.getLogger("BoneRecon").debug("internal error", exc_info=True)
        print(f"bonerecon: internal error: {exc} (run with --verbose for details)", file=sys.stderr)
        return EXIT_INTERNAL
