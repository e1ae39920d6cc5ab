"""Radiograph realism: what a real X-ray system does to the ideal line integrals of a DRR.

The chain follows the physics, per detector pixel, in the intensity domain:

1. primary = I0 x heel(position) x exp(-line integral). The exposure I0 is set as automatic
   exposure control does: the median pixel of the image receives ``photons`` quanta, whatever
   the patient's thickness. The anode heel effect as a linear intensity ramp across the image
   (``heel`` = relative change from one edge to the other, along rows or columns);
2. + scatter: a smooth, low-frequency copy of the primary (Gaussian, ``scatter_sigma_mm``)
   scaled to ``scatter_fraction`` of it (scatter-to-primary ratio), the haze that lowers contrast;
3. quantum noise: Poisson counts;
4. detector blur: Gaussian spread of ``blur_mm`` (scintillator light), which also correlates
   the noise as in real detectors;
5. log processing against the unattenuated exposure, local contrast enhancement as clinical
   image processing does (unsharp masking: ``enhancement`` times the log image minus its
   Gaussian blur of ``enhancement_sigma_mm`` is added back, so bone edges stand out of the
   soft-tissue background), collimation (outside the exposed field the processed image is white,
   as radiographs are shown with bone bright), display window from percentiles of the exposed
   field, and ``gamma``.

``sample_realism`` draws settings over ranges seen in clinical radiographs. Images are torch
tensors (..., nv, nu), batched, on any device; random draws use a torch.Generator, so a seed
reproduces them. Core module: torch only, no MRML.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError


@dataclass(frozen=True)
class Realism:
    photons: Optional[float] = 5000.0  # quanta at the median pixel (exposure control); None = no noise
    heel: float = 0.0  # relative intensity change across the image (0.2: +-10 %)
    heel_along_rows: bool = True  # the ramp runs down the rows (anode-cathode axis along the image's v)
    scatter_fraction: float = 0.0  # scatter-to-primary ratio
    scatter_sigma_mm: float = 40.0
    blur_mm: float = 0.0  # detector blur, Gaussian s.d.
    enhancement: float = 0.0  # unsharp-mask gain of the log image
    enhancement_sigma_mm: float = 10.0
    collimation: Tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # fraction cut: left, right, top, bottom
    window_percentiles: Tuple[float, float] = (0.5, 99.5)  # of the exposed field -> black, white
    gamma: float = 1.0

    def __post_init__(self):
        if self.photons is not None and not self.photons > 0:
            raise InputError("The photon count must be positive.")
        if not (0.0 <= self.heel < 1.0 and 0.0 <= self.scatter_fraction and self.scatter_sigma_mm > 0
                and self.blur_mm >= 0.0 and self.gamma > 0 and self.enhancement >= 0.0
                and self.enhancement_sigma_mm > 0):
            raise InputError("Realism settings out of range (heel 0..1, scatter >= 0, sigmas and gamma > 0).")
        left, right, top, bottom = self.collimation
        if min(self.collimation) < 0 or left + right >= 0.9 or top + bottom >= 0.9:
            raise InputError("Collimation must leave at least 10 % of the image exposed.")
        low, high = self.window_percentiles
        if not 0.0 <= low < high <= 100.0:
            raise InputError("Window percentiles must satisfy 0 <= low < high <= 100.")

    def to_dict(self) -> dict:
        return asdict(self)


def sample_realism(rng: np.random.Generator) -> Realism:
    """Random settings: 1000-30000 quanta at the median pixel, heel 0-25 %, scatter-to-primary 0-0.8
    (20-60 mm haze), blur 0.1-0.6 mm, unsharp-mask gain 0-3 (5-20 mm), collimation on some edges in
    half of the images, gamma 0.7-1.4."""
    collimation = tuple(float(rng.uniform(0.0, 0.15)) if rng.random() < 0.5 else 0.0 for _ in range(4))
    low = float(rng.uniform(0.0, 2.0))
    return Realism(photons=float(np.exp(rng.uniform(np.log(1000.0), np.log(30000.0)))),
                   heel=float(rng.uniform(0.0, 0.25)), heel_along_rows=bool(rng.random() < 0.7),
                   scatter_fraction=float(rng.uniform(0.0, 0.8)), scatter_sigma_mm=float(rng.uniform(20.0, 60.0)),
                   blur_mm=float(rng.uniform(0.1, 0.6)), enhancement=float(rng.uniform(0.0, 3.0)),
                   enhancement_sigma_mm=float(rng.uniform(5.0, 20.0)), collimation=collimation,
                   window_percentiles=(low, float(rng.uniform(98.0, 100.0))), gamma=float(rng.uniform(0.7, 1.4)))


def gaussian_blur(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of (..., nv, nu) with mirrored edges; large sigmas on a coarser grid."""
    if sigma_px <= 0.0:
        return images
    shape = images.shape
    flat = images.reshape(-1, 1, *shape[-2:])
    factor = max(1, int(sigma_px // 4))  # keep the kernel short: blur a pooled copy, then upsample
    if factor > 1:  # pad to whole pooling cells so the upsampled grid lines up with the original
        pad_v, pad_u = (-shape[-2]) % factor, (-shape[-1]) % factor
        flat = F.pad(flat, (0, pad_u, 0, pad_v), mode="replicate")
    small = F.avg_pool2d(flat, factor) if factor > 1 else flat
    sigma = sigma_px / factor
    radius = min(int(math.ceil(3.0 * sigma)), min(small.shape[-2:]) - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = F.conv2d(F.pad(small, (radius, radius, 0, 0), mode="reflect"), kernel.reshape(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), kernel.reshape(1, 1, -1, 1))
    if factor > 1:
        out = F.interpolate(out, scale_factor=factor, mode="bilinear", align_corners=False)
        out = out[..., :shape[-2], :shape[-1]]
    return out.reshape(shape)


def exposed_field(shape, collimation, device=None) -> torch.Tensor:
    """Boolean (nv, nu): the part of the detector the collimator leaves open."""
    nv, nu = shape[-2:]
    left, right, top, bottom = collimation
    rows = torch.arange(nv, device=device)
    cols = torch.arange(nu, device=device)
    open_rows = (rows >= round(top * nv)) & (rows < nv - round(bottom * nv))
    open_cols = (cols >= round(left * nu)) & (cols < nu - round(right * nu))
    return open_rows[:, None] & open_cols[None, :]


def detected_log_image(attenuation: torch.Tensor, realism: Realism, pixel_spacing_mm: Tuple[float, float],
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """-log(detected signal / exposure), enhanced (..., nv, nu): steps 1-5 before collimation and window."""
    attenuation = torch.as_tensor(attenuation)
    if attenuation.ndim < 2 or not attenuation.is_floating_point():
        raise InputError("Line integrals must be a float tensor (..., nv, nu).")
    spacing = float(np.mean(pixel_spacing_mm))
    if not spacing > 0:
        raise InputError("The pixel spacing must be positive.")
    nv, nu = attenuation.shape[-2:]
    along = torch.linspace(-0.5, 0.5, nv if realism.heel_along_rows else nu, dtype=attenuation.dtype,
                           device=attenuation.device)
    heel = 1.0 + realism.heel * (along[:, None] if realism.heel_along_rows else along[None, :])
    median = attenuation.flatten(-2).median(dim=-1).values[..., None, None]
    photons = (realism.photons if realism.photons is not None else 1.0) * torch.exp(median)  # I0 per image
    primary = photons * heel * torch.exp(-attenuation)
    signal = primary + realism.scatter_fraction * gaussian_blur(primary, realism.scatter_sigma_mm / spacing)
    if realism.photons is not None:
        signal = torch.poisson(signal, generator=generator)
    signal = gaussian_blur(signal, realism.blur_mm / spacing)
    log_image = -torch.log(signal.clamp(min=0.5 if realism.photons is not None else 1e-30) / photons)
    if realism.enhancement > 0.0:
        log_image = log_image + realism.enhancement * (
            log_image - gaussian_blur(log_image, realism.enhancement_sigma_mm / spacing))
    return log_image


def realistic_radiograph(attenuation: torch.Tensor, realism: Realism, pixel_spacing_mm: Tuple[float, float],
                         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A processed, bone-bright radiograph in [0, 1] (..., nv, nu) from line integrals (..., nv, nu).

    ``pixel_spacing_mm`` (su, sv) converts the blur and haze widths to pixels.
    """
    log_image = detected_log_image(attenuation, realism, pixel_spacing_mm, generator)
    field = exposed_field(log_image.shape, realism.collimation, log_image.device)
    inside = log_image[..., field]  # (..., exposed pixels)
    low, high = realism.window_percentiles
    quantiles = torch.tensor([low / 100.0, high / 100.0], dtype=log_image.dtype, device=log_image.device)
    bounds = torch.quantile(inside.reshape(-1, inside.shape[-1]), quantiles, dim=-1)  # (2, batch)
    black = bounds[0].reshape(*log_image.shape[:-2], 1, 1)
    white = bounds[1].reshape(*log_image.shape[:-2], 1, 1)
    image = ((log_image - black) / (white - black).clamp(min=1e-12)).clamp(0.0, 1.0)
    if realism.gamma != 1.0:
        image = image ** realism.gamma
    return torch.where(field, image, torch.ones_like(image))
