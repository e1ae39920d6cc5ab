"""The high-pass as matrix products: the same numbers as an edge-padded convolution, both ways."""

import numpy as np
import pytest
import torch

from BoneReconLib import gaussian_highpass
from BoneReconLib.gaussian_highpass import blur_matrix, gaussian_blur, highpass


def _reference_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """numpy: edge-replicated padding and np.convolve along columns, then rows."""
    radius = max(1, int(np.ceil(3.0 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    rows = np.stack([np.convolve(np.pad(r, radius, mode="edge"), kernel, mode="valid") for r in image])
    return np.stack([np.convolve(np.pad(c, radius, mode="edge"), kernel, mode="valid") for c in rows.T]).T


@pytest.mark.parametrize("matrix_limit", [2048, 0])
def test_blur_matches_an_edge_padded_convolution(monkeypatch, matrix_limit):
    """Matrices (default) or taps (axes over the limit): a random image (with a radius longer than
    one axis, so edge taps fold several times) blurs as the numpy reference does."""
    monkeypatch.setattr(gaussian_highpass, "MAX_MATRIX_PIXELS", matrix_limit)
    image = np.random.default_rng(3).normal(size=(2, 37, 11))
    for sigma in (0.7, 2.5, 5.0):
        blurred = gaussian_blur(torch.as_tensor(image), sigma).numpy()
        for k in range(2):
            np.testing.assert_allclose(blurred[k], _reference_blur(image[k], sigma), atol=1e-12)
        np.testing.assert_allclose(highpass(torch.as_tensor(image), sigma).numpy(), image - blurred, atol=1e-15)


def test_blur_matrix_keeps_constants_and_gradients_flow():
    """Each row of the matrix sums to one (a constant stays), and the high-pass is differentiable:
    its gradient is the transpose of the same linear map."""
    matrix = blur_matrix(25, 3.0)
    np.testing.assert_allclose(matrix.sum(dim=1).numpy(), np.ones(25), atol=1e-14)
    x = torch.zeros(1, 9, 25, dtype=torch.float64, requires_grad=True)
    weights = torch.as_tensor(np.random.default_rng(0).normal(size=(1, 9, 25)))
    (highpass(x, 3.0) * weights).sum().backward()
    expected = weights - torch.as_tensor(blur_matrix(9, 3.0)).T @ weights[0] @ blur_matrix(25, 3.0)
    np.testing.assert_allclose(x.grad[0].numpy(), expected[0].numpy(), atol=1e-12)
