"""Level-consistent decoding (landmark_chain): known answers on drawn heatmaps."""

import pytest
import torch
from BoneReconLib.biplanar_network import decode_landmarks
from BoneReconLib.landmark_chain import chain_decode

OFFSETS = [(-3.0, -2.0), (3.0, -2.0), (0.0, 3.0)]  # three landmarks about each level's centre (heatmap px)
CENTRES = [(32.0 + 0.5 * level, 10.0 + 9.0 * level) for level in range(5)]  # 9 heatmap px = 54 mm apart


def _peak(i, j, h=64, w=64, sigma=0.8):
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
    p = torch.exp(-((cols - i) ** 2 + (rows - j) ** 2) / (2 * sigma ** 2))
    return p / p.sum()


def _maps(split_level=None, share_below=0.6):
    """(1, 15, 64, 64) logits: every landmark on its own level, except that ``split_level``'s maps
    put ``share_below`` of their mass on the level below."""
    maps = []
    for level, (ci, cj) in enumerate(CENTRES):
        for di, dj in OFFSETS:
            p = _peak(ci + di, cj + dj)
            if level == split_level:
                bi, bj = CENTRES[level + 1]
                p = (1 - share_below) * p + share_below * _peak(bi + di, bj + dj)
            maps.append((p + 1e-12).log())
    return torch.stack(maps)[None].float()


def _truth():
    return torch.tensor([[4 * (ci + di) + 1.5, 4 * (cj + dj) + 1.5] for ci, cj in CENTRES for di, dj in OFFSETS])


def test_a_level_whose_maps_peak_on_the_vertebra_below_is_put_back_on_its_own():
    heatmaps = _maps(split_level=2)
    plain, sure = decode_landmarks(heatmaps, 4, window_mm=18.0)
    below = torch.tensor([[4 * (CENTRES[3][0] + di) + 1.5, 4 * (CENTRES[3][1] + dj) + 1.5] for di, dj in OFFSETS])
    assert plain[0, 6:9] == pytest.approx(below, abs=0.05)  # L3 decoded on L4, 36 input px too low
    chained, confidence = chain_decode(heatmaps, 5, 4, 18.0)
    assert chained[0] == pytest.approx(_truth(), abs=0.05)  # every level on its own vertebra
    assert torch.equal(confidence, sure)  # the found rule's measure is unchanged
    assert torch.equal(chained[0, :6], plain[0, :6]) and torch.equal(chained[0, 9:], plain[0, 9:])


def test_maps_that_agree_with_the_chain_decode_as_before():
    heatmaps = _maps()
    plain, _ = decode_landmarks(heatmaps, 4, window_mm=18.0)
    chained, _ = chain_decode(heatmaps, 5, 4, 18.0)
    assert torch.equal(chained, plain) and chained[0] == pytest.approx(_truth(), abs=0.05)
