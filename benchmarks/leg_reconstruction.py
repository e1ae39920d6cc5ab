"""Femur and tibia from two views, leave-one-person-out, on the real leg surfaces of the shared data.

    python benchmarks/leg_reconstruction.py [--persons ICL_MRI,MC22] [--noise-mm 1.0] [--free-form-steps 60]

For each person of ../shared/data/meshes/leg_staple (5 people, 7 femurs, 7 tibias): a femur and a
tibia shape model are built from the OTHER people's surfaces (the same builder as `bonerecon ssm
build --anatomy`; template fits cached in datasets/leg-fits-<bone>.npz), the person's own bone is
posed (a few degrees and millimetres off a standing pose) in an AP + lateral long-bone rig
(source-detector 1200 mm, source-isocentre 1000 mm, 1.5 mm pixels; with --images radiograph the
whole leg, hip to ankle, on a 300 x 1152 mm detector), and reconstructed from:

- its own image in each view (the bone's exact thickness image: what a perfect bone
  decomposition would give; "oracle images"), and
- its feature points: the held-out model's points on the template fitted to the true surface
  (0.2 mm from it; the correspondence a detector is trained to find), projected into both views
  with Gaussian noise of --noise-mm at the detector (a detector's error).

Printed per bone: mean surface distance (both directions averaged), HD95, the initial instance's
distance (the model fitted to the triangulated feature points alone), the in-span floor (the best the held-out model can do: its projection of the true
shape), measurement errors, time; ratios to the target (1.0 mm) and to the best published knee
biplanar CNN (Chamfer 1.08 mm femur / 1.18 mm tibia).
"""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.geometry import biplanar_rig, rotation_about  # noqa: E402
from BoneReconLib.leg_fibula import fibula_model_from_fits, fibula_surfaces, fit_fibulas  # noqa: E402
from BoneReconLib.leg_landmarks import LEG_LANDMARKS  # noqa: E402
from BoneReconLib.leg_reconstruction import LEG_FREE_FORM, measure, reconstruct_leg_bone  # noqa: E402
from BoneReconLib.leg_surfaces import leg_bone_surfaces  # noqa: E402
from BoneReconLib.leg_variation import leg_variation  # noqa: E402
from BoneReconLib.mesh_depth import mesh_depth  # noqa: E402
from BoneReconLib.shape_statistics import apply, projection, rigid_align  # noqa: E402
from BoneReconLib.ssm_builder import build_level_model, model_from_fits  # noqa: E402
from BoneReconLib.surface_evaluation import compare_surfaces  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "meshes" / "leg_staple"
PUBLISHED = {"femur": 1.08, "tibia": 1.18}
TARGET_MM = 1.0
LONG_LEG_PIXELS = (200, 768)  # 300 x 1152 mm at the detector, 1.5 mm pixels


def person_of(path: Path) -> str:
    return path.name.split("__")[0]


def fitted(bone: str, surfaces, cache: Path):
    """Template fits (M, P, 3) and triangles, cached (the fitting takes minutes)."""
    if cache.is_file():
        with np.load(cache) as data:
            if list(data["names"]) == [s.name for s in surfaces]:
                return data["fits"], data["triangles"]
    model, build = build_level_model(bone, surfaces, evaluate=False, landmarks=LEG_LANDMARKS[bone])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, fits=build.fits, triangles=model.triangles, names=np.array([s.name for s in surfaces]))
    return build.fits, model.triangles


def held_out_model(bone, fits, triangles, args):
    """The model of the other people's fits, with the leg's synthetic variation unless --real-only
    (as the bundled models are built)."""
    model = model_from_fits(bone, fits, triangles, LEG_LANDMARKS[bone])
    return model if args.real_only else leg_variation(model).augment(model)


def posed_rig(points, rng, rotation_deg=4.0, shift_mm=10.0):
    """The bone turned and shifted a little, and an AP + lateral rig centred on it."""
    axis = rng.normal(size=3)
    turn = rotation_about(axis / np.linalg.norm(axis), np.radians(rng.uniform(-rotation_deg, rotation_deg)))
    centre = points.mean(axis=0)
    moved = (points - centre) @ turn.T + centre + rng.uniform(-shift_mm, shift_mm, 3)
    views = biplanar_rig(source_to_detector=1200.0, source_to_isocenter=1000.0, size=(200, 440),
                         pixel_spacing=(1.5, 1.5), isocenter=centre)
    return moved, turn, views


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--persons", help="comma-separated people to hold out (default: all five)")
    parser.add_argument("--bones", default="femur,tibia")
    parser.add_argument("--noise-mm", type=float, default=1.0, help="feature point error at the detector (mm, s.d.)")
    parser.add_argument("--free-form-steps", type=int, default=LEG_FREE_FORM.steps,
                        help="refinement beyond the model's span (0 = none)")
    parser.add_argument("--free-form-sigma-mm", type=float, default=LEG_FREE_FORM.sigma_mm, help="its field's smoothness")
    parser.add_argument("--free-form-amplitude-mm", type=float, default=LEG_FREE_FORM.amplitude_mm,
                        help="its field's size")
    parser.add_argument("--free-form-factor", type=int, default=LEG_FREE_FORM.factor,
                        help="its images block-averaged by this factor (1: full resolution)")
    parser.add_argument("--images", choices=["oracle", "radiograph"], default="oracle",
                        help="oracle: each bone's exact thickness image per view (one rig per bone); radiograph: "
                        "simulated radiographs of the whole leg (femur, tibia, fibula in 35 mm of soft tissue), "
                        "the bones' images cut from them as the product does (leg_pipeline)")
    parser.add_argument("--points", choices=["truth", "detector"], default="truth",
                        help="with --images radiograph: the true points with --noise-mm, or the leg feature detector's")
    parser.add_argument("--detector", help="detector weights for --points detector (default: bundled)")
    parser.add_argument("--json", help="also write the summary (and the detector's point, box and ellipse errors) "
                        "to this file")
    parser.add_argument("--generations", default="40,25")
    parser.add_argument("--views", choices=["both", "AP", "LAT"], default="both",
                        help="oracle images: reconstruct from both views or from one (one-view mode; the geometry "
                        "then gives the rig's source-to-isocentre distance as source_to_object, the bone is up to "
                        "10 mm off it)")
    parser.add_argument("--real-only", action="store_true", help="held-out models without the synthetic variation")
    parser.add_argument("--no-fibula", action="store_true",
                        help="with --images radiograph: no fibula model beside the tibia (its ridge is then unexplained)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is missing: this benchmark needs the shared leg surfaces.")
    generations = tuple(int(g) for g in args.generations.split(","))
    rng = np.random.default_rng(args.seed)
    free_form = dataclasses.replace(LEG_FREE_FORM, steps=args.free_form_steps, sigma_mm=args.free_form_sigma_mm,
                                    amplitude_mm=args.free_form_amplitude_mm,
                                    factor=args.free_form_factor) if args.free_form_steps else None
    rows = {}
    if args.images == "radiograph":
        return radiograph_benchmark(args, rng, free_form)
    for bone in args.bones.split(","):
        files = sorted(DATA.glob(f"*__{bone}_*.stl"))
        persons = [person_of(f) for f in files]
        surfaces = leg_bone_surfaces(files, bone, persons=persons)
        fits, triangles = fitted(bone, surfaces, REPO / "datasets" / f"leg-fits-{bone}.npz")
        held = args.persons.split(",") if args.persons else sorted(set(persons))
        print(f"\n{bone}: {len(files)} surfaces of {len(set(persons))} people; held out in turn: {', '.join(held)}")
        print(f"{'case':<28} {'modes':>5} {'ASSD':>6} {'HD95':>6} {'init':>6} {'floor':>6} {'conv':>5} {'s':>5}  measurement errors")
        for person in held:
            others = np.array([p != person for p in persons])
            model = held_out_model(bone, fits[others], triangles, args)
            for k in np.nonzero(~others)[0]:
                truth = surfaces[k]
                # In-span floor: the model's best reconstruction of the fitted true shape, placed back.
                rotation, translation, _ = rigid_align(fits[k], model.mean)
                floor_points = (projection(model, apply(fits[k], rotation, translation), model.n_modes)
                                - translation) @ rotation
                floor = compare_surfaces(floor_points, triangles, truth.points, truth.triangles, with_dice=False)
                world, turn, views = posed_rig(truth.points, rng)
                # Ground-truth feature points: the model's points on the template fitted to this surface
                # (0.2 mm from it), moved like the surface: the correspondence a detector is trained on.
                posed_fit = _moved_like(fits[k], truth.points, world)
                true_points = np.array([lm.position(posed_fit) for lm in model.landmarks])
                images = mesh_depth(world, truth.triangles, views).thickness.clamp_min(0).numpy()[0]
                pixels, confidences = [], []
                for view in views:
                    ij, _ = view.project(true_points)
                    pixels.append(ij + rng.normal(scale=args.noise_mm / view.pixel_spacing[0], size=ij.shape))
                    confidences.append(np.ones(len(ij)))
                if args.views != "both":
                    k = [v.name for v in views].index(args.views)
                    views = [dataclasses.replace(views[k], extra={"source_to_object": 1000.0})]
                    images, pixels, confidences = images[k:k + 1], pixels[k:k + 1], confidences[k:k + 1]
                start = time.perf_counter()
                found = reconstruct_leg_bone(model, views, list(images), pixels, confidences, modes=model.n_modes,
                                             generations=generations, free_form=free_form,
                                             seed=args.seed)
                seconds = time.perf_counter() - start
                score = compare_surfaces(found.points, found.triangles, world, truth.triangles, with_dice=False)
                initial = found.initial.apply(model.instances(found.initial_coefficients[None]).numpy()[0])
                init = compare_surfaces(initial, triangles, world, truth.triangles, with_dice=False)
                truth_measures = measure(bone, model.landmarks, model.info["features"], posed_fit)
                errors = {name: found.measurements[name] - truth_measures[name] for name in truth_measures}
                if args.views != "both":  # the part of the error a known depth would remove (posed_fit: the
                    # true shape on the model's vertices, so the two centroids correspond)
                    along = float((found.points.mean(axis=0) - posed_fit.mean(axis=0)) @ views[0].normal)
                    depth_free = compare_surfaces(found.points - along * views[0].normal, found.triangles, world,
                                                  truth.triangles, with_dice=False)
                    errors["depth offset (mm)"] = along
                    errors["ASSD at the true depth (mm)"] = depth_free["mean_mm"]
                rows.setdefault(bone, []).append((score["mean_mm"], score["hd95_mm"], init["mean_mm"], floor["mean_mm"],
                                                  found.registration.converged, seconds, errors))
                print(f"{truth.name:<28} {model.n_modes:>5} {score['mean_mm']:6.2f} {score['hd95_mm']:6.2f} "
                      f"{init['mean_mm']:6.2f} {floor['mean_mm']:6.2f} {str(found.registration.converged):>5} "
                      f"{seconds:5.1f}  " + ", ".join(f"{_short(n)} {e:+.1f}" for n, e in errors.items()))
    summary(rows, args, "each bone's exact thickness image")


def summary(rows, args, images, point_errors=None, outline_errors=None):
    if args.json:
        import json

        record = dict(images=images, noise_mm=args.noise_mm, points=getattr(args, "points", "truth"),
                      bones={bone: dict(cases=len(found), assd_mm=float(np.mean([r[0] for r in found])),
                                        hd95_mm=float(np.mean([r[1] for r in found])),
                                        initial_mm=float(np.mean([r[2] for r in found])),
                                        converged=int(sum(r[4] for r in found)))
                             for bone, found in rows.items()})
        if point_errors:
            record["point_error_mm"] = {view: dict(mean=float(np.mean(e)), median=float(np.median(e)))
                                        for view, e in point_errors.items()}
        if outline_errors:
            record["outlines"] = {name: {key: float(np.mean(v)) for key, v in values.items()}
                                  for name, values in outline_errors.items()}
        Path(args.json).write_text(json.dumps(record, indent=1))
    print("\nbone     cases   ASSD   HD95  initial  in-span floor  converged  s/bone  target  ratio  published  ratio")
    for bone, found in rows.items():
        a = np.array([r[:4] for r in found])
        mean = a.mean(axis=0)
        print(f"{bone:<8} {len(found):>5} {mean[0]:6.2f} {mean[1]:6.2f} {mean[2]:8.2f} {mean[3]:14.2f} "
              f"{sum(r[4] for r in found):>6}/{len(found):<3} {np.median([r[5] for r in found]):7.1f} "
              f"{TARGET_MM:7.1f} {mean[0] / TARGET_MM:6.2f} {PUBLISHED[bone]:10.2f} {mean[0] / PUBLISHED[bone]:6.2f}")
        names = found[0][6].keys()
        print("   mean |error|: " + ", ".join(f"{n} {np.mean([abs(r[6][n]) for r in found]):.1f}" for n in names))
    print(f"(images: {images}; feature points with {args.noise_mm} mm noise at the detector; "
          f"free-form steps {args.free_form_steps}, sigma {args.free_form_sigma_mm} mm, "
          f"amplitude {args.free_form_amplitude_mm} mm, factor {args.free_form_factor})")


def radiograph_benchmark(args, rng, free_form):
    """Each leg (person and side) assembled as scanned, in simulated AP + lateral long-leg radiographs."""
    from BoneReconLib.leg_pipeline import reconstruct_leg
    from BoneReconLib.limb_radiograph import Bone, render_limb, soft_tissue_envelope
    from BoneReconLib.mesh_io import prepare_surface, read_surface, surface_pieces
    from BoneReconLib.leg_surfaces import MAX_TRIANGLES, mirrored

    data = {}
    for bone in ("femur", "tibia"):
        files = sorted(DATA.glob(f"*__{bone}_*.stl"))
        persons = [person_of(f) for f in files]
        surfaces = leg_bone_surfaces(files, bone, persons=persons)
        data[bone] = (files, persons, surfaces, *fitted(bone, surfaces, REPO / "datasets" / f"leg-fits-{bone}.npz"))
    held = args.persons.split(",") if args.persons else sorted(set(data["femur"][1]))
    fibulas = None if args.no_fibula else fibula_fits(data["tibia"][0], data["tibia"][1])
    rows = {}
    point_errors = {"AP": [], "LAT": []}
    feature_errors, fibula_scores = {}, []
    detector = None
    if args.points == "detector":
        from BoneReconLib.leg_detector import load_leg_detector, points_and_features
        from BoneReconLib.leg_outlines import outline_pixels
        from BoneReconLib.network_library import bundled_weights

        detector = load_leg_detector(args.detector or bundled_weights("leg-detector"))
    print(f"{'leg':<22} {'bone':<6} {'ASSD':>6} {'HD95':>6} {'init':>6} {'conv':>5} {'s':>5}  measurement errors")
    for k, femur_file in enumerate(data["femur"][0]):
        person = person_of(femur_file)
        if person not in held:
            continue
        side = "right" if femur_file.stem.endswith("_r") else "left"
        tibia_file = femur_file.with_name(femur_file.name.replace("femur", "tibia"))
        femur_raw = prepare_surface(read_surface(femur_file), max_triangles=MAX_TRIANGLES)
        tibia_raw = prepare_surface(read_surface(tibia_file), max_triangles=MAX_TRIANGLES)
        fibula = sorted(surface_pieces(read_surface(tibia_file)), key=lambda piece: len(piece[1]))[-2]
        # The leg in the femur's frame (a left leg mirrored: the models are of right bones).
        frame = LEG_LANDMARKS["femur"](*femur_raw)[1]

        def in_leg(points, triangles):
            local = frame.to_frame(points)
            return mirrored(local, triangles) if side == "left" else (local, np.asarray(triangles))

        leg = {"femur": in_leg(*femur_raw), "tibia": in_leg(*tibia_raw)}
        fibula = in_leg(*fibula)
        models, true_fits = {}, {}
        for bone in ("femur", "tibia"):
            files, persons, surfaces, fits, triangles = data[bone]
            index = [n for n, f in enumerate(files) if f.name == (femur_file if bone == "femur" else tibia_file).name][0]
            others = np.array([p != person for p in persons])
            models[bone] = held_out_model(bone, fits[others], triangles, args)
            true_fits[bone] = _moved_like(fits[index], surfaces[index].points, leg[bone][0])
            if bone == "tibia" and fibulas is not None:
                models["fibula"] = fibula_model_from_fits(fibulas[0][others], fibulas[1])
        # Posed a little, and seen in a long-leg AP + lateral rig.
        axis = rng.normal(size=3)
        turn = rotation_about(axis / np.linalg.norm(axis), np.radians(rng.uniform(-4.0, 4.0)))
        shift = rng.uniform(-10.0, 10.0, 3)
        centre = np.concatenate([leg["femur"][0], leg["tibia"][0]]).mean(axis=0)

        def posed(points):
            return (points - centre) @ turn.T + centre + shift

        bones = [Bone(name, posed(p), t) for name, (p, t) in [*leg.items(), ("fibula", fibula)]]
        # Framed hip to ankle as a long-leg radiograph is: centred on the leg's extent (not on its
        # vertices' mean, which the femur pulls up) on the detector's training frame, 1152 mm tall.
        every = np.concatenate([leg["femur"][0], leg["tibia"][0], fibula[0]])
        views = biplanar_rig(source_to_detector=1200.0, source_to_isocenter=1000.0, size=LONG_LEG_PIXELS,
                             pixel_spacing=(1.5, 1.5), isocenter=(every.min(axis=0) + every.max(axis=0)) / 2)
        envelope = soft_tissue_envelope(bones, thickness_mm=35.0, voxel_mm=3.0)
        radiographs = list(render_limb(bones, envelope, views).attenuation.numpy())
        points = [[] for _ in views]
        truth_ij = [{} for _ in views]
        for bone in ("femur", "tibia"):
            marks = np.array([lm.position(posed(true_fits[bone])) for lm in models[bone].landmarks])
            for v, view in enumerate(views):
                exact = view.project(marks)[0]
                truth_ij[v].update({(bone, lm.name): p for lm, p in zip(models[bone].landmarks, exact)})
                ij = exact + rng.normal(scale=args.noise_mm / view.pixel_spacing[0], size=(len(marks), 2))
                points[v] += [dict(bone=bone, name=lm.name, i=float(i), j=float(j), confidence=1.0)
                              for lm, (i, j) in zip(models[bone].landmarks, ij)]
        if args.points == "detector":
            points, features = points_and_features(detector, radiographs, views)
            legs = {bone: posed(true_fits[bone]) for bone in ("femur", "tibia")}
            for view in views:
                outline_errors(features[view.name], outline_pixels(models, legs, view), view, feature_errors)
            for v, view in enumerate(views):
                point_errors[view.name] += [float(np.hypot(p["i"] - truth_ij[v][(p["bone"], p["name"])][0],
                                                           p["j"] - truth_ij[v][(p["bone"], p["name"])][1])
                                                  * view.pixel_spacing[0]) for p in points[v]]
        start = time.perf_counter()
        found = reconstruct_leg(models, views, radiographs, points, free_form=free_form)
        seconds = (time.perf_counter() - start) / max(len(found.bones), 1)
        for bone, result in found.bones.items():
            truth = posed(leg[bone][0])
            score = compare_surfaces(result.points, result.triangles, truth, leg[bone][1], with_dice=False)
            initial = result.initial.apply(models[bone].instances(result.initial_coefficients[None]).numpy()[0])
            init = compare_surfaces(initial, result.triangles, truth, leg[bone][1], with_dice=False)
            truth_measures = measure(bone, models[bone].landmarks, models[bone].info["features"], posed(true_fits[bone]))
            errors = {name: result.measurements[name] - truth_measures[name] for name in truth_measures}
            rows.setdefault(bone, []).append((score["mean_mm"], score["hd95_mm"], init["mean_mm"], float("nan"),
                                              result.registration.converged, seconds, errors))
            print(f"{person + ' ' + side:<22} {bone:<6} {score['mean_mm']:6.2f} {score['hd95_mm']:6.2f} "
                  f"{init['mean_mm']:6.2f} {str(result.registration.converged):>5} {seconds:5.1f}  "
                  + ", ".join(f"{_short(n)} {e:+.1f}" for n, e in errors.items()))
            fit = result.registration
            print(f"{'':<29} NCC {', '.join(f'{v:.2f}' for v in fit.ncc)}, points {fit.landmark_rms_mm:.1f} mm RMS"
                  + "".join(f"; {m}" for m in result.messages))
        if found.fibula is not None:
            score = compare_surfaces(found.fibula.points, found.fibula.triangles, posed(fibula[0]), fibula[1],
                                     with_dice=False)
            fibula_scores.append(score["mean_mm"])
            print(f"{'':<22} fibula {score['mean_mm']:6.2f} {score['hd95_mm']:6.2f} (beside the tibia: "
                  f"{'used' if found.fibula.used else 'not used'}, NCC "
                  f"{', '.join(f'{v:.2f}' for v in found.fibula.registration.ncc)})")
    if args.points == "detector":
        print("\nfeature points found by the detector (error at the detector, mm):")
        for name, errors in point_errors.items():
            e = np.array(errors)
            print(f"  {name}: mean {e.mean():.2f}, median {np.median(e):.2f}, within 3 mm {100 * (e <= 3).mean():.0f}%, "
                  f"within 6 mm {100 * (e <= 6).mean():.0f}%")
        if feature_errors:
            print("boxes and ellipses found by the detector (mean over legs and both views):")
            for name, values in feature_errors.items():
                print(f"  {name}: " + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in values.items()))
    if fibula_scores:
        print(f"fibula beside the tibia (held-out fibula model): mean surface distance {np.mean(fibula_scores):.2f} mm")
    summary(rows, args, "simulated long-leg radiographs, 35 mm soft tissue, compared high-passed near each bone "
                        "as leg_pipeline does" + ("; feature points from the detector" if detector else "")
                        + ("; no fibula model" if args.no_fibula else "; the fibula fitted beside the tibia"),
            point_errors if detector else None, feature_errors)


def fibula_fits(tibia_files, persons):
    """Template fits (M, P, 3) of the fibulas in their tibias' frames and triangles, cached."""
    cache = REPO / "datasets" / "leg-fits-fibula.npz"
    names = [f.name for f in tibia_files]
    if cache.is_file():
        with np.load(cache) as data:
            if list(data["names"]) == names:
                return data["fits"], data["triangles"]
    fits, triangles, _, _ = fit_fibulas(fibula_surfaces(tibia_files, persons=persons))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, fits=fits, triangles=triangles, names=np.array(names))
    return fits, triangles


def outline_errors(found, true_extremes, view, errors):
    """Box IoU per bone and ellipse centre / semi-axis errors (mm at the detector) per feature, added to ``errors``."""
    from BoneReconLib.leg_outlines import OUTLINES, box_from_extremes, box_iou, ellipse_from_extremes

    mm = float(np.mean(view.pixel_spacing))
    for (bone, name), extremes in zip(OUTLINES, np.asarray(true_extremes).reshape(len(OUTLINES), 4, 2)):
        if name.endswith(" box"):
            if bone not in found["boxes"]:
                continue
            iou = box_iou(found["boxes"][bone]["box"], box_from_extremes(extremes))
            errors.setdefault(f"{bone} box", {}).setdefault("IoU", []).append(iou)
        elif name in found["ellipses"]:
            centre, axes, _ = ellipse_from_extremes(extremes)
            got = found["ellipses"][name]
            entry = errors.setdefault(f"{name} ellipse", {})
            entry.setdefault("centre mm", []).append(float(np.linalg.norm(np.array(got["centre"]) - centre)) * mm)
            entry.setdefault("semi-axes mm", []).append(float(np.abs(np.array(got["axes"]) - axes).mean()) * mm)


def _moved_like(points, before, after):
    """``points`` moved by the rigid motion that took the surface ``before`` to ``after``."""
    rotation, translation, _ = rigid_align(before, after)
    return apply(points, rotation, translation)


def _short(name: str) -> str:
    return name.split(" (")[0].replace("femoral ", "").replace("tibial ", "")


if __name__ == "__main__":
    main()
