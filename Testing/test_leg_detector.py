"""The leg data engine (long-leg radiographs of model instances with their feature points) and the
leg feature detector: resampling, cases, training that learns and resumes, the bundled weights."""

import numpy as np
import pytest
import torch

from BoneReconLib.errors import InputError
from BoneReconLib.geometry import ap_view
from BoneReconLib.leg_dataset import PIXEL_MM, SIZE, detector_input, generate_leg_dataset, render_case
from BoneReconLib.leg_detector import LegDetector, features_json, load_leg_detector, points_json, train_leg_detector
from BoneReconLib.shape_model_library import LEG_MODELS, load_models


@pytest.fixture(scope="module")
def models():
    return load_models(LEG_MODELS, levels=["femur", "tibia"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, models):
    folder = tmp_path_factory.mktemp("legdata") / "data"
    generate_leg_dataset(folder, models, 6, seed=3, fractions=(0.5, 0.5, 0.0))
    return folder


def test_detector_input_keeps_positions(tmp_path):
    """A bright dot of a 1.5 mm radiograph lands where scale and offset say, in the detector's pixels."""
    view = ap_view(size=(300, 700), pixel_spacing=(1.5, 1.5))
    image = np.zeros((700, 300), dtype=np.float32)
    image[400:402, 100:102] = 1.0  # the dot's centre: (i, j) = (100.5, 400.5)
    resampled, (scale, offset) = detector_input(image, view)
    assert resampled.shape == (SIZE[1], SIZE[0]) and np.allclose(scale, PIXEL_MM / 1.5)
    j, i = np.unravel_index(np.argmax(resampled), resampled.shape)
    found = np.array([i, j]) * scale + offset
    assert np.all(np.abs(found - [100.5, 400.5]) <= 1.0 * scale)
    same = ap_view(size=SIZE, pixel_spacing=(PIXEL_MM, PIXEL_MM))
    plain = np.random.default_rng(0).random((SIZE[1], SIZE[0])).astype(np.float32)
    copied, (unit, zero) = detector_input(plain, same)
    assert np.allclose(copied, plain, atol=1e-5) and np.allclose(unit, 1.0) and np.allclose(zero, 0.0)


def test_leg_cases_put_the_points_on_the_bones(models):
    image, points, visible, views, side = render_case(models, np.random.default_rng(5))
    assert image.shape == (2, SIZE[1], SIZE[0]) and points.shape == (2, 23 + 24, 2) and side in ("left", "right")
    assert visible.mean() > 0.8
    for v in range(2):
        inside = points[v, :23][visible[v, :23]].round().astype(int)
        values = image[v][inside[:, 1], inside[:, 0]]
        assert np.median(values) > np.percentile(image[v], 60)  # bone is the brightest part of a limb


def test_drawn_knees_vary_how_the_tibia_sits_under_the_femur(models):
    """Beyond flexion and varus, the tibia is turned about its own axis (up to 8 degrees either way)
    and shifted (up to 3 mm) under the femur: recovered from the rigid motion of each drawn tibia."""
    from BoneReconLib.leg_dataset import sample_leg
    from BoneReconLib.shape_statistics import rigid_align

    twists, shifts = [], []
    for seed in range(30):
        legs = sample_leg(models, np.random.default_rng(seed))
        replay = np.random.default_rng(seed)  # the same draws: femur's coefficients, then the tibia's
        replay.standard_normal((1, models["femur"].n_modes))
        tibia = models["tibia"].instances(replay.standard_normal((1, models["tibia"].n_modes))).numpy()[0]
        rotation, translation, _ = rigid_align(tibia, legs["tibia"])
        twists.append(np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0])))  # the tibia's x axis about z
        shifts.append(translation[:2])
    twists, shifts = np.abs(twists), np.abs(shifts)
    assert twists.max() < 8.5 and twists.max() > 5.0 and np.median(twists) > 2.0
    assert shifts.max() < 3.0 + 1e-6 and shifts.max() > 2.0


def test_training_learns_and_resumes(tiny, tmp_path):
    out = tmp_path / "run"
    history = train_leg_detector(tiny, out, steps=40, batch_size=4, validate_every=40, seed=1)
    losses = [t["loss"] for t in history["train"]]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert (out / "best.pt").is_file() and history["validation"][-1]["step"] == 40
    again = train_leg_detector(tiny, out, steps=40, batch_size=4, validate_every=40, seed=1)
    assert len(again["train"]) == 40  # finished: nothing re-run
    with pytest.raises(InputError, match="other settings"):
        train_leg_detector(tiny, out, steps=40, batch_size=4, validate_every=40, seed=2)
    model = load_leg_detector(out / "best.pt")
    case = np.load(next((tiny / "cases").glob("*.npz")))
    view = ap_view(size=SIZE, pixel_spacing=(PIXEL_MM, PIXEL_MM))
    found = points_json(model, list(case["image"]), [view, view])
    assert len(found) == 2 and len(found[0]) == 23 and {p["bone"] for p in found[0]} == {"femur", "tibia"}
    assert all(0.0 <= p["confidence"] <= 1.0 for p in found[1])
    features = features_json(model, case["image"][0], view, lateral=False)
    assert set(features["boxes"]) == {"femur", "tibia"}
    assert set(features["ellipses"]) == {"femoral head", "medial posterior condyle", "lateral posterior condyle",
                                         "tibial plateau"}
    assert len(features["boxes"]["femur"]["box"]) == 4  # 40 steps teach no order: the bundled detector's test checks that
    head = features["ellipses"]["femoral head"]
    assert head["axes"][0] >= head["axes"][1] >= 0.0 and -90.0 <= head["angle_deg"] <= 90.0


def test_training_goes_on_from_given_weights(tiny, tmp_path):
    """``init``: a new run starts from an earlier run's weights (one step at a vanishing learning
    rate leaves them as they were); weights for other points are refused."""
    first = tmp_path / "first"
    train_leg_detector(tiny, first, steps=5, batch_size=2, validate_every=5, seed=1)
    history = train_leg_detector(tiny, tmp_path / "more", steps=1, batch_size=2, validate_every=1, seed=2,
                                 learning_rate=1e-12, init=first / "best.pt")
    assert history["settings"]["init"] == str((first / "best.pt").resolve())
    before, after = (load_leg_detector(folder / "best.pt").state_dict() for folder in (first, tmp_path / "more"))
    assert all(torch.allclose(before[k], after[k], atol=1e-8) for k in before)
    other = LegDetector(["femur: femoral head centre", "tibia: tibial ankle centre"])
    torch.save(dict(model=other.state_dict(), config=other.config), tmp_path / "other.pt")
    with pytest.raises(InputError, match="other points"):  # two points; these cases have 47
        train_leg_detector(tiny, tmp_path / "other", steps=1, batch_size=2, init=tmp_path / "other.pt")


def test_framing_keeps_a_window_and_hides_the_points_outside():
    from BoneReconLib.leg_detector import framed

    image = torch.ones(SIZE[1], SIZE[0])
    points = torch.tensor([[40.0, 10.0], [40.0, 200.0], [40.0, 370.0]])
    for seed in range(20):
        cut, seen = framed(image, points, torch.ones(3), np.random.default_rng(seed))
        kept = (cut != 0).any(dim=1).nonzero()[:, 0]
        top, bottom = int(kept.min()), int(kept.max())
        assert 100 <= bottom - top + 1 <= 240 and (cut[:top] == 0).all() and (cut[bottom + 1:] == 0).all()
        inside = (points[:, 1] >= top) & (points[:, 1] <= bottom)
        assert torch.all(seen[~inside] == 0) and (image == 1).all()


def test_bad_weights_and_data_are_refused(tmp_path, tiny):
    (tmp_path / "x.pt").write_bytes(b"nothing")
    with pytest.raises(InputError, match="not leg detector weights"):
        load_leg_detector(tmp_path / "x.pt")
    with pytest.raises(InputError, match="do not exist"):
        load_leg_detector(tmp_path / "missing.pt")
    torch.save(dict(config=dict(points=["femur: x"], widths=[4, 8]), model={}), tmp_path / "y.pt")
    with pytest.raises(InputError):
        load_leg_detector(tmp_path / "y.pt")
    with pytest.raises(InputError, match="at least one"):
        generate_leg_dataset(tmp_path / "none", {}, 0)
    assert LegDetector(["femur: a", "tibia: b"])(torch.zeros(1, SIZE[1], SIZE[0]), torch.zeros(1)).shape == \
        (1, 2, SIZE[1] // 2, SIZE[0] // 2)


def test_bundled_detector_finds_the_points_of_a_new_leg(models):
    """The bundled network on a leg drawn afresh (a seed no training case used): most points within 6 mm."""
    from BoneReconLib.network_library import bundled_weights

    model = load_leg_detector(bundled_weights("leg-detector"))
    image, points, visible, views, _ = render_case(models, np.random.default_rng(987654))
    found = points_json(model, list(image), views)
    for v in range(2):
        pixels = np.array([[p["i"], p["j"]] for p in found[v]])
        errors = np.linalg.norm(pixels - points[v, :len(pixels)], axis=1)[visible[v, :len(pixels)]] * PIXEL_MM
        assert np.median(errors) < 4.0 and np.mean(errors <= 6.0) > 0.8, (v, np.round(errors, 1))


def test_bundled_detector_finds_the_boxes_and_ellipses_of_a_new_leg(models):
    """Its boxes overlap the bones' true projected boxes (IoU > 0.85) and its ellipses lie on the
    true outlines of the femoral head, the posterior condyles and the tibial plateau (centres
    within 10 mm, semi-axes within 6 mm at the detector) on a leg drawn afresh."""
    from BoneReconLib.leg_detector import points_and_features
    from BoneReconLib.leg_outlines import OUTLINES, box_from_extremes, box_iou, ellipse_from_extremes
    from BoneReconLib.network_library import bundled_weights

    model = load_leg_detector(bundled_weights("leg-detector"))
    image, points, _, views, _ = render_case(models, np.random.default_rng(987654))
    features = points_and_features(model, list(image), views)[1]
    for v, view in enumerate(views):
        found = features[view.name]
        for (bone, name), extremes in zip(OUTLINES, points[v, 23:].reshape(len(OUTLINES), 4, 2)):
            if name.endswith(" box"):
                iou = box_iou(found["boxes"][bone]["box"], box_from_extremes(extremes))
                assert iou > 0.85, (view.name, bone, iou)
            else:
                centre, axes, _ = ellipse_from_extremes(extremes)
                got = found["ellipses"][name]
                assert np.linalg.norm(np.array(got["centre"]) - centre) * PIXEL_MM < 10.0, (view.name, name, got)
                assert np.abs(np.array(got["axes"]) - axes).max() * PIXEL_MM < 6.0, (view.name, name, got, axes)
