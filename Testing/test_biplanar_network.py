"""BiplanarRecon network: sub-pixel decoding of known heatmaps, resampling that keeps landmarks on
their vertebrae, training that resumes to the same weights as an uninterrupted run."""

import json

import numpy as np
import pytest
import torch

from BoneReconLib.biplanar_network import (
    HEATMAP_SIGMA_PX,
    INPUT_SPACING_MM,
    UNCERTAINTY_FLOOR_MM,
    BiplanarNet,
    decode_landmarks,
    heatmap_uncertainty,
)
from BoneReconLib.biplanar_samples import (
    BiplanarSamples,
    from_network_pixels,
    network_transform,
    resample,
    to_network_pixels,
)
from BoneReconLib.biplanar_training import train_biplanar
from BoneReconLib.errors import InputError
from BoneReconLib.progress import Cancelled


@pytest.fixture(scope="module")
def tiny(tiny_lumbar):
    return tiny_lumbar


def test_soft_argmax_finds_sub_pixel_peaks_and_confidence_separates_sharp_from_flat():
    h, w = 40, 50
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
    truth = torch.tensor([[12.3, 20.7], [30.55, 8.25], [25.0, 33.9]])
    logits = torch.stack([-((cols - i) ** 2 + (rows - j) ** 2) / (2 * 1.5 ** 2) for i, j in truth])
    decoded, confidence = decode_landmarks(logits)
    assert decoded.double() == pytest.approx(truth, abs=1e-3)
    assert torch.all(confidence > 0.5)
    flat, low = decode_landmarks(torch.zeros(1, h, w))
    assert flat[0] == pytest.approx([(w - 1) / 2, (h - 1) / 2]) and float(low[0]) < 0.05
    # Heatmaps at 1/4 of the input resolution: heatmap pixel k covers input pixels 4k .. 4k + 3.
    coarse, _ = decode_landmarks(logits, stride=4)
    assert coarse.double() == pytest.approx(4 * truth + 1.5, abs=4e-3)


def test_peak_window_decodes_the_higher_of_two_peaks_instead_of_between_them():
    h, w = 40, 50
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
    peak = lambda i, j: torch.exp(-((cols - i) ** 2 + (rows - j) ** 2) / (2 * 1.2 ** 2))  # noqa: E731
    probability = 0.6 * peak(10.4, 12.0) / peak(10.4, 12.0).sum() + 0.4 * peak(30.0, 27.3) / peak(30.0, 27.3).sum()
    logits = probability.log()[None]
    plain, unsure = decode_landmarks(logits)  # the mixture's mean: on neither peak
    assert plain[0].double() == pytest.approx([0.6 * 10.4 + 0.4 * 30.0, 0.6 * 12.0 + 0.4 * 27.3], abs=1e-3)
    assert float(unsure[0]) < 0.01  # no mass about the mean
    # 1.5 mm input pixels: an 18 mm window = 12 pixels, well clear of the other peak 25 pixels away.
    local, confidence = decode_landmarks(logits, window_mm=18.0)
    assert local[0].double() == pytest.approx([10.4, 12.0], abs=1e-3)
    assert float(confidence[0]) == float(unsure[0])  # a split map stays unsure of its position
    # A single peak decodes as before.
    single = peak(21.3, 17.8).log()[None]
    assert decode_landmarks(single, window_mm=18.0)[0].double() == pytest.approx(
        decode_landmarks(single)[0].double(), abs=1e-6)


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_uncertainty_is_the_heatmap_spread_beyond_the_training_gaussian(stride):
    # A map that is the training Gaussian blurred by an error of s.d. e (heatmap pixels) has the
    # spread of a Gaussian of sqrt(sigma^2 + e^2): the uncertainty is e in mm, with the floor added in
    # quadrature; the training Gaussian itself gives the floor alone.
    h, w = 60, 64
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
    spreads = torch.tensor([0.0, 1.0, 2.5, 4.0])
    centre = torch.tensor([30.4, 27.7])
    total2 = HEATMAP_SIGMA_PX ** 2 + spreads ** 2
    logits = torch.stack([-((cols - centre[0]) ** 2 + (rows - centre[1]) ** 2) / (2 * t) for t in total2])
    positions, _ = decode_landmarks(logits, stride=stride)
    found = heatmap_uncertainty(logits, positions, stride)
    wanted = torch.sqrt((spreads * stride * INPUT_SPACING_MM) ** 2 + UNCERTAINTY_FLOOR_MM ** 2)
    assert found.double() == pytest.approx(wanted, rel=1e-3)
    # Measured about a position elsewhere than the peak, the same map is less certain.
    assert torch.all(heatmap_uncertainty(logits, positions + 3.0 * stride, stride) > found)
    # A map split between two places is as uncertain as their distance says.
    split = torch.logsumexp(torch.stack([logits[0], logits[0].roll(20, dims=1)]), dim=0)[None]
    middle = decode_landmarks(split, stride=stride)[0]
    assert float(heatmap_uncertainty(split, middle, stride)[0]) == pytest.approx(
        (10.0 * stride * INPUT_SPACING_MM) / 2 ** 0.5, rel=0.02)


def test_network_shapes_and_view_input():
    model = BiplanarNet().eval()
    image = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        out = model(image, torch.tensor([0.0, 1.0]))
        same_view = model(image, torch.tensor([0.0, 0.0]))
    assert tuple(out["decomposition"].shape) == (2, 5, 64, 64)
    assert tuple(out["heatmaps"].shape) == (2, 95, 16, 16)  # landmark_stride 4
    assert torch.equal(out["heatmaps"][0], same_view["heatmaps"][0])
    assert not torch.allclose(out["heatmaps"][1], same_view["heatmaps"][1])  # the view changes the answer
    assert tuple(BiplanarNet(landmark_stride=2)(image, torch.zeros(2))["heatmaps"].shape) == (2, 95, 32, 32)
    with pytest.raises(ValueError, match="power of 2"):
        BiplanarNet(landmark_stride=3)


def test_resampling_maps_image_points_to_network_points():
    image = torch.zeros(1, 120, 100)
    image[0, 28:33, 68:73] = 1.0  # a 5 x 5 spot centred on row 30, column 70
    transform = network_transform(image.shape, (0.75, 0.75), size=64, turn_deg=20.0, zoom=1.1, shift_px=(3, -2))
    spot = to_network_pixels(np.array([70.0, 30.0]), transform)
    assert from_network_pixels(spot, transform) == pytest.approx([70.0, 30.0])
    dot = resample(image, transform, size=64)[0]
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    centre = np.array([float((dot * cols).sum() / dot.sum()), float((dot * rows).sum() / dot.sum())])
    assert centre == pytest.approx(spot, abs=0.3)
    # Equal spacing, no augmentation: the centre maps to the centre and distances are kept.
    same = network_transform((1, 64, 64), (1.5, 1.5), size=64)
    assert same == pytest.approx(np.eye(3))
    with pytest.raises(InputError, match="spacing must be positive"):
        network_transform((1, 8, 8), (0.0, 1.0))


def test_samples_keep_every_landmark_on_its_vertebra(tiny):
    samples = BiplanarSamples(tiny, None, augment=True, seed=1, size=96)
    assert len(samples) == 20
    for index in range(len(samples)):
        item = samples[index]
        assert abs(float(item["image"].mean())) < 0.2  # normalised
        for k, (i, j) in enumerate(item["landmarks"].numpy()):
            if item["weight"][k] == 0:
                continue
            level = k // 19
            r, c = int(round(j)), int(round(i))
            patch = item["decomposition"][level, max(r - 2, 0):r + 3, max(c - 2, 0):c + 3]
            assert float(patch.max()) > 0, (index, k)
    again = BiplanarSamples(tiny, None, augment=True, seed=1, size=96)[5]
    assert torch.equal(again["image"], samples[5]["image"])


def assert_same_run(folder_a, history_a, folder_b, history_b):
    """Two training folders ended with equal weights after equal losses."""
    a = torch.load(folder_a / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(folder_b / "checkpoint.pt", weights_only=False)["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [t["total"] for t in history_a["train"]] == [t["total"] for t in history_b["train"]]


def test_training_resumes_to_the_same_weights_and_refuses_other_settings(tiny, tmp_path):
    common = dict(batch_size=2, validate_every=2, checkpoint_every=1, size=32, seed=4)
    straight = train_biplanar(tiny, tmp_path / "straight", steps=4, **common)
    calls = []

    def stop_at_two(fraction, message):
        calls.append(message)
        if len(calls) == 2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        train_biplanar(tiny, tmp_path / "resumed", steps=4, progress=stop_at_two, **common)
    resumed = train_biplanar(tiny, tmp_path / "resumed", steps=4, **common)
    assert_same_run(tmp_path / "straight", straight, tmp_path / "resumed", resumed)
    assert len(straight["validation"]) == 2 and (tmp_path / "straight" / "best.pt").exists()
    assert json.loads((tmp_path / "straight" / "history.json").read_text())["settings"]["steps"] == 4
    with pytest.raises(InputError, match="other settings"):
        train_biplanar(tiny, tmp_path / "straight", steps=5, **common)
    with pytest.raises(InputError, match="multiple of 16"):
        train_biplanar(tiny, tmp_path / "bad", steps=1, size=40)


def test_loader_workers_give_the_same_weights_as_training_without_them(tiny, tmp_path):
    common = dict(steps=3, batch_size=2, validate_every=3, size=32, seed=2)
    alone = train_biplanar(tiny, tmp_path / "alone", **common)
    helped = train_biplanar(tiny, tmp_path / "helped", workers=2, **common)
    assert_same_run(tmp_path / "alone", alone, tmp_path / "helped", helped)
    with pytest.raises(InputError, match="workers cannot be negative"):
        train_biplanar(tiny, tmp_path / "bad", steps=1, size=32, workers=-1)


def test_train_command(tiny, tmp_path):
    from BoneReconLib.cli import main

    code = main(["--quiet", "train", "biplanar", "--data", str(tiny), "--out", str(tmp_path / "run"),
                 "--steps", "1", "--batch", "1", "--validate-every", "1", "--device", "cpu"])
    assert code == 0 and (tmp_path / "run" / "best.pt").exists()
    code = main(["--quiet", "train", "biplanar", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r2"),
                 "--steps", "1"])
    assert code == 2


@pytest.mark.parametrize("stride", [1, 4])
def test_heatmap_cross_entropy_equals_the_explicit_gaussian_target(stride):
    from BoneReconLib.biplanar_training import HEATMAP_SIGMA_PX, losses

    generator = torch.Generator().manual_seed(0)
    heatmaps = torch.randn(2, 3, 20, 24, generator=generator)
    target = torch.tensor([[[3.2, 4.7], [20.0, 10.5], [12.1, 18.9]], [[0.0, 0.0], [23.0, 19.0], [7.7, 7.3]]])
    weight = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    image = torch.zeros(2, 1, 20 * stride, 24 * stride)
    batch = dict(image=image, decomposition=torch.zeros(2, 5, 20, 24), landmarks=target * stride + (stride - 1) / 2,
                 weight=weight)
    terms = losses(dict(decomposition=torch.zeros(2, 5, 20, 24), heatmaps=heatmaps), batch)
    rows, cols = torch.meshgrid(torch.arange(20.0), torch.arange(24.0), indexing="ij")
    explicit = []
    for b in range(2):
        for k in range(3):
            squared = (cols - target[b, k, 0]) ** 2 + (rows - target[b, k, 1]) ** 2
            wanted = torch.exp(-squared / (2 * HEATMAP_SIGMA_PX ** 2))
            wanted = wanted / wanted.sum()
            log_p = torch.log_softmax(heatmaps[b, k].reshape(-1), dim=0).reshape(20, 24)
            explicit.append(float(-(wanted * log_p).sum()) * float(weight[b, k]))
    assert float(terms["cross_entropy"]) == pytest.approx(sum(explicit) / 5.0, rel=1e-5)


def test_trained_weights_load_back(tiny, tmp_path):
    from BoneReconLib.biplanar_network import load_network

    train_biplanar(tiny, tmp_path / "run", steps=1, batch_size=1, validate_every=1, size=32)
    state = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    for path in (tmp_path / "run" / "best.pt", tmp_path / "run" / "checkpoint.pt"):
        model = load_network(path)
        assert not model.training
        for key, value in model.state_dict().items():
            assert torch.equal(value, state["model"][key]), key
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="holds no BiplanarRecon network"):
        load_network(tmp_path / "other.pt")
    with pytest.raises(InputError, match="No network weights"):
        load_network(tmp_path / "missing.pt")


def test_decomposition_mass_term_punishes_empty_vertebra_images():
    """An empty image where the vertebra is costs relative mass error 1 per level; the exact image, or a
    shifted copy with the same mass, costs 0 (so the term does not fight the L1 term on placement);
    levels outside the field and samples without a decomposition (real radiographs) are not counted."""
    from BoneReconLib.biplanar_training import losses

    truth = torch.zeros(2, 5, 16, 16)
    truth[:, :4, 4:8, 4:8] = 0.5  # four levels in the field (4 x 4 x 0.5 = 8 each), level 5 outside
    heatmaps = torch.zeros(2, 95, 4, 4)
    base = dict(image=torch.zeros(2, 1, 16, 16), decomposition=truth, landmarks=torch.zeros(2, 95, 2),
                weight=torch.zeros(2, 95))
    assert float(losses(dict(decomposition=truth, heatmaps=heatmaps), base)["mass_error"]) == pytest.approx(0.0)
    shifted = torch.roll(truth, 5, dims=-1)
    assert float(losses(dict(decomposition=shifted, heatmaps=heatmaps), base)["mass_error"]) == pytest.approx(0.0)
    empty = truth.clone()
    empty[:, 2:] = 0.0  # levels 3 and 4 missing (5 is not in the field)
    assert float(losses(dict(decomposition=empty, heatmaps=heatmaps), base)["mass_error"]) == pytest.approx(0.5)
    real = dict(base, decomposition_weight=torch.tensor([1.0, 0.0]))
    half_empty = truth.clone()
    half_empty[1] = 0.0  # the unweighted sample may be anything
    assert float(losses(dict(decomposition=half_empty, heatmaps=heatmaps), real)["mass_error"]) == pytest.approx(0.0)
