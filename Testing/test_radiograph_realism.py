"""Radiograph realism: each effect does what its physics says, on images with known answers."""

import math

import numpy as np
import pytest
import torch
from BoneReconLib.errors import InputError
from BoneReconLib.radiograph_realism import (Realism, detected_log_image, exposed_field, gaussian_blur,
                                             realistic_radiograph, sample_realism)

SPACING = (1.0, 1.0)
NO_NOISE = dict(photons=None, window_percentiles=(0.0, 100.0))


def test_ideal_chain_is_the_windowed_line_integral():
    rng = np.random.default_rng(0)
    attenuation = torch.as_tensor(rng.uniform(0.0, 3.0, (2, 3, 40, 50)))
    image = realistic_radiograph(attenuation, Realism(**NO_NOISE), SPACING)
    low = attenuation.flatten(-2).amin(-1)[..., None, None]
    high = attenuation.flatten(-2).amax(-1)[..., None, None]
    assert torch.allclose(image, (attenuation - low) / (high - low), atol=1e-12)
    gamma = realistic_radiograph(attenuation, Realism(**NO_NOISE, gamma=0.5), SPACING)
    assert torch.allclose(gamma, image ** 0.5, atol=1e-12)


def test_quantum_noise_has_poisson_variance_and_a_seed_reproduces_it():
    a, photons = 1.2, 5000.0
    attenuation = torch.full((1, 200, 200), a, dtype=torch.float64)
    realism = Realism(photons=photons)
    values = detected_log_image(attenuation, realism, SPACING, torch.Generator().manual_seed(0))
    # Exposure control gives the median pixel `photons` quanta; the log of Poisson counts with mean m
    # has variance ~1/m (delta method).
    assert float(values.mean()) == pytest.approx(a, abs=0.002)
    assert float(values.std()) == pytest.approx(math.sqrt(1.0 / photons), rel=0.05)
    thick = detected_log_image(attenuation + 2.0, realism, SPACING, torch.Generator().manual_seed(0))
    assert float(thick.std()) == pytest.approx(float(values.std()), rel=0.05)  # same dose behind a thicker patient
    again = detected_log_image(attenuation, realism, SPACING, torch.Generator().manual_seed(0))
    other = detected_log_image(attenuation, realism, SPACING, torch.Generator().manual_seed(1))
    assert torch.equal(values, again) and not torch.equal(values, other)
    # Detector blur correlates the noise and lowers its variance.
    blurred = detected_log_image(attenuation, Realism(photons=photons, blur_mm=1.0), SPACING,
                                 torch.Generator().manual_seed(0))
    assert float(blurred.std()) < 0.5 * float(values.std())


def test_blur_keeps_the_mean_and_spreads_an_edge_by_its_sigma():
    step = torch.zeros(1, 64, 64, dtype=torch.float64)
    step[..., 32:] = 1.0
    blurred = gaussian_blur(step, 2.0)
    assert float(blurred.mean()) == pytest.approx(float(step.mean()), abs=1e-9)
    profile = blurred[0, 10].numpy()
    # 10 %-90 % rise of a Gaussian-blurred step: 2.563 sigma.
    rise = np.interp(0.9, profile, np.arange(64)) - np.interp(0.1, profile, np.arange(64))
    assert rise == pytest.approx(2.563 * 2.0, rel=0.05)
    # Large sigmas go through a pooled grid: the impulse response is still a Gaussian of that width.
    impulse = torch.zeros(1, 257, 257, dtype=torch.float64)
    impulse[0, 128, 128] = 1.0
    response = gaussian_blur(impulse, 20.0)[0].sum(dim=0).numpy()
    x = np.arange(257) - 128.0
    assert response.sum() == pytest.approx(1.0, rel=0.01)
    assert math.sqrt((response * x ** 2).sum() / response.sum()) == pytest.approx(20.0, rel=0.05)


def test_heel_effect_is_a_ramp_across_the_image():
    attenuation = torch.zeros(1, 100, 80, dtype=torch.float64)
    log_image = detected_log_image(attenuation, Realism(photons=None, heel=0.2), SPACING)
    ramp = -np.log(1.0 + 0.2 * np.linspace(-0.5, 0.5, 100))
    assert np.allclose(log_image[0, :, 40].numpy(), ramp, atol=1e-12)
    assert np.allclose(log_image[0, 30].numpy(), ramp[30], atol=1e-12)  # constant along the other axis
    columns = detected_log_image(attenuation, Realism(photons=None, heel=0.2, heel_along_rows=False), SPACING)
    assert np.allclose(columns[0, 50].numpy(), -np.log(1.0 + 0.2 * np.linspace(-0.5, 0.5, 80)), atol=1e-12)


def test_scatter_lowers_contrast_as_the_scatter_to_primary_ratio_says():
    attenuation = torch.zeros(1, 256, 256, dtype=torch.float64)
    attenuation[0, 120:136, 120:136] = 0.5  # a small object in a wide flat field
    clean = detected_log_image(attenuation, Realism(photons=None), SPACING)
    hazy = detected_log_image(attenuation, Realism(photons=None, scatter_fraction=0.5, scatter_sigma_mm=40.0),
                              SPACING)
    assert float(clean[0, 128, 128] - clean[0, 10, 128]) == pytest.approx(0.5, abs=1e-12)
    # The haze is nearly flat under a small object: contrast log((1 + s) / (e^-0.5 + s)).
    expected = math.log(1.5 / (math.exp(-0.5) + 0.5))
    assert float(hazy[0, 128, 128] - hazy[0, 10, 128]) == pytest.approx(expected, rel=0.03)


def test_enhancement_sharpens_edges_and_leaves_flat_fields():
    step = torch.zeros(1, 128, 128, dtype=torch.float64)
    step[..., 64:] = 1.0
    plain = detected_log_image(step, Realism(photons=None), SPACING)
    sharp = detected_log_image(step, Realism(photons=None, enhancement=1.0, enhancement_sigma_mm=5.0), SPACING)
    assert torch.allclose(plain, step)
    row = sharp[0, 60].numpy()
    assert row[:40] == pytest.approx(0.0, abs=1e-6) and row[90:] == pytest.approx(1.0, abs=1e-6)  # flat: unchanged
    # Unsharp masking: undershoot before the edge, overshoot after it, by gain x (1 - blurred step).
    expected_peak = 1.0 + (1.0 - float(gaussian_blur(step, 5.0)[0, 60, 64]))
    assert row.max() == pytest.approx(expected_peak, abs=1e-6) and row.min() < -0.3


def test_collimation_whites_out_the_unexposed_border():
    rng = np.random.default_rng(1)
    attenuation = torch.as_tensor(rng.uniform(0.5, 2.0, (2, 60, 80)))
    realism = Realism(photons=1e4, collimation=(0.1, 0.0, 0.2, 0.05))
    image = realistic_radiograph(attenuation, realism, SPACING, torch.Generator().manual_seed(0))
    field = exposed_field(image.shape, realism.collimation)
    assert int(field.sum()) == (60 - 12 - 3) * (80 - 8)
    assert not field[:12].any() and not field[:, :8].any() and field[12:57, 8:].all()
    assert torch.all(image[:, ~field] == 1.0) and float(image[:, field].mean()) < 0.9
    # The window comes from the exposed field only: its darkest and brightest pixels span 0..1.
    assert float(image[:, field].min()) == 0.0 and float(image[:, field].max()) == 1.0


def test_sampled_settings_are_valid_and_reproducible():
    assert sample_realism(np.random.default_rng(5)) == sample_realism(np.random.default_rng(5))
    for seed in range(30):
        realism = sample_realism(np.random.default_rng(seed))
        assert 1000 <= realism.photons <= 30000 and 0 <= realism.heel <= 0.25 and 0.1 <= realism.blur_mm <= 0.6
    with pytest.raises(InputError, match="photon"):
        Realism(photons=0.0)
    with pytest.raises(InputError, match="10 %"):
        Realism(collimation=(0.5, 0.5, 0.0, 0.0))
    with pytest.raises(InputError, match="percentiles"):
        Realism(window_percentiles=(50.0, 10.0))
    with pytest.raises(InputError, match="float"):
        realistic_radiograph(torch.zeros(4, 4, dtype=torch.int64), Realism(), SPACING)
