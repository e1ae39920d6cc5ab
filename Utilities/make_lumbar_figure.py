"""Regenerate docs/lumbar-cases.png: three synthetic biplanar lumbar cases from the sample CT.

    python Utilities/make_lumbar_figure.py

Per row one case: the AP and lateral radiographs with the landmarks (green visible, red
occluded), then the per-vertebra images of both views coloured by level (L1-L5).
"""

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.lumbar_dataset import draw_case  # noqa: E402
from BoneReconLib.lumbar_radiograph import SpineCT  # noqa: E402
from BoneReconLib.sample_data import SAMPLE_CT, SAMPLE_VERTEBRA_LABELS  # noqa: E402
from BoneReconLib.screenshot import write_png  # noqa: E402
from BoneReconLib.shape_model_library import load_models  # noqa: E402
from BoneReconLib.spine_alignment import LEVELS  # noqa: E402
from BoneReconLib.vertebra_labels import LEVEL_COLORS  # noqa: E402


def dots(rgb, ij, visible):
    for (i, j), seen in zip(ij.reshape(-1, 2), visible.reshape(-1)):
        r, c = int(round(j)), int(round(i))
        rgb[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2] = (40, 220, 40) if seen else (230, 40, 40)


def coloured(decomposition):
    """(5, nv, nu) per-vertebra line integrals -> RGB, each level in its colour."""
    scale = np.percentile(decomposition[decomposition > 0], 99) if np.any(decomposition > 0) else 1.0
    rgb = np.zeros(decomposition.shape[1:] + (3,))
    for n, level in enumerate(LEVELS):
        rgb += np.clip(decomposition[n] / scale, 0, 1)[..., None] * np.asarray(LEVEL_COLORS[level])
    return (255 * np.clip(rgb, 0, 1)).astype(np.uint8)


def main():
    models = load_models()
    background = SpineCT.from_files(SAMPLE_CT, SAMPLE_VERTEBRA_LABELS)
    rows = []
    for seed in (1, 2, 5):
        arrays, _ = draw_case(models, background, np.random.default_rng([2026, seed]))
        tiles = []
        for v in range(2):
            gray = (255 * arrays["image"][v]).astype(np.uint8)
            rgb = np.repeat(gray[..., None], 3, axis=2)
            dots(rgb, arrays["landmarks_ij"][v], arrays["visible"][v])
            tiles.append(rgb)
        tiles += [coloured(arrays["decomposition"][:, v].astype(np.float64)) for v in range(2)]
        rows.append(np.concatenate(tiles, axis=1))
    out = REPO / "docs" / "lumbar-cases.png"
    write_png(np.concatenate(rows, axis=0), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
