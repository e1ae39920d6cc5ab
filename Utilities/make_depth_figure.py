"""Regenerate docs/depth-example.png: the bundled DepthRecon network on held-out wrist radiographs.

One row per case, on the network's grid: the radiograph, the predicted bone masks (one colour per
bone, overlaps mixed), the true masks, the predicted front depth (near = bright, every bone's
nearest surface) and the true one. Needs a held-out dataset made with --meshes (e.g.
datasets/wrist-test, see the README's DepthRecon section):

    python Utilities/make_depth_figure.py --data datasets/wrist-test [--weights W] [--cases 0 1]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from BoneReconLib.biplanar_samples import resample_covered  # noqa: E402
from BoneReconLib.dataset_store import CaseDataset  # noqa: E402
from BoneReconLib.depth_inference import network_view, predict_depth  # noqa: E402
from BoneReconLib.depth_result_nodes import bone_color  # noqa: E402
from BoneReconLib.depth_training import bundled_depth_weights, load_depth_network  # noqa: E402
from BoneReconLib.geometry import View  # noqa: E402
from BoneReconLib.mesh_depth import mesh_depth  # noqa: E402
from BoneReconLib.screenshot import write_png  # noqa: E402


def coloured(masks):
    """(B, n, n) bool -> (n, n, 3) in [0, 1], each bone in its model colour, overlaps averaged."""
    colours = np.array([bone_color(k) for k in range(len(masks))])
    count = masks.sum(axis=0)[..., None]
    mixed = np.tensordot(masks.transpose(1, 2, 0).astype(float), colours, axes=1)
    return np.where(count > 0, mixed / np.maximum(count, 1), 0.0)


def nearest_depth(front, hit):
    """Near = bright over every bone's front depth (its first surface along each ray)."""
    nearest = np.where(hit, front, np.inf).min(axis=0)
    on = np.isfinite(nearest)
    if not on.any():
        return np.zeros(nearest.shape)
    lo, hi = np.percentile(nearest[on], [1, 99])
    return np.where(on, 1.0 - np.clip((nearest - lo) / max(hi - lo, 1e-9), 0, 1), 0.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--weights")
    parser.add_argument("--cases", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default=str(REPO / "docs" / "depth-example.png"))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_depth_network(args.weights or bundled_depth_weights())
    cases = CaseDataset(args.data, "test")
    rows = []
    for index in args.cases:
        item = cases[index]
        view = View.from_dict(item["meta"]["geometry"]["views"][0])
        prediction = predict_depth(model, item["image"][0].numpy(), view)
        grid = prediction.view
        truth = [mesh_depth(item[f"vertices_{k}"].double(), item[f"triangles_{k}"].long(), [grid])[0, 0]
                 for k in range(len(item["meta"]["bones"]))]
        order = [model.bones.index(name) for name in item["meta"]["bones"]]
        found = (prediction.probability >= 0.5).numpy()
        true_hit = np.zeros_like(found)
        true_front = np.zeros(found.shape)
        for maps, k in zip(truth, order):
            true_hit[k], true_front[k] = maps.hit.numpy(), maps.front.numpy()
        # The radiograph on the network grid: what the network saw.
        pixels = item["image"][0].numpy()
        _, transform = network_view(view, model, grid.extra["source_to_object"])
        picture, _ = resample_covered(torch.from_numpy(pixels.astype(np.float32))[None], transform, grid.size[0])
        grey = np.repeat(picture[0].numpy()[..., None], 3, axis=2)
        panels = [grey, coloured(found), coloured(true_hit),
                  np.repeat(nearest_depth(prediction.front.numpy(), found)[..., None], 3, axis=2),
                  np.repeat(nearest_depth(true_front, true_hit)[..., None], 3, axis=2)]
        gap = np.ones((grey.shape[0], 4, 3))
        rows.append(np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1))
    figure = np.concatenate([r for row in rows for r in (row, np.ones((4, row.shape[1], 3)))][:-1], axis=0)
    path = write_png((np.clip(figure, 0, 1) * 255).round().astype(np.uint8), Path(args.out))
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
