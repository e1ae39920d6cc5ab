"""An image less its Gaussian blur, as two matrix products.

The registrations compare radiographs and rendered bones high-passed (the smooth soft tissue
under a bone drops out), hundreds of times per fit, with gradients in the refinement. A
separable Gaussian blur with edge replication is a linear map along each axis: an (n, n) matrix
with the kernel's taps on its band and the taps that fall past an edge added to the edge pixel.
Two products with those matrices run on BLAS, 3-12 times faster on this CPU than torch's float64
``conv2d`` with the same taps, for the same numbers to rounding (``benchmarks/highpass_speed.py``).
An axis longer than ``MAX_MATRIX_PIXELS`` (a dense matrix would cost more than the taps) is
convolved instead. Core module (torch), no MRML.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

MAX_MATRIX_PIXELS = 2048


def gaussian_taps(sigma_px: float, dtype=torch.float64, device=None) -> torch.Tensor:
    """The normalised kernel (2r + 1,), r = ceil(3 sigma), at least 1."""
    radius = max(1, int(math.ceil(3.0 * sigma_px)))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (x / sigma_px) ** 2)
    return kernel / kernel.sum()


@functools.lru_cache(maxsize=32)
def blur_matrix(n: int, sigma_px: float, dtype=torch.float64, device=None) -> torch.Tensor:
    """(n, n) matrix B with ``B @ x`` the edge-replicated Gaussian blur of x (n,) (cached: do not modify)."""
    kernel = gaussian_taps(sigma_px, dtype, device)
    radius = (len(kernel) - 1) // 2
    taps = torch.arange(-radius, radius + 1, device=device)
    columns = (torch.arange(n, device=device)[:, None] + taps).clamp(0, n - 1)  # past an edge: the edge pixel
    matrix = torch.zeros(n, n, dtype=dtype, device=device)
    return matrix.scatter_add_(1, columns, kernel.expand(n, -1).contiguous())


def _blur_last_axis(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    n = images.shape[-1]
    if n <= MAX_MATRIX_PIXELS:
        return images @ blur_matrix(n, float(sigma_px), images.dtype, images.device).T
    kernel = gaussian_taps(sigma_px, images.dtype, images.device)
    radius = (len(kernel) - 1) // 2
    flat = images.reshape(-1, 1, 1, n)
    blurred = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.reshape(1, 1, 1, -1))
    return blurred.reshape(images.shape)


def gaussian_blur(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """(..., rows, columns) blurred by a Gaussian of ``sigma_px`` pixels, edges replicated; differentiable."""
    along_rows = _blur_last_axis(images, sigma_px)
    return _blur_last_axis(along_rows.transpose(-1, -2), sigma_px).transpose(-1, -2)


def highpass(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """(..., rows, columns) less their Gaussian blur (separable, edge-replicated), differentiable."""
    return images - gaussian_blur(images, sigma_px)
