"""Image similarity for evaluating predicted images against the truth: MAE, PSNR, SSIM, NCC.

SSIM follows Wang et al. 2004 (Gaussian window of 11 pixels, sigma 1.5, K1 = 0.01, K2 = 0.03),
with the data range given (for line-integral images: the truth's maximum). Core module (torch).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def mae(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    return float((prediction - truth).abs().mean())


def psnr(prediction: torch.Tensor, truth: torch.Tensor, data_range: float) -> float:
    """Peak signal-to-noise ratio (dB); infinite for identical images."""
    mse = float(((prediction - truth) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def ncc(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Normalised cross-correlation (-1..1; 0 when either image is flat): agreement of shape, whatever the scale."""
    a = prediction.double().flatten() - prediction.double().mean()
    b = truth.double().flatten() - truth.double().mean()
    norm = float((a.norm() * b.norm()))
    return float(a @ b) / norm if norm > 0 else 0.0


def ssim(prediction: torch.Tensor, truth: torch.Tensor, data_range: float, sigma: float = 1.5,
         size: int = 11) -> float:
    """Mean structural similarity of two 2D images (H, W)."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    window = (g[:, None] * g[None, :] / g.sum() ** 2)[None, None]
    x, y = (t.double()[None, None] for t in (prediction, truth))
    blur = lambda t: F.conv2d(t, window)  # noqa: E731  (valid region only, as in the reference code)
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(index.mean())
