"""Leg-bone shape models and their reconstruction from two views, on analytic femur phantoms.

A phantom family is made by smooth known deformations of one phantom mesh (same vertices, so no
template fitting is needed): height, head offset, condylar width. A model is built from six of
them; a seventh, held out, is rendered in an AP + lateral rig and reconstructed from its images
and its projected feature points.
"""

import numpy as np
import pytest
import torch

from BoneReconLib.errors import InputError
from BoneReconLib.geometry import biplanar_rig
from BoneReconLib.leg_landmarks import femur_landmarks
from BoneReconLib.leg_reconstruction import reconstruct_leg_bone
from BoneReconLib.leg_surfaces import leg_bone_surfaces
from BoneReconLib.mesh_depth import mesh_depth
from BoneReconLib.ssm_builder import model_from_fits
from BoneReconLib.surface_evaluation import compare_surfaces
from leg_phantoms import femur_phantom, mirrored, turned


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _deformed(points, height=1.0, head=(0.0, 0.0), condyles=1.0):
    p = points.copy()
    p[:, 0] *= 1.0 + (condyles - 1.0) * _sigmoid((60.0 - p[:, 2]) / 10.0)
    weight = _sigmoid((p[:, 2] - 370.0) / 10.0) * _sigmoid((-p[:, 0] - 10.0) / 5.0)
    p[:, :2] += weight[:, None] * np.asarray(head)
    p[:, 2] *= height
    return p


@pytest.fixture(scope="module")
def family():
    points, triangles = femur_phantom()
    rng = np.random.default_rng(3)
    shapes = [_deformed(points, rng.uniform(0.92, 1.08), rng.uniform(-5.0, 5.0, 2), rng.uniform(0.93, 1.07))
              for _ in range(6)]
    model = model_from_fits("femur", np.stack(shapes), triangles, femur_landmarks)
    truth = _deformed(points, 1.04, (-3.0, 2.5), 0.96)
    return model, truth, triangles


def _case(model, truth_points):
    views = biplanar_rig(source_to_detector=1200.0, source_to_isocenter=1000.0, size=(96, 224),
                         pixel_spacing=(2.5, 2.5), isocenter=truth_points.mean(axis=0))
    images = list(mesh_depth(truth_points, model.triangles, views).thickness.clamp_min(0).numpy()[0])
    marks = np.array([lm.position(truth_points) for lm in model.landmarks])
    pixels = [view.project(marks)[0] for view in views]
    return views, images, pixels, [np.ones(len(marks))] * 2


def test_model_from_fits_is_a_right_femur_model_with_features(family):
    model, _, _ = family
    assert model.info["side"] == "right" and model.n_modes == 5
    assert {f["name"] for f in model.info["features"]} == {"femoral head", "medial posterior condyle",
                                                           "lateral posterior condyle"}
    knee = model.landmarks[model.landmark_names.index("femoral knee centre")].position(model.mean)
    assert np.linalg.norm(knee) < 1e-6  # the frame's origin


def test_held_out_femur_is_reconstructed_from_two_views(family):
    model, truth, triangles = family
    rotation = turned(np.eye(3), 5.0, (1.0, 0.0, 0.0))
    world = truth @ rotation.T + [20.0, -10.0, 5.0]
    views, images, pixels, confidences = _case(model, world)
    found = reconstruct_leg_bone(model, views, images, pixels, confidences, modes=5, generations=(30, 20))
    score = compare_surfaces(found.points, triangles, world, triangles, with_dice=False)
    start = compare_surfaces(found.initial.apply(model.mean), triangles, world, triangles, with_dice=False)
    assert found.registration.converged and not found.messages
    assert score["mean_mm"] < 0.6 and score["mean_mm"] < 0.5 * start["mean_mm"]
    true_length = np.linalg.norm(np.subtract(*[model.landmarks[model.landmark_names.index(n)].position(world)
                                               for n in ("femoral head centre", "femoral knee centre")]))
    assert found.measurements["femoral mechanical length (mm)"] == pytest.approx(true_length, abs=1.5)
    assert found.bone == "femur" and set(found.landmarks) == set(model.landmark_names)


def test_bad_input_is_refused(family):
    model, truth, _ = family
    views, images, pixels, confidences = _case(model, truth)
    few = [np.where(np.arange(len(c)) < 3, 1.0, 0.0) for c in confidences]
    with pytest.raises(InputError, match="feature points"):
        reconstruct_leg_bone(model, views, images, pixels, few)
    with pytest.raises(InputError, match="pixels"):
        reconstruct_leg_bone(model, views, [images[0][:-1], images[1]], pixels, confidences)
    with pytest.raises(InputError, match="scaled"):  # points of a bone twice as large
        centre = np.mean(pixels[0], axis=0), np.mean(pixels[1], axis=0)
        reconstruct_leg_bone(model, views, images, [2.0 * (p - c) + c for p, c in zip(pixels, centre)], confidences)


def test_leg_surfaces_bring_left_and_turned_bones_to_one_right_frame(tmp_path):
    from BoneReconLib.mesh_io import write_surface
    from BoneReconLib.shape_correspondence import surface_distance

    points, triangles = femur_phantom()
    write_surface(points, triangles, tmp_path / "a_femur_r.stl")
    left_points, left_triangles = mirrored(points, triangles)
    write_surface(turned(left_points, 180.0), left_triangles, tmp_path / "b_femur_l.stl")  # LPS-like
    right, left = leg_bone_surfaces([tmp_path / "a_femur_r.stl", tmp_path / "b_femur_l.stl"], "femur",
                                    persons=["p1", "p1"])
    assert right.name.endswith("(right)") and left.name.endswith("(left)") and left.person == "p1"
    assert surface_distance(right.points, right.triangles, left.points, left.triangles) < 0.3
    with pytest.raises(InputError, match="one per surface"):
        leg_bone_surfaces([tmp_path / "a_femur_r.stl"], "femur", persons=["p1", "p2"])
    with pytest.raises(InputError, match="Unknown leg bone"):
        leg_bone_surfaces([tmp_path / "a_femur_r.stl"], "fibula")


def test_ssm_build_of_femurs_from_either_side(tmp_path):
    """`bonerecon ssm build --anatomy femur`: phantoms of both sides, one turned -> a right-femur model."""
    from BoneReconLib.mesh_io import write_surface
    from BoneReconLib.shape_model_library import load_models
    from test_cli import run_cli

    shapes = [femur_phantom(anteversion_deg=a, height=h) for a, h in ((8.0, 400.0), (15.0, 420.0), (20.0, 440.0))]
    paths = []
    for n, (points, triangles) in enumerate(shapes):
        if n == 1:
            points, triangles = mirrored(points, triangles)
        if n == 2:
            points = turned(points, 180.0)
        paths.append(tmp_path / f"femur{n}.stl")
        write_surface(points, triangles, paths[-1])
    done = run_cli("-q", "ssm", "build", "--anatomy", "femur", "--meshes", *paths, "--persons", "a", "b", "c",
                   "--template-triangles", "2000", "--no-evaluation", "--out", tmp_path / "models")
    assert done.returncode == 0, done.stderr
    model = load_models(tmp_path / "models")["femur"]
    # 2 real modes + the femur's two synthetic fields (anteversion, neck-shaft angle: leg_variation)
    assert model.info["side"] == "right" and model.n_modes == 4
    assert set(model.info["synthetic_variation"]["regional"]) == {"femoral anteversion", "neck-shaft angle"}
    assert "femoral head centre" in model.landmark_names and (tmp_path / "models" / "femur_landmarks.mrk.json").is_file()
    assert "(left)" in " ".join(model.info["sources"])
    done = run_cli("ssm", "build", "--anatomy", "tibia", "--labels", paths[0], "--out", tmp_path / "bad")
    assert done.returncode == 2 and not (tmp_path / "bad").exists()
    done = run_cli("ssm", "build", "--meshes", *paths, "--level", "L1", "--persons", "a", "b", "c",
                   "--out", tmp_path / "bad")
    assert done.returncode == 2 and "--persons" in done.stderr


def test_highpass_removes_smooth_backgrounds_alike():
    """What the registration compares on radiographs: a constant or a linear ramp added under an
    image leaves its high-passed interior unchanged; a single bright pixel keeps its centre."""
    from BoneReconLib.gaussian_highpass import highpass

    rows, cols = torch.meshgrid(torch.arange(80.0, dtype=torch.float64), torch.arange(60.0, dtype=torch.float64),
                                indexing="ij")
    image = torch.exp(-((rows - 40) ** 2 + (cols - 30) ** 2) / 20.0).double()
    background = (3.0 + 0.05 * rows + 0.02 * cols).double()
    plain, shifted = highpass(image[None], 4.0)[0], highpass((image + background)[None], 4.0)[0]
    assert torch.allclose(plain[15:-15, 15:-15], shifted[15:-15, 15:-15], atol=1e-9)
    assert torch.allclose(highpass(torch.full((1, 20, 20), 7.0, dtype=torch.float64), 2.0),
                          torch.zeros(1, 20, 20, dtype=torch.float64))
    delta = torch.zeros(1, 41, 41, dtype=torch.float64)
    delta[0, 20, 20] = 1.0
    kernel = torch.exp(-0.5 * (torch.arange(-12.0, 13.0) / 4.0) ** 2)
    assert float(highpass(delta, 4.0)[0, 20, 20]) == pytest.approx(1.0 - float(kernel.max() / kernel.sum()) ** 2)


def _one_view(view, depth_mm):
    import dataclasses

    return dataclasses.replace(view, extra={"source_to_object": depth_mm})


def test_single_view_pose_recovers_a_known_instance(family):
    """Exact projections of a model instance in one view, the object plane at its true depth: pose and
    shape come back (the depth prior is then right; the coefficients' prior is weak against 0.1 mm)."""
    from BoneReconLib.single_view_pose import single_view_pose

    model, _, _ = family
    coefficients = np.array([0.8, -0.5, 0.3])
    basis = np.array([[lm.position(mode) for lm in model.landmarks]
                      for mode in model.modes[:3] * np.sqrt(model.variances[:3])[:, None, None]])
    mean_points = np.array([lm.position(model.mean) for lm in model.landmarks])
    rotation = turned(np.eye(3), 12.0, (0.3, 0.2, 1.0))
    truth = (mean_points + np.tensordot(coefficients, basis, axes=1)) @ rotation.T + [15.0, -20.0, 10.0]
    view = biplanar_rig(source_to_detector=1200.0, source_to_isocenter=1000.0, size=(96, 224),
                        pixel_spacing=(2.5, 2.5), isocenter=(0.0, 0.0, 180.0))[0]
    view = _one_view(view, float((truth.mean(axis=0) - view.source) @ view.normal))
    pixels = view.project(truth)[0]
    fit = single_view_pose(mean_points, basis, view, pixels, np.ones(len(truth)), noise_mm=0.1)
    found = fit.pose.apply(mean_points + np.tensordot(fit.coefficients, basis, axes=1))
    assert fit.reprojection_rms_mm < 0.05 and not fit.assumed_depth
    assert np.abs(found - truth).max() < 1.0
    assert np.abs(fit.coefficients - coefficients).max() < 0.15
    with pytest.raises(InputError, match="at least 4"):
        single_view_pose(mean_points, basis, view, pixels, (np.arange(len(truth)) < 3).astype(float))


def test_held_out_femur_from_one_view(family):
    """One-view mode: the held-out femur from its AP image and points, the object plane given."""
    model, truth, triangles = family
    world = truth @ turned(np.eye(3), 4.0, (1.0, 0.0, 0.0)).T + [20.0, -10.0, 5.0]
    views, images, pixels, confidences = _case(model, world)
    view = _one_view(views[0], float((world.mean(axis=0) - views[0].source) @ views[0].normal))
    found = reconstruct_leg_bone(model, [view], images[:1], pixels[:1], confidences[:1], modes=5,
                                 generations=(30, 20))
    score = compare_surfaces(found.points, triangles, world, triangles, with_dice=False)
    start = compare_surfaces(found.initial.apply(model.mean), triangles, world, triangles, with_dice=False)
    assert found.registration.converged and len(found.registration.ncc) == 1
    assert score["mean_mm"] < 1.5 and score["mean_mm"] < start["mean_mm"]


def test_far_off_feature_points_are_ignored_and_named(family):
    """Two AP detections on the wrong structure (40 mm off): set aside by the robust start, named in
    the messages, and the femur is reconstructed as well as without them."""
    model, truth, triangles = family
    views, images, pixels, confidences = _case(model, truth)
    wrong = [model.landmark_names.index(n) for n in ("lesser trochanter", "medial epicondyle")]
    bad = pixels[0].copy()
    bad[wrong] += 40.0 / views[0].pixel_spacing[0]
    found = reconstruct_leg_bone(model, views, images, [bad, pixels[1]], confidences, modes=5, generations=(30, 20))
    note = " ".join(found.messages)
    assert "AP lesser trochanter" in note and "AP medial epicondyle" in note and "LAT" not in note
    score = compare_surfaces(found.points, triangles, truth, triangles, with_dice=False)
    assert found.registration.converged and score["mean_mm"] < 0.6


def test_detector_like_point_errors_leave_the_shape_to_the_images(family):
    """Every point 5 mm off at the detector in a random direction (a detector's typical error on a
    long bone, under the outlier cut): the images, not the points, settle the surface."""
    model, truth, triangles = family
    views, images, pixels, confidences = _case(model, truth)
    rng = np.random.default_rng(7)
    noisy = []
    for view, ij in zip(views, pixels):
        angle = rng.uniform(0.0, 2.0 * np.pi, len(ij))
        noisy.append(ij + 5.0 / view.pixel_spacing[0] * np.stack([np.cos(angle), np.sin(angle)], axis=1))
    found = reconstruct_leg_bone(model, views, images, noisy, confidences, modes=5, generations=(30, 20))
    score = compare_surfaces(found.points, triangles, truth, triangles, with_dice=False)
    assert found.registration.converged and not found.messages
    assert score["mean_mm"] < 0.8  # 0.69 mm; with a vertebra's 3 mm point s.d. the points pull it to 1.02


def test_refinement_compares_the_images_at_its_own_high_pass(family, monkeypatch):
    """The pipeline registers with a wide high-pass (reach from detected points) and refines beyond
    the span with a narrower one (detail): the refinement gets the same images, points and masks,
    only its high-pass changed, and the phantom still comes back."""
    import BoneReconLib.leg_reconstruction as leg_reconstruction

    model, truth, triangles = family
    views, images, pixels, confidences = _case(model, truth)
    seen = []
    refine = leg_reconstruction.refine_beyond_span

    def recording(model, start, target, *args, **kwargs):
        seen.append(target)
        return refine(model, start, target, *args, **kwargs)

    monkeypatch.setattr(leg_reconstruction, "refine_beyond_span", recording)
    found = reconstruct_leg_bone(model, views, images, pixels, confidences, modes=5, generations=(30, 20),
                                 highpass_mm=20.0, refine_highpass_mm=12.0)
    assert [t.highpass_mm for t in seen] == [12.0]
    assert seen[0].images is not None and all(np.array_equal(a, b) for a, b in zip(seen[0].images, images))
    assert found.registration.converged
    assert compare_surfaces(found.points, triangles, truth, triangles, with_dice=False)["mean_mm"] < 0.8
    seen.clear()
    reconstruct_leg_bone(model, views, images, pixels, confidences, modes=5, generations=(30, 20), highpass_mm=20.0)
    assert [t.highpass_mm for t in seen] == [20.0]
