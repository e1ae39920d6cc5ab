"""Image metrics on known answers: identical images, a constant offset, noise lowering SSIM."""

import math

import pytest
import torch
from BoneReconLib.image_metrics import mae, ncc, psnr, ssim


def test_known_answers():
    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(40, 50, generator=generator)
    assert ssim(truth, truth, 1.0) == pytest.approx(1.0)
    assert psnr(truth, truth, 1.0) == math.inf and mae(truth, truth) == 0.0
    shifted = truth + 0.1
    assert mae(shifted, truth) == pytest.approx(0.1)
    assert psnr(shifted, truth, 1.0) == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    # A constant offset leaves structure alone: only the luminance term drops, a little.
    assert 0.9 < ssim(shifted, truth, 1.0) < 1.0
    slightly = truth + 0.05 * torch.randn(40, 50, generator=generator)
    very = truth + 0.5 * torch.randn(40, 50, generator=generator)
    assert 1.0 > ssim(slightly, truth, 1.0) > 0.9 > 0.5 > ssim(very, truth, 1.0)  # more noise, less similar
    assert ssim(1.0 - truth, truth, 1.0) < -0.9  # same brightness, inverted structure


def test_ncc_ignores_scale_and_offset_and_sees_anticorrelation():
    rng = torch.Generator().manual_seed(0)
    image = torch.rand(32, 32, generator=rng)
    assert ncc(3.0 * image + 2.0, image) == pytest.approx(1.0, abs=1e-12)
    assert ncc(-image, image) == pytest.approx(-1.0, abs=1e-12)
    assert ncc(torch.zeros(32, 32), image) == 0.0
    other = torch.rand(32, 32, generator=rng)
    assert abs(ncc(other, image)) < 0.1
