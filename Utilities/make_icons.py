"""Regenerate the module icons (128 x 128 PNG) from the sample case. Run from the repository root:

    python Utilities/make_icons.py
"""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "BiplanarRecon")]

from BiplanarReconLib import BiplanarReconLogic  # noqa: E402
from BoneReconLib.app_context import new_headless_context  # noqa: E402
from BoneReconLib.screenshot import render_views, write_png  # noqa: E402


def biplanar_icon():
    """Sample L1-L5 models, AP and lateral side by side: the module's subject."""
    context = new_headless_context()
    logic = BiplanarReconLogic(context.scene)
    _, labels = logic.loadSampleCase()
    logic.createVertebraModels(labels)
    image = render_views(context, ("Anterior", "Left"), size=(64, 128), zoom=1.7)
    context.close()
    return image


def depth_icon():
    """A front-depth map of a sphere-like bone, colour-coded near (warm) to far (cool)."""
    y, x = np.mgrid[-1:1:128j, -1:1:128j]
    r2 = (x / 0.8) ** 2 + (y / 0.95) ** 2
    inside = r2 < 1
    depth = np.where(inside, 1 - np.sqrt(np.clip(1 - r2, 0, 1)), 1.0)
    rgb = np.stack([1 - depth, 0.35 + 0.3 * (1 - depth), depth], axis=-1)
    rgb[~inside] = (0.12, 0.14, 0.2)
    return (255 * rgb).astype(np.uint8)


if __name__ == "__main__":
    write_png(biplanar_icon(), ROOT / "BiplanarRecon/Resources/Icons/BiplanarRecon.png")
    write_png(depth_icon(), ROOT / "DepthRecon/Resources/Icons/DepthRecon.png")
