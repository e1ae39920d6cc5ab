"""The registrations' high-pass as matrix products against the same taps as a float64 conv2d.

    python benchmarks/highpass_speed.py [--repeats 20] [--threads 2]

For the image stacks the leg pipeline compares (a CMA-ES population at the coarse levels, one
instance with its gradient at full resolution), prints ms per call of each way, their ratio and
the largest difference (the same numbers to rounding).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.gaussian_highpass import gaussian_taps, highpass  # noqa: E402

CASES = [  # (stack shape, sigma in pixels, with gradient): leg_pipeline at 1.5, 0.75 and 0.375 mm pixels
    ((14, 175, 50), 1.33, False), ((14, 350, 100), 2.67, False), ((1, 700, 200), 5.33, False),
    ((1, 700, 200), 4.0, True)]


def convolved(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """The high-pass as it was: two conv2d passes with edge-replicated padding."""
    kernel = gaussian_taps(sigma_px, images.dtype)
    radius = (len(kernel) - 1) // 2
    flat = images.reshape(-1, 1, *images.shape[-2:])
    blurred = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.reshape(1, 1, 1, -1))
    blurred = F.conv2d(F.pad(blurred, (0, 0, radius, radius), mode="replicate"), kernel.reshape(1, 1, -1, 1))
    return (flat - blurred).reshape(images.shape)


def per_call_ms(fn, images, sigma, gradient, repeats):
    times = []
    for _ in range(repeats + 1):
        x = images.clone().requires_grad_(gradient)
        start = time.perf_counter()
        y = fn(x, sigma)
        if gradient:
            y.square().sum().backward()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{'stack':<16} {'sigma':>5} {'grad':>5} {'conv2d ms':>10} {'matrices ms':>12} {'ratio':>6} {'max diff':>9}")
    for shape, sigma, gradient in CASES:
        images = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        conv = per_call_ms(convolved, images, sigma, gradient, args.repeats)
        matrices = per_call_ms(highpass, images, sigma, gradient, args.repeats)
        diff = float((convolved(images, sigma) - highpass(images, sigma)).abs().max())
        print(f"{'x'.join(map(str, shape)):<16} {sigma:>5.2f} {'yes' if gradient else 'no':>5} {conv:>10.2f} "
              f"{matrices:>12.2f} {conv / matrices:>6.1f} {diff:>9.1e}")


if __name__ == "__main__":
    main()
