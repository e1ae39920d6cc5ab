"""Landmark refiner: crops that sample the image where they say and pasting that puts them back,
body centres, crop-pixel bookkeeping of the refined positions and images (a refiner whose heatmaps
peak at known pixels), training crops with their own level's image, training on top of fixed
weights, and loading back a network with its refiner."""

import numpy as np
import pytest
import torch

from BoneReconLib.biplanar_network import UNCERTAINTY_FLOOR_MM, BiplanarNet, landmark_positions, load_network
from BoneReconLib.biplanar_training import body_landmarks, train_biplanar
from BoneReconLib.errors import InputError
from BoneReconLib.landmark_refinement import (
    CENTRE_JITTER_MAX_PX,
    LandmarkRefiner,
    crop,
    crop_centres,
    crop_origin,
    level_centres,
    paste,
    refine,
    training_crops,
)


def _ramp(height=60, width=70):
    """An image whose value is column + 1000 x row: bilinear sampling reproduces it exactly."""
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                                indexing="ij")
    return (cols + 1000 * rows)[None, None]


def test_crops_sample_the_image_at_their_sub_pixel_window_and_zero_outside():
    image = _ramp().repeat(2, 1, 1, 1)
    image[1] *= 2
    centres = torch.tensor([[[30.25, 20.5], [40.0, 35.75]], [[10.5, 12.0], [66.0, 55.0]]])
    crops = crop(image, centres, 16)
    assert tuple(crops.shape) == (4, 1, 16, 16)
    origin = crop_origin(centres, 16)
    for n, (b, level) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        x0, y0 = (float(v) for v in origin[b, level])
        for a, c in [(0, 0), (3, 7), (15, 15)]:
            x, y = x0 + a, y0 + c
            inside = 0 <= x <= 69 and 0 <= y <= 59
            expected = (x + 1000 * y) * (b + 1) if inside else None
            if expected is not None:
                assert float(crops[n, 0, c, a]) == pytest.approx(expected, rel=1e-5)
    assert float(crops[3, 0, 15, 15]) == 0.0  # (73.5, 62.5) lies outside the 70 x 60 image


_POSITIONS = torch.tensor([[[0.0, 0.0], [2.0, 4.0], [10.0, 2.0], [99.0, 99.0],
                            [5.0, 5.0], [7.0, 9.0], [6.0, 7.0], [-50.0, 0.0]]])
_WEIGHT = torch.tensor([[1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0]])


def test_body_centred_crops_sit_on_the_median_or_the_weighted_mean_of_the_body_landmarks():
    refiner = LandmarkRefiner(landmarks_per_level=4, centre_landmarks=[0, 1, 2], crop_size=16, widths=(4, 8),
                              centre="body")
    assert "centre" not in refiner.config  # the layout of refiners before the centre was a choice
    assert level_centres(_POSITIONS, refiner, 2).tolist() == [[[2.0, 2.0], [6.0, 7.0]]]
    assert level_centres(_POSITIONS, refiner, 2, _WEIGHT).tolist() == [[[1.0, 2.0], [6.5, 8.0]]]


def test_landmark_centred_crops_sit_on_the_mean_or_the_weighted_mean_of_all_the_level_landmarks():
    refiner = LandmarkRefiner(landmarks_per_level=4, centre_landmarks=[0, 1, 2], crop_size=16, widths=(4, 8),
                              centre="landmarks")
    assert refiner.config["centre"] == "landmarks"
    assert level_centres(_POSITIONS, refiner, 2).tolist() == [[[27.75, 26.25], [-8.0, 5.25]]]
    weighted = level_centres(_POSITIONS, refiner, 2, _WEIGHT).flatten().tolist()
    assert weighted == pytest.approx([101 / 3, 103 / 3, -37 / 3, 16 / 3])
    with pytest.raises(ValueError):
        LandmarkRefiner(centre="spine")


def test_crops_move_towards_landmarks_near_their_edge_by_at_most_the_training_offset():
    # A 112-pixel crop on the body (median (50, 50)) reaches 55.5 px each way; a tip at x = 100
    # should lie CROP_MARGIN_PX (6) inside: the centre moves right by 100 - (50 + 55.5 - 6) = 0.5.
    refiner = LandmarkRefiner(landmarks_per_level=4, centre_landmarks=[0, 1, 2], centre="body")
    body = [[49.0, 50.0], [50.0, 50.0], [51.0, 50.0]]
    near = torch.tensor([body + [[100.0, 50.0]]])
    assert crop_centres(near, refiner, 1).tolist() == [[[50.5, 50.0]]]
    far = torch.tensor([body + [[150.0, 50.0]]])  # beyond reach: moved by the training's largest offset only
    assert crop_centres(far, refiner, 1).tolist() == [[[50.0 + CENTRE_JITTER_MAX_PX, 50.0]]]
    both = torch.tensor([body + [[-10.0, 50.0]]])  # the other side: moved left
    assert crop_centres(both, refiner, 1).tolist() == [[[39.5, 50.0]]]


class _PeakRefiner(LandmarkRefiner):
    """A refiner whose heatmap k peaks sharply at heatmap pixel peaks[k] whatever the crop."""

    def __init__(self, peaks, **kwargs):
        super().__init__(**kwargs)
        self.peaks = peaks

    def forward(self, crops, view):
        size = self.crop_size // self.stride
        rows, cols = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                                    indexing="ij")
        maps = torch.stack([-((cols - i) ** 2 + (rows - j) ** 2) * 20.0 for i, j in self.peaks])
        output = dict(heatmaps=maps[None].expand(len(crops), -1, -1, -1))
        if self.decomposition_out is not None:  # crop n's image: the constant n + 1
            output["decomposition"] = (torch.arange(len(crops), dtype=torch.float32) + 1).reshape(-1, 1, 1, 1).expand(
                -1, 1, size, size)
        return output


@pytest.mark.parametrize("stride", [1, 2])
def test_refined_positions_are_the_crop_origin_plus_the_decoded_peak(stride):
    peaks = [(3, 4), (10, 2), (7, 7)]
    refiner = _PeakRefiner(peaks, landmarks_per_level=3, centre_landmarks=[0, 1], crop_size=32, stride=stride,
                           widths=(4, 8, 8))
    coarse = torch.tensor([[[20.0, 30.0], [24.0, 34.0], [26.0, 28.0], [50.0, 10.0], [52.0, 14.0], [48.0, 16.0]]])
    refined = refine(refiner, torch.zeros(1, 1, 64, 64), torch.zeros(1), coarse, levels=2)["positions"]
    centres = [(22.0, 32.0), (51.0, 12.0)]  # median of two body landmarks = their mean
    expected = [[cx - 15.5 + stride * i + (stride - 1) / 2, cy - 15.5 + stride * j + (stride - 1) / 2]
                for cx, cy in centres for i, j in peaks]
    assert np.allclose(refined[0].numpy(), expected, atol=1e-3), (refined[0].tolist(), expected)
    # Where the radiograph covers only the left half, the second level's crop (centred at column 51)
    # is mostly padding: it keeps the coarse positions, the first (centred at column 22) is refined.
    valid = torch.zeros(1, 1, 64, 64)
    valid[..., :40] = 1
    result = refine(refiner, torch.zeros(1, 1, 64, 64), torch.zeros(1), coarse, levels=2, valid=valid)
    kept = result["positions"]
    assert np.allclose(kept[0, :3].numpy(), expected[:3], atol=1e-3)
    assert torch.equal(kept[0, 3:], coarse[0, 3:])
    assert result["refined"].tolist() == [[True] * 3 + [False] * 3]
    # Single sharp peaks: each refined landmark is as certain as a heatmap can say (the floor).
    assert result["uncertainty"].shape == (1, 6)
    assert torch.allclose(result["uncertainty"][0], torch.full((6,), UNCERTAINTY_FLOOR_MM), atol=1e-4)
    # A radiograph reaching to column 58 covers two thirds of the second crop (columns 35.5 .. 66.5):
    # more than MIN_CROP_COVERAGE, so it is refined too (an end vertebra near the image's edge).
    valid[..., :58] = 1
    near_edge = refine(refiner, torch.zeros(1, 1, 64, 64), torch.zeros(1), coarse, levels=2, valid=valid)["positions"]
    assert np.allclose(near_edge[0].numpy(), expected, atol=1e-3)


@pytest.mark.parametrize("stride", [1, 2])
def test_paste_puts_crops_back_where_they_came_from(stride):
    # A linear image survives crop -> average over stride x stride -> bilinear paste exactly, inside
    # each crop (less half an output pixel at its rim); beyond the crop the pasted image is zero.
    image = _ramp(40, 48).repeat(1, 2, 1, 1)
    image[0, 1] *= -1
    centres = torch.tensor([[[20.25, 15.5], [30.0, 24.75]]])
    crops = crop(image, centres, 16)  # (2, 2, 16, 16): each crop holds both channels
    own = crops[torch.arange(2), torch.arange(2)][:, None]  # crop n keeps channel n
    maps = torch.nn.functional.avg_pool2d(own, stride) if stride > 1 else own
    pasted = paste(maps, centres, 16, stride, (40, 48))
    assert tuple(pasted.shape) == (1, 2, 40, 48)
    for level in range(2):
        x0, y0 = (float(v) for v in crop_origin(centres[0, level], 16))
        rows, cols = torch.meshgrid(torch.arange(40.0), torch.arange(48.0), indexing="ij")
        margin = (stride - 1) / 2
        inner = ((cols >= x0 + margin) & (cols <= x0 + 15 - margin) & (rows >= y0 + margin)
                 & (rows <= y0 + 15 - margin))
        outer = (cols < x0 - stride) | (cols > x0 + 15 + stride) | (rows < y0 - stride) | (rows > y0 + 15 + stride)
        assert inner.sum() > 50 and outer.sum() > 50
        assert torch.allclose(pasted[0, level][inner], image[0, level][inner], rtol=1e-5, atol=1e-2)
        assert float(pasted[0, level][outer].abs().max()) == 0.0


def test_a_decomposing_refiner_pastes_each_level_s_image_and_keeps_the_main_one_where_its_crop_is_padding():
    refiner = _PeakRefiner([(3, 4), (10, 2), (7, 7)], landmarks_per_level=3, centre_landmarks=[0, 1], crop_size=32,
                           stride=2, widths=(4, 8, 8), decomposition=True)
    assert refiner.config["decomposition"] is True
    coarse = torch.tensor([[[20.0, 30.0], [24.0, 34.0], [26.0, 28.0], [50.0, 10.0], [52.0, 14.0], [48.0, 16.0]]])
    main = torch.full((1, 2, 64, 64), -5.0)
    valid = torch.zeros(1, 1, 64, 64)
    valid[..., :40] = 1
    result = refine(refiner, torch.zeros(1, 1, 64, 64), torch.zeros(1), coarse, levels=2, valid=valid,
                    decomposition=main)
    images = result["decomposition"]
    # Level 1's crop (centre (22, 32): columns 6.5 .. 37.5, rows 16.5 .. 47.5) holds its constant 1, zero beyond.
    assert float(images[0, 0, 32, 22]) == pytest.approx(1.0) and float(images[0, 0, 20, 10]) == pytest.approx(1.0)
    assert float(images[0, 0, 32, 45]) == 0.0 and float(images[0, 0, 3, 22]) == 0.0
    assert torch.equal(images[0, 1], main[0, 1])  # level 2's crop is mostly padding: the main network's image
    assert "decomposition" not in refine(refiner, torch.zeros(1, 1, 64, 64), torch.zeros(1), coarse, levels=2)


def test_training_crops_put_each_level_s_landmarks_in_crop_pixels():
    refiner = LandmarkRefiner(landmarks_per_level=3, centre_landmarks=[0, 1], crop_size=32, widths=(4, 8))
    image = _ramp()
    landmarks = torch.tensor([[[20.0, 20.0], [22.0, 24.0], [60.0, 22.0], [40.0, 40.0], [42.0, 41.0], [43.0, 42.0]]])
    weight = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 1.0]])  # level 2 has only one body landmark in the field
    batch = dict(image=image, view=torch.tensor([1.0]), landmarks=landmarks, weight=weight)
    for seed in range(5):
        items = training_crops(refiner, batch, 2, np.random.default_rng(seed))
        assert tuple(items["crops"].shape) == (1, 1, 32, 32) and items["view"].tolist() == [1.0]
        origin = landmarks[0, :3] - items["landmarks"][0]
        assert torch.allclose(origin, origin[0].expand(3, 2))  # one crop origin for the level's landmarks
        x0, y0 = (float(v) for v in origin[0])
        # The crop starts at that origin (ramp value at its pixel (16, 16), always inside the image),
        # which lies within the jitter of the body centre.
        assert float(items["crops"][0, 0, 16, 16]) == pytest.approx(x0 + 16 + 1000 * (y0 + 16), rel=1e-5)
        assert abs(x0 - (21.0 - 15.5)) <= 12.0 and abs(y0 - (22.0 - 15.5)) <= 12.0
        assert items["weight"][0].tolist() == [1.0, 1.0, 0.0]  # landmark 3 lies beyond the crop's right edge
        assert "decomposition" not in items


def test_training_crops_of_a_decomposing_refiner_hold_their_own_level_s_image():
    refiner = LandmarkRefiner(landmarks_per_level=2, centre_landmarks=[0, 1], crop_size=16, stride=2, widths=(4, 8),
                              decomposition=True)
    landmarks = torch.tensor([[[20.0, 20.0], [22.0, 22.0], [30.0, 30.0], [32.0, 30.0]]] * 2)
    images = torch.cat([_ramp(48, 48), -_ramp(48, 48)], dim=1).repeat(2, 1, 1, 1)  # level 1: ramp, level 2: -ramp
    batch = dict(image=torch.zeros(2, 1, 48, 48), view=torch.tensor([0.0, 1.0]), landmarks=landmarks,
                 weight=torch.ones(2, 4), decomposition=images, decomposition_weight=torch.tensor([1.0, 0.0]))
    items = training_crops(refiner, batch, 2, np.random.default_rng(3))
    assert tuple(items["decomposition"].shape) == (4, 1, 8, 8)
    assert items["decomposition_weight"].tolist() == [1.0, 1.0, 0.0, 0.0]
    for n in range(4):
        origin = landmarks[n // 2, 2 * (n % 2)] - items["landmarks"][n, 0]
        sign = 1.0 if n % 2 == 0 else -1.0
        # Output pixel (2, 3) averages crop pixels 4..5 x 6..7: the ramp at crop (4.5, 6.5).
        expected = sign * (origin[0] + 4.5 + 1000 * (origin[1] + 6.5))
        assert float(items["decomposition"][n, 0, 3, 2]) == pytest.approx(float(expected), rel=1e-5)


def test_refiner_trains_on_top_of_fixed_weights_and_loads_back_with_them(tiny_lumbar, tmp_path):
    with pytest.raises(InputError, match="needs the network it refines"):
        train_biplanar(tiny_lumbar, tmp_path / "nothing", steps=1, refiner=True)
    train_biplanar(tiny_lumbar, tmp_path / "base", steps=1, batch_size=1, validate_every=1, size=32)
    base = torch.load(tmp_path / "base" / "best.pt", weights_only=False)["model"]
    history = train_biplanar(tiny_lumbar, tmp_path / "refined", steps=2, batch_size=2, validate_every=2, size=32,
                             init=tmp_path / "base" / "best.pt", refiner=True)
    assert history["train"][0]["total"] > 0 and len(history["validation"]) == 1
    model = load_network(tmp_path / "refined" / "best.pt")
    assert model.refiner is not None and model.config["refiner"]["centre_landmarks"] == body_landmarks()
    assert model.config["refiner"]["decomposition"] is True
    for key, value in base.items():  # the network under the refiner is unchanged
        assert torch.equal(model.state_dict()[key], value), key
    fresh = BiplanarNet(refiner=model.config["refiner"]).state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in model.state_dict().items() if k.startswith("refiner."))
    with torch.no_grad():
        output = model(torch.randn(1, 1, 32, 32), torch.tensor([1.0]))
    positions, confidence = landmark_positions(model, output)
    assert torch.equal(positions, output["refined"]) and tuple(confidence.shape) == (1, 95)
    assert tuple(output["uncertainty"].shape) == (1, 95) and bool(torch.all(output["uncertainty"] >= UNCERTAINTY_FLOOR_MM))
    assert output["decomposition"].shape == output["coarse_decomposition"].shape == (1, 5, 32, 32)
    assert not torch.equal(output["decomposition"], output["coarse_decomposition"])
    with pytest.raises(InputError, match="another network"):  # a refined network is not a base to train on
        train_biplanar(tiny_lumbar, tmp_path / "again", steps=1, size=32, init=tmp_path / "refined" / "best.pt")
